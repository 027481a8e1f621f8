//! The suite every [`StreamStore`] backend must pass. Run it with
//! [`crate::conformance_suite!`].
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{
    Consumer, Delivery, Error, Fields, PAYLOAD_FIELD, Producer, StartFrom, StreamStore, Trim,
};

type Make = dyn Fn() -> (Arc<dyn StreamStore>, Arc<dyn StreamStore>) + Send + Sync;

/// Builds pairs of stores over one backend (two "processes"), on a fresh prefix each.
#[derive(Clone)]
pub struct Suite {
    make: Arc<Make>,
}

impl fmt::Debug for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite").finish_non_exhaustive()
    }
}

impl Suite {
    pub fn new(
        make: impl Fn() -> (Arc<dyn StreamStore>, Arc<dyn StreamStore>) + Send + Sync + 'static,
    ) -> Suite {
        Suite {
            make: Arc::new(make),
        }
    }

    pub fn pair(&self) -> (Arc<dyn StreamStore>, Arc<dyn StreamStore>) {
        (self.make)()
    }
}

fn entry(n: u32) -> Fields {
    vec![(PAYLOAD_FIELD.to_string(), n.to_string())]
}

fn ids(d: &[Delivery]) -> Vec<String> {
    d.iter().map(|d| d.entry.id.clone()).collect()
}

pub async fn appends_come_back_in_order(s: &Suite) {
    let (a, b) = s.pair();
    let ids = a
        .append("log", &[entry(1), entry(2), entry(3)], None)
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    let all = b.range("log", "-", "+", 10).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(all[1].field(PAYLOAD_FIELD), Some("2"));
    assert_eq!(b.range("log", &ids[1], "+", 10).await.unwrap().len(), 2);
    assert_eq!(b.range("log", "-", "+", 1).await.unwrap().len(), 1);
    assert_eq!(b.len("log").await.unwrap(), 3);
    assert_eq!(b.len("nothing").await.unwrap(), 0);
    a.append("log", &[entry(4)], Some(Trim::MaxLen(1000)))
        .await
        .unwrap();
    assert_eq!(b.len("log").await.unwrap(), 4);
    let e = a.append("log", &[Vec::new()], None).await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
}

pub async fn given_ids_and_replay_from_a_time(s: &Suite) {
    let (a, b) = s.pair();
    assert_eq!(
        a.append_with_id("ids", "1000-1", &entry(1), None)
            .await
            .unwrap(),
        "1000-1"
    );
    assert_eq!(
        a.append_with_id("ids", "1000-*", &entry(2), None)
            .await
            .unwrap(),
        "1000-2"
    );
    assert_eq!(
        a.append_with_id("ids", "2000-0", &entry(3), None)
            .await
            .unwrap(),
        "2000-0"
    );
    for bad in ["1500-0", "2000-0", "nope", "0-0"] {
        let e = b
            .append_with_id("ids", bad, &entry(9), None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e:?}");
    }
    let at = std::time::UNIX_EPOCH + Duration::from_millis(1500);
    let from = crate::id_at(at);
    let replay = b.range("ids", &from, "+", 10).await.unwrap();
    assert_eq!(
        replay.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["2000-0"]
    );
}

