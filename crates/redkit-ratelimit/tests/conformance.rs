//! The conformance suite on memory, standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::{ManualClock, Redis};
use redkit_ratelimit::conformance::{Suite, Time};
use redkit_ratelimit::{MemoryRateLimiter, RateLimiter, RedisRateLimiter};

redkit_ratelimit::conformance_suite!(memory, async {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
    Suite::new(Time::Manual(clock.clone()), move |limits| {
        let mut b = MemoryRateLimiter::builder().clock(clock.clone());
        for l in limits {
            b = b.limit(l);
        }
        let l: Arc<dyn RateLimiter> = Arc::new(b.build().unwrap());
        (l.clone(), l)
    })
});

fn redis_suite(a: Redis, b: Redis) -> Suite {
    Suite::new(Time::Real, move |limits| {
        let prefix = redkit_testkit::prefix("rl");
        let build = |redis: &Redis| -> Arc<dyn RateLimiter> {
            let mut builder = RedisRateLimiter::builder(redis.clone()).prefix(&prefix);
            for l in &limits {
                builder = builder.limit(l.clone());
            }
            Arc::new(builder.build().unwrap())
        };
        (build(&a), build(&b))
    })
}

redkit_ratelimit::conformance_suite!(standalone, async {
    redis_suite(redkit_testkit::redis().await, redkit_testkit::redis().await)
});

redkit_ratelimit::conformance_suite!(cluster, async {
    let cluster = redkit_testkit::cluster();
    redis_suite(cluster.redis().await, cluster.redis().await)
});
