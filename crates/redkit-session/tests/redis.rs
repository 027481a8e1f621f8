//! Redis-only behaviour: parallel logins against a limit, the user index's own expiry,
//! real TTLs, undecodable stored data, ids kept out of keys and logs, a server that goes
//! away, and the tower-sessions store's create/save rules.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redkit_core::redis::cmd;
use redkit_session::tower_sessions_core as tsc;
use redkit_session::tower_sessions_core::session::{Id, Record};
use redkit_session::{
    ClientInfo, Error, MaxSessions, RedisSessionStore, SessionConfig, SessionStore,
};

fn config() -> SessionConfig {
    SessionConfig::new().prefix(redkit_testkit::prefix("sess"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_logins_never_leave_more_than_the_limit() {
    let (a, b) = (redkit_testkit::redis().await, redkit_testkit::redis().await);
    let config = config().max_sessions(MaxSessions::EvictOldest(3));
    let stores = [
        Arc::new(RedisSessionStore::new(&a, config.clone()).unwrap()),
        Arc::new(RedisSessionStore::new(&b, config).unwrap()),
    ];
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut s = store.create().await.unwrap();
            match store.login(&mut s, "ann", ClientInfo::default()).await {
                Ok(evicted) => {
                    assert!(!evicted.contains(&s.handle()));
                    (Some(s.id().clone()), evicted)
                }
                // evicted before its session existed, on every attempt: it did not
                // happen, and what it evicted on the way is reported
                Err(Error::LoginDisplaced { evicted }) => (None, evicted),
                Err(e) => panic!("{e:?}"),
            }
        }));
    }
    let mut ids = Vec::new();
    let mut evicted = std::collections::HashSet::new();
    for t in tasks {
        let (id, gone) = t.await.unwrap();
        ids.extend(id);
        evicted.extend(gone);
    }
    let mut live = 0;
    for id in &ids {
        let alive = stores[0].load(id).await.unwrap().is_some();
        // every successful login is either alive or was reported evicted, never both
        assert_ne!(alive, evicted.contains(&id.handle()), "{id:?}");
        live += usize::from(alive);
    }
    assert_eq!(live, 3, "exactly the limit survives");
    assert_eq!(stores[1].sessions_of("ann").await.unwrap().len(), 3);
    let key = stores[0].user_key("ann").unwrap();
    let card: u64 = a.query(cmd("ZCARD").arg(key.as_str())).await.unwrap();
    assert_eq!(card, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_carry_real_ttls_and_the_index_expires_with_its_sessions() {
    let redis = redkit_testkit::redis().await;
    let store = RedisSessionStore::new(
        &redis,
        config()
            .idle_timeout(Duration::from_secs(1))
            .touch_every(Duration::from_millis(100))
            .absolute_timeout(Duration::from_secs(3)),
    )
    .unwrap();
    let mut s = store.create().await.unwrap();
    store
        .login(&mut s, "ann", ClientInfo::default())
        .await
        .unwrap();
    let key = store.session_key(&s.handle()).unwrap();
    let pttl: i64 = redis.query(cmd("PTTL").arg(key.as_str())).await.unwrap();
    assert!((800..=1000).contains(&pttl), "idle ttl, got {pttl}");
    let index = store.user_key("ann").unwrap();
    let at: i64 = redis
        .query(cmd("PEXPIRETIME").arg(index.as_str()))
        .await
        .unwrap();
    let deadline = s.deadline().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(
        at,
        deadline.as_millis() as i64 + 60_000,
        "the index ends a minute after its last session (clock skew between cluster nodes)"
    );
    // near the deadline, a touch cannot push the key past it
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let _ = store.touch(s.id()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = store.touch(s.id()).await;
    let pttl: i64 = redis.query(cmd("PTTL").arg(key.as_str())).await.unwrap();
    assert!(pttl <= 300, "capped by the absolute deadline, got {pttl}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let exists: i64 = redis.query(cmd("EXISTS").arg(key.as_str())).await.unwrap();
    assert_eq!(exists, 0, "the session key expired by itself");
    assert!(store.sessions_of("ann").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_stored_data_is_a_codec_error_not_a_broken_session() {
    let redis = redkit_testkit::redis().await;
    let store = RedisSessionStore::new(&redis, config()).unwrap();
    let mut s = store.create().await.unwrap();
    s.insert("ok", &1).unwrap();
    store.save(&mut s).await.unwrap();
    let key = store.session_key(&s.handle()).unwrap();
    let _: () = redis
        .query(cmd("HSET").arg(key.as_str()).arg("d:bad").arg("{not json"))
        .await
        .unwrap();
    let loaded = store.load(s.id()).await.unwrap().unwrap();
    assert_eq!(loaded.get::<i32>("ok").unwrap(), Some(1));
    assert!(matches!(
        loaded.get::<i32>("bad").unwrap_err(),
        Error::Codec(_)
    ));
    // stored timestamps at the ends of i64 are checked without overflow (no panic);
    // a last touch at i64::MAX is in the future, so the session is not idle
    for touched in [i64::MAX, i64::MIN] {
        let _: () = redis
            .query(cmd("HSET").arg(key.as_str()).arg("_t").arg(touched))
            .await
            .unwrap();
        let loaded = store.load(s.id()).await.unwrap();
        assert_eq!(loaded.is_some(), touched == i64::MAX, "{touched}");
        if touched == i64::MIN {
            break;
        }
    }
    // a session key of another type fails the call, typed
    let _: () = redis.query(cmd("DEL").arg(key.as_str())).await.unwrap();
    let _: () = redis
        .query(cmd("SET").arg(key.as_str()).arg("x"))
        .await
        .unwrap();
    assert!(matches!(
        store.load(s.id()).await.unwrap_err(),
        Error::Store(_)
    ));
}

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn keys_and_logs_hold_handles_never_ids() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let redis = redkit_testkit::redis().await;
    let prefix = redkit_testkit::prefix("sess");
    let store = RedisSessionStore::new(&redis, SessionConfig::new().prefix(&prefix)).unwrap();
    let mut s = store.create().await.unwrap();
    let first = s.id().as_str().to_string();
    s.insert("cart", &[1]).unwrap();
    store.save(&mut s).await.unwrap();
    store.rotate(&mut s).await.unwrap();
    store
        .login(&mut s, "ann", ClientInfo::default())
        .await
        .unwrap();
    let ids = [first, s.id().as_str().to_string()];
    tracing::info!(session = ?s, "a session as the app might log it");
    store.delete(s.id()).await.unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("session"), "logs were captured: {text}");
    let keys: Vec<String> = redis
        .query(cmd("KEYS").arg(format!("{prefix}:*")))
        .await
        .unwrap();
    for id in &ids {
        assert!(
            !text.contains(id.as_str()),
            "a log line holds a session id:\n{text}"
        );
        for k in &keys {
            assert!(!k.contains(id.as_str()));
        }
    }
    assert!(
        text.contains(&s.handle().short().to_string()),
        "logs name the handle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_a_store_error() {
    let mut server = redkit_testkit::Server::start();
    let store = RedisSessionStore::new(&server.redis().await, config()).unwrap();
    let s = store.create().await.unwrap();
    server.kill();
    assert!(matches!(
        store.load(s.id()).await.unwrap_err(),
        Error::Store(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_store_never_overwrites_or_resurrects() {
    let redis = redkit_testkit::redis().await;
    let store = RedisSessionStore::new(&redis, config().tower_user_key("uid")).unwrap();
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    let mut first = Record {
        id: Id::default(),
        data: [("uid".to_string(), serde_json::json!("ann"))].into(),
        expiry_date: expiry,
    };
    tsc::SessionStore::create(&store, &mut first).await.unwrap();
    // a second create with the same id gets a new id instead of overwriting
    let mut second = Record {
        id: first.id,
        data: [("other".to_string(), serde_json::json!(1))].into(),
        expiry_date: expiry,
    };
    tsc::SessionStore::create(&store, &mut second)
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    let loaded = tsc::SessionStore::load(&store, &first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.data, first.data);
    assert_eq!(
        loaded.expiry_date.unix_timestamp(),
        expiry.unix_timestamp(),
        "expiry kept to the millisecond"
    );
    assert_eq!(
        store.sessions_of("ann").await.unwrap().len(),
        1,
        "indexed by uid"
    );
    // deleted, then saved by a slow request: stays deleted
    tsc::SessionStore::delete(&store, &first.id).await.unwrap();
    tsc::SessionStore::save(&store, &first).await.unwrap();
    assert!(
        tsc::SessionStore::load(&store, &first.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.sessions_of("ann").await.unwrap().is_empty());
    // an expiry in the past ends the session at the save
    let mut past = second.clone();
    past.expiry_date = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    tsc::SessionStore::save(&store, &past).await.unwrap();
    assert!(
        tsc::SessionStore::load(&store, &second.id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_checked_on_load_even_if_the_key_lost_its_ttl() {
    let redis = redkit_testkit::redis().await;
    let store = RedisSessionStore::new(
        &redis,
        config()
            .idle_timeout(Duration::from_secs(1))
            .touch_every(Duration::from_millis(100)),
    )
    .unwrap();
    let s = store.create().await.unwrap();
    let key = store.session_key(&s.handle()).unwrap();
    let _: i64 = redis.query(cmd("PERSIST").arg(key.as_str())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(store.load(s.id()).await.unwrap().is_none());
    assert!(
        !store.touch(s.id()).await.unwrap(),
        "the touch script checks too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_still_writing_its_session_keeps_its_place() {
    let redis = redkit_testkit::redis().await;
    let store =
        RedisSessionStore::new(&redis, config().max_sessions(MaxSessions::Refuse(2))).unwrap();
    let mut first = store.create().await.unwrap();
    store
        .login(&mut first, "ann", ClientInfo::default())
        .await
        .unwrap();
    // a parallel login indexed its handle and has not written its session yet
    let mut pending = store.create().await.unwrap();
    store
        .login(&mut pending, "ann", ClientInfo::default())
        .await
        .unwrap();
    let handle = pending.handle();
    let key = store.session_key(&handle).unwrap();
    let _: i64 = redis.query(cmd("DEL").arg(key.as_str())).await.unwrap();

    let mut third = store.create().await.unwrap();
    let e = store
        .login(&mut third, "ann", ClientInfo::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooManySessions { limit: 2 }), "{e:?}");
    let index = store.user_key("ann").unwrap();
    let score: Option<f64> = redis
        .query(cmd("ZSCORE").arg(index.as_str()).arg(handle.as_str()))
        .await
        .unwrap();
    assert!(
        score.is_some(),
        "a young entry without a session is not dead"
    );

    // indexed longer ago than the grace (the idle timeout, at most 30 s): dead
    let added = index.child("added").unwrap();
    let at: i64 = redis
        .query(cmd("HGET").arg(added.as_str()).arg(handle.as_str()))
        .await
        .unwrap();
    let _: i64 = redis
        .query(
            cmd("HSET")
                .arg(added.as_str())
                .arg(handle.as_str())
                .arg(at - 30_000),
        )
        .await
        .unwrap();
    store
        .login(&mut third, "ann", ClientInfo::default())
        .await
        .unwrap();
    let listed: Vec<_> = store
        .sessions_of("ann")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.handle)
        .collect();
    assert_eq!(listed, vec![first.handle(), third.handle()]);
    let fields: u64 = redis.query(cmd("HLEN").arg(added.as_str())).await.unwrap();
    assert_eq!(fields, 2, "the added times go with their entries");
}
