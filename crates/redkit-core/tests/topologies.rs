//! Cluster, sentinel, TLS and ACL: each topology connects, runs scripts and fails with
//! typed errors when it should.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redkit_core::{Error, Event, Pipeline, Redis, RedisConfig, Script, redis};
use redkit_testkit::{self as testkit, SentinelGroup, Server};

static MOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "move",
        "-- KEYS[1] source list, KEYS[2] target list\n\
         local v = redis.call('LPOP', KEYS[1])\n\
         if v then redis.call('RPUSH', KEYS[2], v) end\n\
         return v",
    )
});

#[tokio::test]
async fn cluster_handle_runs_scripts_over_tagged_keys_in_every_slot() {
    let cluster = testkit::cluster();
    let redis = cluster.redis().await;
    assert!(redis.is_cluster());
    let ks = redis.keyspace(&testkit::prefix("cluster")).unwrap();

    // Tags spread over the three masters; every script's keys share one slot.
    let mut slots = std::collections::BTreeSet::new();
    let mut pipe = Pipeline::new();
    for i in 0..30 {
        let src = ks.tagged(&format!("q{i}")).unwrap();
        let dst = src.child("done").unwrap();
        testkit::assert_same_slot(&[src.as_str(), dst.as_str()]);
        slots.insert(src.slot() / 5462);
        let _: i64 = redis
            .query(redis::cmd("RPUSH").arg(&src).arg(format!("job{i}")))
            .await
            .unwrap();
        let moved: Option<String> = MOVE
            .call()
            .key(&src)
            .key(&dst)
            .invoke(&redis)
            .await
            .unwrap();
        assert_eq!(moved, Some(format!("job{i}")));
        pipe.invoke(MOVE.call().key(src.clone()).key(dst.clone()));
    }
    assert_eq!(slots.len(), 3, "the keys reached all three masters");
    // A pipeline across slots: each empty source now returns nil.
    let replies: Vec<Option<String>> = pipe.query(&redis).await.unwrap();
    assert_eq!(replies, vec![None; 30]);

    // Keys of one script in two slots are refused by the server, as a typed error.
    let a = ks.tagged("a").unwrap();
    let b = ks.tagged("b").unwrap();
    assert_ne!(a.slot(), b.slot());
    let err = MOVE
        .call()
        .key(&a)
        .key(&b)
        .invoke::<Option<String>>(&redis)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Script { .. } | Error::Redis(_)),
        "{err:?}"
    );

    // Dedicated connections and subscriptions work on the cluster as well.
    let mut conn = redis.dedicated().await.unwrap();
    let list = ks.tagged("blocking").unwrap();
    let none: Option<(String, String)> = conn
        .blocking(
            redis::cmd("BLPOP").arg(&list).arg(1),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    let channel = testkit::prefix("cluster-chan");
    let mut sub = redis.subscribe(&channel).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.publish(&channel, b"hi").await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, Event::Message(m) if m.payload == b"hi"));
}

