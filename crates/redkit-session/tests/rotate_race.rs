//! A revocation that overlaps a rotation ends the session (issue 18, item 8): rotate is
//! stopped at each of its steps by a pause point while another handle logs the user out
//! everywhere, or deletes the old id, and afterwards no id of the session may load and
//! the index may not miss a live session. Standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::Redis;
use redkit_session::{
    ClientInfo, Error, MaxSessions, RedisSessionStore, SessionConfig, SessionStore, hooks,
};

/// The points rotate passes, in order (see `RedisSessionStore::rotate`).
const POINTS: [&str; 4] = [
    "rotate:indexed",
    "copy:read",
    "rotate:written",
    "rotate:committed",
];

#[derive(Debug, Clone, Copy)]
enum Revoke {
    LogoutEverywhere,
    DeleteOld,
}

/// Two stores (two processes) on a fresh prefix.
fn stores(a: &Redis, b: &Redis) -> (Arc<RedisSessionStore>, RedisSessionStore) {
    let config = SessionConfig::new().prefix(redkit_testkit::prefix("sess-race"));
    (
        Arc::new(RedisSessionStore::new(a, config.clone()).unwrap()),
        RedisSessionStore::new(b, config).unwrap(),
    )
}

async fn reached(pause: &mut hooks::Pause, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), pause.reached())
        .await
        .unwrap_or_else(|_| panic!("never reached {what}"));
}

/// What went wrong in one interleaving, if anything.
async fn race(a: Redis, b: Redis, point: &'static str, revoke: Revoke) -> Option<String> {
    let (one, two) = stores(&a, &b);
    let mut session = one.create().await.unwrap();
    one.login(&mut session, "ann", ClientInfo::default())
        .await
        .unwrap();
    session.insert("cart", &[1]).unwrap();
    let old = session.id().clone();
    let mut pause = hooks::pause(point, session.handle().as_str());
    let rotating = tokio::spawn({
        let one = one.clone();
        async move {
            let r = one.rotate(&mut session).await;
            (r, session)
        }
    });
    reached(&mut pause, point).await;
    match revoke {
        Revoke::LogoutEverywhere => {
            two.logout_everywhere("ann", None).await.unwrap();
        }
        Revoke::DeleteOld => {
            two.delete(&old).await.unwrap();
        }
    }
    pause.resume();
    let (result, after) = rotating.await.unwrap();
    let ctx = format!("{revoke:?} at {point}: rotate gave {result:?}");
    if two.load(&old).await.unwrap().is_some() {
        return Some(format!("{ctx}: the old id still loads"));
    }
    if two.load(after.id()).await.unwrap().is_some() {
        return Some(format!("{ctx}: the new id outlived the revocation"));
    }
    // whatever lives is listed, so a later logout everywhere ends it
    if !two.sessions_of("ann").await.unwrap().is_empty() {
        return Some(format!("{ctx}: the index lists a session"));
    }
    // and the caller learns that its session ended
    if !matches!(result, Err(Error::Unknown)) {
        return Some(ctx);
    }
    None
}

