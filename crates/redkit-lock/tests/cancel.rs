//! "Cancel by dropping the future": a dropped acquisition never leaves a hold behind for
//! its TTL, even when its script call had already been sent (issue 18, item 7). The
//! server is paused (SIGSTOP) while the call is in flight, the caller's task is aborted,
//! then the server resumes and runs the acquisition: the hold must be gone right after.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use redkit_core::{Redis, redis};
use redkit_lock::{Lock, LockAll, RedisLock};
use redkit_testkit::Server;

const TTL: Duration = Duration::from_secs(30);

async fn exists(redis: &Redis, key: &str) -> bool {
    let n: i64 = redis.query(redis::cmd("EXISTS").arg(key)).await.unwrap();
    n == 1
}

/// Aborts `acquire` while the paused server holds its call, resumes, and checks that
/// `key` (the hold) is gone within a second of the resume and never left for its TTL.
async fn dropped_in_flight<F>(server: &Server, observer: &Redis, key: &str, acquire: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    server.pause();
    let task = tokio::spawn(acquire);
    // the call is on its way to the paused server
    tokio::time::sleep(Duration::from_millis(150)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if !exists(observer, key).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{key} is still held a second after its caller went away"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_acquire_leaves_no_hold_behind() {
    let server = Server::start();
    let connect = || async {
        Redis::from_config(
            server
                .config()
                .response_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
        .await
        .unwrap()
    };
    let observer = connect().await;
    for batching in [true, false] {
        let locks = Arc::new(
            RedisLock::builder(connect().await)
                .prefix("cancel")
                .batching(batching)
                .build()
                .unwrap(),
        );
        // a fresh server knows no script yet: load them first, so the call in flight is
        // the acquisition itself and not an EVALSHA answered NOSCRIPT
        locks
            .try_acquire("warm", TTL)
            .await
            .unwrap()
            .unwrap()
            .release()
            .await
            .unwrap();
        let r = format!("mutex-{batching}");
        let key = format!("cancel:lock:{{{r}}}");
        let l = Arc::clone(&locks);
        dropped_in_flight(&server, &observer, &key, async move {
            let _ = l.try_acquire(&r, TTL).await;
        })
        .await;
        // and the lock can be taken at once
        let g = locks
            .try_acquire(&format!("mutex-{batching}"), TTL)
            .await
            .unwrap()
            .expect("free");
        g.release().await.unwrap();
    }

    let locks = Arc::new(
        RedisLock::builder(connect().await)
            .prefix("cancel")
            .build()
            .unwrap(),
    );
    let views = [
        (locks.write(), "cancel:rw:{w}:writer", "w"),
        (locks.read(), "cancel:rw:{r}:readers", "r"),
        (locks.semaphore(2).unwrap(), "cancel:sem:{s}:holders", "s"),
    ];
    for (view, key, r) in views {
        let view = Arc::new(view);
        view.try_acquire("warm", TTL)
            .await
            .unwrap()
            .unwrap()
            .release()
            .await
            .unwrap();
        let v = Arc::clone(&view);
        dropped_in_flight(&server, &observer, key, async move {
            let _ = v.try_acquire(r, TTL).await;
        })
        .await;
    }
    let warm = locks
        .try_acquire_all("warm", &["a"], TTL)
        .await
        .unwrap()
        .unwrap();
    warm.release().await.unwrap();
    let l = Arc::clone(&locks);
    dropped_in_flight(&server, &observer, "cancel:multi:{g}:r:a", async move {
        let _ = l.try_acquire_all("g", &["a", "b"], TTL).await;
    })
    .await;
    assert!(!exists(&observer, "cancel:multi:{g}:r:b").await);
}

/// A `release` whose future is dropped before its batch goes out (a timeout around it, a
/// `select!`) was never sent, and the consumed guard did not release on drop either: the
/// lock stayed held by nobody for its TTL. Dropping the release must release like dropping
/// the guard does. The current-thread runtime makes the order exact: the release is queued
/// by one poll and dropped before the batching task runs.
#[tokio::test]
async fn a_dropped_release_still_releases() {
    let redis = redkit_testkit::redis().await;
    let prefix = redkit_testkit::prefix("dropped-release");
    for batching in [true, false] {
        let locks = RedisLock::builder(redis.clone())
            .prefix(&prefix)
            .batching(batching)
            .build()
            .unwrap();
        let r = format!("r-{batching}");
        let key = format!("{prefix}:lock:{{{r}}}");
        let guard = locks.try_acquire(&r, TTL).await.unwrap().unwrap();
        assert!(exists(&redis, &key).await);
        // one poll, then the future is dropped
        let dropped = futures_util::FutureExt::now_or_never(guard.release());
        assert!(dropped.is_none(), "the release finished within one poll");
        let deadline = Instant::now() + Duration::from_secs(2);
        while exists(&redis, &key).await {
            assert!(
                Instant::now() < deadline,
                "batching {batching}: a dropped release left the lock held for its TTL"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
