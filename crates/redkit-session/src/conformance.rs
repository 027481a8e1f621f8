//! The suite every [`SessionStore`] backend must pass. Run it with
//! [`crate::conformance_suite!`].
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    ClientInfo, Error, Layout, MaxSessions, SessionConfig, SessionHandle, SessionId, SessionStore,
};

pub use redkit_testkit::Time;

type Store = Arc<dyn SessionStore>;
type Make = dyn Fn(SessionConfig) -> crate::Result<(Store, Store)> + Send + Sync;

/// Builds pairs of stores over one backend (two "processes"), each pair on a fresh key
/// prefix, and says how time passes.
#[derive(Clone)]
pub struct Suite {
    make: Arc<Make>,
    pub time: Time,
}

impl fmt::Debug for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite").field("time", &self.time).finish()
    }
}

impl Suite {
    pub fn new(
        time: Time,
        make: impl Fn(SessionConfig) -> crate::Result<(Store, Store)> + Send + Sync + 'static,
    ) -> Suite {
        Suite {
            make: Arc::new(make),
            time,
        }
    }

    pub fn pair(&self, config: SessionConfig) -> (Store, Store) {
        self.try_pair(config).unwrap()
    }

    pub fn try_pair(&self, config: SessionConfig) -> crate::Result<(Store, Store)> {
        (self.make)(config.prefix(redkit_testkit::prefix("sess")))
    }
}

fn client(ua: &str) -> ClientInfo {
    ClientInfo::new(Some(ua.to_string()), Some("203.0.113.7".to_string()))
}