#[tokio::test]
async fn tls_with_acl_user_connects_and_wrong_password_is_an_auth_error() {
    let server = Server::builder().tls().user("alice", "wonderland").start();
    let config = server
        .config()
        .username("alice")
        .password("wonderland")
        .build()
        .unwrap();
    assert!(server.url().starts_with("rediss://"));
    let redis = Redis::from_config(config.clone()).await.unwrap();
    let whoami: String = redis
        .query(&redis::cmd("ACL").arg("WHOAMI").to_owned())
        .await
        .unwrap();
    assert_eq!(whoami, "alice");
    let n: i64 = redis
        .query(redis::cmd("INCR").arg("tls-counter"))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let mut sub = redis.subscribe("tls-chan").await.unwrap();
    redis.publish("tls-chan", b"secure").await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, Event::Message(m) if m.payload == b"secure"));

    let shown = format!("{config:?} {redis:?}");
    assert!(!shown.contains("wonderland"), "{shown}");

    let wrong = server
        .config()
        .username("alice")
        .password("looking-glass")
        .build()
        .unwrap();
    let err = Redis::from_config(wrong).await.unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!format!("{err:?} {err}").contains("looking-glass"));

    // Without the CA the server's certificate is not trusted.
    let untrusted = RedisConfig::builder().url(server.url()).build().unwrap();
    let err = Redis::from_config(untrusted).await.unwrap_err();
    assert!(
        matches!(err, Error::Connection(_) | Error::Config(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn password_in_the_url_works_and_stays_hidden() {
    let server = Server::builder().requirepass("p@ss:word").start();
    let url = format!("redis://:p%40ss%3Aword@127.0.0.1:{}/2", server.port());
    let redis = Redis::connect(&url).await.unwrap();
    let db: i64 = redis.conn().get_db_checked();
    assert_eq!(db, 2);
    assert!(!format!("{redis:?}").contains("p%40ss"));
    let err = Redis::connect(&format!("redis://:nope@127.0.0.1:{}", server.port()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
}

/// Writes the formatted log lines into a shared buffer.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn logs_and_errors_never_show_url_passwords() {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    for url in [
        "unix:///nonexistent/redkit.sock?user=alice&pass=log-secret",
        "redis+unix:///nonexistent/redkit.sock?pass=log-secret&db=1",
        "redis://alice:log-secret@127.0.0.1:1",
    ] {
        let config = RedisConfig::builder()
            .url(url)
            .connect_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        assert!(!format!("{config:?}").contains("log-secret"), "{config:?}");
        let err = Redis::from_config(config).await.unwrap_err();
        assert!(!err.to_string().contains("log-secret"), "{err}");
        assert!(!format!("{err:?}").contains("log-secret"), "{err:?}");
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("redkit.connect"), "{logs}");
    assert!(logs.contains("nonexistent/redkit.sock"), "{logs}");
    assert!(!logs.contains("log-secret"), "{logs}");
}

trait DbChecked {
    fn get_db_checked(&self) -> i64;
}

impl DbChecked for redkit_core::Connection {
    fn get_db_checked(&self) -> i64 {
        redis::aio::ConnectionLike::get_db(self)
    }
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_fail_fast_with_typed_errors() {
    for url in [
        "",
        "http://127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:notaport",
    ] {
        let err = Redis::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{url:?}: {err:?}");
    }
    let port = testkit::free_port();
    let start = Instant::now();
    let err = Redis::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(start.elapsed() < Duration::from_secs(5));
    // SAFETY of the env var: only this test reads REDIS_URL in this binary.
    let err = RedisConfig::from_url("redis://user:topsecret@[::1").unwrap_err();
    assert!(!err.to_string().contains("topsecret"), "{err}");
}

#[tokio::test]
async fn sentinel_finds_the_master_and_follows_a_failover() {
    let mut group = SentinelGroup::start();
    let config = group
        .config()
        .subscription_ping_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let redis = Redis::from_config(config).await.unwrap();
    let mut sub = redis.subscribe("failover-news").await.unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg("where").arg("first"))
        .await
        .unwrap();
    let role: Vec<redis::Value> = redis.query(&redis::cmd("ROLE").to_owned()).await.unwrap();
    assert!(format!("{role:?}").contains("master"));
    let old_master = group.master.port();

    // Wait for the replica to have the write, then kill the master.
    let replica_has_it = testkit::eventually(Duration::from_secs(5), || async {
        group.replica.cli(&["get", "where"]).contains("first")
    })
    .await;
    assert!(replica_has_it);
    group.master.kill();

    let start = Instant::now();
    loop {
        match redis
            .query::<()>(redis::cmd("SET").arg("where").arg("second"))
            .await
        {
            Ok(()) => break,
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "no failover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let v: String = redis.query(redis::cmd("GET").arg("where")).await.unwrap();
    assert_eq!(v, "second");
    let addr =
        group.sentinels[0].cli(&["sentinel", "get-master-addr-by-name", testkit::MASTER_NAME]);
    assert!(
        !addr.contains(&old_master.to_string()),
        "sentinels promoted the replica: {addr}"
    );
    let mut conn = redis.dedicated().await.unwrap();
    let v: String = conn.query(redis::cmd("GET").arg("where")).await.unwrap();
    assert_eq!(v, "second", "dedicated connections go to the new master");

    // The subscription lost its master, said so, and came back on the new one.
    let mut saw_disconnect = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, sub.recv())
            .await
            .expect("no resubscribe")
            .unwrap();
        match event {
            Event::Disconnected => saw_disconnect = true,
            Event::Resubscribed => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_disconnect);
    redis.publish("failover-news", b"promoted").await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, Event::Message(m) if m.payload == b"promoted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_channels_on_a_cluster_survive_a_node_restart() {
    let mut cluster = testkit::Cluster::start();
    let redis = cluster.redis().await;
    // channels on every master: one SSUBSCRIBE each, never CROSSSLOT
    let channels: Vec<String> = (0..6)
        .map(|i| testkit::prefix(&format!("shard{i}")))
        .collect();
    let mut subs = Vec::new();
    for c in &channels {
        subs.push(redis.ssubscribe(c).await.unwrap());
    }
    for (c, sub) in channels.iter().zip(subs.iter_mut()) {
        assert_eq!(redis.spublish(c, b"before").await.unwrap(), 1, "{c}");
        assert_eq!(next_payload(sub).await, b"before".to_vec());
    }
    // restart one master: its shard channels are resubscribed on it
    cluster.nodes_mut()[0].restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for (c, sub) in channels.iter().zip(subs.iter_mut()) {
        loop {
            let _ = redis.spublish(c, b"after").await;
            match tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    match sub.recv().await {
                        Some(Event::Message(m)) if m.payload == b"after" => return true,
                        Some(_) => continue,
                        None => return false,
                    }
                }
            })
            .await
            {
                Ok(true) => break,
                _ if std::time::Instant::now() < deadline => continue,
                _ => panic!("no message on {c} after the restart"),
            }
        }
    }
}

async fn next_payload(sub: &mut redkit_core::Subscription) -> Vec<u8> {
    let next = async {
        loop {
            match sub.recv().await {
                Some(Event::Message(m)) => return m.payload,
                Some(_) => continue,
                None => panic!("subscription ended"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("no message within 10 s")
}

static INCR_EACH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "incr_each",
        "-- KEYS: one counter per item; answers each counter's new value, packed\n\
         local out = {}\n\
         for i, key in ipairs(KEYS) do out[i] = redis.call('INCR', key) end\n\
         return cmsgpack.pack(out)",
    )
});

#[tokio::test]
async fn invoke_by_slot_each_fails_only_the_failed_slot() {
    let cluster = testkit::cluster();
    let redis = cluster.redis().await;
    let ks = redis.keyspace(&testkit::prefix("by-slot")).unwrap();
    // twelve counters over the three masters, two per tag
    let keys: Vec<redkit_core::Key> = (0..12)
        .map(|i| {
            ks.tagged_child(&format!("t{}", i / 2), &format!("n{i}"))
                .unwrap()
        })
        .collect();
    let slots: std::collections::BTreeSet<u16> = keys.iter().map(|k| k.slot()).collect();
    assert_eq!(slots.len(), 6);
    // one slot's second key holds a list: INCR on it fails with WRONGTYPE
    let bad_slot = keys[3].slot();
    let _: i64 = redis
        .query(redis::cmd("RPUSH").arg(&keys[3]).arg("x"))
        .await
        .unwrap();
    let run = |i: &[usize]| {
        let mut call = INCR_EACH.call();
        for &i in i {
            call = call.key(&keys[i]);
        }
        call
    };

    // The all-or-nothing call fails every item, although five slots succeeded.
    let err = redis
        .invoke_by_slot(&keys, |k| k, 1, run)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Script { .. }), "{err:?}");

    // Per item: only the failed slot's items get the error, each its own copy.
    let answers = redis.invoke_by_slot_each(&keys, |k| k, 1, run).await;
    assert_eq!(answers.len(), keys.len());
    for (key, answer) in keys.iter().zip(&answers) {
        if key.slot() == bad_slot {
            let err = answer.as_ref().unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Script {
                        name: "incr_each",
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains("WRONGTYPE"), "{err}");
            assert!(!err.is_retryable());
        } else {
            // (the all-or-nothing call above may or may not have run this slot's call)
            let now: i64 = redis.query(redis::cmd("GET").arg(key)).await.unwrap();
            assert_eq!(answer.as_ref().unwrap(), &vec![now], "{key:?}");
        }
    }
    // no items, no calls
    assert!(
        redis
            .invoke_by_slot_each(&keys[..0], |k| k, 1, run)
            .await
            .is_empty()
    );
}

