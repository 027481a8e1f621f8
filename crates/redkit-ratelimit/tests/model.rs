//! Every algorithm, alone and several on one key, with blocks after denials, against a
//! reference model: random batches mixing checks of any cost, penalties, rewards larger
//! than what was consumed (up to 2^40), penalties beyond the capacity (up to 2^40),
//! peeks, blocks and resets on two keys (each key several times
//! per batch), on Redis (standalone and cluster) and in memory. Windows and periods are
//! months long, so nothing refills or slides out during the test and the model needs no
//! clock.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use redkit_core::Redis;
use redkit_ratelimit::{
    Algorithm, Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter, Request,
};

const DAY: Duration = Duration::from_secs(86_400);
const MAX_AHEAD: f64 = (1u64 << 45) as f64;
const MAX_POINTS: f64 = (1u64 << 40) as f64;

/// One limit's state in the model: units held (fractional only for a bucket at its
/// penalty cap) and whether it is blocked.
#[derive(Debug, Clone, Copy)]
struct LimitModel {
    algorithm: Algorithm,
    c: f64,
    /// GCRA: the emission interval in µs (the penalty cap is MAX_AHEAD / t units).
    t: f64,
    blocks: bool,
    n: f64,
    blocked: bool,
}

impl LimitModel {
    fn new(l: &Limit) -> LimitModel {
        let w = l.window().as_micros() as f64;
        LimitModel {
            algorithm: l.algorithm(),
            c: l.capacity() as f64,
            t: (w / l.rate() as f64).ceil(),
            blocks: !l.block().is_zero(),
            n: 0.0,
            blocked: false,
        }
    }

    fn fits(&self, cost: f64) -> bool {
        !self.blocked && self.n + cost <= self.c
    }

    fn add(&mut self, k: f64) {
        self.n = match self.algorithm {
            Algorithm::SlidingLog => self.n + k.min(self.c),
            Algorithm::TokenBucket | Algorithm::Gcra => (self.n + k).min(MAX_AHEAD / self.t),
            _ => (self.n + k).min(MAX_POINTS),
        };
    }

    fn remaining(&self) -> u64 {
        if self.blocked {
            return 0;
        }
        (self.c - self.n + 1e-9).floor().max(0.0) as u64
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Check(u64),
    Reward(u64),
    Penalty(u64),
    Peek,
    Block,
    Reset,
}

/// Applies a step to a key's limits; returns per limit (allowed, remaining) and whether
/// the request as a whole passed.
fn apply(m: &mut [LimitModel], step: Step) -> (bool, Vec<(bool, u64)>) {
    let out = |m: &[LimitModel], fits: &[bool]| -> Vec<(bool, u64)> {
        m.iter()
            .zip(fits)
            .map(|(l, &f)| (f, l.remaining()))
            .collect()
    };
    match step {
        Step::Check(cost) => {
            let cost = cost as f64;
            let fits: Vec<bool> = m.iter().map(|l| l.fits(cost)).collect();
            let all = fits.iter().all(|&f| f);
            for (l, &f) in m.iter_mut().zip(&fits) {
                if all {
                    l.add(cost);
                } else if !f && !l.blocked && l.blocks {
                    l.blocked = true;
                    l.n = 0.0;
                }
            }
            let statuses = m
                .iter()
                .zip(&fits)
                .map(|(l, &f)| (f || all, l.remaining()))
                .collect();
            (all, statuses)
        }
        Step::Peek => {
            let fits: Vec<bool> = m.iter().map(|l| l.fits(1.0)).collect();
            (fits.iter().all(|&f| f), out(m, &fits))
        }
        Step::Penalty(_) | Step::Reward(_) | Step::Block | Step::Reset => {
            for l in m.iter_mut() {
                match step {
                    Step::Reset => {
                        l.n = 0.0;
                        l.blocked = false;
                    }
                    Step::Block => {
                        l.blocked = true;
                        l.n = 0.0;
                    }
                    Step::Penalty(k) if !l.blocked => l.add(k as f64),
                    Step::Reward(k) if !l.blocked => l.n = (l.n - k as f64).max(0.0),
                    _ => {}
                }
            }
            let fits: Vec<bool> = m.iter().map(|l| l.fits(1.0)).collect();
            (fits.iter().all(|&f| f), out(m, &fits))
        }
    }
}

fn request(key: &str, step: Step) -> Request<'_> {
    match step {
        Step::Check(cost) => Request::check(key, cost),
        Step::Reward(k) => Request::reward(key, k),
        Step::Penalty(k) => Request::penalty(key, k),
        Step::Peek => Request::peek(key),
        Step::Block => Request::block(key, DAY),
        Step::Reset => Request::reset(key),
    }
}

/// The limit sets tried: every algorithm alone, with and without a block after a
/// denial, and mixes of two or three on one key.
fn limit_sets(seed: u64) -> Vec<Vec<Limit>> {
    let w = 200 * DAY;
    let c = 3 + seed % 7;
    let one = |a: u8, c: u64| match a {
        0 => Limit::fixed_window(c, w),
        1 => Limit::sliding_window(c, w),
        2 => Limit::sliding_log(c, w),
        3 => Limit::gcra(c, w),
        _ => Limit::token_bucket(c, 1, 20 * DAY),
    };
    let mut sets = Vec::new();
    for a in 0..5 {
        sets.push(vec![one(a, c)]);
        sets.push(vec![one(a, c).block_for(DAY)]);
    }
    sets.push(vec![one(0, c), one(3, c + 2)]);
    sets.push(vec![one(2, c + 1), one(1, c).block_for(DAY), one(4, c + 3)]);
    sets.push(vec![one(3, c), one(0, c + 1).block_for(DAY), one(2, c + 2)]);
    sets
}