pub async fn data_round_trips_through_two_handles(s: &Suite) {
    let (a, b) = s.pair(SessionConfig::new());
    let mut session = a.create().await.unwrap();
    assert_eq!(session.id().as_str().len(), crate::ID_LEN);
    session.insert("cart", &vec![1, 2, 3]).unwrap();
    session.insert("name", "Ann").unwrap();
    a.save(&mut session).await.unwrap();
    assert!(!session.is_modified());
    let mut loaded = b.load(session.id()).await.unwrap().unwrap();
    assert_eq!(loaded.get::<Vec<u32>>("cart").unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(
        loaded.get::<String>("name").unwrap().as_deref(),
        Some("Ann")
    );
    assert_eq!(loaded.keys(), ["cart", "name"]);
    assert_eq!(loaded.created_at(), session.created_at());
    // a value of another type is a codec error, and the session stays usable
    let e = loaded.get::<u64>("name").unwrap_err();
    assert!(matches!(e, Error::Codec(_)), "{e:?}");
    loaded.remove("cart");
    b.save(&mut loaded).await.unwrap();
    let again = a.load(session.id()).await.unwrap().unwrap();
    assert_eq!(again.keys(), ["name"]);
    // a flash value is read once
    let mut flash = again;
    flash.insert("flash", "saved!").unwrap();
    a.save(&mut flash).await.unwrap();
    let mut next = b.load(session.id()).await.unwrap().unwrap();
    assert_eq!(
        next.take::<String>("flash").unwrap().as_deref(),
        Some("saved!")
    );
    b.save(&mut next).await.unwrap();
    let last = a.load(session.id()).await.unwrap().unwrap();
    assert_eq!(last.get::<String>("flash").unwrap(), None);
}

pub async fn unknown_and_malformed_ids_look_the_same(s: &Suite) {
    let (a, _) = s.pair(SessionConfig::new());
    let real = a.create().await.unwrap();
    let never_issued = SessionId::generate().unwrap();
    let mut tampered = real.id().as_str().to_string();
    tampered.replace_range(0..1, if tampered.starts_with('A') { "B" } else { "A" });
    for id in [
        never_issued,
        SessionId::presented(""),
        SessionId::presented("not base64 !"),
        SessionId::presented(tampered),
        SessionId::presented("x".repeat(100_000)),
    ] {
        assert!(a.load(&id).await.unwrap().is_none());
        assert!(!a.touch(&id).await.unwrap());
        assert!(!a.delete(&id).await.unwrap());
    }
    assert!(a.load(real.id()).await.unwrap().is_some());
}

pub async fn concurrent_field_updates_both_survive(s: &Suite) {
    let (a, b) = s.pair(SessionConfig::new());
    let mut created = a.create().await.unwrap();
    created.insert("theme", "dark").unwrap();
    a.save(&mut created).await.unwrap();
    let mut one = a.load(created.id()).await.unwrap().unwrap();
    let mut two = b.load(created.id()).await.unwrap().unwrap();
    one.insert("cart", &[7]).unwrap();
    two.insert("locale", "fr").unwrap();
    two.remove("theme");
    let (r1, r2) = tokio::join!(a.save(&mut one), b.save(&mut two));
    r1.unwrap();
    r2.unwrap();
    let both = a.load(created.id()).await.unwrap().unwrap();
    assert_eq!(both.keys(), ["cart", "locale"]);
}

pub async fn the_json_layout_keeps_data_in_one_object(s: &Suite) {
    let (a, b) = s.pair(SessionConfig::new().layout(Layout::Json));
    let mut created = a.create().await.unwrap();
    created.insert("cart", &[1, 2]).unwrap();
    created.insert("name", "Ann \"A\" {x}").unwrap();
    a.save(&mut created).await.unwrap();
    let mut one = a.load(created.id()).await.unwrap().unwrap();
    assert_eq!(
        one.get::<String>("name").unwrap().as_deref(),
        Some("Ann \"A\" {x}")
    );
    assert_eq!(one.get::<Vec<u8>>("cart").unwrap(), Some(vec![1, 2]));
    let mut two = b.load(created.id()).await.unwrap().unwrap();
    one.insert("a", &1).unwrap();
    a.save(&mut one).await.unwrap();
    two.remove("cart");
    b.save(&mut two).await.unwrap();
    // the later save rewrote the object from its own view: `a` is gone, `cart` too
    let last = a.load(created.id()).await.unwrap().unwrap();
    assert_eq!(last.keys(), ["name"]);
    let mut login = last;
    a.login(&mut login, "ann", client("x")).await.unwrap();
    let after = b.load(login.id()).await.unwrap().unwrap();
    assert_eq!(after.keys(), ["name"], "rotation carries the object");
}

pub async fn a_save_never_brings_a_deleted_session_back(s: &Suite) {
    let (a, b) = s.pair(SessionConfig::new());
    let mut session = a.create().await.unwrap();
    let mut slow = b.load(session.id()).await.unwrap().unwrap();
    assert!(a.delete(session.id()).await.unwrap());
    slow.insert("late", &true).unwrap();
    assert!(matches!(
        b.save(&mut slow).await.unwrap_err(),
        Error::Unknown
    ));
    assert!(matches!(
        a.save(&mut session).await.unwrap_err(),
        Error::Unknown
    ));
    assert!(a.load(session.id()).await.unwrap().is_none());
    assert!(!a.delete(session.id()).await.unwrap(), "already gone");
}

pub async fn idle_sessions_end_and_active_ones_slide(s: &Suite) {
    let config = SessionConfig::new()
        .idle_timeout(Duration::from_secs(1))
        .touch_every(Duration::from_millis(100))
        .absolute_timeout(Duration::from_secs(3600));
    let (a, b) = s.pair(config);
    let active = a.create().await.unwrap();
    let idle = a.create().await.unwrap();
    for _ in 0..3 {
        s.time.pass(Duration::from_millis(600)).await;
        assert!(
            b.load(active.id()).await.unwrap().is_some(),
            "loads keep it alive"
        );
    }
    assert!(
        a.load(idle.id()).await.unwrap().is_none(),
        "1.8 s without a request"
    );
    s.time.pass(Duration::from_millis(1100)).await;
    assert!(
        a.load(active.id()).await.unwrap().is_none(),
        "idle after the last load"
    );
}

pub async fn the_absolute_timeout_ends_even_active_sessions(s: &Suite) {
    let config = SessionConfig::new()
        .idle_timeout(Duration::from_secs(1))
        .touch_every(Duration::from_millis(100))
        .absolute_timeout(Duration::from_millis(2000));
    let (a, _) = s.pair(config);
    let mut session = a.create().await.unwrap();
    s.time.pass(Duration::from_millis(800)).await;
    assert!(a.touch(session.id()).await.unwrap());
    s.time.pass(Duration::from_millis(800)).await;
    session.insert("busy", &true).unwrap();
    a.save(&mut session).await.unwrap();
    // rotation keeps the deadline: it cannot stretch a session's life
    a.rotate(&mut session).await.unwrap();
    s.time.pass(Duration::from_millis(600)).await;
    assert!(
        a.load(session.id()).await.unwrap().is_none(),
        "past 2 s from the start"
    );
}

pub async fn rotation_keeps_the_data_and_kills_the_old_id(s: &Suite) {
    let (a, b) = s.pair(SessionConfig::new());
    let mut session = a.create().await.unwrap();
    session.insert("cart", &[1]).unwrap();
    a.save(&mut session).await.unwrap();
    // another request adds a field meanwhile; this one has an unsaved change
    let mut other = b.load(session.id()).await.unwrap().unwrap();
    other.insert("seen", &true).unwrap();
    b.save(&mut other).await.unwrap();
    session.insert("step", &2).unwrap();
    let old = session.id().clone();
    let created = session.created_at();
    let deadline = session.deadline();
    a.rotate(&mut session).await.unwrap();
    assert_ne!(session.id(), &old);
    assert!(!session.is_modified());
    assert!(
        b.load(&old).await.unwrap().is_none(),
        "the old id is dead at once"
    );
    let now = b.load(session.id()).await.unwrap().unwrap();
    assert_eq!(now.keys(), ["cart", "seen", "step"]);
    assert_eq!(now.created_at(), created);
    assert_eq!(now.deadline(), deadline);
    // rotating a session that is gone is an error, not a new session
    a.delete(session.id()).await.unwrap();
    assert!(matches!(
        a.rotate(&mut session).await.unwrap_err(),
        Error::Unknown
    ));
}

pub async fn login_indexes_sessions_and_logout_everywhere_ends_them(s: &Suite) {
    let (a, b) = s.pair(SessionConfig::new());
    let mut laptop = a.create().await.unwrap();
    laptop.insert("cart", &[3]).unwrap();
    let anonymous = laptop.id().clone();
    let evicted = a
        .login(&mut laptop, "ann@example.com", client("laptop"))
        .await
        .unwrap();
    assert!(evicted.is_empty());
    assert_ne!(laptop.id(), &anonymous, "login rotates the id");
    assert!(a.load(&anonymous).await.unwrap().is_none());
    assert_eq!(laptop.user(), Some("ann@example.com"));
    s.time.pass(Duration::from_millis(5)).await;
    let mut phone = b.create().await.unwrap();
    b.login(&mut phone, "ann@example.com", client("phone"))
        .await
        .unwrap();
    let mut bob = b.create().await.unwrap();
    b.login(&mut bob, "bob", client("bob's")).await.unwrap();

    let listed = a.sessions_of("ann@example.com").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].handle, laptop.handle(), "oldest first");
    assert_eq!(listed[0].client.user_agent.as_deref(), Some("laptop"));
    assert_eq!(listed[1].client.ip.as_deref(), Some("203.0.113.7"));
    let loaded = b.load(laptop.id()).await.unwrap().unwrap();
    assert_eq!(loaded.get::<Vec<u8>>("cart").unwrap(), Some(vec![3]));
    assert_eq!(loaded.user(), Some("ann@example.com"));

    // a password change on the phone: every other session ends
    let mut slow = a.load(laptop.id()).await.unwrap().unwrap();
    assert_eq!(
        b.logout_everywhere("ann@example.com", Some(phone.id()))
            .await
            .unwrap(),
        1
    );
    assert!(a.load(laptop.id()).await.unwrap().is_none());
    slow.insert("late", &1).unwrap();
    assert!(matches!(
        a.save(&mut slow).await.unwrap_err(),
        Error::Unknown
    ));
    assert!(
        a.load(laptop.id()).await.unwrap().is_none(),
        "not resurrected"
    );
    assert!(a.load(phone.id()).await.unwrap().is_some());
    assert_eq!(
        a.logout_everywhere("ann@example.com", None).await.unwrap(),
        1
    );
    assert!(a.load(phone.id()).await.unwrap().is_none());
    assert!(a.sessions_of("ann@example.com").await.unwrap().is_empty());
    assert!(
        a.load(bob.id()).await.unwrap().is_some(),
        "other users keep theirs"
    );

    // revoking by handle works for the owner only
    let bob_handle = bob.handle();
    assert!(!a.revoke("ann@example.com", &bob_handle).await.unwrap());
    assert!(a.load(bob.id()).await.unwrap().is_some());
    assert!(a.revoke("bob", &bob_handle).await.unwrap());
    assert!(a.load(bob.id()).await.unwrap().is_none());
    // a plain logout leaves the index too
    let mut again = a.create().await.unwrap();
    a.login(&mut again, "bob", client("x")).await.unwrap();
    assert!(a.delete(again.id()).await.unwrap());
    assert!(a.sessions_of("bob").await.unwrap().is_empty());
    // a logged-out session cannot be rotated or logged in back to life
    let mut gone = a.create().await.unwrap();
    a.login(&mut gone, "dee", client("x")).await.unwrap();
    assert_eq!(a.logout_everywhere("dee", None).await.unwrap(), 1);
    let mut copy = gone.clone();
    assert!(matches!(
        b.rotate(&mut gone).await.unwrap_err(),
        Error::Unknown
    ));
    assert!(matches!(
        b.login(&mut copy, "dee", client("x")).await.unwrap_err(),
        Error::Unknown
    ));
    assert!(a.sessions_of("dee").await.unwrap().is_empty());
}

