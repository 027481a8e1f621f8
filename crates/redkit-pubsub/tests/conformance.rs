//! The conformance suite on memory, standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use redkit_core::Redis;
use redkit_pubsub::conformance::Suite;
use redkit_pubsub::{MemoryPubSub, PubSub, RedisPubSub};

redkit_pubsub::conformance_suite!(memory, async {
    Suite::new(|| {
        let bus: Arc<dyn PubSub> = Arc::new(MemoryPubSub::new());
        (bus.clone(), bus)
    })
});

fn redis_suite(a: Redis, b: Redis) -> Suite {
    Suite::new(move || {
        let prefix = redkit_testkit::prefix("ps");
        let one: Arc<dyn PubSub> = Arc::new(RedisPubSub::with_prefix(&a, &prefix).unwrap());
        let two: Arc<dyn PubSub> = Arc::new(RedisPubSub::with_prefix(&b, &prefix).unwrap());
        (one, two)
    })
}

redkit_pubsub::conformance_suite!(standalone, async {
    redis_suite(redkit_testkit::redis().await, redkit_testkit::redis().await)
});

redkit_pubsub::conformance_suite!(cluster, async {
    let cluster = redkit_testkit::cluster();
    redis_suite(cluster.redis().await, cluster.redis().await).per_node_counts()
});
