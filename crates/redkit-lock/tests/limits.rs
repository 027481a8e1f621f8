//! Out-of-range input is `Error::InvalidArgument` before anything is sent (issue 18,
//! item 10): the server here is paused, so anything sent would time out instead.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use redkit_core::Redis;
use redkit_lock::{AcquireOptions, Error, Lock, LockAll, MAX_DURATION, RedisLock};
use redkit_testkit::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_durations_are_refused_before_anything_is_sent() {
    let server = Server::start();
    let redis = Redis::from_config(
        server
            .config()
            .response_timeout(Duration::from_millis(500))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let locks = RedisLock::builder(redis).prefix("limits").build().unwrap();
    server.pause();
    let start = Instant::now();
    let i64_max_ms = Duration::from_millis(i64::MAX as u64);
    let too_long = MAX_DURATION + Duration::from_millis(1);
    for view in [
        locks.clone(),
        locks.read(),
        locks.write(),
        locks.semaphore(u32::MAX).unwrap(),
    ] {
        for ttl in [i64_max_ms, Duration::MAX, too_long, Duration::ZERO] {
            let err = view.try_acquire("r", ttl).await.unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{ttl:?}: {err:?}");
        }
        let err = view
            .acquire(
                "r",
                AcquireOptions::new(Duration::from_secs(1)).wait(Duration::MAX),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    let err = locks
        .try_acquire_all("g", &["a"], i64_max_ms)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(matches!(
        locks.semaphore(0).unwrap_err(),
        Error::InvalidArgument(_)
    ));
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "a call waited on the paused server: {:?}",
        start.elapsed()
    );
    server.resume();
}
