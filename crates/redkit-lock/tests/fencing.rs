//! Fencing against lost updates: a holder whose lock expired cannot write once a newer
//! holder has acquired the lock, even before the newer holder writes (issue 18, item 1).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redkit_core::{Redis, redis};
use redkit_lock::{AcquireOptions, FenceGate, FencedValue, Lock, LockAll, RedisLock};
use redkit_testkit as testkit;

fn number(v: Option<(u64, Vec<u8>)>) -> u64 {
    v.map_or(0, |(_, bytes)| {
        String::from_utf8(bytes).unwrap().parse().unwrap()
    })
}

/// The interleaving of the issue: A (token n) reads a counter and is paused past its
/// TTL; B (n + 1) acquires and reads the same value; A resumes and writes with n; B
/// writes with n + 1. A's write must be refused although B had not written yet, and the
/// counter must show exactly B's increment.
async fn a_paused_holder_cannot_lose_an_update(redis: Redis) {
    let locks = RedisLock::builder(redis)
        .prefix(testkit::prefix("fencing"))
        .build()
        .unwrap();
    let value = FencedValue::new(&locks).unwrap();
    let r = "counter";
    // a first holder writes 41
    let g = locks
        .try_acquire(r, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(value.write(r, g.fencing_token(), b"41").await.unwrap());
    g.release().await.unwrap();

    let a = locks
        .try_acquire(r, Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    let read_by_a = number(value.read(r).await.unwrap());
    assert_eq!(read_by_a, 41);
    // A is paused past its TTL (here: it simply sleeps through it)
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(a.is_lost(), "A's lease reports the loss");
    let b = locks
        .try_acquire(r, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("A's lock expired");
    assert_eq!(b.fencing_token(), a.fencing_token() + 1);
    let read_by_b = number(value.read(r).await.unwrap());
    assert_eq!(read_by_b, 41, "B reads what A read: A has not written");

    // A resumes and writes its increment: refused, B holds a newer token
    let a_wrote = value
        .write(r, a.fencing_token(), (read_by_a + 1).to_string().as_bytes())
        .await
        .unwrap();
    assert!(
        !a_wrote,
        "the stale holder's write was accepted: lost update"
    );
    // B writes its increment (twice: the same holder may write again)
    assert!(value.write(r, b.fencing_token(), b"42").await.unwrap());
    assert!(value.write(r, b.fencing_token(), b"42").await.unwrap());
    assert_eq!(
        value.read(r).await.unwrap(),
        Some((b.fencing_token(), b"42".to_vec())),
        "exactly one increment per successful writer"
    );
    assert!(!a.release().await.unwrap());
    assert!(b.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_cannot_lose_an_update_on_standalone() {
    a_paused_holder_cannot_lose_an_update(testkit::redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_cannot_lose_an_update_on_cluster() {
    a_paused_holder_cannot_lose_an_update(testkit::cluster().redis().await).await;
}

/// Read-modify-write of one counter by tasks that often outlive their short TTL: every
/// accepted write is one increment and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_modify_write_under_the_lock_never_loses_an_update() {
    let locks = Arc::new(
        RedisLock::builder(testkit::redis().await)
            .prefix(testkit::prefix("fencing-rmw"))
            .build()
            .unwrap(),
    );
    let value = Arc::new(FencedValue::new(&locks).unwrap());
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (locks, value) = (Arc::clone(&locks), Arc::clone(&value));
        let (accepted, refused) = (Arc::clone(&accepted), Arc::clone(&refused));
        tasks.push(tokio::spawn(async move {
            for round in 0..5u64 {
                let g = locks
                    .acquire(
                        "c",
                        AcquireOptions::new(Duration::from_millis(150))
                            .wait(Duration::from_secs(10)),
                    )
                    .await
                    .unwrap();
                let n = number(value.read("c").await.unwrap());
                // every other round outlives the TTL, so others take over meanwhile
                let pause = if (t + round) % 2 == 0 { 10 } else { 220 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                if value
                    .write("c", g.fencing_token(), (n + 1).to_string().as_bytes())
                    .await
                    .unwrap()
                {
                    accepted.fetch_add(1, Ordering::SeqCst);
                } else {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
                drop(g);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = accepted.load(Ordering::SeqCst);
    assert!(accepted > 0);
    assert_eq!(
        number(value.read("c").await.unwrap()),
        accepted,
        "{accepted} accepted writes, {} refused",
        refused.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn fenced_writes_compare_tokens_exactly_and_repair_a_lost_counter() {
    let redis = testkit::redis().await;
    let prefix = testkit::prefix("fence-exact");
    let locks = RedisLock::builder(redis.clone())
        .prefix(&prefix)
        .build()
        .unwrap();
    let value = FencedValue::new(&locks).unwrap();
    let counter = format!("{prefix}:lock:{{v}}:fence");
    let set = |n: u64| redis::cmd("SET").arg(&counter).arg(n).clone();
    // 2^53 + 1 and 2^53 are the same Lua number: the comparison must not use numbers
    let _: () = redis.query(&set((1 << 53) + 1)).await.unwrap();
    assert!(!value.write("v", 1 << 53, b"a").await.unwrap());
    assert!(value.write("v", (1 << 53) + 1, b"b").await.unwrap());
    let _: () = redis.query(&set(i64::MAX as u64)).await.unwrap();
    assert!(!value.write("v", i64::MAX as u64 - 1, b"c").await.unwrap());
    assert!(value.write("v", i64::MAX as u64, b"d").await.unwrap());
    for bad in [0, i64::MAX as u64 + 1, u64::MAX] {
        let err = value.write("v", bad, b"x").await.unwrap_err();
        assert!(
            matches!(err, redkit_lock::Error::InvalidArgument(_)),
            "{err:?}"
        );
    }

    // A counter lost while a value written under it survives (eviction, a restart or
    // failover without it): the next holder's token starts again below the stored one.
    for _ in 0..3 {
        let g = locks
            .try_acquire("w", Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert!(value.write("w", g.fencing_token(), b"old").await.unwrap());
        g.release().await.unwrap();
    }
    let _: () = redis
        .query(redis::cmd("DEL").arg(format!("{prefix}:lock:{{w}}:fence")))
        .await
        .unwrap();
    let g = locks
        .try_acquire("w", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.fencing_token(), 1, "the counter started again");
    assert!(
        !value.write("w", 1, b"after reset").await.unwrap(),
        "a token below the stored one is refused"
    );
    g.release().await.unwrap();
    let g = locks
        .try_acquire("w", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        g.fencing_token(),
        5,
        "the refused write raised the counter past 3 (to 4: token 3 is never the highest again)"
    );
    assert!(value.write("w", 5, b"new").await.unwrap());
    g.release().await.unwrap();
}

/// The same values over read-write locks, semaphores and groups: the newest acquisition
/// of the kind's counter is the only writer.
#[tokio::test]
async fn fenced_values_follow_every_lock_kind() {
    let locks = RedisLock::builder(testkit::cluster().redis().await)
        .prefix(testkit::prefix("fence-kinds"))
        .build()
        .unwrap();
    for view in [locks.read(), locks.write(), locks.semaphore(2).unwrap()] {
        let value = FencedValue::new(&view).unwrap();
        let old = view
            .try_acquire("r", Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        let old_token = old.fencing_token();
        assert!(value.write("r", old_token, b"1").await.unwrap());
        old.release().await.unwrap();
        let new = view
            .try_acquire("r", Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert!(!value.write("r", old_token, b"2").await.unwrap());
        assert!(value.write("r", new.fencing_token(), b"3").await.unwrap());
        new.release().await.unwrap();
    }
    let groups = FencedValue::for_groups(&locks).unwrap();
    let old = locks
        .try_acquire_all("bank", &["a", "b"], Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let old_token = old.fencing_token();
    old.release().await.unwrap();
    let new = locks
        .try_acquire_all("bank", &["b"], Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(!groups.write("bank", old_token, b"x").await.unwrap());
    assert!(
        groups
            .write("bank", new.fencing_token(), b"y")
            .await
            .unwrap()
    );
    new.release().await.unwrap();
}

/// The in-memory gate under the same interleaving.
#[test]
fn a_fence_gate_refuses_a_holder_once_a_newer_one_entered() {
    let gate = FenceGate::default();
    assert!(gate.enter(592), "A reads");
    assert!(gate.enter(593), "B took over and reads");
    assert!(!gate.admit(592), "A's write after B entered");
    assert!(gate.admit(593));
    assert_eq!(gate.highest(), 593);
}

/// A lost counter repaired by a refused write must not hand the repaired value back to a
/// holder that already has it: the counter is raised *past* every token seen, so a paused
/// holder whose write triggered the repair (or whose token was the stored one) is refused
/// when it tries again, while the current holder's lock is held.
#[tokio::test]
async fn a_counter_repair_never_lets_an_old_holder_write() {
    let redis = testkit::redis().await;
    let prefix = testkit::prefix("fence-repair");
    let locks = RedisLock::builder(redis.clone())
        .prefix(&prefix)
        .build()
        .unwrap();
    let value = FencedValue::new(&locks).unwrap();
    let counter = |r: &str| format!("{prefix}:lock:{{{r}}}:fence");

    // 1. The stale holder's own write repairs the counter, then it retries.
    let _: () = redis
        .query(redis::cmd("SET").arg(counter("x")).arg(10))
        .await
        .unwrap();
    let a = locks
        .try_acquire("x", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    let a_token = a.fencing_token();
    assert_eq!(a_token, 11);
    // A is paused past its TTL; the counter is lost; B acquires with token 1
    let _: () = redis
        .query(redis::cmd("DEL").arg(counter("x")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = locks
        .try_acquire("x", Duration::from_secs(10))
        .await
        .unwrap()
        .expect("A's lock expired");
    assert_eq!(b.fencing_token(), 1);
    assert!(
        !value.write("x", a_token, b"stale 1").await.unwrap(),
        "A's first write: the counter is behind it"
    );
    assert!(
        !value.write("x", a_token, b"stale 2").await.unwrap(),
        "A's retry while B holds the lock must be refused too"
    );
    assert_eq!(value.read("x").await.unwrap(), None);
    b.release().await.unwrap();

    // 2. The current holder's write repairs the counter from the stored token; the holder
    //    that wrote the stored token (now expired) writes again.
    let old = locks
        .try_acquire("y", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg(counter("y")).arg(7))
        .await
        .unwrap();
    old.release().await.unwrap();
    let old = locks
        .try_acquire("y", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.fencing_token(), 8);
    assert!(value.write("y", 8, b"by 8").await.unwrap());
    let _: () = redis
        .query(redis::cmd("DEL").arg(counter("y")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = locks
        .try_acquire("y", Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the old lock expired");
    assert_eq!(new.fencing_token(), 1);
    assert!(!value.write("y", 1, b"by 1").await.unwrap());
    assert!(
        !value.write("y", 8, b"stale 8").await.unwrap(),
        "the expired holder of token 8 must not write while token 1's holder holds the lock"
    );
    assert_eq!(value.read("y").await.unwrap(), Some((8, b"by 8".to_vec())));
    new.release().await.unwrap();
    let next = locks
        .try_acquire("y", Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert!(next.fencing_token() > 8);
    assert!(
        value
            .write("y", next.fencing_token(), b"next")
            .await
            .unwrap()
    );
    next.release().await.unwrap();

    // 3. A repair at the largest token: nothing can be the highest any more, every write is
    //    refused and acquisitions answer that the counter cannot be incremented.
    let _: () = redis
        .query(
            redis::cmd("HSET")
                .arg(format!("{prefix}:lock:{{z}}:fenced"))
                .arg("token")
                .arg(i64::MAX)
                .arg("value")
                .arg("max"),
        )
        .await
        .unwrap();
    assert!(!value.write("z", 1, b"one").await.unwrap());
    assert!(
        !value
            .write("z", i64::MAX as u64, b"max again")
            .await
            .unwrap()
    );
    let err = locks
        .try_acquire("z", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(err, redkit_lock::Error::Unusable { .. }),
        "{err:?}"
    );
}
