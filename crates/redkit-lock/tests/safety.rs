//! Safety on real servers: mutual exclusion across two handles, and a holder that loses
//! its lock to a paused server is told in time and fenced off.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redkit_core::{Redis, redis};
use redkit_lock::{AcquireOptions, FencedValue, Lock, RedisLock};
use redkit_testkit::{self as testkit, Server};

/// 64 tasks over two handles increment a counter kept in Redis with a read, an await and a
/// write inside the critical section: any overlap loses an increment or trips the flag.
async fn mutual_exclusion(a: Redis, b: Redis) {
    let prefix = testkit::prefix("mutex");
    let locks = [
        Arc::new(
            RedisLock::builder(a.clone())
                .prefix(&prefix)
                .build()
                .unwrap(),
        ),
        Arc::new(RedisLock::builder(b).prefix(&prefix).build().unwrap()),
    ];
    let counter = format!("{prefix}:counter");
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicU64::new(0));
    let rounds = 8;
    let mut tasks = Vec::new();
    for t in 0..64 {
        let lock = Arc::clone(&locks[t % 2]);
        let redis = a.clone();
        let counter = counter.clone();
        let inside = Arc::clone(&inside);
        let overlaps = Arc::clone(&overlaps);
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let g = lock
                    .acquire(
                        "counter",
                        AcquireOptions::new(Duration::from_secs(10)).wait(Duration::from_secs(60)),
                    )
                    .await
                    .unwrap();
                if inside.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let n: Option<u64> = redis.query(redis::cmd("GET").arg(&counter)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let _: () = redis
                    .query(redis::cmd("SET").arg(&counter).arg(n.unwrap_or(0) + 1))
                    .await
                    .unwrap();
                inside.store(false, Ordering::SeqCst);
                assert!(g.release().await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders at once");
    let n: u64 = a.query(redis::cmd("GET").arg(&counter)).await.unwrap();
    assert_eq!(n, 64 * rounds, "lost increments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_on_standalone() {
    mutual_exclusion(testkit::redis().await, testkit::redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_on_cluster() {
    let cluster = testkit::cluster();
    mutual_exclusion(cluster.redis().await, cluster.redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_makes_the_holder_lose_in_time_and_fencing_rejects_it() {
    let server = Server::start();
    let holder_redis = Redis::from_config(
        server
            .config()
            .response_timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let locks = RedisLock::builder(holder_redis.clone())
        .prefix("fault")
        .build()
        .unwrap();
    let ttl = Duration::from_millis(1500);
    let guard = locks
        .acquire("invoice:7", AcquireOptions::new(ttl).auto_extend(true))
        .await
        .unwrap();
    let acquired = Instant::now();
    let old_token = guard.fencing_token();
    let fenced = FencedValue::new(&locks).unwrap();
    assert!(
        fenced
            .write("invoice:7", old_token, b"draft")
            .await
            .unwrap()
    );

    // The server stops answering: renewals time out, and the key's TTL keeps running on
    // the server (its clock does not stop). The holder must be told before that TTL ends.
    server.pause();
    guard.lost().await;
    let lost_after = acquired.elapsed();
    server.resume();
    assert!(
        lost_after < ttl,
        "lost() fired after {lost_after:?}, past the ttl of {ttl:?}"
    );

    // Once the key has expired on the server, someone else takes the lock with a larger
    // fencing token, and the resource refuses the old holder.
    let other = Redis::from_config(server.config().build().unwrap())
        .await
        .unwrap();
    let locks_b = RedisLock::builder(other.clone())
        .prefix("fault")
        .build()
        .unwrap();
    let new_guard = locks_b
        .acquire(
            "invoice:7",
            AcquireOptions::new(Duration::from_secs(10)).wait(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert!(new_guard.fencing_token() > old_token);
    let fenced_b = FencedValue::new(&locks_b).unwrap();
    assert!(
        fenced_b
            .write("invoice:7", new_guard.fencing_token(), b"paid")
            .await
            .unwrap()
    );
    assert!(
        !fenced
            .write("invoice:7", old_token, b"stale overwrite")
            .await
            .unwrap(),
        "the stale holder was fenced off"
    );
    assert_eq!(
        fenced.read("invoice:7").await.unwrap(),
        Some((new_guard.fencing_token(), b"paid".to_vec()))
    );
    assert!(
        !guard.release().await.unwrap(),
        "the old owner cannot release the new lock"
    );
    assert!(new_guard.is_held().await.unwrap());
}

/// Many concurrent calls on distinct resources are coalesced into batch scripts; on a
/// cluster each batch is split by hash slot. Every caller still gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_calls_on_a_cluster_each_get_their_own_answer() {
    let cluster = testkit::cluster();
    let locks = Arc::new(
        RedisLock::builder(cluster.redis().await)
            .prefix(testkit::prefix("batch"))
            .build()
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..300 {
        let locks = Arc::clone(&locks);
        tasks.push(tokio::spawn(async move {
            // Every resource twice: exactly one of each pair wins.
            let r = format!("res{}", i / 2);
            locks
                .try_acquire(&r, Duration::from_secs(10))
                .await
                .unwrap()
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        if let Some(g) = t.await.unwrap() {
            won.push(g);
        }
    }
    assert_eq!(won.len(), 150, "one winner per resource");
    let mut names: Vec<String> = won.iter().map(|g| g.resource().to_string()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 150);
    let releases = won.into_iter().map(|g| tokio::spawn(g.release()));
    for r in releases {
        assert!(r.await.unwrap().unwrap());
    }
}

/// Without notifications a waiter still gets the lock, on the timed fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_waiters_fall_back_to_polling() {
    let redis = testkit::redis().await;
    let prefix = testkit::prefix("poll");
    let a = RedisLock::builder(redis.clone())
        .prefix(&prefix)
        .build()
        .unwrap();
    let b = Arc::new(
        RedisLock::builder(redis)
            .prefix(&prefix)
            .notifications(false)
            .build()
            .unwrap(),
    );
    let holder = a
        .try_acquire("r", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let waiter = {
        let b = Arc::clone(&b);
        tokio::spawn(async move {
            b.acquire(
                "r",
                AcquireOptions::new(Duration::from_secs(5)).wait(Duration::from_secs(10)),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = Instant::now();
    assert!(holder.release().await.unwrap());
    let g = waiter.await.unwrap().unwrap();
    let took = released.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "fallback is at most 1.25 s: {took:?}"
    );
    g.release().await.unwrap();
}
