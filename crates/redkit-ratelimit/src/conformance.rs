//! The suite every [`RateLimiter`] backend must pass. Run it with
//! [`crate::conformance_suite!`].
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Algorithm, Error, Limit, RateLimiter, Request};

pub use redkit_testkit::Time;

type Make = dyn Fn(Vec<Limit>) -> (Arc<dyn RateLimiter>, Arc<dyn RateLimiter>) + Send + Sync;

/// Builds pairs of limiters with the same limits over one store (two "processes"), each
/// pair on a fresh key prefix, and says how time passes.
#[derive(Clone)]
pub struct Suite {
    make: Arc<Make>,
    pub time: Time,
}

impl fmt::Debug for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite").field("time", &self.time).finish()
    }
}

impl Suite {
    pub fn new(
        time: Time,
        make: impl Fn(Vec<Limit>) -> (Arc<dyn RateLimiter>, Arc<dyn RateLimiter>)
        + Send
        + Sync
        + 'static,
    ) -> Suite {
        Suite {
            make: Arc::new(make),
            time,
        }
    }

    pub fn pair(&self, limits: Vec<Limit>) -> (Arc<dyn RateLimiter>, Arc<dyn RateLimiter>) {
        (self.make)(limits)
    }

    pub fn one(&self, limit: Limit) -> Arc<dyn RateLimiter> {
        self.pair(vec![limit]).0
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// One limit of 5 per hour of every algorithm.
pub fn five_per_hour() -> Vec<Limit> {
    vec![
        Limit::fixed_window(5, HOUR),
        Limit::sliding_window(5, HOUR),
        Limit::sliding_log(5, HOUR),
        Limit::token_bucket(5, 5, HOUR),
        Limit::gcra(5, HOUR),
    ]
}

fn key(name: &str) -> String {
    redkit_testkit::prefix(name)
}

pub async fn every_algorithm_admits_its_limit_then_denies(s: &Suite) {
    for limit in five_per_hour() {
        let (a, b) = s.pair(vec![limit.clone()]);
        let k = key("limit");
        for i in 0..5u64 {
            let l = if i % 2 == 0 { &a } else { &b };
            let d = l.check(&k, 1).await.unwrap();
            assert!(d.allowed, "{limit:?}: check {i} denied: {d:?}");
            assert_eq!(d.limit, 5);
            assert_eq!(d.remaining, 4 - i, "{limit:?} {d:?}");
            assert_eq!(d.retry_after, None);
            // a sliding window counter is empty only once the current window has slid out
            let full = match limit.algorithm() {
                Algorithm::SlidingWindow => 2 * HOUR,
                _ => HOUR,
            };
            assert!(
                d.reset_after > Duration::ZERO && d.reset_after <= full,
                "{d:?}"
            );
            assert!(!d.degraded);
        }
        let d = b.check(&k, 1).await.unwrap();
        assert!(!d.allowed, "{limit:?}: sixth check passed");
        assert_eq!(d.remaining, 0);
        let retry = d.retry_after.expect("a denial says when to retry");
        let longest = match limit.algorithm() {
            Algorithm::SlidingWindow => 2 * HOUR,
            _ => HOUR,
        };
        assert!(
            retry > Duration::ZERO && retry <= longest,
            "{limit:?} {retry:?}"
        );
        assert_eq!(d.statuses.len(), 1);
        assert!(!d.statuses[0].allowed);
    }
}

pub async fn denials_and_peeks_consume_nothing(s: &Suite) {
    for limit in five_per_hour() {
        let l = s.one(limit.clone());
        let k = key("free");
        assert_eq!(l.peek(&k).await.unwrap().remaining, 5, "{limit:?}");
        assert!(l.check(&k, 4).await.unwrap().allowed);
        for _ in 0..3 {
            assert!(!l.check(&k, 2).await.unwrap().allowed, "{limit:?}");
            let p = l.peek(&k).await.unwrap();
            assert!(p.allowed && p.remaining == 1, "{limit:?} {p:?}");
        }
        let d = l.check(&k, 1).await.unwrap();
        assert!(d.allowed && d.remaining == 0, "{limit:?} {d:?}");
        let p = l.peek(&k).await.unwrap();
        assert!(!p.allowed && p.retry_after.is_some(), "{limit:?} {p:?}");
    }
}

pub async fn costs_are_all_or_nothing_and_bounded(s: &Suite) {
    for limit in five_per_hour() {
        let l = s.one(limit.clone());
        let k = key("cost");
        assert_eq!(l.check(&k, 3).await.unwrap().remaining, 2, "{limit:?}");
        let d = l.check(&k, 3).await.unwrap();
        assert!(!d.allowed, "{limit:?}");
        assert_eq!(d.remaining, 2, "{limit:?}: a denied cost took units");
        assert!(l.check(&k, 2).await.unwrap().allowed, "{limit:?}");
        assert!(matches!(
            l.check(&k, 6).await,
            Err(Error::CostTooLarge {
                cost: 6,
                capacity: 5,
                ..
            })
        ));
        assert!(matches!(
            l.check(&k, 0).await,
            Err(Error::InvalidArgument(_))
        ));
    }
}

pub async fn several_limits_consume_together_or_not_at_all(s: &Suite) {
    let (a, b) = s.pair(vec![
        Limit::fixed_window(10, HOUR).name("hourly"),
        Limit::sliding_log(3, Duration::from_secs(600)).name("burst"),
    ]);
    let k = key("multi");
    let mut admitted = 0;
    for i in 0..6 {
        let l = if i % 2 == 0 { &a } else { &b };
        let d = l.check(&k, 1).await.unwrap();
        if d.allowed {
            admitted += 1;
        } else {
            assert_eq!(
                d.limit, 3,
                "the binding limit is the one that denied: {d:?}"
            );
            assert!(d.statuses[0].allowed && !d.statuses[1].allowed, "{d:?}");
        }
    }
    assert_eq!(admitted, 3);
    let p = a.peek(&k).await.unwrap();
    assert_eq!(
        p.statuses[0].remaining, 7,
        "denied checks consumed the hourly limit: {p:?}"
    );
    assert_eq!(p.statuses[1].remaining, 0);
    assert_eq!(a.limits()[0].policy_name(), "hourly");
}

pub async fn waiting_retry_after_lets_the_request_pass(s: &Suite) {
    let w = Duration::from_millis(300);
    for limit in [
        Limit::fixed_window(3, w),
        Limit::sliding_window(3, w),
        Limit::sliding_log(3, w),
        Limit::token_bucket(3, 3, w),
        Limit::gcra(3, w),
    ] {
        let l = s.one(limit.clone());
        let k = key("retry");
        while l.check(&k, 2).await.unwrap().allowed {}
        let d = l.check(&k, 2).await.unwrap();
        assert!(!d.allowed);
        let retry = d.retry_after.unwrap();
        assert!(retry <= 2 * w, "{limit:?} {retry:?}");
        s.time.pass(retry).await;
        let d = l.check(&k, 2).await.unwrap();
        assert!(
            d.allowed,
            "{limit:?}: denied after waiting {retry:?}: {d:?}"
        );
    }
}

pub async fn reset_forgets_counts_and_blocks(s: &Suite) {
    for limit in five_per_hour() {
        let l = s.one(limit.clone());
        let k = key("reset");
        l.check(&k, 5).await.unwrap();
        assert!(!l.check(&k, 1).await.unwrap().allowed);
        l.reset(&k).await.unwrap();
        let d = l.check(&k, 1).await.unwrap();
        assert!(d.allowed && d.remaining == 4, "{limit:?} {d:?}");
        l.block(&k, HOUR).await.unwrap();
        l.reset(&k).await.unwrap();
        assert!(l.check(&k, 1).await.unwrap().allowed, "{limit:?}");
    }
}

pub async fn a_block_denies_until_it_ends_then_starts_afresh(s: &Suite) {
    for limit in five_per_hour() {
        let (a, b) = s.pair(vec![limit.clone()]);
        let k = key("block");
        a.check(&k, 2).await.unwrap();
        let blocked = a.block(&k, Duration::from_millis(250)).await.unwrap();
        assert!(!blocked.allowed);
        let d = b.check(&k, 1).await.unwrap();
        assert!(!d.allowed, "{limit:?}: passed while blocked");
        let retry = d.retry_after.unwrap();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_millis(250),
            "{retry:?}"
        );
        assert!(!b.peek(&k).await.unwrap().allowed);
        s.time.pass(Duration::from_millis(260)).await;
        let d = b.check(&k, 1).await.unwrap();
        assert!(d.allowed && d.remaining == 4, "{limit:?}: {d:?}");
    }
}

pub async fn a_denial_blocks_when_block_for_is_set(s: &Suite) {
    for limit in five_per_hour() {
        let l = s.one(limit.clone().block_for(Duration::from_secs(900)));
        let k = key("blockfor");
        assert!(l.check(&k, 5).await.unwrap().allowed);
        let d = l.check(&k, 1).await.unwrap();
        assert!(!d.allowed);
        let retry = d.retry_after.unwrap();
        assert!(
            retry > Duration::from_secs(899) && retry <= Duration::from_secs(900),
            "{limit:?} {retry:?}"
        );
        l.reward(&k, 5).await.unwrap();
        assert!(
            !l.check(&k, 1).await.unwrap().allowed,
            "{limit:?}: a reward lifted the block"
        );
    }
}

pub async fn penalty_and_reward_move_the_count(s: &Suite) {
    for limit in five_per_hour() {
        let l = s.one(limit.clone());
        let k = key("penalty");
        let d = l.penalty(&k, 3).await.unwrap();
        assert_eq!(d.remaining, 2, "{limit:?} {d:?}");
        let d = l.penalty(&k, 4).await.unwrap();
        assert!(!d.allowed && d.remaining == 0, "{limit:?} {d:?}");
        assert!(!l.check(&k, 1).await.unwrap().allowed);
        let d = l.reward(&k, 5).await.unwrap();
        assert!(d.allowed, "{limit:?} {d:?}");
        assert!(l.check(&k, 1).await.unwrap().allowed, "{limit:?}");
        let d = l.reward(&k, 100).await.unwrap();
        assert_eq!(d.remaining, 5, "{limit:?}: rewards never go past empty");
    }
}

pub async fn check_many_decides_in_order(s: &Suite) {
    let l = s.one(Limit::fixed_window(2, HOUR));
    let (x, y) = (key("many-x"), key("many-y"));
    let ds = l
        .check_many(&[(&x, 1), (&y, 2), (&x, 1), (&x, 1)])
        .await
        .unwrap();
    let got: Vec<(bool, u64)> = ds.iter().map(|d| (d.allowed, d.remaining)).collect();
    assert_eq!(got, [(true, 1), (true, 0), (true, 0), (false, 0)]);
    let mixed = l
        .run(&[Request::reset(&x), Request::check(&x, 2), Request::peek(&y)])
        .await
        .unwrap();
    assert!(mixed[1].allowed && !mixed[2].allowed);
    assert!(l.check_many(&[]).await.unwrap().is_empty());
}

pub async fn keys_are_independent(s: &Suite) {
    for limit in five_per_hour() {
        let l = s.one(limit.clone());
        let (x, y) = (key("indep-x"), key("indep-y"));
        assert!(l.check(&x, 5).await.unwrap().allowed);
        assert!(!l.check(&x, 1).await.unwrap().allowed);
        assert_eq!(l.check(&y, 1).await.unwrap().remaining, 4, "{limit:?}");
    }
}

pub async fn bad_keys_and_arguments_are_typed_errors(s: &Suite) {
    let l = s.one(Limit::gcra(5, HOUR));
    let huge = "k".repeat(5000);
    for bad in ["", "a{b}", "}", huge.as_str()] {
        assert!(
            matches!(l.check(bad, 1).await, Err(Error::InvalidKey(_))),
            "{:?}",
            &bad[..bad.len().min(10)]
        );
    }
    let k = key("bad");
    assert!(matches!(
        l.check_many(&[(&k, 1), ("", 1)]).await,
        Err(Error::InvalidKey(_))
    ));
    assert_eq!(
        l.peek(&k).await.unwrap().remaining,
        5,
        "a batch with a bad request ran part of it"
    );
    assert!(matches!(
        l.block(&k, Duration::ZERO).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        l.penalty(&k, u64::MAX).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(l.check("unicode ключ: 🦀", 1).await.unwrap().allowed);
}

pub async fn buckets_refill_continuously(s: &Suite) {
    // 4 units, one back every 100 ms.
    for limit in [
        Limit::token_bucket(4, 10, Duration::from_secs(1)),
        Limit::gcra(10, Duration::from_secs(1)).burst(4),
    ] {
        assert_eq!(limit.full_window(), Duration::from_millis(400));
        let l = s.one(limit.clone());
        let k = key("refill");
        assert!(l.check(&k, 4).await.unwrap().allowed);
        let d = l.check(&k, 1).await.unwrap();
        let retry = d.retry_after.unwrap();
        assert!(
            retry > Duration::from_millis(50) && retry <= Duration::from_millis(100),
            "{limit:?} {retry:?}"
        );
        s.time.pass(Duration::from_millis(210)).await;
        let d = l.check(&k, 2).await.unwrap();
        assert!(d.allowed, "{limit:?}: two units refilled in 210 ms: {d:?}");
        assert!(!l.check(&k, 1).await.unwrap().allowed || matches!(s.time, Time::Real));
    }
}

/// Runs every case of the suite as its own test.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@case $make;
                every_algorithm_admits_its_limit_then_denies,
                denials_and_peeks_consume_nothing,
                costs_are_all_or_nothing_and_bounded,
                several_limits_consume_together_or_not_at_all,
                waiting_retry_after_lets_the_request_pass,
                reset_forgets_counts_and_blocks,
                a_block_denies_until_it_ends_then_starts_afresh,
                a_denial_blocks_when_block_for_is_set,
                penalty_and_reward_move_the_count,
                check_many_decides_in_order,
                keys_are_independent,
                bad_keys_and_arguments_are_typed_errors,
                buckets_refill_continuously
            );
        }
    };
    (@case $make:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let suite: $crate::conformance::Suite = $make.await;
                $crate::conformance::$case(&suite).await;
            }
        )+
    };
}
