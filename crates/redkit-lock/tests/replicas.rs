//! Acquisitions acknowledged by replicas (`WAIT`) or the AOF (`WAITAOF`), on a master with
//! one replica (issue 18, item 1).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use redkit_core::{Redis, redis};
use redkit_lock::{AcquireOptions, Error, Lock, LockAll, RedisLock};
use redkit_testkit::Server;

/// A master and its replica, once the link is up.
fn master_and_replica() -> (Server, Server) {
    let master = Server::start();
    let replica = Server::builder()
        .config(&format!("replicaof 127.0.0.1 {}", master.port()))
        .start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(replica
        .cli(&["info", "replication"])
        .contains("master_link_status:up")
        && master
            .cli(&["info", "replication"])
            .contains("connected_slaves:1"))
    {
        assert!(Instant::now() < deadline, "the replica never synced");
        std::thread::sleep(Duration::from_millis(50));
    }
    (master, replica)
}

async fn connect(server: &Server) -> Redis {
    Redis::from_config(server.config().build().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_acquisitions_are_on_the_replica_or_not_held() {
    let (master, replica) = master_and_replica();
    let on_replica = connect(&replica).await;
    let observer = connect(&master).await;
    let locks = Arc::new(
        RedisLock::builder(connect(&master).await)
            .prefix("acked")
            .wait_for_replicas(1, Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    // every acquisition is on the replica by the time it returns
    for i in 0..20 {
        let r = format!("r{i}");
        let g = locks
            .try_acquire(&r, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        let there: Option<String> = on_replica
            .query(redis::cmd("GET").arg(format!("acked:lock:{{{r}}}")))
            .await
            .unwrap();
        assert_eq!(there.as_deref(), Some(g.owner_token()), "{r}");
        g.release().await.unwrap();
    }
    let g = locks
        .read()
        .try_acquire("shared", Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    g.release().await.unwrap();

    // the replica stops answering: no acknowledgement, the hold is released again
    replica.pause();
    let started = Instant::now();
    let err = locks
        .try_acquire("lonely", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                wanted: 1,
                acked: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(started.elapsed() >= Duration::from_millis(300));
    let held: i64 = observer
        .query(redis::cmd("EXISTS").arg("acked:lock:{lonely}"))
        .await
        .unwrap();
    assert_eq!(held, 0, "an unacknowledged lock is left held");
    let err = locks
        .try_acquire_all("g", &["a", "b"], Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotReplicated { .. }), "{err:?}");
    let held: i64 = observer
        .query(
            redis::cmd("EXISTS")
                .arg("acked:multi:{g}:r:a")
                .arg("acked:multi:{g}:r:b"),
        )
        .await
        .unwrap();
    assert_eq!(held, 0);

    // a caller that goes away while the wait blocks leaves nothing held either
    let task = {
        let locks = Arc::clone(&locks);
        tokio::spawn(async move {
            let _ = locks
                .acquire(
                    "gone",
                    AcquireOptions::new(Duration::from_secs(10)).wait(Duration::from_secs(5)),
                )
                .await;
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    task.abort();
    replica.resume();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let held: i64 = observer
            .query(redis::cmd("EXISTS").arg("acked:lock:{gone}"))
            .await
            .unwrap();
        if held == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "held for a caller who is gone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn acknowledgement_settings_are_checked() {
    let redis = redkit_testkit::redis().await;
    let build = |f: fn(redkit_lock::RedisLockBuilder) -> redkit_lock::RedisLockBuilder| {
        f(RedisLock::builder(redis.clone()).prefix("acked-check")).build()
    };
    for bad in [
        build(|b| b.wait_for_replicas(0, Duration::from_millis(100))),
        build(|b| b.wait_for_replicas(1, Duration::ZERO)),
        build(|b| b.wait_for_replicas(1, Duration::from_micros(999))),
        build(|b| b.wait_for_replicas(1, Duration::MAX)),
    ] {
        assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
    }
    // WAITAOF: Redis 7.2 and later; a typed error on older servers, before anything is sent
    let aof = build(|b| b.wait_for_aof(true, 0, Duration::from_millis(100)));
    if redis.server_info().at_least(7, 2) {
        assert!(aof.is_ok(), "{aof:?}");
    } else {
        assert!(
            matches!(
                aof,
                Err(Error::Core(redkit_core::Error::UnsupportedServer(_)))
            ),
            "{aof:?}"
        );
    }
    // a wait as long as half the ttl is refused before anything is sent
    let locks = build(|b| b.wait_for_replicas(1, Duration::from_millis(500))).unwrap();
    let err = locks
        .try_acquire("r", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

/// The latency cost of `wait_for_replicas(1, ..)`: sequential acquire + release pairs on a
/// master with one replica, with and without it. Run with
/// `cargo test -p redkit-lock --release --test replicas -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_the_cost_of_waiting_for_a_replica() {
    let (master, _replica) = master_and_replica();
    let plain = RedisLock::builder(connect(&master).await)
        .prefix("cost")
        .build()
        .unwrap();
    let acked = RedisLock::builder(connect(&master).await)
        .prefix("cost")
        .wait_for_replicas(1, Duration::from_secs(1))
        .build()
        .unwrap();
    let pairs = 2000;
    for round in 0..3 {
        let mut times = Vec::new();
        for locks in [&plain, &acked] {
            let start = Instant::now();
            for i in 0..pairs {
                let g = locks
                    .try_acquire(&format!("r{i}"), Duration::from_secs(10))
                    .await
                    .unwrap()
                    .unwrap();
                g.release().await.unwrap();
            }
            times.push(start.elapsed() / pairs);
        }
        println!(
            "round {round}: plain {:?} per pair, wait_for_replicas(1) {:?} per pair, ratio {:.2}",
            times[0],
            times[1],
            times[1].as_secs_f64() / times[0].as_secs_f64()
        );
    }
}

/// The connection is cut while `WAIT` blocks (after the acquire script ran): the caller
/// gets an error, so the hold taken for it must be released, not left for its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_during_the_wait_leaves_nothing_held() {
    let (master, replica) = master_and_replica();
    let observer = connect(&master).await;
    let proxy = redkit_testkit::Proxy::start(&master.addr()).await;
    let through_proxy = Redis::from_config(master.config().url(proxy.url()).build().unwrap())
        .await
        .unwrap();
    let locks = Arc::new(
        RedisLock::builder(through_proxy)
            .prefix("acked-cut")
            .wait_for_replicas(1, Duration::from_secs(3))
            .build()
            .unwrap(),
    );
    replica.pause();
    let task = {
        let locks = Arc::clone(&locks);
        tokio::spawn(async move { locks.try_acquire("cut", Duration::from_secs(30)).await })
    };
    // the script has run and WAIT blocks on the paused replica
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let held: i64 = observer
            .query(redis::cmd("EXISTS").arg("acked-cut:lock:{cut}"))
            .await
            .unwrap();
        if held == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the acquisition never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.cut();
    let answer = task.await.unwrap();
    assert!(answer.is_err(), "{answer:?}");
    replica.resume();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let held: i64 = observer
            .query(redis::cmd("EXISTS").arg("acked-cut:lock:{cut}"))
            .await
            .unwrap();
        if held == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "held for a caller who got an error (the connection was cut during WAIT)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
