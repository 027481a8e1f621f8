//! Faults found in review: a handler that panics, and other interleavings of one
//! consumer's handlers, heartbeats and claims on a real server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redkit_streams::{
    Claimed, Consumer, ConsumerInfo, Delivery, Entry, Fields, GroupInfo, Message, Pending,
    PendingSummary, Producer, RedisStreamStore, Result, StartFrom, StreamStore, Trim,
};

fn store(redis: &redkit_core::Redis) -> Arc<RedisStreamStore> {
    Arc::new(RedisStreamStore::new(redis, &redkit_testkit::prefix("review")).unwrap())
}

async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// A handler that panics is a failed run: its entry leaves the in-flight set, so the
/// heartbeats stop touching it, it is retried after `claim_after` and dead-lettered
/// after `max_deliveries`. Before, the panic skipped the removal from the in-flight set
/// and the heartbeat task kept the entry's idle time at zero for as long as the consumer
/// lived: never retried, never dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_leaves_its_entry_to_be_retried() {
    let redis = redkit_testkit::redis().await;
    let s = store(&redis);
    s.create_group("panic", "g", StartFrom::Beginning)
        .await
        .unwrap();
    Producer::<u32>::new(s.clone(), "panic")
        .send(&7)
        .await
        .unwrap();
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let done = Arc::new(AtomicU64::new(0));
    let (sn, dn) = (seen.clone(), done.clone());
    let consumer = Consumer::builder(s.clone(), "panic", "g")
        .name("p")
        .block(Duration::from_millis(50))
        .claim_after(Duration::from_millis(300)) // a heartbeat every 100 ms
        .claim_every(Duration::from_millis(50))
        .max_deliveries(5)
        .build()
        .unwrap()
        .run(move |m: Message<u32>| {
            sn.lock().unwrap().push(m.deliveries);
            let dn = dn.clone();
            async move {
                if m.deliveries == 1 {
                    panic!("the handler panics on its first delivery");
                }
                dn.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        });
    // retried after claim_after (300 ms) by the next claim; generous for a busy machine
    let retried = wait_for(Duration::from_secs(5), || done.load(Ordering::SeqCst) == 1).await;
    let pending = s.pending("panic", "g", 10).await.unwrap();
    let report = consumer.shutdown(Duration::from_secs(2)).await;
    assert!(
        retried,
        "the entry of a panicked handler was never retried: deliveries {:?}, pending {pending:?}",
        seen.lock().unwrap(),
    );
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    assert_eq!((report.processed, report.failed), (1, 1), "{report:?}");
    assert_eq!(s.pending_summary("panic", "g").await.unwrap().count, 0);
}

/// Two `run`s of one `Consumer` (clones share its name, random or given) are one consumer
/// in the group: they must not both read its own backlog and start each entry twice at
/// once, nor count a delivery per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_consumer_start_each_own_pending_entry_once() {
    let redis = redkit_testkit::redis().await;
    let s = store(&redis);
    s.create_group("twice", "g", StartFrom::Beginning)
        .await
        .unwrap();
    let payloads: Vec<u32> = (0..4).collect();
    Producer::<u32>::new(s.clone(), "twice")
        .send_batch(&payloads)
        .await
        .unwrap();
    // the previous process named "w" read all four and died before acking
    assert_eq!(
        s.read_new("twice", "g", "w", 10, None).await.unwrap().len(),
        4
    );
    let consumer = Consumer::builder(s.clone(), "twice", "g")
        .name("w")
        .concurrency(4)
        .block(Duration::from_millis(50))
        .claim_after(Duration::from_secs(30))
        .claim_every(Duration::from_millis(50))
        .build()
        .unwrap();
    let started: Arc<Mutex<Vec<(u32, u64)>>> = Arc::default();
    let run = |c: &Consumer| {
        let started = started.clone();
        c.run(move |m: Message<u32>| {
            started.lock().unwrap().push((m.payload, m.deliveries));
            async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<(), String>(())
            }
        })
    };
    let (one, two) = (run(&consumer), run(&consumer.clone()));
    let drained = wait_for(Duration::from_secs(5), || {
        started.lock().unwrap().len() >= 4
    })
    .await;
    // time for a second start of any entry, while the first handlers still run
    tokio::time::sleep(Duration::from_millis(200)).await;
    // and for a second read of the backlog, which would count a delivery nobody got
    let counts: Vec<u64> = s
        .pending("twice", "g", 10)
        .await
        .unwrap()
        .iter()
        .map(|p| p.deliveries)
        .collect();
    let (r1, r2) = (
        one.shutdown(Duration::from_secs(5)).await,
        two.shutdown(Duration::from_secs(5)).await,
    );
    assert!(drained);
    let mut seen = started.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, [(0, 2), (1, 2), (2, 2), (3, 2)], "{r1:?} {r2:?}");
    assert_eq!(
        counts,
        [2, 2, 2, 2],
        "Redis's delivery counts while the handlers ran"
    );
    assert_eq!(r1.processed + r2.processed, 4);
    assert_eq!(s.pending_summary("twice", "g").await.unwrap().count, 0);
}

