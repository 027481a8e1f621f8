//! `leaderboard`: latency of rank, around-me (5 each side) and top-100 on a board of
//! `MEMBERS` (default 1,000,000), one caller awaiting one call at a time, next to the raw
//! commands a hand-written board would send on the same connection: `ZREVRANK`;
//! `ZREVRANK` then `ZREVRANGE WITHSCORES`; `ZREVRANGE 0 99 WITHSCORES`. Both boards hold
//! the same members and scores. Rounds rotate the order; each line is the median round.

use std::time::{Duration, Instant};

use redkit_core::{Redis, RedisConfig, redis};
use redkit_leaderboard::{Board, Leaderboard, RedisLeaderboard, Scope, Submission};

use crate::{Bench, Rounds, env_usize};

const RAW: &str = "bench:lb:raw";

fn score(i: usize) -> f64 {
    // a fixed permutation of 0..1e6, so ties are rare but present
    ((i.wrapping_mul(2_654_435_761)) % 1_000_000) as f64
}

fn member(i: usize) -> String {
    format!("player:{i}")
}

async fn load(redis: &Redis, lb: &RedisLeaderboard, members: usize) {
    let _: () = redis.query(redis::cmd("DEL").arg(RAW)).await.expect("DEL");
    lb.clear(&Scope::AllTime).await.expect("clear");
    for start in (0..members).step_by(1000) {
        let end = (start + 1000).min(members);
        let subs: Vec<Submission> = (start..end)
            .map(|i| Submission::replace(member(i), score(i)))
            .collect();
        lb.submit_batch(&subs).await.expect("submit");
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(RAW);
        for i in start..end {
            zadd.arg(score(i)).arg(member(i));
        }
        let _: i64 = redis.query(&zadd).await.expect("ZADD");
    }
}

/// Runs `ops` sequential calls of `f`; returns per-call latencies.
async fn time<F, Fut>(ops: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::with_capacity(ops);
    for i in 0..ops {
        let t = Instant::now();
        f(i).await;
        out.push(t.elapsed());
    }
    out
}

fn pick(i: usize, members: usize) -> String {
    member(i.wrapping_mul(40_503) % members)
}

async fn measure(
    mode: &str,
    who: &str,
    lb: &RedisLeaderboard,
    redis: &Redis,
    ops: usize,
    members: usize,
) -> Vec<Duration> {
    let all = &Scope::AllTime;
    match (mode, who) {
        ("rank", "redkit") => {
            time(ops, |i| async move {
                lb.rank(all, &pick(i, members)).await.unwrap().unwrap();
            })
            .await
        }
        ("rank", _) => {
            time(ops, |i| async move {
                let _: i64 = redis
                    .query(redis::cmd("ZREVRANK").arg(RAW).arg(pick(i, members)))
                    .await
                    .unwrap();
            })
            .await
        }
        ("around", "redkit") => {
            time(ops, |i| async move {
                let e = lb.around(all, &pick(i, members), 5).await.unwrap();
                assert_eq!(e.len(), 11);
            })
            .await
        }
        ("around", _) => {
            time(ops, |i| async move {
                let r: i64 = redis
                    .query(redis::cmd("ZREVRANK").arg(RAW).arg(pick(i, members)))
                    .await
                    .unwrap();
                let start = (r - 5).max(0);
                let v: Vec<(String, f64)> = redis
                    .query(
                        redis::cmd("ZREVRANGE")
                            .arg(RAW)
                            .arg(start)
                            .arg(start + 10)
                            .arg("WITHSCORES"),
                    )
                    .await
                    .unwrap();
                assert!(!v.is_empty());
            })
            .await
        }
        ("top100", "redkit") => {
            time(ops, |_| async move {
                assert_eq!(lb.top(all, 100).await.unwrap().len(), 100);
            })
            .await
        }
        _ => {
            time(ops, |_| async move {
                let v: Vec<(String, f64)> = redis
                    .query(
                        redis::cmd("ZREVRANGE")
                            .arg(RAW)
                            .arg(0)
                            .arg(99)
                            .arg("WITHSCORES"),
                    )
                    .await
                    .unwrap();
                assert_eq!(v.len(), 100);
            })
            .await
        }
    }
}

pub(crate) async fn run(b: &Bench) {
    let members = env_usize("MEMBERS").unwrap_or(1_000_000);
    let rounds = env_usize("ROUNDS").unwrap_or(5);
    let config = RedisConfig::builder().url(&b.url).build().expect("config");
    let redis = Redis::from_config(config).await.expect("connect");
    let lb = RedisLeaderboard::new(&redis, Board::named("bench").prefix("bench")).expect("board");
    let started = Instant::now();
    load(&redis, &lb, members).await;
    eprintln!("loaded {members} members twice in {:?}", started.elapsed());
    for mode in ["rank", "around", "top100"] {
        let mut paths = [
            ("redis-rs", Rounds::default()),
            ("redkit", Rounds::default()),
        ];
        for round in 0..rounds {
            for k in 0..2 {
                let (who, rounds) = &mut paths[(round + k) % 2];
                rounds.push(measure(mode, who, &lb, &redis, b.n, members).await);
            }
        }
        let extra = serde_json::json!({ "members": members });
        let paths = paths
            .into_iter()
            .map(|(w, r)| (w, r, extra.clone()))
            .collect();
        Rounds::report("leaderboard", mode, b.n, paths);
    }
}