pub async fn max_sessions_evicts_the_oldest_or_refuses(s: &Suite) {
    let (a, b) = s.pair(SessionConfig::new().max_sessions(MaxSessions::EvictOldest(2)));
    let mut ids: Vec<SessionId> = Vec::new();
    for i in 0..3 {
        let mut session = a.create().await.unwrap();
        let evicted = a
            .login(&mut session, "ann", client(&format!("d{i}")))
            .await
            .unwrap();
        if i == 2 {
            assert_eq!(evicted, vec![ids[0].handle()]);
        } else {
            assert!(evicted.is_empty());
        }
        ids.push(session.id().clone());
        s.time.pass(Duration::from_millis(5)).await;
    }
    assert!(
        b.load(&ids[0]).await.unwrap().is_none(),
        "the oldest was ended"
    );
    let left: Vec<SessionHandle> = b
        .sessions_of("ann")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.handle)
        .collect();
    assert_eq!(left, [ids[1].handle(), ids[2].handle()]);

    // logins within one millisecond: the session being logged in is never the one evicted
    let (d, _) = s.pair(SessionConfig::new().max_sessions(MaxSessions::EvictOldest(1)));
    for _ in 0..20 {
        let mut session = d.create().await.unwrap();
        let evicted = d
            .login(&mut session, "cy", client("same instant"))
            .await
            .unwrap();
        assert!(!evicted.contains(&session.handle()));
        assert!(
            d.load(session.id()).await.unwrap().is_some(),
            "the new login lives"
        );
    }
    assert_eq!(d.sessions_of("cy").await.unwrap().len(), 1);

    let (c, _) = s.pair(SessionConfig::new().max_sessions(MaxSessions::Refuse(1)));
    let mut first = c.create().await.unwrap();
    c.login(&mut first, "ann", client("a")).await.unwrap();
    let mut second = c.create().await.unwrap();
    let e = c.login(&mut second, "ann", client("b")).await.unwrap_err();
    assert!(matches!(e, Error::TooManySessions { limit: 1 }), "{e:?}");
    assert!(
        c.load(second.id()).await.unwrap().is_some(),
        "still usable anonymously"
    );
    assert_eq!(second.user(), None);
    c.delete(first.id()).await.unwrap();
    c.login(&mut second, "ann", client("b")).await.unwrap();
}

