//! The suite every [`Lock`] backend must pass. Run it with [`crate::conformance_suite!`].
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{AcquireOptions, Error, Lock, LockExt};

pub use redkit_testkit::Time;

/// Two lock handles on the same store (two "processes") and the way time moves.
#[derive(Debug, Clone)]
pub struct Suite {
    pub a: Arc<dyn Lock>,
    pub b: Arc<dyn Lock>,
    pub time: Time,
}

fn resource(name: &str) -> String {
    redkit_testkit::prefix(name)
}

const TTL: Duration = Duration::from_secs(10);

pub async fn acquire_and_release(s: &Suite) {
    let r = resource("basic");
    let g = s.a.try_acquire(&r, TTL).await.unwrap().expect("free lock");
    assert!(
        s.b.try_acquire(&r, TTL).await.unwrap().is_none(),
        "held by a"
    );
    assert!(g.is_held().await.unwrap());
    assert!(g.release().await.unwrap(), "release of a held lock");
    let g2 = s.b.try_acquire(&r, TTL).await.unwrap().expect("free again");
    assert!(g2.release().await.unwrap());
}

pub async fn fencing_tokens_grow_with_every_acquisition(s: &Suite) {
    let r = resource("fence");
    let mut last = 0;
    for i in 0..6 {
        let lock = if i % 2 == 0 { &s.a } else { &s.b };
        let g = lock.try_acquire(&r, TTL).await.unwrap().unwrap();
        assert!(
            g.fencing_token() > last,
            "{} after {last}",
            g.fencing_token()
        );
        last = g.fencing_token();
        g.release().await.unwrap();
    }
}

pub async fn an_expired_lock_is_never_released_or_extended_by_its_old_owner(s: &Suite) {
    let r = resource("expired");
    let old =
        s.a.try_acquire(&r, Duration::from_millis(200))
            .await
            .unwrap()
            .unwrap();
    s.time.pass(Duration::from_millis(350)).await;
    let new =
        s.b.try_acquire(&r, TTL)
            .await
            .unwrap()
            .expect("expired lock is free");
    assert!(new.fencing_token() > old.fencing_token());

    let err = old.extend(TTL).await.unwrap_err();
    assert!(matches!(err, Error::NotHeld { .. }), "{err:?}");
    assert!(!old.is_held().await.unwrap());
    assert!(
        !old.release().await.unwrap(),
        "old owner's release is a no-op"
    );
    assert!(new.is_held().await.unwrap(), "the new owner still holds it");
    assert!(s.a.try_acquire(&r, TTL).await.unwrap().is_none());
    new.release().await.unwrap();
}

pub async fn extend_keeps_the_lock_past_its_first_ttl(s: &Suite) {
    let r = resource("extend");
    let g =
        s.a.try_acquire(&r, Duration::from_millis(300))
            .await
            .unwrap()
            .unwrap();
    g.extend(Duration::from_secs(5)).await.unwrap();
    s.time.pass(Duration::from_millis(500)).await;
    assert!(g.is_held().await.unwrap());
    assert!(s.b.try_acquire(&r, TTL).await.unwrap().is_none());
    g.release().await.unwrap();
}