async fn all_races(a: Redis, b: Redis) {
    let mut failed = Vec::new();
    for revoke in [Revoke::LogoutEverywhere, Revoke::DeleteOld] {
        for point in POINTS {
            failed.extend(race(a.clone(), b.clone(), point, revoke).await);
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// A logout everywhere that has taken the user's handles out of the index but not yet
/// deleted their keys: a rotation copying the session meanwhile must not commit, or its
/// new session would live unlisted (and, had the logout died there, for good).
async fn rotate_during_a_slow_logout(a: Redis, b: Redis) {
    let (one, two) = stores(&a, &b);
    let two = Arc::new(two);
    let user = redkit_testkit::prefix("slow-logout");
    let mut session = one.create().await.unwrap();
    one.login(&mut session, &user, ClientInfo::default())
        .await
        .unwrap();
    let old = session.id().clone();
    let mut copying = hooks::pause("copy:read", session.handle().as_str());
    let rotating = tokio::spawn({
        let one = one.clone();
        async move {
            let r = one.rotate(&mut session).await;
            (r, session)
        }
    });
    reached(&mut copying, "copy:read").await;
    let mut deleting = hooks::pause("logout:taken", &user);
    let logout = tokio::spawn({
        let (two, user) = (two.clone(), user.clone());
        async move { two.logout_everywhere(&user, None).await }
    });
    reached(&mut deleting, "logout:taken").await;
    copying.resume();
    let (result, after) = rotating.await.unwrap();
    // before the logout deletes anything: a rotated session would be live and unlisted
    let unlisted = result.is_ok()
        && two.load(after.id()).await.unwrap().is_some()
        && two.sessions_of(&user).await.unwrap().is_empty();
    deleting.resume();
    logout.await.unwrap().unwrap();
    assert!(
        matches!(result, Err(Error::Unknown)),
        "rotate committed after its handles were taken: {result:?} (live and unlisted: {unlisted})"
    );
    assert!(two.load(&old).await.unwrap().is_none());
    assert!(two.load(after.id()).await.unwrap().is_none());
}

/// A logout everywhere that dies after taking the handles (its future dropped, as by a
/// crash or a cancelled request): the next one still ends those sessions.
async fn a_dead_logout_everywhere_is_finished_by_the_next(a: Redis, b: Redis) {
    let (one, two) = stores(&a, &b);
    let user = redkit_testkit::prefix("dead-logout");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut s = one.create().await.unwrap();
        one.login(&mut s, &user, ClientInfo::default())
            .await
            .unwrap();
        ids.push(s.id().clone());
    }
    let mut taken = hooks::pause("logout:taken", &user);
    let dying = tokio::spawn({
        let (one, user) = (one.clone(), user.clone());
        async move { one.logout_everywhere(&user, None).await }
    });
    reached(&mut taken, "logout:taken").await;
    dying.abort();
    let _ = dying.await;
    drop(taken);
    assert!(
        one.load(&ids[0]).await.unwrap().is_some(),
        "not deleted yet"
    );
    assert_eq!(two.logout_everywhere(&user, None).await.unwrap(), 3);
    for id in &ids {
        assert!(two.load(id).await.unwrap().is_none());
    }
}

/// A login whose session is deleted (logged out) while the login copies it: the login
/// fails and leaves no session behind.
async fn a_delete_during_login_ends_the_login(a: Redis, b: Redis) {
    let (one, two) = stores(&a, &b);
    let user = redkit_testkit::prefix("login-race");
    for point in ["copy:read", "login:written"] {
        let mut session = one.create().await.unwrap();
        let old = session.id().clone();
        let mut pause = hooks::pause(point, session.handle().as_str());
        let login = tokio::spawn({
            let (one, user) = (one.clone(), user.clone());
            async move {
                let r = one.login(&mut session, &user, ClientInfo::default()).await;
                (r, session)
            }
        });
        reached(&mut pause, point).await;
        assert!(two.delete(&old).await.unwrap());
        pause.resume();
        let (result, after) = login.await.unwrap();
        assert!(matches!(result, Err(Error::Unknown)), "{point}: {result:?}");
        assert!(two.load(after.id()).await.unwrap().is_none(), "{point}");
        assert!(two.sessions_of(&user).await.unwrap().is_empty(), "{point}");
    }
}

/// A save through the old id while a rotation or a login moves the session: it fails
/// with `Error::Unknown` (as after the move), or its change reaches the new session;
/// never `Ok` and lost. And a move that fails for another reason leaves the session
/// savable.
async fn a_save_during_a_move_is_refused_not_lost(a: Redis, b: Redis) {
    let (one, two) = stores(&a, &b);
    let user = redkit_testkit::prefix("save-race");
    for login in [false, true] {
        let mut session = one.create().await.unwrap();
        if login {
            one.login(&mut session, &user, ClientInfo::default())
                .await
                .unwrap();
        }
        let old = session.id().clone();
        let mut pause = hooks::pause("copy:read", session.handle().as_str());
        let moving = tokio::spawn({
            let (one, user) = (one.clone(), user.clone());
            async move {
                let r = if login {
                    one.login(&mut session, &user, ClientInfo::default())
                        .await
                        .map(|_| ())
                } else {
                    one.rotate(&mut session).await
                };
                (r, session)
            }
        });
        reached(&mut pause, "copy:read").await;
        let mut late = two.load(&old).await.unwrap().unwrap();
        late.insert("late", &1).unwrap();
        let saved = two.save(&mut late).await;
        pause.resume();
        let (result, after) = moving.await.unwrap();
        result.unwrap();
        let now = two.load(after.id()).await.unwrap().unwrap();
        let carried = now.get::<i32>("late").unwrap() == Some(1);
        assert!(
            matches!(saved, Err(Error::Unknown)) || carried,
            "login {login}: the save gave {saved:?} and the new session lacks its change"
        );
    }
    // a logout everywhere that keeps the rotating session takes the new handle: the
    // rotation fails, and the kept session stays usable and savable
    let mut kept = one.create().await.unwrap();
    one.login(&mut kept, &user, ClientInfo::default())
        .await
        .unwrap();
    let kept_id = kept.id().clone();
    let mut pause = hooks::pause("copy:read", kept.handle().as_str());
    let rotating = tokio::spawn({
        let one = one.clone();
        async move { one.rotate(&mut kept).await }
    });
    reached(&mut pause, "copy:read").await;
    two.logout_everywhere(&user, Some(&kept_id)).await.unwrap();
    pause.resume();
    let result = rotating.await.unwrap();
    assert!(matches!(result, Err(Error::Unknown)), "{result:?}");
    let mut still = two
        .load(&kept_id)
        .await
        .unwrap()
        .expect("the kept session lives");
    still.insert("after", &1).unwrap();
    two.save(&mut still).await.unwrap();
    assert_eq!(two.sessions_of(&user).await.unwrap().len(), 1);
    // a move refused for another reason (too large) leaves the session savable
    let mut session = one.create().await.unwrap();
    session.insert("big", &"x".repeat(70 * 1024)).unwrap();
    let e = one.rotate(&mut session).await.unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    let mut again = two.load(session.id()).await.unwrap().unwrap();
    again.insert("small", &1).unwrap();
    two.save(&mut again).await.unwrap();
}

/// A revoke, or a login evicting an older session, dropped after it took the handle out
/// of the index and before it deleted the session: the session is not lost to
/// `logout_everywhere` (it waits in the `revoking` set), which ends it.
async fn a_dropped_eviction_or_revoke_is_finished_by_logout_everywhere(a: Redis, b: Redis) {
    let config = SessionConfig::new()
        .prefix(redkit_testkit::prefix("sess-evict"))
        .max_sessions(MaxSessions::EvictOldest(1));
    let one = Arc::new(RedisSessionStore::new(&a, config.clone()).unwrap());
    let two = RedisSessionStore::new(&b, config).unwrap();
    let user = redkit_testkit::prefix("evict");
    // a login that evicts `first`, dropped before it deletes it
    let mut first = one.create().await.unwrap();
    one.login(&mut first, &user, ClientInfo::default())
        .await
        .unwrap();
    let mut second = one.create().await.unwrap();
    let mut pause = hooks::pause("login:written", second.handle().as_str());
    let login = tokio::spawn({
        let (one, user) = (one.clone(), user.clone());
        async move {
            let _ = one.login(&mut second, &user, ClientInfo::default()).await;
        }
    });
    reached(&mut pause, "login:written").await;
    login.abort();
    let _ = login.await;
    drop(pause);
    assert!(
        two.load(first.id()).await.unwrap().is_some(),
        "evicted, not yet deleted"
    );
    two.logout_everywhere(&user, None).await.unwrap();
    assert!(
        two.load(first.id()).await.unwrap().is_none(),
        "an evicted session whose login died survived logout everywhere"
    );
    // a revoke dropped between its steps
    let mut third = one.create().await.unwrap();
    one.login(&mut third, &user, ClientInfo::default())
        .await
        .unwrap();
    let handle = third.handle();
    let mut pause = hooks::pause("revoke:taken", handle.as_str());
    let revoke = tokio::spawn({
        let (one, user, handle) = (one.clone(), user.clone(), handle.clone());
        async move {
            let _ = one.revoke(&user, &handle).await;
        }
    });
    reached(&mut pause, "revoke:taken").await;
    revoke.abort();
    let _ = revoke.await;
    drop(pause);
    two.logout_everywhere(&user, None).await.unwrap();
    assert!(
        two.load(third.id()).await.unwrap().is_none(),
        "a session whose revoke died survived logout everywhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_during_rotate_ends_the_session_standalone() {
    let (a, b) = (redkit_testkit::redis().await, redkit_testkit::redis().await);
    all_races(a.clone(), b.clone()).await;
    rotate_during_a_slow_logout(a.clone(), b.clone()).await;
    a_dead_logout_everywhere_is_finished_by_the_next(a.clone(), b.clone()).await;
    a_delete_during_login_ends_the_login(a.clone(), b.clone()).await;
    a_save_during_a_move_is_refused_not_lost(a.clone(), b.clone()).await;
    a_dropped_eviction_or_revoke_is_finished_by_logout_everywhere(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_during_rotate_ends_the_session_cluster() {
    let cluster = redkit_testkit::cluster();
    let (a, b) = (cluster.redis().await, cluster.redis().await);
    all_races(a.clone(), b.clone()).await;
    rotate_during_a_slow_logout(a.clone(), b.clone()).await;
    a_dead_logout_everywhere_is_finished_by_the_next(a.clone(), b.clone()).await;
    a_delete_during_login_ends_the_login(a.clone(), b.clone()).await;
    a_save_during_a_move_is_refused_not_lost(a.clone(), b.clone()).await;
    a_dropped_eviction_or_revoke_is_finished_by_logout_everywhere(a, b).await;
}