/// An entry with thousands of fields (written by another producer) is dead-lettered
/// like any other: the script used to pass every field through Lua's `unpack`, which
/// refuses more than about 8000 values ("too many results to unpack"), so such an entry
/// was never dead-lettered and went round claim after claim for ever. Its fields now go
/// into the dead letter as one `_fields` JSON value, on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_with_thousands_of_fields_is_dead_lettered() {
    let redis = redkit_testkit::redis().await;
    let memory: Arc<dyn StreamStore> = Arc::new(redkit_streams::MemoryStreamStore::new());
    for s in [store(&redis) as Arc<dyn StreamStore>, memory] {
        s.create_group("wide", "g", StartFrom::Beginning)
            .await
            .unwrap();
        // no payload field: dead-lettered at once
        let fields: Vec<(String, String)> = (0..5000)
            .map(|i| (format!("f{i}"), format!("v{i}")))
            .collect();
        let id = s
            .append("wide", std::slice::from_ref(&fields), None)
            .await
            .unwrap()[0]
            .clone();
        let consumer = Consumer::builder(s.clone(), "wide", "g")
            .block(Duration::from_millis(50))
            .claim_after(Duration::from_millis(200))
            .claim_every(Duration::from_millis(50))
            .build()
            .unwrap()
            .run(|_m: Message<u32>| async { Ok::<(), String>(()) });
        let mut dead = Vec::new();
        let until = Instant::now() + Duration::from_secs(5);
        while dead.is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            dead = s.dead_letters("wide", 10).await.unwrap();
        }
        let report = consumer.shutdown(Duration::from_secs(2)).await;
        assert_eq!(dead.len(), 1, "{s:?}: never dead-lettered: {report:?}");
        assert_eq!(report.dead_lettered, 1, "{report:?}");
        let kept: Vec<(String, String)> =
            serde_json::from_str(dead[0].field("_fields").unwrap()).unwrap();
        assert_eq!(kept, fields);
        assert_eq!(dead[0].field("_source_id"), Some(id.as_str()));
        assert!(dead[0].field("_reason").unwrap().contains("no `p` field"));
        assert_eq!(s.pending_summary("wide", "g").await.unwrap().count, 0);
    }
}

/// `append_with_id` takes `<ms>-<seq>` or `<ms>-*` on both backends: anything else is
/// `InvalidArgument` before anything is sent. Redis itself accepts `*` (a new id) and a
/// bare `<ms>` (`<ms>-0`), which the memory store refused: the backends disagreed, and an
/// id outside the documented form was appended on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_ids_outside_the_documented_form_are_refused_by_both_backends() {
    let redis = redkit_testkit::redis().await;
    let memory: Arc<dyn StreamStore> = Arc::new(redkit_streams::MemoryStreamStore::new());
    for s in [store(&redis) as Arc<dyn StreamStore>, memory] {
        let entry = vec![("p".to_string(), "1".to_string())];
        s.append_with_id("ids", "1000-1", &entry, None)
            .await
            .unwrap();
        for bad in ["*", "3000", "3000-", "-1", "3000-1-", "3000-*1", "3000-+1"] {
            let e = s.append_with_id("ids", bad, &entry, None).await;
            assert!(
                matches!(e, Err(redkit_streams::Error::InvalidArgument(_))),
                "{s:?} {bad}: {e:?}"
            );
        }
        assert_eq!(s.len("ids").await.unwrap(), 1, "{s:?}");
    }
}

