//! The conformance suite on memory, standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use redkit_core::Redis;
use redkit_streams::conformance::Suite;
use redkit_streams::{MemoryStreamStore, RedisStreamStore, StreamStore};

redkit_streams::conformance_suite!(memory, async {
    Suite::new(|| {
        let store: Arc<dyn StreamStore> = Arc::new(MemoryStreamStore::new());
        (store.clone(), store)
    })
});

fn redis_suite(a: Redis, b: Redis) -> Suite {
    Suite::new(move || {
        let prefix = redkit_testkit::prefix("st");
        let one: Arc<dyn StreamStore> = Arc::new(RedisStreamStore::new(&a, &prefix).unwrap());
        let two: Arc<dyn StreamStore> = Arc::new(RedisStreamStore::new(&b, &prefix).unwrap());
        (one, two)
    })
}

redkit_streams::conformance_suite!(standalone, async {
    redis_suite(redkit_testkit::redis().await, redkit_testkit::redis().await)
});

redkit_streams::conformance_suite!(cluster, async {
    let cluster = redkit_testkit::cluster();
    redis_suite(cluster.redis().await, cluster.redis().await)
});
