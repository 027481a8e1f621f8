//! `lost()` fires before the server's TTL ends even when the watchdog's renewal and an
//! explicit `extend` with a shorter TTL are answered out of order: the renewal the server
//! ran first must not push the client's safe time past the TTL the server kept. Alone in
//! its test binary: the watchdog pause point is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::redis;
use redkit_lock::__test_hooks::{RENEWAL_GATE, RenewalGate};
use redkit_lock::{AcquireOptions, Lock, RedisLock};
use redkit_testkit as testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_renewal_answered_late_does_not_extend_the_safe_time() {
    let redis = testkit::redis().await;
    let prefix = testkit::prefix("renewal-order");
    let locks = RedisLock::builder(redis.clone())
        .prefix(&prefix)
        .build()
        .unwrap();
    let gate = Arc::new(RenewalGate::default());
    *RENEWAL_GATE.lock().unwrap() = Some(Arc::clone(&gate));
    let guard = locks
        .acquire(
            "r",
            AcquireOptions::new(Duration::from_millis(1500)).auto_extend(true),
        )
        .await
        .unwrap();
    // the watchdog's renewal (1.5 s) ran on the server; it is held before recording it
    tokio::time::timeout(Duration::from_secs(5), gate.arrived.notified())
        .await
        .expect("the watchdog renewed");
    // an explicit extension to 300 ms, sent and answered after the watchdog's
    guard.extend(Duration::from_millis(300)).await.unwrap();
    // the watchdog records its renewal now, answered last but sent first
    gate.go.notify_one();
    *RENEWAL_GATE.lock().unwrap() = None;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // the server's TTL (300 ms) runs out
    let key = format!("{prefix}:lock:{{r}}");
    let mut gone = false;
    for _ in 0..100 {
        let n: i64 = redis.query(redis::cmd("EXISTS").arg(&key)).await.unwrap();
        if n == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "the 300 ms extension expired on the server");
    assert!(
        guard.is_lost(),
        "the server's TTL ended but lost() has not fired (safe for {:?} more)",
        guard.lease().safe_for()
    );
    let other = locks
        .try_acquire("r", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the lock expired");
    other.release().await.unwrap();
}
