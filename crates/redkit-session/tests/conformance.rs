//! The conformance suite on memory, standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::{ManualClock, Redis};
use redkit_session::conformance::{Suite, Time};
use redkit_session::{MemorySessionStore, RedisSessionStore, SessionStore};

redkit_session::conformance_suite!(memory, async {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
    Suite::new(Time::Manual(clock.clone()), move |config| {
        let store: Arc<dyn SessionStore> = Arc::new(
            MemorySessionStore::builder(config)
                .clock(clock.clone())
                .build()?,
        );
        Ok((store.clone(), store))
    })
});

fn redis_suite(a: Redis, b: Redis) -> Suite {
    Suite::new(Time::Real, move |config| {
        let one: Arc<dyn SessionStore> = Arc::new(RedisSessionStore::new(&a, config.clone())?);
        let two: Arc<dyn SessionStore> = Arc::new(RedisSessionStore::new(&b, config)?);
        Ok((one, two))
    })
}

redkit_session::conformance_suite!(standalone, async {
    redis_suite(redkit_testkit::redis().await, redkit_testkit::redis().await)
});

redkit_session::conformance_suite!(cluster, async {
    let cluster = redkit_testkit::cluster();
    redis_suite(cluster.redis().await, cluster.redis().await)
});