static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "push",
        "-- KEYS[1] list; ARGV[1] value\nreturn redis.call('RPUSH', KEYS[1], ARGV[1])",
    )
});

#[tokio::test]
async fn pipelined_scripts_keep_their_order_after_a_script_flush_on_a_cluster() {
    let cluster = testkit::cluster();
    let redis = cluster.redis().await;
    let ks = redis.keyspace(&testkit::prefix("order")).unwrap();
    let lists: Vec<redkit_core::Key> = (0..6)
        .map(|i| ks.tagged(&format!("l{i}")).unwrap())
        .collect();
    let mut warm = Pipeline::new();
    for l in &lists {
        warm.invoke(PUSH.call().key(l.clone()).arg("j0"));
    }
    let _: Vec<i64> = warm.query(&redis).await.unwrap();
    // every node loses its script cache (scripts of other tests fall back to EVAL)
    for node in cluster.nodes() {
        node.cli(&["SCRIPT", "FLUSH"]);
    }
    let mut pipe = Pipeline::new();
    for l in &lists {
        let mut plain = redis::cmd("RPUSH");
        plain.arg(l).arg("j2");
        pipe.invoke(PUSH.call().key(l.clone()).arg("j1"))
            .cmd(plain)
            .invoke(PUSH.call().key(l.clone()).arg("j3"));
    }
    let lens: Vec<i64> = pipe.query(&redis).await.unwrap();
    assert_eq!(lens, [2, 3, 4].repeat(lists.len()));
    for l in &lists {
        let items: Vec<String> = redis
            .query(redis::cmd("LRANGE").arg(l).arg(0).arg(-1))
            .await
            .unwrap();
        assert_eq!(items, ["j0", "j1", "j2", "j3"], "{l:?}");
    }
}