/// A Redis store whose first `keep_alive` panics (a bug in a store, a panicking log
/// layer): everything else goes to the inner store.
#[derive(Debug)]
struct PanicsOnce {
    inner: Arc<RedisStreamStore>,
    panicked: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl StreamStore for PanicsOnce {
    async fn append(&self, s: &str, e: &[Fields], t: Option<Trim>) -> Result<Vec<String>> {
        self.inner.append(s, e, t).await
    }
    async fn append_with_id(
        &self,
        s: &str,
        id: &str,
        f: &Fields,
        t: Option<Trim>,
    ) -> Result<String> {
        self.inner.append_with_id(s, id, f, t).await
    }
    async fn create_group(&self, s: &str, g: &str, start: StartFrom) -> Result<bool> {
        self.inner.create_group(s, g, start).await
    }
    async fn read_new(
        &self,
        s: &str,
        g: &str,
        c: &str,
        n: usize,
        b: Option<Duration>,
    ) -> Result<Vec<Delivery>> {
        self.inner.read_new(s, g, c, n, b).await
    }
    async fn read_own_pending(
        &self,
        s: &str,
        g: &str,
        c: &str,
        after: &str,
        n: usize,
    ) -> Result<Claimed> {
        self.inner.read_own_pending(s, g, c, after, n).await
    }
    async fn ack(&self, s: &str, g: &str, ids: &[String]) -> Result<u64> {
        self.inner.ack(s, g, ids).await
    }
    async fn ack_owned(&self, s: &str, g: &str, c: &str, ids: &[String]) -> Result<Vec<String>> {
        self.inner.ack_owned(s, g, c, ids).await
    }
    async fn claim(
        &self,
        s: &str,
        g: &str,
        c: &str,
        idle: Duration,
        n: usize,
        cursor: &str,
    ) -> Result<Claimed> {
        self.inner.claim(s, g, c, idle, n, cursor).await
    }
    async fn keep_alive(&self, s: &str, g: &str, c: &str, ids: &[String]) -> Result<Vec<String>> {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("a store bug in keep_alive");
        }
        self.inner.keep_alive(s, g, c, ids).await
    }
    async fn dead_letter(&self, s: &str, g: &str, d: &Delivery, reason: &str) -> Result<String> {
        self.inner.dead_letter(s, g, d, reason).await
    }
    async fn pending_summary(&self, s: &str, g: &str) -> Result<PendingSummary> {
        self.inner.pending_summary(s, g).await
    }
    async fn pending(&self, s: &str, g: &str, n: usize) -> Result<Vec<Pending>> {
        self.inner.pending(s, g, n).await
    }
    async fn groups(&self, s: &str) -> Result<Vec<GroupInfo>> {
        self.inner.groups(s).await
    }
    async fn consumers(&self, s: &str, g: &str) -> Result<Vec<ConsumerInfo>> {
        self.inner.consumers(s, g).await
    }
    async fn remove_idle_consumers(&self, s: &str, g: &str, idle: Duration) -> Result<Vec<String>> {
        self.inner.remove_idle_consumers(s, g, idle).await
    }
    async fn range(&self, s: &str, from: &str, to: &str, n: usize) -> Result<Vec<Entry>> {
        self.inner.range(s, from, to, n).await
    }
    async fn dead_letters(&self, s: &str, n: usize) -> Result<Vec<Entry>> {
        self.inner.dead_letters(s, n).await
    }
    async fn len(&self, s: &str) -> Result<u64> {
        self.inner.len(s).await
    }
}

/// One heartbeat call that panics does not end the heartbeats: the next ones keep the
/// running handler's entry, so a second consumer does not claim and run it again. Before,
/// the panic ended the heartbeat task silently while the consumer went on, and every
/// long handler from then on was claimed and run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_heartbeat_does_not_end_the_heartbeats() {
    let redis = redkit_testkit::redis().await;
    let inner = store(&redis);
    let s: Arc<dyn StreamStore> = Arc::new(PanicsOnce {
        inner: inner.clone(),
        panicked: std::sync::atomic::AtomicBool::new(false),
    });
    s.create_group("hb", "g", StartFrom::Beginning)
        .await
        .unwrap();
    Producer::<u32>::new(s.clone(), "hb")
        .send(&1)
        .await
        .unwrap();
    let claim_after = Duration::from_millis(900); // a heartbeat every 300 ms
    let runs = Arc::new(AtomicU64::new(0));
    let long = |name: &str, store: Arc<dyn StreamStore>| {
        let runs = runs.clone();
        Consumer::builder(store, "hb", "g")
            .name(name)
            .block(Duration::from_millis(50))
            .claim_after(claim_after)
            .claim_every(Duration::from_millis(50))
            .build()
            .unwrap()
            .run(move |_m: Message<u32>| {
                runs.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(3000)).await;
                    Ok::<(), String>(())
                }
            })
    };
    let a = long("a", s.clone());
    assert!(wait_for(Duration::from_secs(5), || runs.load(Ordering::SeqCst) == 1).await);
    // b claims whatever goes idle past claim_after while a's handler runs
    let b = long("b", inner.clone());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (ra, rb) = (
        a.shutdown(Duration::from_secs(5)).await,
        b.shutdown(Duration::from_secs(5)).await,
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "run twice: {ra:?} {rb:?}");
    assert_eq!((ra.processed, rb.processed), (1, 0), "{ra:?} {rb:?}");
    assert!(ra.store_errors >= 1, "the panic is counted: {ra:?}");
}

