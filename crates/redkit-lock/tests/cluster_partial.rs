//! On a cluster, one slot's failure fails only the callers of that slot: the others of
//! the same batch get their locks (issue 18, item 7). One master is paused while a batch
//! of acquisitions runs; the callers whose resource lives there get an error, and once
//! it resumes, the holds their calls took there are released again.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use redkit_core::{Redis, redis};
use redkit_lock::{Lock, RedisLock};
use redkit_testkit::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_failing_fails_only_its_callers() {
    let cluster = Cluster::start();
    let redis = Redis::from_config(
        cluster
            .config()
            .response_timeout(Duration::from_millis(400))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let locks = Arc::new(
        RedisLock::builder(redis.clone())
            .prefix("partial")
            .build()
            .unwrap(),
    );
    let names: Vec<String> = (0..30).map(|i| format!("r{i}")).collect();
    let key = |r: &str| format!("partial:lock:{{{r}}}");
    // load the script on every node first
    for r in &names {
        locks
            .try_acquire(r, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    let paused = cluster.master_index(&key(&names[0]));
    let on_paused: Vec<bool> = names
        .iter()
        .map(|r| cluster.master_index(&key(r)) == paused)
        .collect();
    assert!(on_paused.iter().any(|p| !p), "every name on one node");

    cluster.nodes()[paused].pause();
    let tasks: Vec<_> = names
        .iter()
        .map(|r| {
            let (locks, r) = (Arc::clone(&locks), r.clone());
            tokio::spawn(async move { locks.try_acquire(&r, Duration::from_secs(30)).await })
        })
        .collect();
    let mut guards = Vec::new();
    for ((r, task), paused) in names.iter().zip(tasks).zip(&on_paused) {
        match (task.await.unwrap(), paused) {
            (Ok(Some(g)), false) => guards.push(g),
            (Err(e), true) => assert!(e.is_retryable(), "{r}: {e:?}"),
            (other, paused) => panic!("{r} (on the paused node: {paused}): {other:?}"),
        }
    }
    cluster.nodes()[paused].resume();

    // the calls queued on the paused node ran when it resumed; their releases followed
    let deadline = Instant::now() + Duration::from_secs(5);
    for (r, _) in names.iter().zip(&on_paused).filter(|(_, p)| **p) {
        loop {
            let n: i64 = redis.query(redis::cmd("EXISTS").arg(key(r))).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{r}: its caller got an error, but the lock is held"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for g in guards {
        assert!(g.release().await.unwrap());
    }
}
