//! A key that holds something the lock did not write fails only the request it belongs
//! to, and leaves nothing held (issue 18, item 7: the Lua part).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::{Redis, redis};
use redkit_lock::{Error, Lock, LockAll, RedisLock};
use redkit_testkit as testkit;

const TTL: Duration = Duration::from_secs(10);

async fn exists(redis: &Redis, key: &str) -> bool {
    let n: i64 = redis.query(redis::cmd("EXISTS").arg(key)).await.unwrap();
    n == 1
}

/// Twenty concurrent acquisitions, coalesced into batches when `batching` is on: three
/// of them have a bad key (a list at the fencing counter, a list at the lock key, a
/// counter at its maximum). Those three get `Error::Unusable` with nothing held; every
/// other caller gets its lock.
async fn one_bad_request_leaves_the_others_alone(redis: Redis, batching: bool) {
    let prefix = testkit::prefix("batch-errors");
    let locks = Arc::new(
        RedisLock::builder(redis.clone())
            .prefix(&prefix)
            .batching(batching)
            .build()
            .unwrap(),
    );
    let lock_key = |r: &str| format!("{prefix}:lock:{{{r}}}");
    let fence_key = |r: &str| format!("{prefix}:lock:{{{r}}}:fence");
    let _: i64 = redis
        .query(redis::cmd("RPUSH").arg(fence_key("bad-fence")).arg("x"))
        .await
        .unwrap();
    let _: i64 = redis
        .query(redis::cmd("RPUSH").arg(lock_key("bad-lock")).arg("x"))
        .await
        .unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg(fence_key("exhausted")).arg(i64::MAX))
        .await
        .unwrap();
    let mut names: Vec<String> = (0..17).map(|i| format!("good{i}")).collect();
    names.insert(5, "bad-fence".into());
    names.insert(10, "bad-lock".into());
    names.insert(15, "exhausted".into());
    let tasks: Vec<_> = names
        .iter()
        .map(|r| {
            let (locks, r) = (Arc::clone(&locks), r.clone());
            tokio::spawn(async move { locks.try_acquire(&r, TTL).await })
        })
        .collect();
    let mut guards = Vec::new();
    for (name, task) in names.iter().zip(tasks) {
        let result = task.await.unwrap();
        if name.starts_with("good") {
            guards.push(result.unwrap().expect("a free lock"));
        } else {
            let err = result.unwrap_err();
            assert!(matches!(err, Error::Unusable { .. }), "{name}: {err:?}");
        }
    }
    for bad in ["bad-fence", "exhausted"] {
        assert!(
            !exists(&redis, &lock_key(bad)).await,
            "{bad}: the caller got an error but its lock is held"
        );
    }
    let kind: String = redis
        .query(redis::cmd("TYPE").arg(lock_key("bad-lock")))
        .await
        .unwrap();
    assert_eq!(kind, "list", "a foreign key is left as it was");
    for g in guards {
        assert!(g.release().await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_request_leaves_the_others_alone_batched() {
    one_bad_request_leaves_the_others_alone(testkit::redis().await, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_request_leaves_the_others_alone_unbatched() {
    one_bad_request_leaves_the_others_alone(testkit::redis().await, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_request_leaves_the_others_alone_on_cluster() {
    one_bad_request_leaves_the_others_alone(testkit::cluster().redis().await, true).await;
}

/// Readers, writers, permits and groups whose fencing counter is unusable: an error, and
/// no hold written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_counter_leaves_no_hold_of_any_kind() {
    let redis = testkit::redis().await;
    let prefix = testkit::prefix("kind-errors");
    let locks = RedisLock::builder(redis.clone())
        .prefix(&prefix)
        .build()
        .unwrap();
    let list = |key: String| {
        let redis = redis.clone();
        async move {
            let _: i64 = redis
                .query(redis::cmd("RPUSH").arg(key).arg("x"))
                .await
                .unwrap();
        }
    };
    list(format!("{prefix}:rw:{{r}}:fence")).await;
    list(format!("{prefix}:sem:{{r}}:fence")).await;
    list(format!("{prefix}:multi:{{g}}:fence")).await;
    for (view, held) in [
        (locks.write(), format!("{prefix}:rw:{{r}}:writer")),
        (locks.read(), format!("{prefix}:rw:{{r}}:readers")),
        (
            locks.semaphore(3).unwrap(),
            format!("{prefix}:sem:{{r}}:holders"),
        ),
    ] {
        let err = view.try_acquire("r", TTL).await.unwrap_err();
        assert!(matches!(err, Error::Unusable { .. }), "{err:?}");
        assert!(
            !exists(&redis, &held).await,
            "{held} is held after an error"
        );
    }
    let err = locks
        .try_acquire_all("g", &["a", "b"], TTL)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unusable { .. }), "{err:?}");
    for r in ["a", "b"] {
        assert!(!exists(&redis, &format!("{prefix}:multi:{{g}}:r:{r}")).await);
    }
    // a list where the writer key belongs reports the writer key
    list(format!("{prefix}:rw:{{w}}:writer")).await;
    let err = locks.write().try_acquire("w", TTL).await.unwrap_err();
    assert!(matches!(err, Error::Unusable { .. }), "{err:?}");
}

/// A wrong type at the waiting writers' key: the write-acquire script must fail before it
/// writes anything (its last step, clearing the caller's intent, used to come after the
/// writer key was set and the counter incremented: the script then failed with the lock
/// held and the token spent). Run as `EVAL` so no client-side clean-up hides it.
#[tokio::test]
async fn write_acquire_with_a_bad_waiting_set_writes_nothing() {
    let redis = testkit::redis().await;
    let prefix = testkit::prefix("waiting-wrongtype");
    let writer = format!("{prefix}:rw:{{r}}:writer");
    let readers = format!("{prefix}:rw:{{r}}:readers");
    let fence = format!("{prefix}:rw:{{r}}:fence");
    let waiting = format!("{prefix}:rw:{{r}}:writers-waiting");
    let _: () = redis
        .query(redis::cmd("SET").arg(&waiting).arg("not a set"))
        .await
        .unwrap();
    for intent in [0, 3000] {
        let answer: redkit_core::Result<Vec<i64>> = redis
            .query(
                redis::cmd("EVAL")
                    .arg(include_str!("../lua/write_acquire.lua"))
                    .arg(4)
                    .arg(&writer)
                    .arg(&readers)
                    .arg(&fence)
                    .arg(&waiting)
                    .arg("owner")
                    .arg(10_000)
                    .arg(intent),
            )
            .await;
        assert!(answer.is_err(), "intent {intent}: {answer:?}");
        assert!(
            !exists(&redis, &writer).await,
            "intent {intent}: writer key left held"
        );
        assert!(
            !exists(&redis, &fence).await,
            "intent {intent}: a token was spent"
        );
    }
}

/// Releases batched together when one lock key was overwritten with another type: that
/// caller's release answers "not held", every other caller's lock is released (before,
/// the batch script failed at the bad key, after releasing the ones before it, and every
/// caller of the batch got an error with the later locks left held for their TTL).
#[tokio::test]
async fn one_bad_key_in_a_release_batch_fails_no_other_release() {
    let redis = testkit::redis().await;
    let prefix = testkit::prefix("release-batch-errors");
    let locks = RedisLock::builder(redis.clone())
        .prefix(&prefix)
        .batching(true)
        .build()
        .unwrap();
    let lock_key = |r: &str| format!("{prefix}:lock:{{{r}}}");
    let mut guards = Vec::new();
    for i in 0..12 {
        let r = format!("r{i}");
        guards.push(locks.try_acquire(&r, TTL).await.unwrap().unwrap());
    }
    // the first lock's key is replaced by a list
    let _: i64 = redis
        .query(redis::cmd("DEL").arg(lock_key("r0")))
        .await
        .unwrap();
    let _: i64 = redis
        .query(redis::cmd("RPUSH").arg(lock_key("r0")).arg("x"))
        .await
        .unwrap();
    // released at once: the calls go in one batch, the bad one first
    let answers = futures_util::future::join_all(guards.into_iter().map(|g| g.release())).await;
    for (i, answer) in answers.into_iter().enumerate() {
        let r = format!("r{i}");
        if i == 0 {
            assert!(!answer.unwrap_or(false), "{r}: not held");
        } else {
            assert!(answer.unwrap(), "{r}: released");
            assert!(!exists(&redis, &lock_key(&r)).await, "{r} is left held");
        }
    }
}

/// A group whose middle resource's key was overwritten with another type: releasing the
/// group must still free the other resources (before, the script failed at the bad key
/// after deleting the ones before it, and the ones after stayed held for their TTL).
#[tokio::test]
async fn a_bad_key_in_a_group_does_not_keep_the_rest_held() {
    let redis = testkit::redis().await;
    let prefix = testkit::prefix("multi-release-errors");
    let locks = RedisLock::builder(redis.clone())
        .prefix(&prefix)
        .build()
        .unwrap();
    let key = |r: &str| format!("{prefix}:multi:{{g}}:r:{r}");
    let guard = locks
        .try_acquire_all("g", &["a", "b", "c"], TTL)
        .await
        .unwrap()
        .unwrap();
    let _: i64 = redis.query(redis::cmd("DEL").arg(key("b"))).await.unwrap();
    let _: i64 = redis
        .query(redis::cmd("RPUSH").arg(key("b")).arg("x"))
        .await
        .unwrap();
    let released = guard.release().await;
    assert!(!released.unwrap_or(false), "b was not held any more");
    for r in ["a", "c"] {
        assert!(!exists(&redis, &key(r)).await, "{r} is left held");
    }
}
