//! The conformance suite on memory, standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::{ManualClock, Redis};
use redkit_leaderboard::conformance::{Suite, Time};
use redkit_leaderboard::{Leaderboard, MemoryLeaderboard, RedisLeaderboard};

redkit_leaderboard::conformance_suite!(memory, async {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
    Suite::new(Time::Manual(clock.clone()), move |board| {
        let lb: Arc<dyn Leaderboard> = Arc::new(
            MemoryLeaderboard::builder(board)
                .clock(clock.clone())
                .build()?,
        );
        Ok(lb)
    })
});

fn redis_suite(redis: Redis) -> Suite {
    Suite::new(Time::Real, move |board| {
        let lb: Arc<dyn Leaderboard> = Arc::new(RedisLeaderboard::new(&redis, board)?);
        Ok(lb)
    })
}

redkit_leaderboard::conformance_suite!(standalone, async {
    redis_suite(redkit_testkit::redis().await)
});

redkit_leaderboard::conformance_suite!(cluster, async {
    redis_suite(redkit_testkit::cluster().redis().await)
});