/// An empty batch is no entries on both backends, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_batch_appends_nothing() {
    let redis = redkit_testkit::redis().await;
    let memory: Arc<dyn StreamStore> = Arc::new(redkit_streams::MemoryStreamStore::new());
    for s in [store(&redis) as Arc<dyn StreamStore>, memory] {
        let ids = tokio::time::timeout(Duration::from_secs(5), s.append("empty", &[], None))
            .await
            .expect("an empty append returns");
        assert_eq!(ids.unwrap(), Vec::<String>::new(), "{s:?}");
        let ids = tokio::time::timeout(
            Duration::from_secs(5),
            Producer::<u32>::new(s.clone(), "empty").send_batch(&[]),
        )
        .await
        .expect("an empty batch returns");
        assert_eq!(ids.unwrap(), Vec::<String>::new(), "{s:?}");
        assert_eq!(s.len("empty").await.unwrap(), 0);
    }
}

/// The own backlog read from a cursor reaches every entry when it has gaps: entries
/// acknowledged meanwhile, entries deleted from the stream (some exactly at a read's
/// boundary), entries claimed by another consumer. Claims cannot help here
/// (`claim_after` is long), so an entry the cursor skipped would stay pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_backlog_with_gaps_is_read_to_its_end() {
    let redis = redkit_testkit::redis().await;
    let s = store(&redis);
    s.create_group("gaps", "g", StartFrom::Beginning)
        .await
        .unwrap();
    let payloads: Vec<u32> = (0..20).collect();
    let ids = Producer::<u32>::new(s.clone(), "gaps")
        .send_batch(&payloads)
        .await
        .unwrap();
    assert_eq!(
        s.read_new("gaps", "g", "w", 20, None).await.unwrap().len(),
        20
    );
    // acknowledged: 1, 2; deleted: 3 (the first read's last), 7, 8; claimed by "x": 10..13
    s.ack("gaps", "g", &ids[1..3]).await.unwrap();
    let key = s.key("gaps").unwrap();
    for i in [3, 7, 8] {
        let _: u64 = redis
            .query(redkit_core::redis::cmd("XDEL").arg(&key).arg(&ids[i]))
            .await
            .unwrap();
    }
    let _: redkit_core::redis::Value = redis
        .query(
            redkit_core::redis::cmd("XCLAIM")
                .arg(&key)
                .arg("g")
                .arg("x")
                .arg(0)
                .arg(&ids[10..13])
                .arg("JUSTID"),
        )
        .await
        .unwrap();
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let sn = seen.clone();
    let consumer = Consumer::builder(s.clone(), "gaps", "g")
        .name("w")
        .concurrency(3)
        .batch(3)
        .block(Duration::from_millis(50))
        .claim_after(Duration::from_secs(30))
        .claim_every(Duration::from_millis(50))
        .build()
        .unwrap()
        .run(move |m: Message<u32>| {
            sn.lock().unwrap().push(m.payload);
            async { Ok::<(), String>(()) }
        });
    let want: Vec<u32> = [0, 4, 5, 6, 9, 13, 14, 15, 16, 17, 18, 19].to_vec();
    let all = wait_for(Duration::from_secs(5), || {
        seen.lock().unwrap().len() >= want.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = consumer.shutdown(Duration::from_secs(2)).await;
    let mut got = seen.lock().unwrap().clone();
    got.sort_unstable();
    assert!(all, "{got:?} {report:?}");
    assert_eq!(got, want, "{report:?}");
    let pending = s.pending("gaps", "g", 100).await.unwrap();
    assert_eq!(pending.len(), 3, "only x's three are left: {pending:?}");
    assert!(pending.iter().all(|p| p.consumer == "x"));
}
