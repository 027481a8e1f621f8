//! Exact boundaries on a manual clock (the memory backend decides with the same
//! arithmetic as the Redis script; the conformance suite holds them together).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use redkit_core::ManualClock;
use redkit_ratelimit::{Limit, MemoryRateLimiter, RateLimiter};

const T0: Duration = Duration::from_secs(1_700_000_000);

fn limiter(clock: &ManualClock, limit: Limit) -> MemoryRateLimiter {
    MemoryRateLimiter::builder()
        .clock(clock.clone())
        .aligned_windows(true)
        .limit(limit)
        .build()
        .unwrap()
}

const US: Duration = Duration::from_micros(1);

#[tokio::test]
async fn a_fixed_window_resets_exactly_at_its_end() {
    let clock = ManualClock::new(T0);
    let l = limiter(&clock, Limit::fixed_window(2, Duration::from_secs(1)));
    assert!(l.check("k", 2).await.unwrap().allowed);
    clock.advance(Duration::from_secs(1) - US);
    let d = l.check("k", 1).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Some(US));
    clock.advance(US);
    assert!(l.check("k", 2).await.unwrap().allowed);
}

#[tokio::test]
async fn gcra_emits_one_unit_per_interval_after_the_burst() {
    let clock = ManualClock::new(T0);
    // 10 per second, burst 3: one unit every 100 ms
    let l = limiter(&clock, Limit::gcra(10, Duration::from_secs(1)).burst(3));
    assert!(l.check("k", 3).await.unwrap().allowed);
    let d = l.check("k", 1).await.unwrap();
    assert_eq!(d.retry_after, Some(Duration::from_millis(100)));
    assert_eq!(d.reset_after, Duration::from_millis(300));
    clock.advance(Duration::from_millis(100) - US);
    assert!(!l.check("k", 1).await.unwrap().allowed);
    clock.advance(US);
    let d = l.check("k", 1).await.unwrap();
    assert!(d.allowed && d.remaining == 0, "{d:?}");
    clock.advance(Duration::from_millis(250));
    assert_eq!(l.peek("k").await.unwrap().remaining, 2);
}

#[tokio::test]
async fn a_sliding_log_forgets_a_unit_exactly_one_window_later() {
    let clock = ManualClock::new(T0);
    let l = limiter(&clock, Limit::sliding_log(2, Duration::from_secs(10)));
    assert!(l.check("k", 1).await.unwrap().allowed);
    clock.advance(Duration::from_secs(4));
    assert!(l.check("k", 1).await.unwrap().allowed);
    let d = l.check("k", 1).await.unwrap();
    assert_eq!(d.retry_after, Some(Duration::from_secs(6)));
    clock.advance(Duration::from_secs(6) - US);
    assert!(!l.check("k", 1).await.unwrap().allowed);
    clock.advance(US);
    assert!(l.check("k", 1).await.unwrap().allowed);
    assert!(
        !l.check("k", 1).await.unwrap().allowed,
        "the second unit is still in"
    );
}

#[tokio::test]
async fn a_sliding_window_weights_the_previous_window() {
    let clock = ManualClock::new(T0);
    let l = limiter(&clock, Limit::sliding_window(10, Duration::from_secs(10)));
    assert!(l.check("k", 10).await.unwrap().allowed);
    // a quarter into the next window, 75% of the previous 10 still count
    clock.advance(Duration::from_millis(12_500));
    let d = l.peek("k").await.unwrap();
    assert_eq!(d.remaining, 2, "{d:?}");
    assert!(l.check("k", 2).await.unwrap().allowed);
    let d = l.check("k", 1).await.unwrap();
    assert!(!d.allowed);
    // 7.5 + 2 + 1 fits once the old share is <= 7: 0.5 s later
    assert_eq!(d.retry_after, Some(Duration::from_millis(500)));
    clock.advance(Duration::from_millis(500));
    assert!(l.check("k", 1).await.unwrap().allowed);
}

#[tokio::test]
async fn the_clock_stepping_back_never_admits_more() {
    let clock = ManualClock::new(T0);
    let l = limiter(&clock, Limit::gcra(5, Duration::from_secs(60)));
    assert!(l.check("k", 5).await.unwrap().allowed);
    clock.set(T0 - Duration::from_secs(30));
    assert!(!l.check("k", 1).await.unwrap().allowed);
    let log = limiter(&clock, Limit::sliding_log(2, Duration::from_secs(60)));
    assert!(log.check("k", 2).await.unwrap().allowed);
    clock.set(T0 - Duration::from_secs(90));
    assert!(!log.check("k", 1).await.unwrap().allowed);
}

#[tokio::test]
async fn idle_keys_are_swept() {
    let clock = ManualClock::new(T0);
    let l = limiter(&clock, Limit::fixed_window(5, Duration::from_secs(1)));
    for i in 0..3000 {
        l.check(&format!("k{i}"), 1).await.unwrap();
    }
    assert_eq!(l.len(), 3000);
    clock.advance(Duration::from_secs(2));
    for i in 0..3000 {
        l.check(&format!("fresh{i}"), 1).await.unwrap();
    }
    assert!(l.len() <= 3000 + 1024, "{} states held", l.len());
}