pub async fn groups_are_created_once_and_start_where_asked(s: &Suite) {
    let (a, b) = s.pair();
    a.append("g", &[entry(1), entry(2)], None).await.unwrap();
    assert!(
        a.create_group("g", "all", StartFrom::Beginning)
            .await
            .unwrap()
    );
    assert!(
        !b.create_group("g", "all", StartFrom::Beginning)
            .await
            .unwrap(),
        "exists: fine"
    );
    assert!(
        a.create_group("g", "new-only", StartFrom::End)
            .await
            .unwrap()
    );
    assert!(
        a.create_group("fresh", "x", StartFrom::Beginning)
            .await
            .unwrap(),
        "MKSTREAM"
    );
    assert_eq!(
        a.read_new("g", "all", "c", 10, None).await.unwrap().len(),
        2
    );
    assert!(
        a.read_new("g", "new-only", "c", 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    a.append("g", &[entry(3)], None).await.unwrap();
    assert_eq!(
        a.read_new("g", "new-only", "c", 10, None)
            .await
            .unwrap()
            .len(),
        1
    );
    let e = a.read_new("g", "missing", "c", 10, None).await.unwrap_err();
    assert!(matches!(e, Error::NoGroup { .. }), "{e:?}");
}

pub async fn reads_stay_pending_until_acked(s: &Suite) {
    let (a, b) = s.pair();
    a.create_group("p", "g", StartFrom::Beginning)
        .await
        .unwrap();
    a.append("p", &[entry(1), entry(2), entry(3)], None)
        .await
        .unwrap();
    let first = a.read_new("p", "g", "c1", 2, None).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|d| d.deliveries == 1));
    let rest = b.read_new("p", "g", "c2", 10, None).await.unwrap();
    assert_eq!(rest.len(), 1, "each entry goes to one consumer");
    let summary = b.pending_summary("p", "g").await.unwrap();
    assert_eq!(summary.count, 3);
    assert_eq!(summary.first.as_deref(), Some(first[0].entry.id.as_str()));
    assert_eq!(
        summary.consumers,
        [("c1".to_string(), 2), ("c2".to_string(), 1)]
    );
    assert_eq!(a.ack("p", "g", &ids(&first)).await.unwrap(), 2);
    assert_eq!(
        a.ack("p", "g", &ids(&first)).await.unwrap(),
        0,
        "acks are idempotent"
    );
    let pending = b.pending("p", "g", 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].consumer, "c2");
    assert_eq!(pending[0].deliveries, 1);
    let groups = a.groups("p").await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].pending, groups[0].lag), (1, Some(0)));
    let consumers = a.consumers("p", "g").await.unwrap();
    assert_eq!(consumers.len(), 2);
}

pub async fn a_blocking_read_wakes_on_append(s: &Suite) {
    let (a, b) = s.pair();
    a.create_group("b", "g", StartFrom::End).await.unwrap();
    let started = Instant::now();
    assert!(
        a.read_new("b", "g", "c", 10, Some(Duration::from_millis(150)))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(140),
        "{:?}",
        started.elapsed()
    );
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.append("b", &[entry(9)], None).await.unwrap();
    });
    let started = Instant::now();
    let got = a
        .read_new("b", "g", "c", 10, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "woken by the append"
    );
    writer.await.unwrap();
}

