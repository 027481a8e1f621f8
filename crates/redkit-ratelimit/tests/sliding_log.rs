//! The sliding log admits exactly its capacity: every admitted unit is one distinct member
//! of the set, and a reward takes back the newest ones, whatever a batch mixes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use redkit_core::{Redis, redis};
use redkit_ratelimit::{Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter, Request};

const HOUR: Duration = Duration::from_secs(3600);

fn redis_log(redis: &Redis, capacity: u64) -> RedisRateLimiter {
    RedisRateLimiter::builder(redis.clone())
        .prefix(redkit_testkit::prefix("rl-log"))
        .limit(Limit::sliding_log(capacity, HOUR))
        .build()
        .unwrap()
}

async fn zcard(redis: &Redis, l: &RedisRateLimiter, key: &str) -> u64 {
    let k = l.state_keys(key).unwrap().remove(0);
    redis.query(redis::cmd("ZCARD").arg(k)).await.unwrap()
}

/// Issue 18 item 2: capacity 10, one batch of 10 checks, 1 reward, 5 checks. The old
/// labels `<ts>:<n>` sorted as strings, so the reward popped `T:9` and every later check
/// re-added `T:10`, which already existed: 15 admitted, the set one short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reward_inside_a_batch_lets_exactly_one_more_unit_in() {
    let redis = redkit_testkit::redis().await;
    let l = redis_log(&redis, 10);
    let key = "user";
    let mut batch = vec![Request::check(key, 1); 10];
    batch.push(Request::reward(key, 1));
    batch.extend(std::iter::repeat_n(Request::check(key, 1), 5));
    let ds = l.run(&batch).await.unwrap();
    let admitted = batch
        .iter()
        .zip(&ds)
        .filter(|(r, d)| matches!(r.op, redkit_ratelimit::Op::Check { .. }) && d.allowed)
        .count();
    assert_eq!(admitted, 11, "{ds:#?}");
    assert_eq!(zcard(&redis, &l, key).await, 10, "one member per unit held");
    // and the set stays exact afterwards: full, so the next check is denied
    assert!(!l.check(key, 1).await.unwrap().allowed);
    assert_eq!(l.peek(key).await.unwrap().remaining, 0);
    // a reward of 3 lets exactly 3 in, through the coalescer this time
    l.reward(key, 3).await.unwrap();
    let checks: Vec<_> = (0..5).map(|_| l.check(key, 1)).collect();
    let mut allowed = 0;
    for c in checks {
        allowed += usize::from(c.await.unwrap().allowed);
    }
    assert_eq!(allowed, 3);
    assert_eq!(zcard(&redis, &l, key).await, 10);
}

/// One operation of a random sequence.
#[derive(Debug, Clone, Copy)]
enum Step {
    Check(u64),
    Reward(u64),
    Penalty(u64),
    Peek,
}

/// The reference model: the number of units in the log (an hour's window: nothing leaves
/// during the test).
struct Model {
    capacity: u64,
    n: u64,
}

impl Model {
    /// Applies a step; returns (allowed, remaining) as the limiter must answer.
    fn apply(&mut self, step: Step) -> (bool, u64) {
        let c = self.capacity;
        match step {
            Step::Check(cost) => {
                let fits = self.n + cost <= c;
                if fits {
                    self.n += cost;
                }
                (fits, c.saturating_sub(self.n))
            }
            Step::Reward(k) => {
                self.n -= k.min(self.n);
                (self.n < c, c.saturating_sub(self.n))
            }
            Step::Penalty(k) => {
                self.n += k.min(c);
                (self.n < c, c.saturating_sub(self.n))
            }
            Step::Peek => (self.n < c, c.saturating_sub(self.n)),
        }
    }
}

fn random_batch(rng: &mut fastrand::Rng, capacity: u64) -> Vec<Step> {
    (0..rng.usize(1..24))
        .map(|_| match rng.u8(0..10) {
            0..=5 => Step::Check(rng.u64(1..=capacity.min(3))),
            6 | 7 => Step::Reward(rng.u64(1..=4)),
            8 => Step::Penalty(rng.u64(1..=2)),
            _ => Step::Peek,
        })
        .collect()
}

fn request(key: &str, step: Step) -> Request<'_> {
    match step {
        Step::Check(cost) => Request::check(key, cost),
        Step::Reward(k) => Request::reward(key, k),
        Step::Penalty(k) => Request::penalty(key, k),
        Step::Peek => Request::peek(key),
    }
}

/// Runs seeded random batches of checks, rewards, penalties and peeks against a limiter
/// and the model; every answer must match and, when `card` is given, the log must hold
/// one member per unit after every batch. Also: the units admitted by checks, less those
/// given back, never exceed the capacity without penalties in between.
async fn differential(
    l: &dyn RateLimiter,
    card: Option<(&Redis, &RedisRateLimiter)>,
    capacity: u64,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let key = format!("model{seed}");
    let mut model = Model { capacity, n: 0 };
    for round in 0..8 {
        let steps = random_batch(&mut rng, capacity);
        let requests: Vec<_> = steps.iter().map(|&s| request(&key, s)).collect();
        let ds = l.run(&requests).await.unwrap();
        for (i, (&step, d)) in steps.iter().zip(&ds).enumerate() {
            let (allowed, remaining) = model.apply(step);
            if let Step::Check(_) = step {
                assert_eq!(
                    d.allowed, allowed,
                    "seed {seed} round {round} step {i} {step:?}: {steps:?}"
                );
            }
            assert_eq!(
                d.remaining, remaining,
                "seed {seed} round {round} step {i} {step:?}: {steps:?}"
            );
            if let Step::Check(_) = step {
                assert!(model.n <= capacity || !d.allowed);
            }
        }
        if let Some((redis, rl)) = card {
            assert_eq!(
                zcard(redis, rl, &key).await,
                model.n,
                "seed {seed} round {round}: {steps:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_batches_match_the_model_on_redis() {
    let redis = redkit_testkit::redis().await;
    for seed in 0..24 {
        let capacity = 3 + seed % 10;
        let l = redis_log(&redis, capacity);
        differential(&l, Some((&redis, &l)), capacity, seed).await;
    }
}

#[tokio::test]
async fn random_batches_match_the_model_in_memory() {
    for seed in 0..24 {
        let capacity = 3 + seed % 10;
        let l = MemoryRateLimiter::builder()
            .limit(Limit::sliding_log(capacity, HOUR))
            .build()
            .unwrap();
        differential(&l, None, capacity, seed).await;
    }
}
