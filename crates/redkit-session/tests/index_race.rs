//! The user index against listings and revocations that overlap a move (issue 18, item
//! 8): `sessions_of` drops entries whose sessions it finds gone, and a move indexes its
//! new handle before the session exists; `revoke` takes a handle out of the index before
//! it deletes the key, and a rotation retires that very handle. Pause points stop each
//! side between its round trips. Standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::Redis;
use redkit_session::{ClientInfo, RedisSessionStore, SessionConfig, SessionStore, hooks};

fn stores(a: &Redis, b: &Redis) -> (Arc<RedisSessionStore>, Arc<RedisSessionStore>) {
    let config = SessionConfig::new().prefix(redkit_testkit::prefix("sess-index"));
    (
        Arc::new(RedisSessionStore::new(a, config.clone()).unwrap()),
        Arc::new(RedisSessionStore::new(b, config).unwrap()),
    )
}

async fn reached(pause: &mut hooks::Pause, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), pause.reached())
        .await
        .unwrap_or_else(|_| panic!("never reached {what}"));
}

/// A `sessions_of` that reads a move's new handle before its session is written, and
/// drops the entry after the move committed: the moved session would live outside the
/// index, so `logout_everywhere` could not end it.
async fn a_listing_during_a_move_never_unlists_the_session(a: Redis, b: Redis) {
    let (one, two) = stores(&a, &b);
    let mut failed = Vec::new();
    for login in [false, true] {
        let user = redkit_testkit::prefix("listing");
        let mut session = one.create().await.unwrap();
        if !login {
            one.login(&mut session, &user, ClientInfo::default())
                .await
                .unwrap();
        }
        // the new handle is indexed, its session not yet written
        let mut moving = hooks::pause("copy:read", session.handle().as_str());
        let task = tokio::spawn({
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
        reached(&mut moving, "copy:read").await;
        let mut listing = hooks::pause("sessions_of:read", &user);
        let list = tokio::spawn({
            let (two, user) = (two.clone(), user.clone());
            async move { two.sessions_of(&user).await }
        });
        reached(&mut listing, "sessions_of:read").await;
        moving.resume();
        let (result, after) = task.await.unwrap();
        listing.resume();
        list.await.unwrap().unwrap();
        result.unwrap();
        assert!(two.load(after.id()).await.unwrap().is_some());
        let listed = two.sessions_of(&user).await.unwrap();
        if !listed.iter().any(|i| i.handle == after.handle()) {
            failed.push(format!(
                "login {login}: the moved session lives but the index lost it"
            ));
        }
        two.logout_everywhere(&user, None).await.unwrap();
        if two.load(after.id()).await.unwrap().is_some() {
            failed.push(format!(
                "login {login}: the moved session survived logout everywhere"
            ));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// A `revoke` of a session's handle that overlaps its rotation (the rotation committed,
/// the revoke took the handle, the rotation deletes the old key before the revoke does):
/// the revoke must end the session, or tell its caller it did not.
async fn a_revoke_during_a_rotation_ends_the_session(a: Redis, b: Redis) {
    let (one, two) = stores(&a, &b);
    let user = redkit_testkit::prefix("revoke");
    let mut session = one.create().await.unwrap();
    one.login(&mut session, &user, ClientInfo::default())
        .await
        .unwrap();
    let old = session.id().clone();
    let handle = session.handle();
    let mut committed = hooks::pause("rotate:committed", handle.as_str());
    let rotating = tokio::spawn({
        let one = one.clone();
        async move {
            let r = one.rotate(&mut session).await;
            (r, session)
        }
    });
    reached(&mut committed, "rotate:committed").await;
    let mut taken = hooks::pause("revoke:taken", handle.as_str());
    let revoke = tokio::spawn({
        let (two, user, handle) = (two.clone(), user.clone(), handle.clone());
        async move { two.revoke(&user, &handle).await }
    });
    // the revoke either stops after taking the handle, or finishes without it
    let stopped = tokio::time::timeout(Duration::from_secs(5), taken.reached()).await;
    committed.resume();
    let (result, after) = rotating.await.unwrap();
    drop(taken);
    let revoked = revoke.await.unwrap().unwrap();
    let lives = two.load(after.id()).await.unwrap().is_some() && result.is_ok();
    assert!(two.load(&old).await.unwrap().is_none());
    assert!(
        !(lives && (revoked || stopped.is_ok())),
        "the revoke took the handle (and replied {revoked}), the rotation gave {result:?} \
         and its session lives on"
    );
    if lives {
        // a revoke that lost to the rotation did not touch the new session, which is listed
        let listed = two.sessions_of(&user).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].handle, after.handle());
    }
}

/// Two moves of one session at once, one of which fails after marking it (too large):
/// the failed one must not take the other's mark off, or a save through the old id
/// meanwhile is acknowledged and then lost with the old session.
async fn a_failed_move_leaves_a_parallel_move_marked(a: Redis, b: Redis) {
    let (one, two) = stores(&a, &b);
    let mut session = one.create().await.unwrap();
    session.insert("x", &1).unwrap();
    one.save(&mut session).await.unwrap();
    let old = session.id().clone();
    let mut big = two.load(&old).await.unwrap().unwrap();
    big.insert("big", &"x".repeat(70 * 1024)).unwrap();
    let mut moving = hooks::pause("copy:read", session.handle().as_str());
    let task = tokio::spawn({
        let one = one.clone();
        async move {
            let r = one.rotate(&mut session).await;
            (r, session)
        }
    });
    reached(&mut moving, "copy:read").await;
    let e = two.rotate(&mut big).await.unwrap_err();
    assert!(matches!(e, redkit_session::Error::TooLarge { .. }), "{e:?}");
    let mut late = two.load(&old).await.unwrap().unwrap();
    late.insert("late", &1).unwrap();
    let saved = two.save(&mut late).await;
    moving.resume();
    let (result, after) = task.await.unwrap();
    result.unwrap();
    let now = two.load(after.id()).await.unwrap().unwrap();
    let carried = now.get::<i32>("late").unwrap() == Some(1);
    assert!(
        matches!(saved, Err(redkit_session::Error::Unknown)) || carried,
        "the save gave {saved:?} and the rotated session lacks its change"
    );
}

/// A login in flight while the user is logged out everywhere (its first new handle
/// indexed, then taken): it must end, not start over under a fresh id and outlive the
/// logout.
async fn a_login_in_flight_does_not_outlive_logout_everywhere(a: Redis, b: Redis) {
    let (one, two) = stores(&a, &b);
    let user = redkit_testkit::prefix("in-flight");
    let mut other = one.create().await.unwrap();
    one.login(&mut other, &user, ClientInfo::default())
        .await
        .unwrap();
    let mut session = one.create().await.unwrap();
    let mut pause = hooks::pause("copy:read", session.handle().as_str());
    let login = tokio::spawn({
        let (one, user) = (one.clone(), user.clone());
        async move {
            let r = one.login(&mut session, &user, ClientInfo::default()).await;
            (r, session)
        }
    });
    reached(&mut pause, "copy:read").await;
    two.logout_everywhere(&user, None).await.unwrap();
    pause.resume();
    let (result, after) = login.await.unwrap();
    assert!(
        matches!(result, Err(redkit_session::Error::Unknown)),
        "{result:?}"
    );
    assert!(
        two.load(after.id()).await.unwrap().is_none() || after.user().is_none(),
        "the login outlived the logout everywhere"
    );
    assert!(two.sessions_of(&user).await.unwrap().is_empty());
    // the anonymous session it was logging in lives on, savable
    let mut again = two
        .load(after.id())
        .await
        .unwrap()
        .expect("still anonymous");
    again.insert("k", &1).unwrap();
    two.save(&mut again).await.unwrap();
    // later logins work
    one.login(&mut again, &user, ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(two.sessions_of(&user).await.unwrap().len(), 1);
}

/// A login that evicted an older session (session limit) and died before deleting it:
/// the evicted session is out of the index but still loads; the next login of the user
/// must end it, not leave it to a `logout_everywhere` that may never come.
async fn a_dead_eviction_is_finished_by_the_next_login(a: Redis, b: Redis) {
    let config = SessionConfig::new()
        .prefix(redkit_testkit::prefix("sess-evict2"))
        .max_sessions(redkit_session::MaxSessions::EvictOldest(1));
    let one = Arc::new(RedisSessionStore::new(&a, config.clone()).unwrap());
    let two = RedisSessionStore::new(&b, config).unwrap();
    let user = redkit_testkit::prefix("evict");
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
    let mut third = two.create().await.unwrap();
    two.login(&mut third, &user, ClientInfo::default())
        .await
        .unwrap();
    assert!(
        two.load(first.id()).await.unwrap().is_none(),
        "a session evicted by a login that died outlived the next login"
    );
    let listed = two.sessions_of(&user).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].handle, third.handle());
}

/// A `revoke` of the new handle of a rotation under way (listed once its session is
/// written): the revoke replies `true`, so the session it names must end, including
/// the old id the rotation then falls back to.
async fn a_revoke_of_the_new_handle_ends_the_rotating_session(a: Redis, b: Redis) {
    let (one, two) = stores(&a, &b);
    let user = redkit_testkit::prefix("revoke-new");
    let mut session = one.create().await.unwrap();
    one.login(&mut session, &user, ClientInfo::default())
        .await
        .unwrap();
    let old = session.id().clone();
    let mut written = hooks::pause("rotate:written", session.handle().as_str());
    let rotating = tokio::spawn({
        let one = one.clone();
        async move {
            let r = one.rotate(&mut session).await;
            (r, session)
        }
    });
    reached(&mut written, "rotate:written").await;
    let listed = two.sessions_of(&user).await.unwrap();
    assert_eq!(listed.len(), 2, "the old and the new handle");
    let new = listed
        .iter()
        .find(|i| i.handle != old.handle())
        .unwrap()
        .handle
        .clone();
    assert!(two.revoke(&user, &new).await.unwrap());
    written.resume();
    let (result, after) = rotating.await.unwrap();
    assert!(
        matches!(result, Err(redkit_session::Error::Unknown)),
        "{result:?}"
    );
    assert!(
        two.load(&old).await.unwrap().is_none(),
        "revoke(new handle) replied true and the session lives on under its old id"
    );
    assert!(two.load(after.id()).await.unwrap().is_none());
    assert!(two.sessions_of(&user).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_races_standalone() {
    let (a, b) = (redkit_testkit::redis().await, redkit_testkit::redis().await);
    a_revoke_during_a_rotation_ends_the_session(a.clone(), b.clone()).await;
    a_failed_move_leaves_a_parallel_move_marked(a.clone(), b.clone()).await;
    a_login_in_flight_does_not_outlive_logout_everywhere(a.clone(), b.clone()).await;
    a_dead_eviction_is_finished_by_the_next_login(a.clone(), b.clone()).await;
    a_revoke_of_the_new_handle_ends_the_rotating_session(a.clone(), b.clone()).await;
    a_listing_during_a_move_never_unlists_the_session(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_races_cluster() {
    let cluster = redkit_testkit::cluster();
    let (a, b) = (cluster.redis().await, cluster.redis().await);
    a_revoke_during_a_rotation_ends_the_session(a.clone(), b.clone()).await;
    a_failed_move_leaves_a_parallel_move_marked(a.clone(), b.clone()).await;
    a_login_in_flight_does_not_outlive_logout_everywhere(a.clone(), b.clone()).await;
    a_dead_eviction_is_finished_by_the_next_login(a.clone(), b.clone()).await;
    a_revoke_of_the_new_handle_ends_the_rotating_session(a.clone(), b.clone()).await;
    a_listing_during_a_move_never_unlists_the_session(a, b).await;
}
