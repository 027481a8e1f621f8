//! The conformance suite on memory, standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::{ManualClock, Redis};
use redkit_queue::conformance::{Suite, Time};
use redkit_queue::{MemoryQueue, Queue, RedisQueue};

redkit_queue::conformance_suite!(memory, async {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
    Suite::new(Time::Manual(clock.clone()), move |config| {
        let clock = clock.clone();
        async move {
            let one = MemoryQueue::with_clock("jobs", config, clock)?;
            let two: Arc<dyn Queue> = Arc::new(one.clone());
            Ok((Arc::new(one) as Arc<dyn Queue>, two))
        }
    })
});

fn redis_suite(a: Redis, b: Redis) -> Suite {
    Suite::new(Time::Real, move |config| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let one: Arc<dyn Queue> = Arc::new(RedisQueue::new(&a, "jobs", config.clone())?);
            let two: Arc<dyn Queue> = Arc::new(RedisQueue::new(&b, "jobs", config)?);
            Ok((one, two))
        }
    })
}

redkit_queue::conformance_suite!(standalone, async {
    redis_suite(redkit_testkit::redis().await, redkit_testkit::redis().await)
});

redkit_queue::conformance_suite!(cluster, async {
    let cluster = redkit_testkit::cluster();
    redis_suite(cluster.redis().await, cluster.redis().await)
});
