//! The suite every [`Cache`] backend must pass. Run it with [`crate::conformance_suite!`].
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{
    Cache, CacheConfig, CacheExt, Error, LoadOptions, SetOptions, Write, WriteBehind, Writer,
};

pub use redkit_testkit::Time;

type Handle = Arc<dyn Cache>;
type Make = dyn Fn(CacheConfig) -> futures_util::future::BoxFuture<'static, crate::Result<(Handle, Handle)>>
    + Send
    + Sync;

/// Builds pairs of caches over one backend (two "processes"), each pair on a fresh key
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
    pub fn new<F, Fut>(time: Time, make: F) -> Suite
    where
        F: Fn(CacheConfig) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::Result<(Handle, Handle)>> + Send + 'static,
    {
        Suite {
            make: Arc::new(move |c| Box::pin(make(c))),
            time,
        }
    }

    /// Two handles on a fresh namespace; TTL jitter off so expiry tests are exact.
    pub async fn pair(&self, config: CacheConfig) -> (Handle, Handle) {
        self.try_pair(config).await.unwrap()
    }

    pub async fn try_pair(&self, config: CacheConfig) -> crate::Result<(Handle, Handle)> {
        (self.make)(
            config
                .prefix(redkit_testkit::prefix("cache"))
                .jitter(0.0, Duration::ZERO),
        )
        .await
    }
}

/// Polls `check` until it holds (other handles learn of invalidations by message).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: not within 1 s");
}

fn counting_loader(
    calls: &Arc<AtomicU32>,
    value: Option<&'static str>,
    pause: Duration,
) -> impl FnOnce() -> futures_util::future::BoxFuture<'static, Result<Option<String>, std::io::Error>>
+ Send
+ 'static {
    let calls = Arc::clone(calls);
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(pause).await;
            Ok(value.map(String::from))
        })
    }
}

/// `get_or_load` of a string through a counting loader.
async fn load(
    cache: &Handle,
    key: &str,
    options: &LoadOptions,
    calls: &Arc<AtomicU32>,
    value: Option<&'static str>,
    pause: Duration,
) -> crate::Result<Option<String>> {
    cache
        .get_or_load(key, options, counting_loader(calls, value, pause))
        .await
}

