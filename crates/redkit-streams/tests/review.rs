//! Faults found in review: a handler that panics, and other interleavings of one
//! consumer's handlers, heartbeats and claims on a real server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redkit_streams::{Consumer, Message, Producer, RedisStreamStore, StartFrom, StreamStore};

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