pub async fn acquire_waits_for_a_release_without_polling_it_out(s: &Suite) {
    let r = resource("wait");
    let holder =
        s.a.try_acquire(&r, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
    let b = Arc::clone(&s.b);
    let r2 = r.clone();
    let waiter = tokio::spawn(async move {
        let start = Instant::now();
        let g = b
            .acquire(&r2, AcquireOptions::new(TTL).wait(Duration::from_secs(20)))
            .await
            .unwrap();
        (start.elapsed(), g)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released_at = Instant::now();
    assert!(holder.release().await.unwrap());
    let (_, g) = waiter.await.unwrap();
    // The holder's TTL was 30 s and the timed fallback waits at least 1 s: only the release
    // notification explains a wake-up well under that.
    assert!(
        released_at.elapsed() < Duration::from_millis(700),
        "waiter took {:?} after the release",
        released_at.elapsed()
    );
    g.release().await.unwrap();
}

pub async fn acquire_gives_up_after_its_wait(s: &Suite) {
    let r = resource("timeout");
    let holder =
        s.a.try_acquire(&r, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
    let start = Instant::now();
    let err =
        s.b.acquire(
            &r,
            AcquireOptions::new(TTL).wait(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WaitTimeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    holder.release().await.unwrap();
}

pub async fn dropping_a_guard_releases_it(s: &Suite) {
    let r = resource("drop");
    let g =
        s.a.try_acquire(&r, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
    drop(g);
    let start = Instant::now();
    loop {
        if let Some(g) = s.b.try_acquire(&r, TTL).await.unwrap() {
            g.release().await.unwrap();
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "drop did not release"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn with_lock_runs_the_work_and_releases(s: &Suite) {
    let r = resource("with");
    let token =
        s.a.with_lock(&r, AcquireOptions::new(TTL), |lease| async move {
            lease.fencing_token()
        })
        .await
        .unwrap();
    assert!(token > 0);
    let g =
        s.b.try_acquire(&r, TTL)
            .await
            .unwrap()
            .expect("released after the work");
    assert!(g.fencing_token() > token);
    g.release().await.unwrap();
}

pub async fn bad_input_is_a_typed_error(s: &Suite) {
    for bad in ["", "a{b}", "{", "}"] {
        let err = s.a.try_acquire(bad, TTL).await.unwrap_err();
        assert!(
            matches!(err, Error::Core(redkit_core::Error::InvalidKey(_))),
            "{bad:?}: {err:?}"
        );
    }
    let huge = "x".repeat(redkit_core::MAX_KEY_LEN + 1);
    assert!(s.a.try_acquire(&huge, TTL).await.is_err());
    let r = resource("bad");
    for ttl in [Duration::ZERO, Duration::from_millis(1)] {
        let err = s.a.try_acquire(&r, ttl).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{ttl:?}: {err:?}");
    }
    let err =
        s.a.acquire(&r, AcquireOptions::new(TTL).safety_margin(TTL))
            .await
            .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");

    // Durations beyond what the server, Lua numbers or `Instant`s carry are typed errors,
    // never a panic or a script error (issue 18, item 10).
    let too_long = crate::MAX_DURATION + Duration::from_millis(1);
    for ttl in [
        Duration::from_millis(i64::MAX as u64),
        Duration::MAX,
        too_long,
    ] {
        let err = s.a.try_acquire(&r, ttl).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{ttl:?}: {err:?}");
    }
    for opts in [
        AcquireOptions::new(TTL).wait(Duration::MAX),
        AcquireOptions::new(TTL).wait(too_long),
        AcquireOptions::new(TTL).safety_margin(Duration::MAX),
        AcquireOptions::new(TTL)
            .auto_extend(true)
            .max_hold(Duration::MAX),
    ] {
        let err = s.a.acquire(&r, opts.clone()).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{opts:?}: {err:?}"
        );
    }
    // the longest accepted TTL works end to end
    let g =
        s.a.try_acquire(&r, crate::MAX_DURATION)
            .await
            .unwrap()
            .expect("free");
    for ttl in [Duration::MAX, Duration::ZERO, too_long] {
        let err = g.extend(ttl).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{ttl:?}: {err:?}");
    }
    assert!(
        g.is_held().await.unwrap(),
        "a refused extend changes nothing"
    );
    assert!(g.release().await.unwrap());
}

pub async fn the_watchdog_keeps_the_lock_until_release(s: &Suite) {
    let r = resource("watchdog");
    let ttl = Duration::from_millis(300);
    let g =
        s.a.acquire(&r, AcquireOptions::new(ttl).auto_extend(true))
            .await
            .unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            s.b.try_acquire(&r, TTL).await.unwrap().is_none(),
            "renewed in time"
        );
    }
    assert!(!g.is_lost());
    assert!(g.release().await.unwrap());
}

pub async fn max_hold_stops_the_watchdog_and_lost_fires(s: &Suite) {
    let r = resource("max-hold");
    let ttl = Duration::from_millis(300);
    let start = Instant::now();
    let g =
        s.a.acquire(
            &r,
            AcquireOptions::new(ttl)
                .auto_extend(true)
                .max_hold(Duration::from_millis(700)),
        )
        .await
        .unwrap();
    g.lost().await;
    let after = start.elapsed();
    // Renewals stop once another ttl would pass the cap; the last renewal's safe time
    // then runs out: after more than one ttl, and not long after the cap.
    assert!(
        after > ttl,
        "lost fired after {after:?}: the watchdog never renewed"
    );
    assert!(
        after < Duration::from_millis(1000),
        "lost fired after {after:?}"
    );
}

pub async fn lost_fires_before_the_ttl_without_renewal(s: &Suite) {
    let r = resource("lost");
    let ttl = Duration::from_millis(400);
    let g = s.a.try_acquire(&r, ttl).await.unwrap().unwrap();
    let start = Instant::now();
    g.lost().await;
    let after = start.elapsed();
    assert!(
        after < ttl,
        "lost fired after {after:?}, not before the ttl of {ttl:?}"
    );
    assert!(after >= ttl / 2, "lost fired too early: {after:?}");
    assert!(g.is_lost());
}

#[macro_export]
/// Generates one test per conformance case for a backend.
///
/// `conformance_suite!(name, async { Suite { .. } })` — the expression is awaited in each
/// test to build a fresh [`Suite`].
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@case $make;
                acquire_and_release,
                fencing_tokens_grow_with_every_acquisition,
                an_expired_lock_is_never_released_or_extended_by_its_old_owner,
                extend_keeps_the_lock_past_its_first_ttl,
                acquire_waits_for_a_release_without_polling_it_out,
                acquire_gives_up_after_its_wait,
                dropping_a_guard_releases_it,
                with_lock_runs_the_work_and_releases,
                bad_input_is_a_typed_error,
                the_watchdog_keeps_the_lock_until_release,
                max_hold_stops_the_watchdog_and_lost_fires,
                lost_fires_before_the_ttl_without_renewal
            );
        }
    };
    (@case $make:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let suite: $crate::conformance::Suite = $make.await;
                $crate::conformance::$case(&suite).await;
            }
        )+
    };
}

/// The two sides of a read-write lock over two handles, and how time moves.
#[derive(Debug, Clone)]
pub struct RwSuite {
    pub read_a: Arc<dyn Lock>,
    pub write_a: Arc<dyn Lock>,
    pub read_b: Arc<dyn Lock>,
    pub write_b: Arc<dyn Lock>,
    pub time: Time,
}

pub async fn readers_share_and_writers_exclude(s: &RwSuite) {
    let r = resource("rw");
    let r1 = s
        .read_a
        .try_acquire(&r, TTL)
        .await
        .unwrap()
        .expect("first reader");
    let r2 = s
        .read_b
        .try_acquire(&r, TTL)
        .await
        .unwrap()
        .expect("readers share");
    assert!(
        s.write_b.try_acquire(&r, TTL).await.unwrap().is_none(),
        "readers block writers"
    );
    assert!(r1.release().await.unwrap());
    assert!(
        s.write_a.try_acquire(&r, TTL).await.unwrap().is_none(),
        "one reader is enough"
    );
    assert!(r2.release().await.unwrap());
    let w = s
        .write_a
        .try_acquire(&r, TTL)
        .await
        .unwrap()
        .expect("free for a writer");
    let w_token = w.fencing_token();
    assert!(
        s.read_b.try_acquire(&r, TTL).await.unwrap().is_none(),
        "a writer blocks readers"
    );
    assert!(
        s.write_b.try_acquire(&r, TTL).await.unwrap().is_none(),
        "and writers"
    );
    assert!(w.release().await.unwrap());
    let r3 = s
        .read_b
        .try_acquire(&r, TTL)
        .await
        .unwrap()
        .expect("readers again");
    assert!(r3.fencing_token() > w_token);
    r3.release().await.unwrap();
}

/// `write_b` waiting up to 20 s for `r`, in a task.
fn spawn_waiting_writer(s: &RwSuite, r: &str) -> tokio::task::JoinHandle<crate::LockGuard> {
    let write_b = Arc::clone(&s.write_b);
    let r = r.to_string();
    tokio::spawn(async move {
        write_b
            .acquire(&r, AcquireOptions::new(TTL).wait(Duration::from_secs(20)))
            .await
            .unwrap()
    })
}

pub async fn a_writer_is_woken_when_the_last_reader_leaves(s: &RwSuite) {
    let r = resource("rw-wait");
    let reader = s
        .read_a
        .try_acquire(&r, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let writer = spawn_waiting_writer(s, &r);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    assert!(reader.release().await.unwrap());
    let w = writer.await.unwrap();
    assert!(
        released.elapsed() < Duration::from_millis(700),
        "{:?}",
        released.elapsed()
    );
    w.release().await.unwrap();
}

pub async fn an_expired_reader_does_not_block_writers(s: &RwSuite) {
    let r = resource("rw-expire");
    let reader = s
        .read_a
        .try_acquire(&r, Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    s.time.pass(Duration::from_millis(350)).await;
    let w = s
        .write_b
        .try_acquire(&r, TTL)
        .await
        .unwrap()
        .expect("expired reader is gone");
    let err = reader.extend(TTL).await.unwrap_err();
    assert!(matches!(err, Error::NotHeld { .. }));
    assert!(
        !reader.release().await.unwrap(),
        "the expired reader releases nothing"
    );
    assert!(w.is_held().await.unwrap());
    w.release().await.unwrap();
}

pub async fn a_waiting_writer_keeps_new_readers_out(s: &RwSuite) {
    let r = resource("rw-prefer");
    let long = Duration::from_secs(30);
    let reader = s.read_a.try_acquire(&r, long).await.unwrap().unwrap();
    let writer = spawn_waiting_writer(s, &r);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        s.read_b.try_acquire(&r, TTL).await.unwrap().is_none(),
        "a new reader got in ahead of the waiting writer"
    );
    reader
        .extend(long)
        .await
        .expect("readers already in keep their hold");
    assert!(reader.release().await.unwrap());
    let w = writer.await.unwrap();
    assert!(s.read_b.try_acquire(&r, TTL).await.unwrap().is_none());
    assert!(w.release().await.unwrap());
    let after = s
        .read_b
        .try_acquire(&r, TTL)
        .await
        .unwrap()
        .expect("readers come back once the writer is done");
    after.release().await.unwrap();
}

pub async fn a_writer_that_does_not_wait_or_gives_up_leaves_readers_in(s: &RwSuite) {
    let r = resource("rw-noprefer");
    let reader = s.read_a.try_acquire(&r, TTL).await.unwrap().unwrap();
    assert!(s.write_b.try_acquire(&r, TTL).await.unwrap().is_none());
    let second = s
        .read_b
        .try_acquire(&r, TTL)
        .await
        .unwrap()
        .expect("a single write attempt records no intent");
    let err = s
        .write_b
        .acquire(
            &r,
            AcquireOptions::new(TTL).wait(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WaitTimeout { .. }), "{err:?}");
    let third = s
        .read_b
        .try_acquire(&r, TTL)
        .await
        .unwrap()
        .expect("a writer that gave up withdrew its intent");
    for g in [reader, second, third] {
        g.release().await.unwrap();
    }
}

/// Semaphores of a given size over two handles.
#[derive(Clone)]
pub struct SemSuite {
    pub a: Arc<dyn Fn(u32) -> Arc<dyn Lock> + Send + Sync>,
    pub b: Arc<dyn Fn(u32) -> Arc<dyn Lock> + Send + Sync>,
    pub time: Time,
}

impl std::fmt::Debug for SemSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemSuite")
            .field("time", &self.time)
            .finish()
    }
}