pub async fn values_round_trip_through_two_handles(s: &Suite) {
    let (a, b) = s.pair(CacheConfig::new()).await;
    a.set("user:1", &vec![1, 2, 3], &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(
        b.get::<Vec<u8>>("user:1").await.unwrap(),
        Some(vec![1, 2, 3])
    );
    assert!(b.exists("user:1").await.unwrap());
    assert!(!b.exists("user:2").await.unwrap());
    a.set_many_bytes(
        &[
            ("k:1", b"\"one\"".as_slice()),
            ("k:2", b"\"two\"".as_slice()),
        ],
        &SetOptions::new(),
    )
    .await
    .unwrap();
    let many = b.get_many_bytes(&["k:2", "nope", "k:1"]).await.unwrap();
    assert_eq!(
        many,
        vec![Some("\"two\"".into()), None, Some("\"one\"".into())]
    );
    // an overwrite from the other handle is what both read (a handle with an L1 drops
    // its copy when the invalidation message arrives)
    b.set("user:1", "new", &SetOptions::new()).await.unwrap();
    assert_eq!(
        b.get::<String>("user:1").await.unwrap().as_deref(),
        Some("new")
    );
    eventually("the overwrite reaches the other handle", || {
        let a = a.clone();
        async move { a.get::<String>("user:1").await.unwrap().as_deref() == Some("new") }
    })
    .await;
    assert_eq!(b.delete(&["user:1", "k:1", "nope"]).await.unwrap(), 2);
    eventually("delete seen by the other handle", || {
        let a = a.clone();
        async move { a.get_bytes("user:1").await.unwrap().is_none() }
    })
    .await;
    let m = b.metrics();
    assert!(m.hits >= 2 && m.misses >= 1, "{m:?}");
}

pub async fn entries_expire_after_their_ttl(s: &Suite) {
    let (a, b) = s
        .pair(CacheConfig::new().ttl(Duration::from_secs(60)))
        .await;
    a.set(
        "short",
        &1,
        &SetOptions::new().ttl(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    a.set("long", &2, &SetOptions::new()).await.unwrap();
    assert_eq!(b.get::<i32>("short").await.unwrap(), Some(1));
    s.time.pass(Duration::from_millis(450)).await;
    assert_eq!(b.get::<i32>("short").await.unwrap(), None);
    assert_eq!(b.get::<i32>("long").await.unwrap(), Some(2));
}

pub async fn jitter_shortens_ttls_within_its_bound(s: &Suite) {
    // 50% jitter, at most 10 s, on a 1 s TTL: every entry lives 0.5..=1 s
    let (a, _) = (s.make)(
        CacheConfig::new()
            .prefix(redkit_testkit::prefix("cache"))
            .ttl(Duration::from_secs(1))
            .jitter(0.5, Duration::from_secs(10)),
    )
    .await
    .unwrap();
    for i in 0..20 {
        a.set(&format!("j{i}"), &i, &SetOptions::new())
            .await
            .unwrap();
    }
    s.time.pass(Duration::from_millis(350)).await;
    for i in 0..20 {
        assert!(
            a.exists(&format!("j{i}")).await.unwrap(),
            "j{i} lived < 0.35 s"
        );
    }
    s.time.pass(Duration::from_millis(800)).await;
    for i in 0..20 {
        assert!(
            !a.exists(&format!("j{i}")).await.unwrap(),
            "j{i} lived > 1.15 s"
        );
    }
}

pub async fn one_loader_runs_per_key_within_a_process(s: &Suite) {
    let (a, _) = s.pair(CacheConfig::new()).await;
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (a, loader) = (
            a.clone(),
            counting_loader(&calls, Some("v"), Duration::from_millis(50)),
        );
        tasks.push(tokio::spawn(async move {
            a.get_or_load::<String, _, _, _>("cold", &LoadOptions::new(), loader)
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().as_deref(), Some("v"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // now cached: no more loads
    let v = load(
        &a,
        "cold",
        &LoadOptions::new(),
        &calls,
        Some("x"),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(a.metrics().loads, 1);
}

pub async fn distributed_single_flight_loads_once_across_handles(s: &Suite) {
    let config = CacheConfig::new()
        .distributed_single_flight(Duration::from_secs(5), Duration::from_secs(5));
    let (a, b) = s.pair(config).await;
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        let loader = counting_loader(&calls, Some("db"), Duration::from_millis(100));
        tasks.push(tokio::spawn(async move {
            c.get_or_load::<String, _, _, _>("hot", &LoadOptions::new(), loader)
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().as_deref(), Some("db"));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one load across both handles"
    );
    assert!(a.metrics().lock_waits + b.metrics().lock_waits >= 1);
}

pub async fn a_load_never_overwrites_a_write_made_while_it_ran(s: &Suite) {
    // the classic cache-aside race: a load reads the old record, a write lands, the load
    // must not put the old record back over it (with and without the load lock)
    for config in [
        CacheConfig::new(),
        CacheConfig::new()
            .distributed_single_flight(Duration::from_secs(5), Duration::from_secs(5)),
    ] {
        let (a, b) = s.pair(config).await;
        let calls = Arc::new(AtomicU32::new(0));
        let loading = {
            let (a, loader) = (
                a.clone(),
                counting_loader(&calls, Some("old"), Duration::from_millis(300)),
            );
            tokio::spawn(async move {
                a.get_or_load::<String, _, _, _>("race", &LoadOptions::new(), loader)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.set("race", "new", &SetOptions::new()).await.unwrap();
        // the load's callers get what it loaded; the cache keeps the newer write
        assert_eq!(loading.await.unwrap().unwrap().as_deref(), Some("old"));
        for c in [&a, &b] {
            assert_eq!(
                c.get::<String>("race").await.unwrap().as_deref(),
                Some("new")
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

pub async fn absent_values_are_cached_only_with_a_negative_ttl(s: &Suite) {
    let calls = Arc::new(AtomicU32::new(0));
    let (plain, _) = s.pair(CacheConfig::new()).await;
    for _ in 0..2 {
        let v = load(
            &plain,
            "ghost",
            &LoadOptions::new(),
            &calls,
            None,
            Duration::ZERO,
        )
        .await
        .unwrap();
        assert_eq!(v, None);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "no negative caching by default"
    );

    let calls = Arc::new(AtomicU32::new(0));
    let (neg, other) = s
        .pair(CacheConfig::new().negative_ttl(Duration::from_millis(300)))
        .await;
    for c in [&neg, &other, &neg] {
        let v = load(
            c,
            "ghost",
            &LoadOptions::new(),
            &calls,
            None,
            Duration::ZERO,
        )
        .await
        .unwrap();
        assert_eq!(v, None);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the absence is remembered");
    assert_eq!(neg.get_bytes("ghost").await.unwrap(), None);
    assert!(!neg.exists("ghost").await.unwrap());
    s.time.pass(Duration::from_millis(450)).await;
    load(
        &neg,
        "ghost",
        &LoadOptions::new(),
        &calls,
        None,
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "until its own TTL ends");
}

pub async fn loader_errors_are_cached_only_when_asked(s: &Suite) {
    let (a, _) = s.pair(CacheConfig::new()).await;
    let calls = Arc::new(AtomicU32::new(0));
    let failing = |calls: &Arc<AtomicU32>| {
        let calls = Arc::clone(calls);
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<Option<String>, _>(std::io::Error::other("db down"))
        }
    };
    for _ in 0..2 {
        let e = a
            .get_or_load::<String, _, _, _>("k", &LoadOptions::new(), failing(&calls))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Load(inner) if inner.to_string() == "db down"),
            "{e:?}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(a.metrics().load_errors, 2);
    let opts = LoadOptions::new().cache_errors(Duration::from_millis(300));
    let e = a
        .get_or_load::<String, _, _, _>("e", &opts, failing(&calls))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Load(_)), "{e:?}");
    let e = a
        .get_or_load::<String, _, _, _>("e", &opts, failing(&calls))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::CachedLoadError(m) if m == "db down"),
        "{e:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    s.time.pass(Duration::from_millis(450)).await;
    let v = load(&a, "e", &opts, &calls, Some("ok"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("ok"));
}

pub async fn stale_entries_are_served_while_one_refresh_runs(s: &Suite) {
    let config = CacheConfig::new()
        .ttl(Duration::from_millis(300))
        .stale_while_revalidate(Duration::from_secs(30))
        .early_refresh(0.0);
    let (a, b) = s.pair(config).await;
    a.set("page", "old", &SetOptions::new()).await.unwrap();
    s.time.pass(Duration::from_millis(450)).await;
    // past its TTL: plain reads miss, get_or_load serves it and refreshes it once
    assert_eq!(b.get::<String>("page").await.unwrap(), None);
    let calls = Arc::new(AtomicU32::new(0));
    for _ in 0..5 {
        let v = load(
            &b,
            "page",
            &LoadOptions::new(),
            &calls,
            Some("new"),
            Duration::from_millis(100),
        )
        .await
        .unwrap();
        assert_eq!(v.as_deref(), Some("old"));
    }
    assert!(b.metrics().stale_served >= 5);
    eventually("the background refresh landed", || {
        let a = a.clone();
        async move { a.get::<String>("page").await.unwrap().as_deref() == Some("new") }
    })
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one refresh for five stale reads"
    );
}

pub async fn early_refresh_reloads_hot_entries_before_they_expire(s: &Suite) {
    // a huge beta makes every read of an entry that took time to load refresh it
    let config = CacheConfig::new()
        .ttl(Duration::from_secs(60))
        .early_refresh(1e12);
    let (a, _) = s.pair(config).await;
    let calls = Arc::new(AtomicU32::new(0));
    let first = load(
        &a,
        "hot",
        &LoadOptions::new(),
        &calls,
        Some("v1"),
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    assert_eq!(first.as_deref(), Some("v1"));
    let served = load(
        &a,
        "hot",
        &LoadOptions::new(),
        &calls,
        Some("v2"),
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    assert_eq!(
        served.as_deref(),
        Some("v1"),
        "the current value is served at once"
    );
    eventually("the early refresh landed", || {
        let a = a.clone();
        async move { a.get::<String>("hot").await.unwrap().as_deref() == Some("v2") }
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(a.metrics().early_refreshes >= 1);
    // beta 0: never early
    let (c, _) = s.pair(CacheConfig::new().early_refresh(0.0)).await;
    let calls = Arc::new(AtomicU32::new(0));
    for _ in 0..5 {
        load(
            &c,
            "hot",
            &LoadOptions::new(),
            &calls,
            Some("v"),
            Duration::from_millis(20),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

pub async fn a_panicking_loader_fails_its_callers_and_the_next_call_loads(s: &Suite) {
    let (a, _) = s.pair(CacheConfig::new()).await;
    let e = a
        .get_or_load::<String, _, _, _>("k", &LoadOptions::new(), || async {
            if true {
                panic!("loader bug");
            }
            Ok::<_, std::io::Error>(None)
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Load(_)), "{e:?}");
    let calls = Arc::new(AtomicU32::new(0));
    let v = load(
        &a,
        "k",
        &LoadOptions::new(),
        &calls,
        Some("ok"),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(v.as_deref(), Some("ok"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

pub async fn tags_invalidate_exactly_their_entries(s: &Suite) {
    let (a, b) = s.pair(CacheConfig::new()).await;
    a.set("p:1", &1, &SetOptions::new().tags(["user:7"]))
        .await
        .unwrap();
    a.set("p:2", &2, &SetOptions::new().tags(["user:7", "team:3"]))
        .await
        .unwrap();
    a.set("p:3", &3, &SetOptions::new().tags(["team:3"]))
        .await
        .unwrap();
    a.set("p:4", &4, &SetOptions::new()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    load(
        &a,
        "p:5",
        &LoadOptions::new().tags(["user:7"]),
        &calls,
        Some("5"),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(b.invalidate_tags(&["user:7"]).await.unwrap(), 3);
    for (k, alive) in [
        ("p:1", false),
        ("p:2", false),
        ("p:3", true),
        ("p:4", true),
        ("p:5", false),
    ] {
        let k2 = k.to_string();
        let a2 = a.clone();
        eventually(&format!("{k} alive = {alive}"), move || {
            let (a, k) = (a2.clone(), k2.clone());
            async move { a.exists(&k).await.unwrap() == alive }
        })
        .await;
    }
    // a tag used up is empty; invalidating again removes nothing
    assert_eq!(b.invalidate_tags(&["user:7"]).await.unwrap(), 0);
    assert_eq!(b.invalidate_tags(&["team:3", "never"]).await.unwrap(), 1);
}

pub async fn clear_invalidates_the_whole_namespace(s: &Suite) {
    let (a, b) = s.pair(CacheConfig::new().namespace("users")).await;
    for i in 0..10 {
        a.set(&format!("u:{i}"), &i, &SetOptions::new())
            .await
            .unwrap();
    }
    assert_eq!(b.get::<i32>("u:3").await.unwrap(), Some(3));
    a.clear().await.unwrap();
    assert_eq!(
        a.get::<i32>("u:3").await.unwrap(),
        None,
        "at once for the caller"
    );
    eventually("the other handle sees the new generation", || {
        let b = b.clone();
        async move { b.get::<i32>("u:3").await.unwrap().is_none() }
    })
    .await;
    // the namespace works as before afterwards
    b.set("u:3", &33, &SetOptions::new()).await.unwrap();
    assert_eq!(a.get::<i32>("u:3").await.unwrap(), Some(33));
}

pub async fn undecodable_data_is_a_reported_miss(s: &Suite) {
    let (a, _) = s.pair(CacheConfig::new()).await;
    a.set("n", "not a number", &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(a.get::<u64>("n").await.unwrap(), None);
    assert_eq!(a.metrics().undecodable, 1);
    // get_or_load reloads over data of the wrong shape
    let calls = Arc::new(AtomicU32::new(0));
    let loader = {
        let calls = Arc::clone(&calls);
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Some(42u64))
        }
    };
    assert_eq!(
        a.get_or_load("n", &LoadOptions::new(), loader)
            .await
            .unwrap(),
        Some(42)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(a.get::<u64>("n").await.unwrap(), Some(42));
}

/// A writer that records what it is given and fails on demand: always for the keys in
/// `poison`, and for its first `fail_first` calls.
#[derive(Debug, Default)]
pub struct RecordingWriter {
    pub writes: std::sync::Mutex<Vec<Write>>,
    pub calls: AtomicU32,
    pub fail_first: AtomicU32,
    pub poison: std::sync::Mutex<Vec<String>>,
}

impl RecordingWriter {
    pub fn new() -> Arc<RecordingWriter> {
        Arc::new(RecordingWriter::default())
    }

    pub fn taken(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }

    /// The last value each key was given (`None` inside: removed).
    pub fn last(&self, key: &str) -> Option<Option<bytes::Bytes>> {
        self.taken()
            .iter()
            .rev()
            .find(|w| w.key == key)
            .map(|w| w.value.clone())
    }

    /// Asserts every key's versions only grow (redeliveries may repeat one).
    pub fn assert_version_order(&self) {
        let mut seen: std::collections::HashMap<String, crate::Version> = Default::default();
        for w in self.taken() {
            let v = w.version.expect("write-behind writes carry a version");
            if let Some(prev) = seen.insert(w.key.clone(), v) {
                assert!(prev <= v, "{}: version {v} after {prev}", w.key);
            }
        }
    }
}

#[async_trait::async_trait]
impl Writer for RecordingWriter {
    async fn write(&self, writes: &[Write]) -> Result<(), crate::BoxError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fail = self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err("database unavailable".into());
        }
        let poison = self.poison.lock().unwrap().clone();
        if let Some(w) = writes.iter().find(|w| poison.contains(&w.key)) {
            return Err(format!("record {} is locked", w.key).into());
        }
        let mut keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len(), "a batch names each key once");
        self.writes.lock().unwrap().extend(writes.iter().cloned());
        Ok(())
    }
}

fn json(v: &str) -> Option<bytes::Bytes> {
    Some(bytes::Bytes::from(serde_json::to_vec(v).unwrap()))
}

pub async fn write_through_writes_the_record_before_the_cache(s: &Suite) {
    let writer = RecordingWriter::new();
    let (a, b) = s
        .pair(CacheConfig::new().write_through(writer.clone()))
        .await;
    a.set("user:1", "ada", &SetOptions::new()).await.unwrap();
    assert_eq!(writer.last("user:1"), Some(json("ada")));
    assert_eq!(writer.taken()[0].version, None);
    assert_eq!(
        b.get::<String>("user:1").await.unwrap().as_deref(),
        Some("ada")
    );
    // a failing writer fails the call and leaves no cached copy to contradict the record
    writer.fail_first.store(1, Ordering::SeqCst);
    let e = a
        .set("user:1", "bob", &SetOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Write(_)), "{e:?}");
    assert_eq!(a.get::<String>("user:1").await.unwrap(), None);
    eventually("the other handle drops it too", || {
        let b = b.clone();
        async move { b.get::<String>("user:1").await.unwrap().is_none() }
    })
    .await;
    assert_eq!(writer.last("user:1"), Some(json("ada")));
    // deletes go to the writer first as well
    a.set("user:2", "cy", &SetOptions::new()).await.unwrap();
    assert_eq!(a.delete(&["user:2"]).await.unwrap(), 1);
    assert_eq!(writer.last("user:2"), Some(None));
    // loads never call the writer
    let calls = writer.calls.load(Ordering::SeqCst);
    let loaded = Arc::new(AtomicU32::new(0));
    load(
        &a,
        "user:3",
        &LoadOptions::new(),
        &loaded,
        Some("db"),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(writer.calls.load(Ordering::SeqCst), calls);
    // without write-behind there is nothing to flush
    assert_eq!(writer.last("user:3"), None);
}

fn behind(writer: &Arc<RecordingWriter>, options: WriteBehind) -> CacheConfig {
    CacheConfig::new().write_behind(writer.clone(), options)
}

pub async fn write_behind_flushes_the_newest_write_per_key_in_order(s: &Suite) {
    let writer = RecordingWriter::new();
    let options = WriteBehind::new()
        .interval(Duration::from_millis(20))
        .shards(3);
    let (a, b) = s.pair(behind(&writer, options)).await;
    for i in 0..30 {
        let c = if i % 2 == 0 { &a } else { &b };
        c.set(&format!("k{}", i % 5), &format!("v{i}"), &SetOptions::new())
            .await
            .unwrap();
    }
    a.delete(&["k4"]).await.unwrap();
    // the cache answers at once, before any flush
    assert_eq!(b.get::<String>("k0").await.unwrap().as_deref(), Some("v25"));
    assert_eq!(a.get::<String>("k4").await.unwrap(), None);
    a.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(a.pending_writes().await.unwrap(), 0);
    for k in 0..4 {
        assert_eq!(
            writer.last(&format!("k{k}")),
            Some(json(&format!("v{}", 25 + k)))
        );
    }
    assert_eq!(writer.last("k4"), Some(None));
    writer.assert_version_order();
    let m = (a.metrics(), b.metrics());
    assert_eq!(
        m.0.writes_flushed + m.0.writes_coalesced + m.1.writes_flushed + m.1.writes_coalesced,
        31,
        "every write flushed or coalesced once: {m:?}"
    );
    assert!(a.dead_writes(10).await.unwrap().is_empty());
}

pub async fn write_behind_retries_and_dead_letters_what_keeps_failing(s: &Suite) {
    let writer = RecordingWriter::new();
    writer.fail_first.store(2, Ordering::SeqCst);
    writer.poison.lock().unwrap().push("locked".into());
    let options = WriteBehind::new()
        .interval(Duration::from_millis(20))
        .retry(4, Duration::from_millis(5));
    let (a, _b) = s.pair(behind(&writer, options)).await;
    a.set_many_bytes(
        &[("ok:1", b"1".as_slice()), ("locked", b"2"), ("ok:2", b"3")],
        &SetOptions::new(),
    )
    .await
    .unwrap();
    a.flush(Duration::from_secs(10)).await.unwrap();
    // the transient failures were retried; the poisoned write was isolated and kept
    assert_eq!(writer.last("ok:1"), Some(Some("1".into())));
    assert_eq!(writer.last("ok:2"), Some(Some("3".into())));
    assert_eq!(writer.last("locked"), None);
    let dead = a.dead_writes(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].write.key, "locked");
    assert_eq!(dead[0].write.value.as_deref(), Some(b"2".as_slice()));
    assert!(dead[0].write.version.is_some());
    assert!(dead[0].error.contains("locked"), "{}", dead[0].error);
    assert_eq!(dead[0].attempts, 5);
    assert_eq!(a.pending_writes().await.unwrap(), 0);
    // the cache still serves the value the caller wrote
    assert_eq!(
        a.get_bytes("locked").await.unwrap().as_deref(),
        Some(b"2".as_slice())
    );
}

pub async fn write_behind_survives_a_flusher_that_stops(s: &Suite) {
    let writer = RecordingWriter::new();
    let options = WriteBehind::new()
        .interval(Duration::from_millis(10))
        .lease(Duration::from_millis(300));
    let (a, b) = s.pair(behind(&writer, options)).await;
    for i in 0..20 {
        a.set(&format!("k{i}"), &i, &SetOptions::new())
            .await
            .unwrap();
    }
    // a graceful shutdown drains what its flusher owns; the other handle carries on
    let report = a.shutdown(Duration::from_secs(10)).await.unwrap();
    assert!(report.drained, "{report:?}");
    b.flush(Duration::from_secs(10)).await.unwrap();
    for i in 0..20 {
        assert_eq!(
            writer.last(&format!("k{i}")),
            Some(Some(i.to_string().into()))
        );
    }
    // writes through the stopped handle still reach the writer, by the other's flusher
    a.set("late", &1, &SetOptions::new()).await.unwrap();
    s.time.pass(Duration::from_millis(400)).await;
    b.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(writer.last("late"), Some(Some("1".into())));
    let report = b.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!((report.pending, report.drained), (0, true));
    // with every flusher stopped, writes wait in the log: durable, not lost
    a.set("later", &2, &SetOptions::new()).await.unwrap();
    assert_eq!(a.pending_writes().await.unwrap(), 1);
    assert!(matches!(
        a.flush(Duration::from_millis(50)).await,
        Err(Error::FlushTimeout { pending: 1 })
    ));
    writer.assert_version_order();
}

pub async fn bad_input_is_a_typed_error(s: &Suite) {
    let (a, _) = s.pair(CacheConfig::new().max_value_size(16)).await;
    let long = "k".repeat(crate::MAX_KEY_LEN + 1);
    for key in ["", "a{b}", "tab\there", long.as_str()] {
        let e = a.get_bytes(key).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{key:?}: {e:?}");
        let e = a
            .set("x", &1, &SetOptions::new().tags([key]))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "tag {key:?}: {e:?}");
    }
    let e = a
        .set("k", &1, &SetOptions::new().ttl(Duration::ZERO))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let e = a
        .set("k", &"x".repeat(100), &SetOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 16, .. }), "{e:?}");
    assert_eq!(a.get_bytes("k").await.unwrap(), None, "nothing written");
    // a loaded value over the limit is an error, not a silent truncation
    let e = a
        .get_or_load("big", &LoadOptions::new(), || async {
            Ok::<_, std::io::Error>(Some("y".repeat(100)))
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    for bad in [
        CacheConfig::new().ttl(Duration::ZERO),
        CacheConfig::new().jitter(1.0, Duration::from_secs(1)),
        CacheConfig::new().early_refresh(f64::NAN),
        CacheConfig::new().early_refresh(-1.0),
        CacheConfig::new().max_value_size(0),
        CacheConfig::new().negative_ttl(Duration::ZERO),
        CacheConfig::new().distributed_single_flight(Duration::ZERO, Duration::from_secs(1)),
        CacheConfig::new().namespace("a{b}"),
    ] {
        let e = (s.make)(bad.clone().prefix(redkit_testkit::prefix("cache")))
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidConfig(_) | Error::InvalidArgument(_)),
            "{bad:?}: {e:?}"
        );
    }
}

/// Issue 18 item 10: every `Duration` and integer input at its extremes is a typed
/// error before anything is sent, or works; never a panic.
pub async fn extreme_durations_and_counts_are_typed_errors_never_panics(s: &Suite) {
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    let (a, _) = s.pair(CacheConfig::new()).await;
    let calls = Arc::new(AtomicU32::new(0));
    for opts in [
        SetOptions::new().stale(Duration::MAX),
        SetOptions::new().stale(century + Duration::from_secs(1)),
        SetOptions::new().ttl(Duration::MAX),
        SetOptions::new().ttl(century + Duration::from_secs(1)),
        SetOptions::new().ttl(Duration::from_micros(999)),
    ] {
        let e = a.set_bytes("k", b"v", &opts).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{opts:?}: {e:?}");
        let e = a.set_many_bytes(&[("k", b"v")], &opts).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{opts:?}: {e:?}");
    }
    assert_eq!(a.get_bytes("k").await.unwrap(), None, "nothing written");
    for opts in [
        LoadOptions::new().stale(Duration::MAX),
        LoadOptions::new().ttl(Duration::MAX),
        LoadOptions::new().cache_errors(Duration::MAX),
        LoadOptions::new().cache_errors(Duration::ZERO),
    ] {
        let e = load(&a, "k", &opts, &calls, Some("v"), Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{opts:?}: {e:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no loader ran");
    // the largest accepted values work
    let longest = SetOptions::new().ttl(century).stale(century);
    a.set("k", "v", &longest).await.unwrap();
    assert_eq!(a.get::<String>("k").await.unwrap().as_deref(), Some("v"));
    let v = load(
        &a,
        "k2",
        &LoadOptions::new().ttl(century).stale(century),
        &calls,
        Some("w"),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(v.as_deref(), Some("w"));
    assert_eq!(a.get::<String>("k2").await.unwrap().as_deref(), Some("w"));
    assert_eq!(a.flush(Duration::MAX).await.unwrap(), ());
    assert!(a.dead_writes(usize::MAX).await.unwrap().is_empty());
    assert_eq!(a.delete(&[]).await.unwrap(), 0);
    assert!(a.get_many_bytes(&[]).await.unwrap().is_empty());
    // configurations (the L1's limits are checked in the crate's unit tests: a suite
    // may set its own L1)
    let writer = RecordingWriter::new();
    let w = |o: WriteBehind| CacheConfig::new().write_behind(writer.clone(), o);
    for bad in [
        CacheConfig::new().ttl(Duration::MAX),
        CacheConfig::new().stale_while_revalidate(Duration::MAX),
        CacheConfig::new().negative_ttl(Duration::MAX),
        CacheConfig::new().distributed_single_flight(Duration::MAX, Duration::from_secs(1)),
        CacheConfig::new().distributed_single_flight(Duration::from_secs(1), Duration::MAX),
        CacheConfig::new().jitter(f64::NAN, Duration::ZERO),
        CacheConfig::new().early_refresh(f64::INFINITY),
        CacheConfig::new().max_value_size(usize::MAX),
        w(WriteBehind::new().batch_size(usize::MAX)),
        w(WriteBehind::new().interval(Duration::MAX)),
        w(WriteBehind::new().retry(3, Duration::MAX)),
        w(WriteBehind::new().shards(u16::MAX)),
        w(WriteBehind::new().lease(Duration::MAX)),
    ] {
        let e = (s.make)(bad.clone().prefix(redkit_testkit::prefix("cache")))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{bad:?}: {e:?}");
    }
    // extreme values that are valid work
    for good in [
        CacheConfig::new().local(u64::MAX, Duration::from_secs(1)),
        CacheConfig::new().jitter(0.5, Duration::MAX),
        CacheConfig::new().early_refresh(f64::MAX),
        CacheConfig::new()
            .ttl(century)
            .stale_while_revalidate(century),
        CacheConfig::new()
            .distributed_single_flight(century, century)
            .negative_ttl(century),
        w(WriteBehind::new().retry(u32::MAX, Duration::from_secs(30))),
    ] {
        let (c, _) = s.pair(good.clone()).await;
        let v = load(
            &c,
            "k",
            &LoadOptions::new(),
            &calls,
            Some("x"),
            Duration::ZERO,
        )
        .await
        .unwrap();
        assert_eq!(v.as_deref(), Some("x"), "{good:?}");
        let v = load(
            &c,
            "k",
            &LoadOptions::new(),
            &calls,
            Some("y"),
            Duration::ZERO,
        )
        .await
        .unwrap();
        assert_eq!(v.as_deref(), Some("x"), "{good:?}: a hit");
        c.set("k2", &1, &SetOptions::new()).await.unwrap();
        c.flush(Duration::MAX).await.unwrap();
        let report = c.shutdown(Duration::MAX).await.unwrap();
        assert!(report.drained, "{good:?}");
    }
}

/// Runs every conformance case as a test: `conformance_suite!(name, async { suite })`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@case $make;
                values_round_trip_through_two_handles,
                entries_expire_after_their_ttl,
                jitter_shortens_ttls_within_its_bound,
                one_loader_runs_per_key_within_a_process,
                distributed_single_flight_loads_once_across_handles,
                a_load_never_overwrites_a_write_made_while_it_ran,
                absent_values_are_cached_only_with_a_negative_ttl,
                loader_errors_are_cached_only_when_asked,
                stale_entries_are_served_while_one_refresh_runs,
                early_refresh_reloads_hot_entries_before_they_expire,
                a_panicking_loader_fails_its_callers_and_the_next_call_loads,
                tags_invalidate_exactly_their_entries,
                clear_invalidates_the_whole_namespace,
                undecodable_data_is_a_reported_miss,
                bad_input_is_a_typed_error,
                write_through_writes_the_record_before_the_cache,
                write_behind_flushes_the_newest_write_per_key_in_order,
                write_behind_retries_and_dead_letters_what_keeps_failing,
                write_behind_survives_a_flusher_that_stops,
                extreme_durations_and_counts_are_typed_errors_never_panics
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
