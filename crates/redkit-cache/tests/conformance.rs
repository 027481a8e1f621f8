//! The conformance suite on memory, standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_cache::conformance::{Suite, Time};
use redkit_cache::{Cache, MemoryCache, RedisCache};
use redkit_core::{ManualClock, Redis};

redkit_cache::conformance_suite!(memory, async {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
    Suite::new(Time::Manual(clock.clone()), move |config| {
        let clock = clock.clone();
        async move {
            let one = MemoryCache::with_clock(config, clock)?;
            let two: Arc<dyn Cache> = Arc::new(one.handle());
            Ok((Arc::new(one) as Arc<dyn Cache>, two))
        }
    })
});

fn redis_suite(a: Redis, b: Redis) -> Suite {
    Suite::new(Time::Real, move |config| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let one: Arc<dyn Cache> = Arc::new(RedisCache::new(&a, config.clone()).await?);
            let two: Arc<dyn Cache> = Arc::new(RedisCache::new(&b, config).await?);
            Ok((one, two))
        }
    })
}

redkit_cache::conformance_suite!(standalone, async {
    redis_suite(redkit_testkit::redis().await, redkit_testkit::redis().await)
});

redkit_cache::conformance_suite!(standalone_with_l1, async {
    let (a, b) = (redkit_testkit::redis().await, redkit_testkit::redis().await);
    Suite::new(Time::Real, move |config| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let config = config.local(10_000, Duration::from_secs(30));
            let one: Arc<dyn Cache> = Arc::new(RedisCache::new(&a, config.clone()).await?);
            let two: Arc<dyn Cache> = Arc::new(RedisCache::new(&b, config).await?);
            Ok((one, two))
        }
    })
});

redkit_cache::conformance_suite!(cluster, async {
    let cluster = redkit_testkit::cluster();
    redis_suite(cluster.redis().await, cluster.redis().await)
});