pub async fn ended_sessions_leave_the_index_without_notifications(s: &Suite) {
    let config = SessionConfig::new()
        .idle_timeout(Duration::from_secs(1))
        .touch_every(Duration::from_millis(100))
        .max_sessions(MaxSessions::Refuse(2));
    let (a, _) = s.pair(config);
    for _ in 0..2 {
        let mut session = a.create().await.unwrap();
        a.login(&mut session, "ann", client("x")).await.unwrap();
    }
    s.time.pass(Duration::from_millis(1200)).await;
    assert!(a.sessions_of("ann").await.unwrap().is_empty());
    // the two idle sessions do not count against the limit any more
    for _ in 0..2 {
        let mut session = a.create().await.unwrap();
        a.login(&mut session, "ann", client("y")).await.unwrap();
    }
    assert_eq!(a.sessions_of("ann").await.unwrap().len(), 2);
}

pub async fn bad_input_is_a_typed_error(s: &Suite) {
    let (a, _) = s.pair(SessionConfig::new().max_size(1000));
    let mut session = a.create().await.unwrap();
    session.insert("big", &"x".repeat(2000)).unwrap();
    let e = a.save(&mut session).await.unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 1000, .. }), "{e:?}");
    let stored = a.load(session.id()).await.unwrap().unwrap();
    assert!(
        stored.keys().is_empty(),
        "nothing of a refused save is written"
    );
    assert!(matches!(
        session.insert("", &1).unwrap_err(),
        Error::InvalidArgument(_)
    ));
    assert!(matches!(
        session.insert(&"n".repeat(300), &1).unwrap_err(),
        Error::InvalidArgument(_)
    ));
    let mut fresh = a.create().await.unwrap();
    for user in ["", &"u".repeat(600)] {
        let e = a
            .login(&mut fresh, user, ClientInfo::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
    for config in [
        SessionConfig::new().idle_timeout(Duration::ZERO),
        SessionConfig::new().absolute_timeout(Duration::from_millis(10)),
        SessionConfig::new().touch_every(Duration::from_secs(3600)),
        SessionConfig::new().max_sessions(MaxSessions::EvictOldest(0)),
        SessionConfig::new().max_sessions(MaxSessions::Refuse(0)),
        SessionConfig::new().max_size(1),
        // item 10 of issue 18: durations at the ends are typed errors at construction
        SessionConfig::new().idle_timeout(Duration::MAX),
        SessionConfig::new().absolute_timeout(Duration::MAX),
        SessionConfig::new().absolute_timeout(Duration::from_secs(366 * 86_400 + 1)),
        SessionConfig::new().touch_every(Duration::MAX),
    ] {
        let e = s.try_pair(config.clone()).unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{config:?}: {e:?}");
    }
}

/// Runs every case of the suite as a test: `conformance_suite!(name, async { Suite })`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@case $make;
                data_round_trips_through_two_handles,
                unknown_and_malformed_ids_look_the_same,
                concurrent_field_updates_both_survive,
                the_json_layout_keeps_data_in_one_object,
                a_save_never_brings_a_deleted_session_back,
                idle_sessions_end_and_active_ones_slide,
                the_absolute_timeout_ends_even_active_sessions,
                rotation_keeps_the_data_and_kills_the_old_id,
                login_indexes_sessions_and_logout_everywhere_ends_them,
                max_sessions_evicts_the_oldest_or_refuses,
                ended_sessions_leave_the_index_without_notifications,
                bad_input_is_a_typed_error
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