pub async fn claims_take_idle_entries_and_count_deliveries(s: &Suite) {
    let (a, b) = s.pair();
    a.create_group("c", "g", StartFrom::Beginning)
        .await
        .unwrap();
    a.append("c", &[entry(1), entry(2)], None).await.unwrap();
    let held = a.read_new("c", "g", "dead-worker", 10, None).await.unwrap();
    assert!(
        b.claim("c", "g", "c2", Duration::from_secs(60), 10, "0-0")
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    let claimed = b
        .claim("c", "g", "c2", Duration::from_millis(50), 10, "0-0")
        .await
        .unwrap()
        .deliveries;
    assert_eq!(ids(&claimed), ids(&held));
    assert!(claimed.iter().all(|d| d.deliveries == 2), "{claimed:?}");
    assert_eq!(claimed[0].entry.fields, entry(1));
    // claiming resets the idle time: a second claimer finds nothing
    assert!(
        a.claim("c", "g", "c3", Duration::from_millis(50), 10, "0-0")
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
    let pending = a.pending("c", "g", 10).await.unwrap();
    assert!(pending.iter().all(|p| p.consumer == "c2"));
    // a restarted consumer re-reads its own pending entries, counted again
    let own = b.read_own_pending("c", "g", "c2", "0-0", 10).await.unwrap();
    assert_eq!(ids(&own.deliveries), ids(&held));
    assert!(own.deliveries.iter().all(|d| d.deliveries == 3), "{own:?}");
    assert_eq!(own.cursor, "0-0", "the whole backlog in one read");
}

pub async fn an_own_backlog_is_read_once_from_a_cursor(s: &Suite) {
    let (a, b) = s.pair();
    a.create_group("o", "g", StartFrom::Beginning)
        .await
        .unwrap();
    a.append("o", &(1..=5).map(entry).collect::<Vec<_>>(), None)
        .await
        .unwrap();
    // c holds 1, 3 and 5; other holds 2 and 4: c's entries are not at the head
    let mut mine = Vec::new();
    for (i, consumer) in ["c", "other", "c", "other", "c"].iter().enumerate() {
        let got = a.read_new("o", "g", consumer, 1, None).await.unwrap();
        assert_eq!(got.len(), 1, "{i}");
        if *consumer == "c" {
            mine.push(got[0].entry.id.clone());
        }
    }
    let first = b.read_own_pending("o", "g", "c", "0-0", 2).await.unwrap();
    assert_eq!(ids(&first.deliveries), mine[..2]);
    assert_eq!(first.cursor, mine[1], "the last id read");
    assert!(
        first.deliveries.iter().all(|d| d.deliveries == 2),
        "{first:?}"
    );
    let rest = b
        .read_own_pending("o", "g", "c", &first.cursor, 2)
        .await
        .unwrap();
    assert_eq!(ids(&rest.deliveries), mine[2..]);
    assert_eq!(rest.deliveries[0].deliveries, 2);
    assert_eq!(rest.cursor, "0-0", "fewer than asked: the backlog is read");
    // each own entry was read once: counted once more, never twice
    let pending = a.pending("o", "g", 10).await.unwrap();
    for p in pending {
        let want = if p.consumer == "c" { 2 } else { 1 };
        assert_eq!(p.deliveries, want, "{p:?}");
    }
    // a read exactly at the end of the backlog reports the end on the next one
    let whole = b.read_own_pending("o", "g", "c", "0-0", 3).await.unwrap();
    assert_eq!(whole.cursor, mine[2]);
    let end = b
        .read_own_pending("o", "g", "c", &whole.cursor, 3)
        .await
        .unwrap();
    assert!(end.deliveries.is_empty());
    assert_eq!(end.cursor, "0-0");
}

pub async fn heartbeats_and_acks_leave_claimed_entries_alone(s: &Suite) {
    let (a, b) = s.pair();
    a.create_group("own", "g", StartFrom::Beginning)
        .await
        .unwrap();
    let held = a
        .append("own", &[entry(1), entry(2), entry(3)], None)
        .await
        .unwrap();
    a.read_new("own", "g", "a", 10, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    // b finds the first idle and takes it over
    let claimed = b
        .claim("own", "g", "b", Duration::from_millis(20), 1, "0-0")
        .await
        .unwrap();
    assert_eq!(ids(&claimed.deliveries), held[..1]);
    // a's heartbeat leaves it with b, and says so
    let lost = a.keep_alive("own", "g", "a", &held).await.unwrap();
    assert_eq!(lost, held[..1]);
    let owners = |p: Vec<crate::Pending>| -> Vec<(String, String)> {
        p.into_iter().map(|p| (p.id, p.consumer)).collect()
    };
    assert_eq!(
        owners(a.pending("own", "g", 10).await.unwrap()),
        [
            (held[0].clone(), "b".to_string()),
            (held[1].clone(), "a".to_string()),
            (held[2].clone(), "a".to_string()),
        ]
    );
    // the heartbeat reset the idle time of a's entries only, without counting a delivery
    let pending = a.pending("own", "g", 10).await.unwrap();
    assert!(pending[1].idle < Duration::from_millis(40), "{pending:?}");
    assert_eq!(pending[1].deliveries, 1);
    // a's acks: its own go, b's is refused
    let refused = a.ack_owned("own", "g", "a", &held[..2]).await.unwrap();
    assert_eq!(refused, held[..1]);
    assert_eq!(
        owners(a.pending("own", "g", 10).await.unwrap()),
        [
            (held[0].clone(), "b".to_string()),
            (held[2].clone(), "a".to_string()),
        ]
    );
    // acknowledged or never held: refused too, and a heartbeat reports them lost
    assert_eq!(
        a.ack_owned("own", "g", "a", &held[1..2]).await.unwrap(),
        held[1..2]
    );
    assert_eq!(
        a.keep_alive("own", "g", "a", &held[1..]).await.unwrap(),
        held[1..2]
    );
    assert_eq!(
        b.ack_owned("own", "g", "b", &held[..1]).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(a.keep_alive("own", "g", "a", &[]).await.unwrap().is_empty());
    assert!(a.ack_owned("own", "g", "a", &[]).await.unwrap().is_empty());
}

pub async fn dead_letters_keep_the_entry_and_the_reason(s: &Suite) {
    let (a, b) = s.pair();
    a.create_group("d", "g", StartFrom::Beginning)
        .await
        .unwrap();
    a.append("d", &[entry(7)], None).await.unwrap();
    let got = a.read_new("d", "g", "c", 1, None).await.unwrap();
    let dead_id = b
        .dead_letter("d", "g", &got[0], "bad input {x}")
        .await
        .unwrap();
    assert!(!dead_id.is_empty());
    assert_eq!(
        a.pending_summary("d", "g").await.unwrap().count,
        0,
        "acked with it"
    );
    let dead = a.dead_letters("d", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].field(PAYLOAD_FIELD), Some("7"));
    assert_eq!(dead[0].field("_reason"), Some("bad input {x}"));
    assert_eq!(dead[0].field("_source_id"), Some(got[0].entry.id.as_str()));
    assert_eq!(dead[0].field("_deliveries"), Some("1"));
    assert_eq!(dead[0].field("_group"), Some("g"));
    assert_eq!(
        a.len("d").await.unwrap(),
        1,
        "the entry stays in its stream"
    );
}

pub async fn only_consumers_with_nothing_pending_are_removed(s: &Suite) {
    let (a, _) = s.pair();
    a.create_group("r", "g", StartFrom::Beginning)
        .await
        .unwrap();
    a.append("r", &[entry(1), entry(2)], None).await.unwrap();
    a.read_new("r", "g", "holder", 1, None).await.unwrap();
    let done = a.read_new("r", "g", "idle", 1, None).await.unwrap();
    a.ack("r", "g", &ids(&done)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let removed = a
        .remove_idle_consumers("r", "g", Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(removed, ["idle"]);
    let left: Vec<String> = a
        .consumers("r", "g")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(left, ["holder"]);
    assert_eq!(
        a.pending_summary("r", "g").await.unwrap().count,
        1,
        "nothing pending was lost"
    );
    // a running consumer does it at each claim round when asked
    a.append("r", &[entry(3)], None).await.unwrap();
    let done = a.read_new("r", "g", "idle2", 1, None).await.unwrap();
    a.ack("r", "g", &ids(&done)).await.unwrap();
    let running = Consumer::builder(a.clone(), "r", "g")
        .name("janitor")
        .block(Duration::from_millis(50))
        .claim_every(Duration::from_millis(50))
        .claim_after(Duration::from_secs(60))
        .remove_idle_consumers(Duration::from_millis(100))
        .build()
        .unwrap()
        .run(|_m: crate::Message<u32>| async { Ok::<(), String>(()) });
    tokio::time::sleep(Duration::from_millis(400)).await;
    running.shutdown(Duration::from_secs(1)).await;
    let left: Vec<String> = a
        .consumers("r", "g")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(
        left.contains(&"holder".to_string()) && !left.contains(&"idle2".to_string()),
        "{left:?}"
    );
}

#[derive(Debug, serde::Serialize, serde::Deserialize, Clone, PartialEq)]
struct Job {
    n: u32,
    poison: bool,
}

pub async fn a_consumer_handles_everything_and_dead_letters_poison(s: &Suite) {
    let (a, b) = s.pair();
    let producer = Producer::<Job>::new(a.clone(), "jobs");
    let jobs: Vec<Job> = (0..40).map(|n| Job { n, poison: n == 13 }).collect();
    producer.send_batch(&jobs).await.unwrap();
    a.append(
        "jobs",
        &[vec![(PAYLOAD_FIELD.to_string(), "{not json".to_string())]],
        None,
    )
    .await
    .unwrap();
    a.append(
        "jobs",
        &[vec![("other".to_string(), "x".to_string())]],
        None,
    )
    .await
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let consumer = Consumer::builder(b.clone(), "jobs", "workers")
        .concurrency(4)
        .batch(8)
        .block(Duration::from_millis(100))
        .claim_after(Duration::from_millis(100))
        .claim_every(Duration::from_millis(50))
        .max_deliveries(3)
        .build()
        .unwrap();
    let log = seen.clone();
    let handle = consumer.run(move |m: crate::Message<Job>| {
        let log = log.clone();
        async move {
            if m.payload.poison {
                return Err(format!("job {} is poison", m.payload.n));
            }
            log.lock().unwrap().push(m.payload.n);
            Ok(())
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dead = a.dead_letters("jobs", 10).await.unwrap().len();
        let done = seen.lock().unwrap().len();
        if (dead == 3 && done == 39) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = handle.shutdown(Duration::from_secs(2)).await;
    let done: BTreeSet<u32> = seen.lock().unwrap().iter().copied().collect();
    assert_eq!(done.len(), 39, "every good job once: {done:?}");
    assert_eq!(seen.lock().unwrap().len(), 39, "no job handled twice");
    assert_eq!(report.processed, 39);
    assert_eq!(report.dead_lettered, 3, "{report:?}");
    assert_eq!(
        report.failed, 3,
        "the poison job failed on each of its 3 deliveries"
    );
    let dead = a.dead_letters("jobs", 10).await.unwrap();
    let reasons: Vec<&str> = dead.iter().filter_map(|d| d.field("_reason")).collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("undecodable payload")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no `p` field")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("job 13 is poison")),
        "{reasons:?}"
    );
    assert_eq!(a.pending_summary("jobs", "workers").await.unwrap().count, 0);
}

pub async fn long_handlers_keep_their_entries(s: &Suite) {
    let (a, b) = s.pair();
    Producer::<u32>::new(a.clone(), "slow")
        .send_batch(&[1, 2, 3])
        .await
        .unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let worker = |store: Arc<dyn StreamStore>, name: &str| {
        let runs = runs.clone();
        Consumer::builder(store, "slow", "g")
            .name(name)
            .concurrency(4)
            .block(Duration::from_millis(50))
            .claim_after(Duration::from_millis(300))
            .claim_every(Duration::from_millis(50))
            .build()
            .unwrap()
            .run(move |m: crate::Message<u32>| {
                let runs = runs.clone();
                async move {
                    // three times the visibility timeout
                    tokio::time::sleep(Duration::from_millis(900)).await;
                    runs.lock().unwrap().push(m.payload);
                    Ok::<(), String>(())
                }
            })
    };
    let one = worker(a, "one");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let two = worker(b.clone(), "two");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    one.shutdown(Duration::from_secs(2)).await;
    two.shutdown(Duration::from_secs(2)).await;
    let mut ran = runs.lock().unwrap().clone();
    ran.sort_unstable();
    assert_eq!(
        ran,
        [1, 2, 3],
        "each entry ran once: the other consumer never claimed it"
    );
    assert_eq!(b.pending_summary("slow", "g").await.unwrap().count, 0);
}

pub async fn bad_input_is_a_typed_error(s: &Suite) {
    let (a, _) = s.pair();
    for name in ["", "a{b}"] {
        let e = a.append(name, &[entry(1)], None).await.unwrap_err();
        assert!(matches!(e, Error::InvalidName(_)), "{e:?}");
        let e = a
            .create_group("s", name, StartFrom::Beginning)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidName(_)), "{e:?}");
    }
    a.create_group("s", "g", StartFrom::Beginning)
        .await
        .unwrap();
    for count in [0, crate::MAX_BATCH + 1] {
        let e = a.read_new("s", "g", "c", count, None).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
    let too_many: Vec<Fields> = (0..=crate::MAX_BATCH as u32).map(entry).collect();
    assert!(matches!(
        a.append("s", &too_many, None).await.unwrap_err(),
        Error::InvalidArgument(_)
    ));
    let over = crate::MAX_DURATION + Duration::from_millis(1);
    for builder in [
        Consumer::builder(a.clone(), "s", "g").concurrency(0),
        Consumer::builder(a.clone(), "s", "g").concurrency(crate::MAX_IDS + 1),
        Consumer::builder(a.clone(), "s", "g").concurrency(usize::MAX),
        Consumer::builder(a.clone(), "s", "g").batch(0),
        Consumer::builder(a.clone(), "s", "g").batch(crate::MAX_BATCH + 1),
        Consumer::builder(a.clone(), "s", "g").max_deliveries(0),
        Consumer::builder(a.clone(), "s", "g").block(Duration::ZERO),
        Consumer::builder(a.clone(), "s", "g").block(Duration::from_micros(999)),
        Consumer::builder(a.clone(), "s", "g").block(Duration::MAX),
        Consumer::builder(a.clone(), "s", "g").block(over),
        Consumer::builder(a.clone(), "s", "g").claim_after(Duration::ZERO),
        Consumer::builder(a.clone(), "s", "g").claim_after(Duration::MAX),
        Consumer::builder(a.clone(), "s", "g").claim_every(Duration::ZERO),
        Consumer::builder(a.clone(), "s", "g").claim_every(Duration::MAX),
        Consumer::builder(a.clone(), "s", "g").remove_idle_consumers(Duration::ZERO),
        Consumer::builder(a.clone(), "s", "g").remove_idle_consumers(Duration::MAX),
        Consumer::builder(a.clone(), "s{x}", "g"),
    ] {
        let e = builder.build().unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(_) | Error::InvalidName(_)),
            "{e:?}"
        );
    }
    // the extremes that are allowed
    for builder in [
        Consumer::builder(a.clone(), "s", "g")
            .concurrency(crate::MAX_IDS)
            .batch(crate::MAX_BATCH)
            .max_deliveries(u64::MAX)
            .block(crate::MAX_DURATION)
            .claim_after(crate::MAX_DURATION)
            .claim_every(crate::MAX_DURATION)
            .remove_idle_consumers(crate::MAX_DURATION),
        Consumer::builder(a.clone(), "s", "g")
            .concurrency(1)
            .batch(1)
            .max_deliveries(1)
            .block(Duration::from_millis(1))
            .claim_after(Duration::from_millis(1))
            .claim_every(Duration::from_millis(1))
            .remove_idle_consumers(Duration::from_millis(1)),
    ] {
        builder.build().unwrap();
    }
    let invalid = |e: Error| assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    // durations past the limit: an error before anything is sent, never saturated
    for d in [Duration::MAX, over] {
        invalid(a.read_new("s", "g", "c", 1, Some(d)).await.unwrap_err());
        invalid(a.claim("s", "g", "c", d, 1, "0-0").await.unwrap_err());
        invalid(a.remove_idle_consumers("s", "g", d).await.unwrap_err());
    }
    // trims and ids are checked before the entry is written
    for trim in [
        Trim::MaxLen(0),
        Trim::MaxLen(u64::MAX),
        Trim::MaxLen(i64::MAX as u64 + 1),
        Trim::MinId("nope".into()),
        Trim::MinId("-1-0".into()),
    ] {
        invalid(
            a.append("t", &[entry(1)], Some(trim.clone()))
                .await
                .unwrap_err(),
        );
        invalid(
            a.append_with_id("t", "5-1", &entry(1), Some(trim))
                .await
                .unwrap_err(),
        );
    }
    assert_eq!(a.len("t").await.unwrap(), 0, "nothing half-written");
    a.append("t", &[entry(1)], Some(Trim::MaxLen(i64::MAX as u64)))
        .await
        .unwrap();
    for bad in ["x", "1-x", "+1", "1-2-3", ""] {
        invalid(
            a.claim("s", "g", "c", Duration::from_millis(1), 1, bad)
                .await
                .unwrap_err(),
        );
        invalid(a.read_own_pending("s", "g", "c", bad, 1).await.unwrap_err());
        invalid(a.ack("s", "g", &[bad.to_string()]).await.unwrap_err());
        invalid(
            a.ack_owned("s", "g", "c", &[bad.to_string()])
                .await
                .unwrap_err(),
        );
        invalid(
            a.keep_alive("s", "g", "c", &[bad.to_string()])
                .await
                .unwrap_err(),
        );
        invalid(a.range("s", bad, "+", 1).await.unwrap_err());
        invalid(a.range("s", "-", bad, 1).await.unwrap_err());
        invalid(
            a.create_group("s", "g2", StartFrom::After(bad.to_string()))
                .await
                .unwrap_err(),
        );
    }
    invalid(
        a.read_own_pending("s", "g", "c", "0-0", 0)
            .await
            .unwrap_err(),
    );
    invalid(
        a.read_own_pending("s", "g", "c", "0-0", crate::MAX_BATCH + 1)
            .await
            .unwrap_err(),
    );
    let too_many: Vec<String> = (0..=crate::MAX_IDS).map(|i| format!("{i}-0")).collect();
    invalid(a.ack("s", "g", &too_many).await.unwrap_err());
    invalid(a.ack_owned("s", "g", "c", &too_many).await.unwrap_err());
    invalid(a.keep_alive("s", "g", "c", &too_many).await.unwrap_err());
    // the largest id: taken once, then appends are refused, not wrapped
    let top = format!("{}-{}", u64::MAX, u64::MAX);
    assert_eq!(
        a.append_with_id("top", &top, &entry(1), None)
            .await
            .unwrap(),
        top
    );
    invalid(
        a.append_with_id("top", &format!("{}-*", u64::MAX), &entry(2), None)
            .await
            .unwrap_err(),
    );
    invalid(a.append("top", &[entry(3)], None).await.unwrap_err());
    assert_eq!(a.len("top").await.unwrap(), 1);
    // a group past the last possible id reads nothing and lags by nothing
    a.create_group("top", "g", StartFrom::End).await.unwrap();
    assert!(
        a.read_new("top", "g", "c", 1, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Runs every case of the suite as a test: `conformance_suite!(name, async { Suite })`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@case $make;
                appends_come_back_in_order,
                given_ids_and_replay_from_a_time,
                groups_are_created_once_and_start_where_asked,
                reads_stay_pending_until_acked,
                a_blocking_read_wakes_on_append,
                claims_take_idle_entries_and_count_deliveries,
                an_own_backlog_is_read_once_from_a_cursor,
                heartbeats_and_acks_leave_claimed_entries_alone,
                dead_letters_keep_the_entry_and_the_reason,
                only_consumers_with_nothing_pending_are_removed,
                a_consumer_handles_everything_and_dead_letters_poison,
                long_handlers_keep_their_entries,
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
