//! `OnError::FailOpen` and `OnError::Insurance` answer only the requests whose store call
//! failed: on a cluster an explicit batch is one call per slot, and a request another
//! slot's call decided keeps Redis's answer (a denial stays a denial).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::redis;
use redkit_ratelimit::{Limit, MemoryRateLimiter, OnError, RateLimiter, RedisRateLimiter, Request};

const HOUR: Duration = Duration::from_secs(3600);

/// A cluster batch of two checks: `spent` (limit 1, already used: Redis denies it) and
/// `broken` on another master, whose state key holds a hash (its slot's call fails with
/// WRONGTYPE). Before, the one error sent the whole batch to the `OnError` policy:
/// fail-open allowed `spent`, which Redis had just denied, and the insurance limiter
/// decided it again (allowed: it had never seen the key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_slot_does_not_open_the_requests_another_slot_denied() {
    let cluster = redkit_testkit::cluster();
    let redis = cluster.redis().await;
    let limit = Limit::fixed_window(1, HOUR);
    let insurance: Arc<dyn RateLimiter> = Arc::new(
        MemoryRateLimiter::builder()
            .limit(limit.clone())
            .build()
            .unwrap(),
    );
    for (policy, name) in [
        (OnError::FailOpen, "open"),
        (OnError::Insurance(insurance), "insured"),
    ] {
        let l = RedisRateLimiter::builder(redis.clone())
            .prefix(redkit_testkit::prefix("rl-recover"))
            .limit(limit.clone())
            .on_error(policy)
            .build()
            .unwrap();
        let node = |s: &str| cluster.master_index(&l.state_keys(s).unwrap()[0]);
        let spent = format!("{name}-spent");
        let broken = (0..)
            .map(|i| format!("{name}-broken{i}"))
            .find(|b| node(b) != node(&spent))
            .unwrap();
        let _: () = redis
            .query(
                redis::cmd("HSET")
                    .arg(&l.state_keys(&broken).unwrap()[0])
                    .arg("f")
                    .arg(1),
            )
            .await
            .unwrap();
        assert!(l.check(&spent, 1).await.unwrap().allowed);

        let ds = l
            .run(&[Request::check(&spent, 1), Request::check(&broken, 1)])
            .await
            .unwrap();
        assert!(!ds[0].allowed, "{name}: Redis denied it: {:?}", ds[0]);
        assert!(!ds[0].degraded, "{name}: {:?}", ds[0]);
        assert!(ds[1].degraded, "{name}: {:?}", ds[1]);
        // and it is still spent
        assert!(!l.check(&spent, 1).await.unwrap().allowed, "{name}");
    }
}
