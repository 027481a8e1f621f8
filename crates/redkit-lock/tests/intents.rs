//! Each waiting writer's intent keeps its own expiry (issue 18, item 26): a writer that
//! records a short intent must not cut a longer intent of another writer short.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redkit_core::redis;
use redkit_lock::__test_hooks::WRITER_INTENT_OVERRIDE_MS;
use redkit_lock::{AcquireOptions, Error, Lock, RedisLock};
use redkit_testkit as testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_intent_does_not_cut_a_longer_one_short() {
    let redis = testkit::redis().await;
    let prefix = testkit::prefix("intents");
    let locks = Arc::new(
        RedisLock::builder(redis.clone())
            .prefix(&prefix)
            .build()
            .unwrap(),
    );
    let waiting = format!("{prefix}:rw:{{r}}:writers-waiting");
    let reader = locks
        .read()
        .try_acquire("r", Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();

    // Writer A waits with a 5 s intent.
    WRITER_INTENT_OVERRIDE_MS.store(5000, Ordering::SeqCst);
    let a = {
        let locks = Arc::clone(&locks);
        tokio::spawn(async move {
            locks
                .write()
                .acquire(
                    "r",
                    AcquireOptions::new(Duration::from_secs(5)).wait(Duration::from_secs(10)),
                )
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n: i64 = redis
            .query(redis::cmd("ZCARD").arg(&waiting))
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writer A never recorded its intent"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A subscribes and looks once more at once (renewing its 5 s intent); after that it
    // sleeps for about 1 s
    let channel = format!("{prefix}:rw:{{r}}:released");
    loop {
        let (_, n): (String, i64) = redis
            .query(redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel))
            .await
            .unwrap();
        if n >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "writer A never subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Writer B records a 200 ms intent and gives up after 50 ms.
    WRITER_INTENT_OVERRIDE_MS.store(200, Ordering::SeqCst);
    let err = locks
        .write()
        .acquire(
            "r",
            AcquireOptions::new(Duration::from_secs(5)).wait(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WaitTimeout { .. }), "{err:?}");
    // B's intent would be over by now; A's stands for seconds more
    tokio::time::sleep(Duration::from_millis(350)).await;
    let late = locks
        .read()
        .try_acquire("r", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        late.is_none(),
        "a new reader got in while writer A still waits: A's intent was cut short by B's"
    );
    WRITER_INTENT_OVERRIDE_MS.store(0, Ordering::SeqCst);
    assert!(reader.release().await.unwrap());
    let g = a.await.unwrap().unwrap();
    assert!(g.release().await.unwrap());
}