/// The next event within `within`, `None` if none came.
async fn event_within(sub: &mut redkit_core::Subscription, within: Duration) -> Option<Event> {
    tokio::time::timeout(within, sub.recv())
        .await
        .ok()
        .map(|e| e.expect("subscription ended"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_pattern_subscriptions_on_a_cluster_report_resubscribed_only_when_true() {
    let mut cluster = testkit::Cluster::start();
    let config = cluster
        .config()
        .response_timeout(Duration::from_millis(500))
        .subscription_ping_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let redis = Redis::from_config(config).await.unwrap();
    // a channel and a pattern whose slot node 0 serves: their subscriptions live there
    let pick = |suffix: &str| {
        (0..)
            .map(|i| format!("{}{suffix}", testkit::prefix(&format!("c{i}"))))
            .find(|name| cluster.master_index(name) == 0)
            .unwrap()
    };
    let channel = pick("");
    let pattern = pick("*");
    let matching = format!("{}x", &pattern[..pattern.len() - 1]);
    let mut plain = redis.subscribe(&channel).await.unwrap();
    let mut pat = redis.psubscribe(&pattern).await.unwrap();
    let live = |cluster: &testkit::Cluster, channel: &str, payload: &str| {
        cluster.nodes()[1].cli(&["PUBLISH", channel, payload]);
    };
    live(&cluster, &channel, "before");
    live(&cluster, &matching, "before");
    for sub in [&mut plain, &mut pat] {
        let event = event_within(sub, Duration::from_secs(5)).await;
        assert!(
            matches!(&event, Some(Event::Message(m)) if m.payload == b"before"),
            "{event:?}"
        );
    }

    // Node 0 goes down: both subscriptions are told, and may be told they are back only
    // if they are: a message published on a live node then reaches them.
    cluster.nodes_mut()[0].kill();
    for (sub, target) in [(&mut plain, &channel), (&mut pat, &matching)] {
        let event = event_within(sub, Duration::from_secs(10)).await;
        assert_eq!(event, Some(Event::Disconnected), "{target}");
    }
    let mut up_while_down = Vec::new();
    for (sub, target) in [(&mut plain, &channel), (&mut pat, &matching)] {
        let event = event_within(sub, Duration::from_secs(1)).await;
        up_while_down.push(event == Some(Event::Resubscribed));
        match event {
            None => {}
            Some(Event::Resubscribed) => {
                live(&cluster, target, "while-down");
                let event = event_within(sub, Duration::from_secs(3)).await;
                assert!(
                    matches!(&event, Some(Event::Message(m)) if m.payload == b"while-down"),
                    "Resubscribed was reported for {target}, then its message was lost: {event:?}"
                );
            }
            other => panic!("{target}: {other:?}"),
        }
    }

    // Node 0 comes back: Resubscribed, and from then on nothing is missed.
    cluster.nodes_mut()[0].restart();
    for ((sub, target), mut up) in [(&mut plain, &channel), (&mut pat, &matching)]
        .into_iter()
        .zip(up_while_down)
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 0;
        'publish: while Instant::now() < deadline {
            n += 1;
            let payload = format!("after-{n}");
            // a message published once Resubscribed was seen must arrive
            let must_arrive = up;
            live(&cluster, target, &payload);
            loop {
                match event_within(sub, Duration::from_millis(500)).await {
                    Some(Event::Resubscribed) => up = true,
                    Some(Event::Disconnected | Event::Lagged { .. }) => up = false,
                    Some(Event::Message(m)) if m.payload == payload.as_bytes() => {
                        if must_arrive {
                            break 'publish;
                        }
                        continue 'publish;
                    }
                    Some(Event::Message(_)) => {}
                    Some(other) => panic!("{other:?}"),
                    None => {
                        assert!(
                            !must_arrive,
                            "{target}: {payload} lost after Resubscribed without a gap event"
                        );
                        continue 'publish;
                    }
                }
            }
        }
        assert!(up, "{target}: never resubscribed");
        // subscribed once: on the slot's owner, not also on the node that answered
        // while the owner was down
        live(&cluster, target, "once");
        let mut copies = 0;
        while let Some(event) = event_within(sub, Duration::from_millis(500)).await {
            if matches!(&event, Event::Message(m) if m.payload == b"once") {
                copies += 1;
            }
        }
        assert_eq!(copies, 1, "{target}");
    }
}

#[tokio::test]
async fn a_slow_subscriber_on_a_cluster_gets_its_gap_in_place() {
    let config = testkit::cluster()
        .config()
        .subscription_buffer(4)
        .build()
        .unwrap();
    let redis = Redis::from_config(config).await.unwrap();
    let channel = testkit::prefix("lag");
    let mut sub = redis.subscribe(&channel).await.unwrap();
    // a second subscriber with room for every message, fed in the same order
    let mut witness = redis
        .subscriber()
        .await
        .unwrap()
        .subscribe_with(&channel, redkit_core::SubscribeOptions::new().buffer(100))
        .await
        .unwrap();
    for i in 0..20 {
        redis
            .publish(&channel, format!("{i}").as_bytes())
            .await
            .unwrap();
    }
    // every message reached the slow subscriber's queue before any is read
    for _ in 0..20 {
        next_payload(&mut witness).await;
    }
    for i in 0..4 {
        let event = sub.recv().await.unwrap();
        assert!(
            matches!(&event, Event::Message(m) if m.payload == format!("{i}").as_bytes()),
            "{event:?}"
        );
    }
    redis.publish(&channel, b"later").await.unwrap();
    assert_eq!(sub.recv().await.unwrap(), Event::Lagged { missed: 16 });
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&event, Event::Message(m) if m.payload == b"later"),
        "{event:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_with_tls_reaches_a_tls_only_master_over_tls() {
    // master, replica and sentinels serve TLS only (`port 0`): a cleartext connection to
    // the master cannot work, so every success below went over TLS
    let group = SentinelGroup::start_tls();
    assert!(
        group
            .sentinel_urls()
            .iter()
            .all(|u| u.starts_with("rediss://"))
    );
    let config = group
        .config()
        .password("unused-by-the-test-servers")
        .build()
        .unwrap();
    // the master has no password: AUTH with one is refused by the master itself (the
    // password is for the data nodes, not the sentinels), reached over TLS
    let err = Redis::from_config(config).await.unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");

    let redis = group.redis().await;
    let key = testkit::prefix("tls-sentinel");
    let n: i64 = redis.query(redis::cmd("INCR").arg(&key)).await.unwrap();
    assert_eq!(n, 1);
    // the dedicated pool
    let mut conn = redis.dedicated().await.unwrap();
    let n: i64 = conn.query(redis::cmd("INCR").arg(&key)).await.unwrap();
    assert_eq!(n, 2);
    drop(conn);
    // subscriptions
    let channel = testkit::prefix("tls-sentinel-chan");
    let mut sub = redis.subscribe(&channel).await.unwrap();
    redis.publish(&channel, b"secure").await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, Event::Message(m) if m.payload == b"secure"));

    // Sentinels that mix TLS and cleartext are refused before anything is sent.
    let mut mixed = group.sentinel_urls();
    mixed[0] = mixed[0].replacen("rediss://", "redis://", 1);
    let config = RedisConfig::builder()
        .sentinel(testkit::MASTER_NAME, mixed)
        .build()
        .unwrap();
    let err = Redis::from_config(config).await.unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("mix")),
        "{err:?}"
    );
}
