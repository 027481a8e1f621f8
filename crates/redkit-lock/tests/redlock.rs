//! Redlock over three independent servers: the conformance suite, and quorum under faults.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redkit_core::Redis;
use redkit_lock::conformance::{Suite, Time};
use redkit_lock::{AcquireOptions, Error, Lock, Redlock};
use redkit_testkit::Server;

/// Three servers shared by the conformance tests of this binary (each test uses its own
/// resource names).
fn shared_servers() -> &'static [Server] {
    static SERVERS: OnceLock<Vec<Server>> = OnceLock::new();
    SERVERS.get_or_init(|| redkit_testkit::servers(3))
}

async fn handles(servers: &[Server]) -> Vec<Redis> {
    let mut out = Vec::new();
    for s in servers {
        out.push(s.redis().await);
    }
    out
}

redkit_lock::conformance_suite!(redlock, async {
    let prefix = redkit_testkit::prefix("redlock");
    let a = Redlock::builder(handles(shared_servers()).await)
        .prefix(&prefix)
        .build()
        .unwrap();
    let b = Redlock::builder(handles(shared_servers()).await)
        .prefix(&prefix)
        .build()
        .unwrap();
    Suite {
        a: Arc::new(a),
        b: Arc::new(b),
        time: Time::Real,
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_down_still_locks_two_down_fails_in_bounded_time() {
    let mut servers = redkit_testkit::servers(3);
    let nodes = handles(&servers).await;
    let locks = Redlock::builder(nodes.clone())
        .node_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let other = Redlock::builder(nodes).build().unwrap();

    servers[0].kill();
    let g = locks
        .acquire(
            "job",
            AcquireOptions::new(Duration::from_secs(5)).wait(Duration::from_secs(2)),
        )
        .await
        .expect("2 of 3 is a quorum");
    assert!(
        other
            .try_acquire("job", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    assert!(g.is_held().await.unwrap());
    assert!(g.release().await.unwrap());

    servers[1].kill();
    let start = Instant::now();
    let err = locks
        .try_acquire("job", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    let start = Instant::now();
    let err = locks
        .acquire(
            "job",
            AcquireOptions::new(Duration::from_secs(5)).wait(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Core(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn bad_settings_are_typed_errors() {
    assert!(matches!(
        Redlock::builder(Vec::new()).build(),
        Err(Error::InvalidArgument(_))
    ));
    let nodes = handles(shared_servers()).await;
    assert!(matches!(
        Redlock::builder(nodes.clone())
            .node_timeout(Duration::ZERO)
            .build(),
        Err(Error::InvalidArgument(_))
    ));
    for long in [
        Duration::MAX,
        redkit_lock::MAX_DURATION + Duration::from_millis(1),
    ] {
        assert!(matches!(
            Redlock::builder(nodes.clone()).node_timeout(long).build(),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        Redlock::builder(nodes).prefix("a{b}").build(),
        Err(Error::Core(_))
    ));
}