pub async fn a_semaphore_admits_at_most_its_permits(s: &SemSuite) {
    let r = resource("sem");
    let (a, b) = ((s.a)(3), (s.b)(3));
    let mut held = Vec::new();
    for i in 0..3 {
        let lock = if i % 2 == 0 { &a } else { &b };
        held.push(
            lock.try_acquire(&r, TTL)
                .await
                .unwrap()
                .expect("a permit is free"),
        );
    }
    assert!(
        a.try_acquire(&r, TTL).await.unwrap().is_none(),
        "a 4th permit"
    );
    assert!(b.try_acquire(&r, TTL).await.unwrap().is_none());
    let first = held.remove(0);
    let first_token = first.fencing_token();
    assert!(first.release().await.unwrap());
    let again = b
        .try_acquire(&r, TTL)
        .await
        .unwrap()
        .expect("a released permit is free");
    assert!(again.fencing_token() > first_token);
    assert!(a.try_acquire(&r, TTL).await.unwrap().is_none());
    held.push(again);
    for g in held {
        assert!(g.release().await.unwrap());
    }
}

pub async fn semaphore_permits_expire_and_wake_waiters(s: &SemSuite) {
    let r = resource("sem-expire");
    let (a, b) = ((s.a)(2), (s.b)(2));
    let short = a
        .try_acquire(&r, Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    let long = a
        .try_acquire(&r, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(b.try_acquire(&r, TTL).await.unwrap().is_none());
    s.time.pass(Duration::from_millis(350)).await;
    let taken = b
        .try_acquire(&r, TTL)
        .await
        .unwrap()
        .expect("the expired permit is free");
    assert!(!short.release().await.unwrap());
    // A waiter is woken by a release.
    let b2 = Arc::clone(&b);
    let r2 = r.clone();
    let waiter = tokio::spawn(async move {
        b2.acquire(&r2, AcquireOptions::new(TTL).wait(Duration::from_secs(20)))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    assert!(long.release().await.unwrap());
    let w = waiter.await.unwrap();
    assert!(
        released.elapsed() < Duration::from_millis(700),
        "{:?}",
        released.elapsed()
    );
    w.release().await.unwrap();
    taken.release().await.unwrap();
    assert!(matches!(
        a.try_acquire(&r, Duration::ZERO).await,
        Err(Error::InvalidArgument(_))
    ));
}

/// All-or-none locks over two handles.
#[derive(Debug, Clone)]
pub struct MultiSuite {
    pub a: Arc<dyn crate::LockAll>,
    pub b: Arc<dyn crate::LockAll>,
    pub time: Time,
}

pub async fn all_or_none_over_a_group(s: &MultiSuite) {
    let g = resource("group");
    let x =
        s.a.try_acquire_all(&g, &["x"], TTL)
            .await
            .unwrap()
            .expect("free");
    assert!(
        s.b.try_acquire_all(&g, &["y", "x"], TTL)
            .await
            .unwrap()
            .is_none(),
        "x is held"
    );
    // Nothing of the failed attempt stays behind: y is still free.
    let yz =
        s.b.try_acquire_all(&g, &["y", "z"], TTL)
            .await
            .unwrap()
            .expect("disjoint set");
    assert!(yz.fencing_token() > x.fencing_token());
    assert!(
        s.a.try_acquire_all(&g, &["z"], TTL)
            .await
            .unwrap()
            .is_none()
    );
    assert!(x.release().await.unwrap());
    assert!(yz.release().await.unwrap());
    let all =
        s.a.try_acquire_all(&g, &["x", "y", "z"], TTL)
            .await
            .unwrap()
            .expect("all free");
    assert!(all.is_held().await.unwrap());
    all.extend(Duration::from_secs(20)).await.unwrap();
    assert!(all.release().await.unwrap());
    // Another group is independent.
    let other =
        s.b.try_acquire_all(&resource("other"), &["x"], TTL)
            .await
            .unwrap();
    assert!(other.is_some());
}

pub async fn acquire_all_waits_for_the_overlapping_holder(s: &MultiSuite) {
    let g = resource("group-wait");
    let holder =
        s.a.try_acquire_all(&g, &["b"], Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
    let b = Arc::clone(&s.b);
    let g2 = g.clone();
    let waiter = tokio::spawn(async move {
        b.acquire_all(
            &g2,
            &["a", "b"],
            AcquireOptions::new(TTL).wait(Duration::from_secs(20)),
        )
        .await
        .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    assert!(holder.release().await.unwrap());
    let both = waiter.await.unwrap();
    assert!(
        released.elapsed() < Duration::from_millis(700),
        "{:?}",
        released.elapsed()
    );
    both.release().await.unwrap();
}

pub async fn an_expired_multi_hold_is_not_released_by_its_old_owner(s: &MultiSuite) {
    let g = resource("group-expire");
    let old =
        s.a.try_acquire_all(&g, &["p", "q"], Duration::from_millis(200))
            .await
            .unwrap()
            .unwrap();
    s.time.pass(Duration::from_millis(350)).await;
    let new =
        s.b.try_acquire_all(&g, &["q"], TTL)
            .await
            .unwrap()
            .expect("expired");
    assert!(matches!(old.extend(TTL).await, Err(Error::NotHeld { .. })));
    assert!(!old.release().await.unwrap());
    assert!(
        new.is_held().await.unwrap(),
        "the old owner's release left q alone"
    );
    new.release().await.unwrap();
    for bad in [&[][..], &["a", "a"][..], &["a{b}"][..]] {
        let err = s.a.try_acquire_all(&g, bad, TTL).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_) | Error::Core(_)),
            "{bad:?}: {err:?}"
        );
    }
}