fn random_batch(rng: &mut fastrand::Rng, max_cost: u64) -> Vec<(usize, Step)> {
    (0..rng.usize(1..30))
        .map(|_| {
            let step = match rng.u8(0..40) {
                0..=21 => Step::Check(rng.u64(1..=max_cost)),
                22..=27 => Step::Reward(rng.u64(1..=2 * max_cost)),
                28 => Step::Reward(1 << 40),
                29..=33 => Step::Penalty(rng.u64(1..=3 * max_cost)),
                34 => Step::Penalty(1 << 40),
                35..=37 => Step::Peek,
                38 => Step::Block,
                _ => Step::Reset,
            };
            (rng.usize(0..2), step)
        })
        .collect()
}

async fn run_model(make: impl Fn(Vec<Limit>) -> Box<dyn RateLimiter>, tag: &str) {
    for seed in 0..12u64 {
        for (set, limits) in limit_sets(seed).into_iter().enumerate() {
            let max_cost = limits.iter().map(Limit::capacity).min().unwrap();
            let mut models: Vec<Vec<LimitModel>> = (0..2)
                .map(|_| limits.iter().map(LimitModel::new).collect())
                .collect();
            let l = make(limits.clone());
            let keys = [format!("{tag}a{seed}s{set}"), format!("{tag}b{seed}s{set}")];
            let mut rng = fastrand::Rng::with_seed(seed * 100 + set as u64);
            for round in 0..6 {
                let steps = random_batch(&mut rng, max_cost);
                let requests: Vec<_> = steps.iter().map(|(k, s)| request(&keys[*k], *s)).collect();
                // alternately one batch and the same requests one by one
                let ds = if round % 2 == 0 {
                    l.run(&requests).await.unwrap()
                } else {
                    let mut ds = Vec::new();
                    for r in &requests {
                        ds.push(l.run(std::slice::from_ref(r)).await.unwrap().remove(0));
                    }
                    ds
                };
                for (i, ((k, step), d)) in steps.iter().zip(&ds).enumerate() {
                    let (allowed, statuses) = apply(&mut models[*k], *step);
                    let got: Vec<(bool, u64)> = d
                        .statuses
                        .iter()
                        .map(|s| (s.allowed, s.remaining))
                        .collect();
                    let ctx = format!(
                        "{tag} seed {seed} set {set} {limits:?} round {round} step {i} {step:?} key {k}: {steps:?}"
                    );
                    if let Step::Check(_) = step {
                        assert_eq!(d.allowed, allowed, "{ctx}");
                    }
                    assert_eq!(got, statuses, "{ctx}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_matches_the_model_on_redis() {
    let redis = redkit_testkit::redis().await;
    let prefix = redkit_testkit::prefix("rl-model");
    run_model(
        |limits| {
            let mut b = RedisRateLimiter::builder(redis.clone()).prefix(prefix.clone());
            for l in limits {
                b = b.limit(l);
            }
            Box::new(b.build().unwrap())
        },
        "s",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_matches_the_model_on_a_cluster() {
    let redis: Redis = redkit_testkit::cluster().redis().await;
    let prefix = redkit_testkit::prefix("rl-model");
    run_model(
        |limits| {
            let mut b = RedisRateLimiter::builder(redis.clone()).prefix(prefix.clone());
            for l in limits {
                b = b.limit(l);
            }
            Box::new(b.build().unwrap())
        },
        "c",
    )
    .await;
}

#[tokio::test]
async fn every_algorithm_matches_the_model_in_memory() {
    run_model(
        |limits| {
            let mut b = MemoryRateLimiter::builder();
            for l in limits {
                b = b.limit(l);
            }
            Box::new(b.build().unwrap())
        },
        "m",
    )
    .await;
}

/// The documented edge of `block_for` (README, "What a decision says"): a block ends with
/// the limit's state afresh, so a block shorter than the window hands out a new full
/// allowance each time it ends — more than the limit per window — while a block as long
/// as the window keeps it exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_block_for_hands_out_a_new_allowance() {
    let redis = redkit_testkit::redis().await;
    let hour = Duration::from_secs(3600);
    for limit in [
        Limit::sliding_log(2, hour),
        Limit::fixed_window(2, hour),
        Limit::gcra(2, hour),
    ] {
        for (block, more) in [(Duration::from_millis(100), true), (hour, false)] {
            let l = RedisRateLimiter::builder(redis.clone())
                .prefix(redkit_testkit::prefix("rl-shortblock"))
                .limit(limit.clone().block_for(block))
                .build()
                .unwrap();
            let mut admitted = 0;
            for _ in 0..3 {
                for _ in 0..3 {
                    admitted += usize::from(l.check("k", 1).await.unwrap().allowed);
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            if more {
                assert!(admitted > 2, "{limit:?} {block:?}: {admitted}");
            } else {
                assert_eq!(admitted, 2, "{limit:?} {block:?}");
            }
        }
    }
}
