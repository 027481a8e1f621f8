//! The tower-sessions store against the same class of race as rotation (issue 18, item
//! 8): a create or save that logs a record in, dropped (a crash, a cancelled request)
//! between its round trips, must never leave a live logged-in session that the user
//! index does not list, since `logout_everywhere` could not end it. A pause point stops
//! it between the steps; the test drops it there.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use redkit_core::Redis;
use redkit_session::tower_sessions_core as tsc;
use redkit_session::tower_sessions_core::session::{Id, Record};
use redkit_session::{RedisSessionStore, SessionConfig, SessionId, SessionStore, hooks};

fn handle_of(id: &Id) -> String {
    SessionId::presented(id.to_string())
        .handle()
        .as_str()
        .to_string()
}

/// Runs `op` until it stops at the pause point, then drops it there.
async fn dropped_midway(handle: &str, op: impl Future<Output = ()> + Send + 'static) {
    let mut pause = hooks::pause("tower:step", handle);
    let task = tokio::spawn(op);
    let stopped = tokio::time::timeout(Duration::from_secs(5), pause.reached()).await;
    task.abort();
    let _ = task.await;
    drop(pause);
    stopped.expect("the write never reached its pause point");
}

/// Whether a record that loads is listed in `user`'s index.
async fn live_and_unlisted(store: &RedisSessionStore, id: &Id, user: &str) -> bool {
    let live = tsc::SessionStore::load(store, id)
        .await
        .unwrap()
        .is_some_and(|r| r.data.get("uid") == Some(&serde_json::json!(user)));
    let handle = handle_of(id);
    let listed = store
        .sessions_of(user)
        .await
        .unwrap()
        .iter()
        .any(|i| i.handle.as_str() == handle);
    live && !listed
}

async fn dropped_tower_writes(redis: Redis) {
    let store = RedisSessionStore::new(
        &redis,
        SessionConfig::new()
            .prefix(redkit_testkit::prefix("tower-race"))
            .tower_user_key("uid"),
    )
    .unwrap();
    let user = redkit_testkit::prefix("ann");
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    // a create of a logged-in record
    let record = Record {
        id: Id::default(),
        data: [("uid".to_string(), serde_json::json!(user))].into(),
        expiry_date: expiry,
    };
    let id = record.id;
    let s = store.clone();
    dropped_midway(&handle_of(&id), async move {
        let mut record = record;
        let _ = tsc::SessionStore::create(&s, &mut record).await;
    })
    .await;
    assert!(
        !live_and_unlisted(&store, &id, &user).await,
        "a dropped create left a logged-in session the index does not list"
    );
    // a save that logs an anonymous record in
    let mut anonymous = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: expiry,
    };
    tsc::SessionStore::create(&store, &mut anonymous)
        .await
        .unwrap();
    let id = anonymous.id;
    let mut logged_in = anonymous.clone();
    logged_in
        .data
        .insert("uid".to_string(), serde_json::json!(user));
    let s = store.clone();
    dropped_midway(&handle_of(&id), async move {
        let _ = tsc::SessionStore::save(&s, &logged_in).await;
    })
    .await;
    assert!(
        !live_and_unlisted(&store, &id, &user).await,
        "a dropped save left a logged-in session the index does not list"
    );
    // a logout everywhere between the create's steps (a login in flight): the create
    // fails and leaves nothing live
    let record = Record {
        id: Id::default(),
        data: [("uid".to_string(), serde_json::json!(user))].into(),
        expiry_date: expiry,
    };
    let first = record.id;
    let mut pause = hooks::pause("tower:step", &handle_of(&first));
    let s = store.clone();
    let task = tokio::spawn(async move {
        let mut record = record;
        tsc::SessionStore::create(&s, &mut record)
            .await
            .map(|_| record)
    });
    tokio::time::timeout(Duration::from_secs(5), pause.reached())
        .await
        .unwrap();
    store.logout_everywhere(&user, None).await.unwrap();
    pause.resume();
    let created = task.await.unwrap();
    assert!(
        created.is_err(),
        "a create in flight during a logout everywhere survived it: {created:?}"
    );
    assert!(
        tsc::SessionStore::load(&store, &first)
            .await
            .unwrap()
            .is_none()
    );
    // undisturbed, both work and are listed
    let mut record = Record {
        id: Id::default(),
        data: [("uid".to_string(), serde_json::json!(user))].into(),
        expiry_date: expiry,
    };
    tsc::SessionStore::create(&store, &mut record)
        .await
        .unwrap();
    // (the dropped save's index entry made the logout above end `anonymous` as well:
    // it was being logged in as the user)
    let mut other = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: expiry,
    };
    tsc::SessionStore::create(&store, &mut other).await.unwrap();
    other
        .data
        .insert("uid".to_string(), serde_json::json!(user));
    tsc::SessionStore::save(&store, &other).await.unwrap();
    let listed = store.sessions_of(&user).await.unwrap();
    for id in [record.id, other.id] {
        assert!(
            listed.iter().any(|i| i.handle.as_str() == handle_of(&id)),
            "{id:?} not listed"
        );
    }
    assert_eq!(store.logout_everywhere(&user, None).await.unwrap(), 2);
    for id in [record.id, other.id] {
        assert!(
            tsc::SessionStore::load(&store, &id)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tower_write_leaves_no_unlisted_login_standalone() {
    dropped_tower_writes(redkit_testkit::redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tower_write_leaves_no_unlisted_login_cluster() {
    dropped_tower_writes(redkit_testkit::cluster().redis().await).await;
}
