//! Exactness under concurrency: 64 tasks over two independent handles (two "processes")
//! hammer one key; no more than the limit is ever admitted, on standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redkit_core::Redis;
use redkit_ratelimit::{Limit, RateLimiter, RedisRateLimiter};

const TASKS: usize = 64;
const TRIES: usize = 12;
const HOUR: Duration = Duration::from_secs(3600);

fn limiter(redis: &Redis, prefix: &str, limits: &[Limit]) -> Arc<dyn RateLimiter> {
    let mut b = RedisRateLimiter::builder(redis.clone()).prefix(prefix);
    for l in limits {
        b = b.limit(l.clone());
    }
    Arc::new(b.build().unwrap())
}

/// Runs `TASKS` tasks, half on each handle, each trying `TRIES` checks of `cost`; returns
/// the units admitted.
async fn hammer(a: Redis, b: Redis, limits: &[Limit], cost: u64) -> (u64, Arc<dyn RateLimiter>) {
    let prefix = redkit_testkit::prefix("rl-conc");
    let la = limiter(&a, &prefix, limits);
    let lb = limiter(&b, &prefix, limits);
    let key = redkit_testkit::prefix("hot");
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let l = if t % 2 == 0 { la.clone() } else { lb.clone() };
        let key = key.clone();
        let admitted = admitted.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..TRIES {
                if l.check(&key, cost).await.unwrap().allowed {
                    admitted.fetch_add(cost, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let admitted = admitted.load(Ordering::SeqCst);
    let peek = la.peek(&key).await.unwrap();
    assert_eq!(peek.remaining, peek.limit - admitted, "{peek:?}");
    (admitted, la)
}

fn algorithms(limit: u64) -> Vec<Limit> {
    vec![
        Limit::fixed_window(limit, HOUR),
        Limit::sliding_window(limit, HOUR),
        Limit::sliding_log(limit, HOUR),
        Limit::token_bucket(limit, limit, HOUR),
        Limit::gcra(limit, HOUR),
    ]
}

async fn every_algorithm_admits_exactly_its_limit(a: Redis, b: Redis) {
    for limit in algorithms(40) {
        // An hour's window: nothing refills during the test, so "never more than the
        // limit in any window" means exactly the limit in total.
        let (admitted, _) = hammer(a.clone(), b.clone(), std::slice::from_ref(&limit), 1).await;
        assert_eq!(admitted, 40, "{limit:?}");
        let (admitted, _) = hammer(a.clone(), b.clone(), std::slice::from_ref(&limit), 3).await;
        assert_eq!(admitted, 39, "{limit:?} with cost 3");
    }
}

async fn several_limits_stay_exact(a: Redis, b: Redis) {
    let limits = [
        Limit::fixed_window(100, HOUR),
        Limit::gcra(30, HOUR).name("steady"),
    ];
    let (admitted, l) = hammer(a, b, &limits, 1).await;
    assert_eq!(admitted, 30);
    let key_state = l.peek(&redkit_testkit::prefix("unused")).await.unwrap();
    assert_eq!(key_state.statuses.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_every_algorithm_admits_exactly_its_limit() {
    every_algorithm_admits_exactly_its_limit(
        redkit_testkit::redis().await,
        redkit_testkit::redis().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_several_limits_stay_exact() {
    several_limits_stay_exact(redkit_testkit::redis().await, redkit_testkit::redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_every_algorithm_admits_exactly_its_limit() {
    let c = redkit_testkit::cluster();
    every_algorithm_admits_exactly_its_limit(c.redis().await, c.redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_several_limits_stay_exact() {
    let c = redkit_testkit::cluster();
    several_limits_stay_exact(c.redis().await, c.redis().await).await;
}

/// Short windows, real time: across many windows, the admitted units of each fixed
/// window (grouped by the window end each decision reports) never exceed the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_windows_never_admit_more_than_the_limit_per_window() {
    let a = redkit_testkit::redis().await;
    let b = redkit_testkit::redis().await;
    let prefix = redkit_testkit::prefix("rl-windows");
    let window = Duration::from_millis(200);
    let la = limiter(&a, &prefix, &[Limit::fixed_window(15, window)]);
    let lb = limiter(&b, &prefix, &[Limit::fixed_window(15, window)]);
    let key = redkit_testkit::prefix("hot");
    let start = std::time::Instant::now();
    let ends = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let l = if t % 2 == 0 { la.clone() } else { lb.clone() };
        let (key, ends) = (key.clone(), ends.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < Duration::from_millis(1100) {
                let d = l.check(&key, 1).await.unwrap();
                if d.allowed {
                    // the window's end on the local clock, to the nearest 20 ms
                    let end = start.elapsed() + d.reset_after;
                    ends.lock().unwrap().push(end.as_millis() / 20);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ends = ends.lock().unwrap().clone();
    let mut per_window = std::collections::BTreeMap::<u128, u64>::new();
    for e in &ends {
        // a window's end read at different moments may straddle a 20 ms step
        let slot = per_window
            .keys()
            .copied()
            .find(|k| k.abs_diff(*e) <= 1)
            .unwrap_or(*e);
        *per_window.entry(slot).or_default() += 1;
    }
    assert!(per_window.len() >= 4, "{per_window:?}");
    for (end, n) in &per_window {
        assert!(
            *n <= 15,
            "{n} admitted in the window ending near {end}: {per_window:?}"
        );
    }
    assert!(
        per_window.values().filter(|&&n| n == 15).count() >= 3,
        "{per_window:?}"
    );
}
