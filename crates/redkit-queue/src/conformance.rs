//! The suite every [`Queue`] backend must pass. Run it with [`crate::conformance_suite!`].
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use futures_util::StreamExt;

use crate::{
    Backoff, Enqueued, Error, Event, EventId, EventKind, EventStream, JobId, JobOptions, JobState,
    NewJob, Priority, Queue, QueueConfig, QueueExt, Retention, StartAt, Unique, Worker,
};

pub use redkit_testkit::Time;

type Handle = Arc<dyn Queue>;
type Make = dyn Fn(QueueConfig) -> futures_util::future::BoxFuture<'static, crate::Result<(Handle, Handle)>>
    + Send
    + Sync;

/// Builds pairs of handles on one fresh queue (two "processes"), and says how time passes.
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
    /// `make` gets a config with a fresh prefix and must return two handles on one queue.
    pub fn new<F, Fut>(time: Time, make: F) -> Suite
    where
        F: Fn(QueueConfig) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::Result<(Handle, Handle)>> + Send + 'static,
    {
        Suite {
            make: Arc::new(move |c| Box::pin(make(c))),
            time,
        }
    }

    pub async fn pair(&self, config: QueueConfig) -> (Handle, Handle) {
        (self.make)(config.prefix(redkit_testkit::prefix("queue")).jitter(0.0))
            .await
            .unwrap()
    }
}

const VIS: Duration = Duration::from_secs(30);

fn added(e: &Enqueued) -> JobId {
    match e {
        Enqueued::Added(id) => id.clone(),
        other => panic!("expected a new job, got {other:?}"),
    }
}

async fn fetch_ids(q: &Handle, n: usize) -> Vec<String> {
    q.fetch(n, VIS)
        .await
        .unwrap()
        .deliveries
        .into_iter()
        .map(|d| d.id().to_string())
        .collect()
}

fn text(d: &crate::Delivery) -> String {
    serde_json::from_slice(&d.payload).unwrap()
}

pub async fn jobs_run_in_order_and_complete(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new()).await;
    let ids = a
        .enqueue_many(&["one", "two", "three"], &JobOptions::new())
        .await
        .unwrap();
    let ids: Vec<JobId> = ids.iter().map(added).collect();
    assert_eq!(a.stats().await.unwrap().waiting, 3);
    let got = b.fetch(10, VIS).await.unwrap();
    let texts: Vec<String> = got.deliveries.iter().map(text).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    let d = &got.deliveries[0];
    assert_eq!((d.attempt, d.max_attempts, d.stalls), (1, 3, 0));
    assert_eq!(d.id(), &ids[0]);
    assert_eq!(
        a.job(&ids[1]).await.unwrap().unwrap().state,
        JobState::Active
    );
    let stats = a.stats().await.unwrap();
    assert_eq!((stats.waiting, stats.active), (0, 3));
    let done: Vec<_> = got
        .deliveries
        .iter()
        .map(|d| (d.lease.clone(), Bytes::from_static(b"null")))
        .collect();
    assert_eq!(b.complete(&done).await.unwrap(), vec![true; 3]);
    // completed jobs are deleted by default
    assert!(a.job(&ids[0]).await.unwrap().is_none());
    assert_eq!(a.stats().await.unwrap(), crate::Stats::default());
    // a second completion of the same delivery changes nothing
    assert_eq!(b.complete(&done[..1]).await.unwrap(), vec![false]);
}

pub async fn completed_jobs_are_kept_with_their_results_when_asked(s: &Suite) {
    let config = QueueConfig::new().keep_completed(Retention::Keep {
        count: Some(2),
        age: None,
    });
    let (a, _) = s.pair(config).await;
    let ids: Vec<JobId> = a
        .enqueue_many(&[1, 2, 3], &JobOptions::new())
        .await
        .unwrap()
        .iter()
        .map(added)
        .collect();
    for (i, d) in a
        .fetch(3, VIS)
        .await
        .unwrap()
        .deliveries
        .into_iter()
        .enumerate()
    {
        let result = Bytes::from(format!("{{\"r\":{i}}}"));
        assert_eq!(a.complete(&[(d.lease, result)]).await.unwrap(), vec![true]);
    }
    // at most two kept: the oldest went
    assert!(a.job(&ids[0]).await.unwrap().is_none());
    let info = a.job(&ids[2]).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Completed);
    assert_eq!(info.result.as_deref(), Some(b"{\"r\":2}".as_slice()));
    assert_eq!(a.stats().await.unwrap().completed, 2);
    let page = a.list(JobState::Completed, 0, 10).await.unwrap();
    let listed: Vec<&JobId> = page.iter().map(|j| &j.id).collect();
    assert_eq!(listed, [&ids[1], &ids[2]]);
}

pub async fn higher_priorities_run_first(s: &Suite) {
    let (a, _) = s.pair(QueueConfig::new()).await;
    for (name, p) in [
        ("low", Priority::Low),
        ("normal", Priority::Normal),
        ("critical", Priority::Critical),
        ("high", Priority::High),
        ("normal2", Priority::Normal),
    ] {
        a.enqueue(&name, &JobOptions::new().priority(p))
            .await
            .unwrap();
    }
    let got = a.fetch(10, VIS).await.unwrap();
    let order: Vec<String> = got.deliveries.iter().map(text).collect();
    assert_eq!(order, ["critical", "high", "normal", "normal2", "low"]);
}

pub async fn delayed_jobs_wait_for_their_time(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new()).await;
    let id = added(
        &a.enqueue(
            &"later",
            &JobOptions::new().delay(Duration::from_millis(400)),
        )
        .await
        .unwrap(),
    );
    a.enqueue(&"now", &JobOptions::new()).await.unwrap();
    assert_eq!(a.job(&id).await.unwrap().unwrap().state, JobState::Delayed);
    let first = b.fetch(10, VIS).await.unwrap();
    assert_eq!(
        first.deliveries.iter().map(text).collect::<Vec<_>>(),
        ["now"]
    );
    let due = first.next_due.expect("a delayed job is scheduled");
    assert!(due <= Duration::from_millis(400), "{due:?}");
    assert_eq!(a.stats().await.unwrap().delayed, 1);
    s.time.pass(Duration::from_millis(500)).await;
    let later = b.fetch(10, VIS).await.unwrap();
    assert_eq!(
        later.deliveries.iter().map(text).collect::<Vec<_>>(),
        ["later"]
    );
}

pub async fn failures_retry_then_die_and_dead_jobs_can_be_retried(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new().max_attempts(2)).await;
    let id = added(&a.enqueue(&"flaky", &JobOptions::new()).await.unwrap());
    let d = b.fetch(1, VIS).await.unwrap().deliveries.remove(0);
    assert!(!d.is_last_attempt());
    b.fail(&d.lease, "database down", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    let info = a.job(&id).await.unwrap().unwrap();
    assert_eq!((info.state, info.attempts), (JobState::Failed, 1));
    assert_eq!(info.error.as_deref(), Some("database down"));
    assert!(
        b.fetch(1, VIS).await.unwrap().deliveries.is_empty(),
        "not before its backoff"
    );
    s.time.pass(Duration::from_millis(400)).await;
    let d = b.fetch(1, VIS).await.unwrap().deliveries.remove(0);
    assert_eq!((d.attempt, d.is_last_attempt()), (2, true));
    // a lease is good for one settlement
    b.fail(&d.lease, "still down", None).await.unwrap();
    assert!(matches!(
        b.fail(&d.lease, "again", None).await,
        Err(Error::LeaseLost(_))
    ));
    let info = a.job(&id).await.unwrap().unwrap();
    assert_eq!((info.state, info.attempts), (JobState::Dead, 2));
    assert_eq!(info.error.as_deref(), Some("still down"));
    assert_eq!(a.stats().await.unwrap().dead, 1);
    assert_eq!(a.list(JobState::Dead, 0, 10).await.unwrap()[0].id, id);
    // a dead job comes back with fresh attempts
    assert_eq!(a.retry_dead(&[], 10).await.unwrap(), 1);
    let d = b.fetch(1, VIS).await.unwrap().deliveries.remove(0);
    assert_eq!((d.attempt, d.id()), (1, &id));
    // a retry without delay is ready at once
    b.fail(&d.lease, "blip", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(fetch_ids(&b, 1).await, [id.to_string()]);
}

pub async fn a_lost_lease_cannot_settle_a_redelivered_job(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new()).await;
    let id = added(&a.enqueue(&"job", &JobOptions::new()).await.unwrap());
    let old = a
        .fetch(1, Duration::from_millis(200))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    // the first worker stalls past its lease: the job goes to the second, an attempt counted
    s.time.pass(Duration::from_millis(300)).await;
    let new = b.fetch(1, VIS).await.unwrap().deliveries.remove(0);
    assert_eq!(new.id(), &id);
    assert_eq!((new.attempt, new.stalls), (2, 1));
    // the first worker wakes up: it can neither extend, complete nor fail the job
    assert_eq!(
        a.extend(std::slice::from_ref(&old.lease), VIS)
            .await
            .unwrap(),
        vec![false]
    );
    assert_eq!(
        a.complete(&[(old.lease.clone(), Bytes::new())])
            .await
            .unwrap(),
        vec![false]
    );
    assert!(matches!(
        a.fail(&old.lease, "late", None).await,
        Err(Error::LeaseLost(lost)) if lost == id
    ));
    assert_eq!(a.release(&[old.lease]).await.unwrap(), 0);
    // the live delivery still holds
    assert_eq!(
        b.extend(std::slice::from_ref(&new.lease), VIS)
            .await
            .unwrap(),
        vec![true]
    );
    assert_eq!(
        b.complete(&[(new.lease, Bytes::new())]).await.unwrap(),
        vec![true]
    );
    assert!(a.job(&id).await.unwrap().is_none());
}

pub async fn jobs_that_keep_stalling_die(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new().max_attempts(2)).await;
    let id = added(&a.enqueue(&"poison", &JobOptions::new()).await.unwrap());
    // two workers in turn take it and die with it (their leases run out)
    for (n, q) in [&a, &b].into_iter().enumerate() {
        let got = q.fetch(5, Duration::from_millis(100)).await.unwrap();
        assert_eq!(got.deliveries.len(), 1);
        assert_eq!(got.deliveries[0].stalls, n as u32);
        s.time.pass(Duration::from_millis(200)).await;
    }
    // the next sweep finds its attempts spent
    assert!(a.fetch(5, VIS).await.unwrap().deliveries.is_empty());
    let info = a.job(&id).await.unwrap().unwrap();
    assert_eq!((info.state, info.attempts), (JobState::Dead, 2));
    assert!(info.error.unwrap().starts_with("stalled"));

    // with no dead jobs kept, a job that stalls to death is deleted
    let (a, _) = s
        .pair(
            QueueConfig::new()
                .max_attempts(1)
                .keep_dead(Retention::None),
        )
        .await;
    let id = added(&a.enqueue(&"poison", &JobOptions::new()).await.unwrap());
    assert_eq!(fetch_ids(&a, 1).await.len(), 1);
    s.time.pass(VIS + Duration::from_millis(100)).await;
    assert!(a.fetch(5, VIS).await.unwrap().deliveries.is_empty());
    assert!(a.job(&id).await.unwrap().is_none());
    assert_eq!(a.stats().await.unwrap().dead, 0);
}

fn kinds(events: &[Event]) -> Vec<(EventKind, String)> {
    events.iter().map(|e| (e.kind, e.job.to_string())).collect()
}

pub async fn progress_is_kept_and_events_tell_what_happened(s: &Suite) {
    let config = QueueConfig::new()
        .events(1000)
        .max_payload(100)
        .keep_completed(Retention::Keep {
            count: None,
            age: None,
        });
    let (a, b) = s.pair(config).await;
    assert_eq!(b.last_event_id().await.unwrap(), EventId::start());
    let ids: Vec<JobId> = a
        .enqueue_many(&["done", "retried", "buried"], &JobOptions::new())
        .await
        .unwrap()
        .iter()
        .map(added)
        .collect();
    let got = b.fetch(3, VIS).await.unwrap().deliveries;
    let progress = Bytes::from_static(b"{\"pct\":50}");
    b.progress(&got[0].lease, progress.clone()).await.unwrap();
    let info = a.job(&ids[0]).await.unwrap().unwrap();
    assert_eq!(info.progress.as_ref(), Some(&progress));
    assert!(matches!(
        b.progress(&got[0].lease, Bytes::from(vec![b'x'; 101]))
            .await,
        Err(Error::TooLarge { size: 101, .. })
    ));
    assert_eq!(
        b.complete(&[(got[0].lease.clone(), Bytes::from_static(b"1"))])
            .await
            .unwrap(),
        vec![true]
    );
    // kept with the completed job
    let info = a.job(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (info.state, info.progress),
        (JobState::Completed, Some(progress))
    );
    b.fail(&got[1].lease, "oops", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    b.progress(&got[2].lease, Bytes::from_static(b"7"))
        .await
        .unwrap();
    b.fail(&got[2].lease, "gone", None).await.unwrap();
    // a delivery that ended can no longer report
    assert!(matches!(
        b.progress(&got[2].lease, Bytes::from_static(b"8")).await,
        Err(Error::LeaseLost(_))
    ));

    let events = a
        .events(&EventId::start(), 100, Duration::ZERO)
        .await
        .unwrap();
    let (one, two, three) = (ids[0].to_string(), ids[1].to_string(), ids[2].to_string());
    assert_eq!(
        kinds(&events),
        [
            (EventKind::Progress, one.clone()),
            (EventKind::Completed, one.clone()),
            (EventKind::Failed, two.clone()),
            (EventKind::Progress, three.clone()),
            (EventKind::Dead, three.clone()),
        ]
    );
    assert_eq!(
        events[0].progress::<serde_json::Value>().unwrap()["pct"],
        50
    );
    assert_eq!(events[2].error(), Some("oops"));
    assert_eq!(events[4].error(), Some("gone"));
    assert!(events[1].progress::<u32>().is_err());
    assert!(events.windows(2).all(|w| {
        let id = |e: &Event| crate::EventId::split(e.id.as_str()).unwrap();
        id(&w[0]) < id(&w[1])
    }));
    assert_eq!(a.last_event_id().await.unwrap(), events[4].id);
    // reading after an id, in pages
    let rest = b.events(&events[1].id, 2, Duration::ZERO).await.unwrap();
    assert_eq!(rest, events[2..4]);
    // a retried dead job starts with no progress
    assert_eq!(a.retry_dead(&[ids[2].clone()], 0).await.unwrap(), 1);
    assert_eq!(a.job(&ids[2]).await.unwrap().unwrap().progress, None);

    // a stalled delivery is an event too
    let lease = b
        .fetch(1, Duration::from_millis(100))
        .await
        .unwrap()
        .deliveries;
    assert_eq!(lease[0].id(), &ids[2]);
    s.time.pass(Duration::from_millis(200)).await;
    let last = a.last_event_id().await.unwrap();
    b.fetch(0, VIS).await.unwrap();
    let stalled = a.events(&last, 10, Duration::ZERO).await.unwrap();
    assert_eq!(kinds(&stalled), [(EventKind::Stalled, three.clone())]);
    assert!(stalled[0].error().unwrap().starts_with("stalled"));

    // a blocked read wakes up for a new event
    let last = stalled[0].id.clone();
    let reader = {
        let a = a.clone();
        tokio::spawn(async move { a.events(&last, 10, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = b.fetch(1, VIS).await.unwrap().deliveries.remove(0);
    b.progress(&next.lease, Bytes::from_static(b"1"))
        .await
        .unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the blocked read returned")
        .unwrap()
        .unwrap();
    assert_eq!(kinds(&woke), [(EventKind::Progress, three)]);
    // nothing new: a read waits its time and comes back empty
    assert!(
        a.events(&woke[0].id, 10, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );

    // a worker's handler reports progress; the event stream shows it before the completion
    let id = added(&a.enqueue(&"report", &JobOptions::new()).await.unwrap());
    let stream = EventStream::new(a.clone(), StartAt::After(woke[0].id.clone()))
        .batch(2)
        .wait(Duration::from_millis(200));
    let worker = Worker::builder(b.clone())
        .idle_wait(Duration::from_millis(20))
        .build()
        .unwrap()
        .run(|job: crate::Job<String>| async move {
            job.progress(&serde_json::json!({ "step": 1 })).await?;
            job.progress(&serde_json::json!({ "step": 2 })).await?;
            Ok::<_, Error>(())
        });
    let seen: Vec<Event> = tokio::time::timeout(
        Duration::from_secs(10),
        stream
            .filter_map(|e| {
                let id = id.clone();
                async move { e.ok().filter(|e| e.job == id) }
            })
            .take(3)
            .collect(),
    )
    .await
    .expect("the stream delivered the worker's events");
    worker.shutdown(Duration::from_secs(5)).await;
    let id = id.to_string();
    assert_eq!(
        kinds(&seen),
        [
            (EventKind::Progress, id.clone()),
            (EventKind::Progress, id.clone()),
            (EventKind::Completed, id)
        ]
    );
    assert_eq!(seen[1].progress::<serde_json::Value>().unwrap()["step"], 2);

    // a queue that records no events says so
    let (quiet, _) = s.pair(QueueConfig::new()).await;
    assert!(matches!(
        quiet.events(&EventId::start(), 10, Duration::ZERO).await,
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        a.events(&EventId::start(), 0, Duration::ZERO).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(EventId::parse("12-x").is_err());
}

/// The queue's time as the test sees it.
fn now(s: &Suite) -> SystemTime {
    match &s.time {
        Time::Real => SystemTime::now(),
        Time::Manual(clock) => {
            use redkit_core::Clock;
            UNIX_EPOCH + clock.now()
        }
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

pub async fn an_occurrence_is_enqueued_once_and_one_scheduler_holds_the_lease(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new()).await;
    let at = UNIX_EPOCH + Duration::from_millis(ms(now(s)) + 60_000);
    let job = || NewJob::new("{}", JobOptions::new().id(format!("nightly@{}", ms(at))));
    let first = a.fire("nightly", at, job()).await.unwrap().unwrap();
    assert_eq!(first.id().as_str(), format!("nightly@{}", ms(at)));
    assert!(matches!(first, Enqueued::Added(_)));
    // the same occurrence, or an earlier one, from anywhere: refused
    assert!(b.fire("nightly", at, job()).await.unwrap().is_none());
    let earlier = at - Duration::from_secs(1);
    assert!(b.fire("nightly", earlier, job()).await.unwrap().is_none());
    assert_eq!(b.last_fired("nightly").await.unwrap(), Some(at));
    assert_eq!(b.last_fired("other").await.unwrap(), None);
    // due at the occurrence
    let info = b.job(first.id()).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Delayed);
    // a past occurrence is ready at once
    let past = now(s) - Duration::from_secs(5);
    let ready = a
        .fire(
            "once",
            past,
            NewJob::new("{}", JobOptions::new().id("once@1")),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b.job(ready.id()).await.unwrap().unwrap().state,
        JobState::Waiting
    );
    assert!(matches!(
        a.fire("a{b}", at, job()).await,
        Err(Error::InvalidArgument(_))
    ));

    // the lease: one holder, renewed by it, free when it runs out or is given back
    let ttl = Duration::from_millis(300);
    assert!(a.schedule_lease("A", ttl).await.unwrap().0);
    assert!(!b.schedule_lease("B", ttl).await.unwrap().0);
    assert!(a.schedule_lease("A", ttl).await.unwrap().0);
    s.time.pass(Duration::from_millis(400)).await;
    let (held, time) = b.schedule_lease("B", ttl).await.unwrap();
    assert!(held);
    // the queue's time, not far from the test's
    let skew = ms(time).abs_diff(ms(now(s)));
    assert!(skew < 2_000, "{skew} ms");
    assert!(!a.schedule_lease("A", ttl).await.unwrap().0);
    a.schedule_release("A").await.unwrap();
    assert!(!a.schedule_lease("A", ttl).await.unwrap().0);
    b.schedule_release("B").await.unwrap();
    assert!(a.schedule_lease("A", ttl).await.unwrap().0);
}

/// Runs jobs of `q` until stopped, recording each run's job id.
fn record_runs(q: &Handle) -> (crate::WorkerHandle, Arc<std::sync::Mutex<Vec<String>>>) {
    let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handle = {
        let runs = runs.clone();
        Worker::builder(q.clone())
            .idle_wait(Duration::from_millis(20))
            .build()
            .unwrap()
            .run(move |job: crate::Job<serde_json::Value>| {
                runs.lock().unwrap().push(job.id.to_string());
                async { Ok::<_, Error>(()) }
            })
    };
    (handle, runs)
}

pub async fn schedulers_in_two_processes_run_each_occurrence_once(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new()).await;
    let every = Duration::from_millis(500);
    let repeat = || {
        crate::Repeat::new("tick", crate::Schedule::every(every).unwrap(), &"t")
            .unwrap()
            .options(JobOptions::new().priority(Priority::High))
    };
    let scheduler = |q: &Handle| {
        crate::Scheduler::builder(q.clone())
            .repeat(repeat())
            .lease(Duration::from_millis(300))
            .tick(Duration::from_millis(20))
            .build()
            .unwrap()
            .start()
    };
    let (worker, runs) = record_runs(&b);
    let one = scheduler(&a);
    let two = scheduler(&b);
    let step = Duration::from_millis(250);
    let settle = || tokio::time::sleep(Duration::from_millis(60));
    for _ in 0..6 {
        s.time.pass(step).await;
        settle().await;
    }
    assert!(
        one.is_owner() ^ two.is_owner(),
        "exactly one owner: {} {}",
        one.is_owner(),
        two.is_owner()
    );
    // the owner stops: the other takes over
    let (gone, stays) = if one.is_owner() {
        (one, two)
    } else {
        (two, one)
    };
    gone.shutdown().await;
    for _ in 0..6 {
        s.time.pass(step).await;
        settle().await;
    }
    assert!(stays.is_owner());
    stays.shutdown().await;
    s.time.pass(every).await;
    settle().await;
    for _ in 0..100 {
        if a.stats().await.unwrap().waiting + a.stats().await.unwrap().active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;
    let mut ran: Vec<u64> = runs
        .lock()
        .unwrap()
        .iter()
        .map(|id| {
            let id = JobId(id.clone());
            let (name, at) = crate::occurrence_of(&id).unwrap();
            assert_eq!(name, "tick");
            ms(at)
        })
        .collect();
    let count = ran.len();
    ran.sort_unstable();
    ran.dedup();
    assert_eq!(ran.len(), count, "an occurrence ran twice: {ran:?}");
    assert!(count >= 5, "{ran:?}");
    // every occurrence from the first to the last, none skipped across the takeover
    let every_ms = every.as_millis() as u64;
    assert!(ran.windows(2).all(|w| w[1] - w[0] == every_ms), "{ran:?}");
    assert!(ran.iter().all(|at| at % every_ms == 0));
}

pub async fn missed_occurrences_run_once_or_are_skipped(s: &Suite) {
    let (a, _) = s.pair(QueueConfig::new()).await;
    let hour = Duration::from_secs(3600);
    let hour_ms = 3_600_000;
    let current = ms(now(s)) / hour_ms * hour_ms;
    // the schedules last fired three hours ago
    for name in ["catch-up", "skipper"] {
        let at = UNIX_EPOCH + Duration::from_millis(current - 3 * hour_ms);
        let id = format!("{name}@{}", ms(at));
        a.fire(name, at, NewJob::new("1", JobOptions::new().id(id)))
            .await
            .unwrap()
            .unwrap();
    }
    let every = || crate::Schedule::every(hour).unwrap();
    let scheduler = crate::Scheduler::builder(a.clone())
        .repeat(crate::Repeat::new("catch-up", every(), &1).unwrap())
        .repeat(
            crate::Repeat::new("skipper", every(), &1)
                .unwrap()
                .missed(crate::Missed::Skip),
        )
        .tick(Duration::from_millis(20))
        .build()
        .unwrap()
        .start();
    let next = format!("@{}", current + hour_ms);
    for _ in 0..200 {
        if a.last_fired("skipper").await.unwrap()
            == Some(UNIX_EPOCH + Duration::from_millis(current + hour_ms))
            && a.last_fired("catch-up").await.unwrap()
                == Some(UNIX_EPOCH + Duration::from_millis(current + hour_ms))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    scheduler.shutdown().await;
    let mut waiting: Vec<String> = a
        .list(JobState::Waiting, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id.to_string())
        .collect();
    waiting.sort();
    // the old occurrences (ready at once) are still there, the latest missed hour of
    // "catch-up" runs now, "skipper" skipped its missed hours
    let old = current - 3 * hour_ms;
    let mut expected = [
        format!("catch-up@{current}"),
        format!("catch-up@{old}"),
        format!("skipper@{old}"),
    ];
    expected.sort();
    assert_eq!(waiting, expected);
    let mut delayed: Vec<String> = a
        .list(JobState::Delayed, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id.to_string())
        .collect();
    delayed.sort();
    assert_eq!(
        delayed,
        [format!("catch-up{next}"), format!("skipper{next}")]
    );
    // bad options are refused at build
    let bad = crate::Scheduler::builder(a.clone())
        .repeat(
            crate::Repeat::new("x", every(), &1)
                .unwrap()
                .options(JobOptions::new().delay(hour)),
        )
        .build();
    assert!(matches!(bad, Err(Error::InvalidConfig(_))));
    let twice = crate::Scheduler::builder(a.clone())
        .repeat(crate::Repeat::new("x", every(), &1).unwrap())
        .repeat(crate::Repeat::new("x", every(), &1).unwrap())
        .build();
    assert!(matches!(twice, Err(Error::InvalidConfig(_))));
    assert!(
        crate::Scheduler::builder(a.clone())
            .lease(Duration::from_millis(1))
            .build()
            .is_err()
    );
}

pub async fn duplicates_are_refused_by_id_and_unique_key(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new()).await;
    let first = a
        .enqueue(&1, &JobOptions::new().id("order-7"))
        .await
        .unwrap();
    assert_eq!(first, Enqueued::Added(JobId("order-7".into())));
    assert_eq!(
        b.enqueue(&2, &JobOptions::new().id("order-7"))
            .await
            .unwrap(),
        Enqueued::Duplicate(JobId("order-7".into()))
    );
    // until finished: a duplicate while the first is live, free once it completed
    let opts = JobOptions::new().unique(Unique::UntilFinished("mail:ada".into()));
    let one = added(&a.enqueue(&"a", &opts).await.unwrap());
    assert_eq!(
        b.enqueue(&"b", &opts).await.unwrap(),
        Enqueued::Duplicate(one.clone())
    );
    let got = a.fetch(10, VIS).await.unwrap();
    let d = got.deliveries.iter().find(|d| d.id() == &one).unwrap();
    assert_eq!(
        b.enqueue(&"b", &opts).await.unwrap(),
        Enqueued::Duplicate(one.clone())
    );
    a.complete(&[(d.lease.clone(), Bytes::new())])
        .await
        .unwrap();
    let two = added(&b.enqueue(&"c", &opts).await.unwrap());
    assert_ne!(two, one);
    // for a time: a duplicate until the time passes, whatever became of the first
    let opts = JobOptions::new().unique(Unique::For("digest".into(), Duration::from_millis(300)));
    let three = added(&a.enqueue(&"d", &opts).await.unwrap());
    assert!(a.remove(&three).await.unwrap());
    assert_eq!(
        a.enqueue(&"e", &opts).await.unwrap(),
        Enqueued::Duplicate(three)
    );
    s.time.pass(Duration::from_millis(400)).await;
    added(&a.enqueue(&"f", &opts).await.unwrap());
    // a batch with duplicates inside it
    let batch = a
        .enqueue_bytes(vec![
            NewJob::new("1", JobOptions::new().id("x-1")),
            NewJob::new("2", JobOptions::new().id("x-1")),
            NewJob::new("3", JobOptions::new()),
        ])
        .await
        .unwrap();
    assert!(matches!(&batch[0], Enqueued::Added(i) if i.as_str() == "x-1"));
    assert!(matches!(&batch[1], Enqueued::Duplicate(i) if i.as_str() == "x-1"));
    assert!(matches!(batch[2], Enqueued::Added(_)));
}

pub async fn pause_release_list_and_remove(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new()).await;
    let ids: Vec<JobId> = a
        .enqueue_many(&[0, 1, 2, 3, 4], &JobOptions::new())
        .await
        .unwrap()
        .iter()
        .map(added)
        .collect();
    a.pause().await.unwrap();
    assert!(a.stats().await.unwrap().paused);
    assert!(b.fetch(10, VIS).await.unwrap().deliveries.is_empty());
    a.resume().await.unwrap();
    let page = a.list(JobState::Waiting, 1, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|j| &j.id).collect::<Vec<_>>(),
        [&ids[1], &ids[2]]
    );
    assert!(a.remove(&ids[1]).await.unwrap());
    assert!(!a.remove(&ids[1]).await.unwrap());
    assert!(a.job(&ids[1]).await.unwrap().is_none());
    // the removed job's place in line is skipped (it uses up one of the fetch's slots)
    let got = b.fetch(3, VIS).await.unwrap();
    let got_ids: Vec<&JobId> = got.deliveries.iter().map(|d| d.id()).collect();
    assert_eq!(got_ids, [&ids[0], &ids[2]], "a removed job is skipped");
    // handed back unrun: first in line again, no attempt counted
    let leases: Vec<_> = got.deliveries.iter().map(|d| d.lease.clone()).collect();
    assert_eq!(b.release(&leases).await.unwrap(), 2);
    let again = b.fetch(1, VIS).await.unwrap().deliveries.remove(0);
    assert!(again.id() == &ids[0] || again.id() == &ids[2]);
    assert_eq!(again.attempt, 1);
    assert_eq!(a.list(JobState::Active, 0, 10).await.unwrap().len(), 1);
}

pub async fn bad_input_is_a_typed_error(s: &Suite) {
    let (a, _) = s.pair(QueueConfig::new().max_payload(100)).await;
    let big = NewJob::new(vec![b'x'; 101], JobOptions::new());
    assert!(matches!(
        a.enqueue_bytes(vec![NewJob::new("1", JobOptions::new()), big])
            .await,
        Err(Error::TooLarge {
            size: 101,
            limit: 100
        })
    ));
    assert_eq!(
        a.stats().await.unwrap().waiting,
        0,
        "nothing of a refused batch is added"
    );
    for opts in [
        JobOptions::new().id("42"),
        JobOptions::new().id("a{b}"),
        JobOptions::new().id(""),
        JobOptions::new().max_attempts(0),
        JobOptions::new().jitter(1.5),
        JobOptions::new().timeout(Duration::ZERO),
        JobOptions::new().unique(Unique::UntilFinished("{x}".into())),
        JobOptions::new().unique(Unique::For("k".into(), Duration::ZERO)),
        JobOptions::new().backoff(Backoff::Exponential {
            base: Duration::ZERO,
            max: Duration::from_secs(1),
        }),
    ] {
        let e = a.enqueue(&1, &opts).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{opts:?}: {e:?}");
    }
    let too_many = vec![NewJob::new("1", JobOptions::new()); crate::MAX_BATCH + 1];
    assert!(matches!(
        a.enqueue_bytes(too_many).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        a.fetch(1, Duration::ZERO).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        a.fetch(crate::MAX_BATCH + 1, VIS).await,
        Err(Error::InvalidArgument(_))
    ));
    let q: Arc<dyn Queue> = a.clone();
    for bad in [
        Worker::builder(q.clone()).concurrency(0),
        Worker::builder(q.clone()).batch(0),
        Worker::builder(q.clone()).visibility_timeout(Duration::ZERO),
        Worker::builder(q.clone()).heartbeat(Duration::from_secs(60)),
    ] {
        assert!(matches!(bad.build(), Err(Error::InvalidConfig(_))));
    }
}

#[derive(Debug, serde::Deserialize)]
struct Task {
    n: u32,
}

pub async fn a_worker_runs_retries_and_dead_letters(s: &Suite) {
    let config = QueueConfig::new()
        .max_attempts(3)
        .backoff(Backoff::Fixed(Duration::ZERO));
    let (a, b) = s.pair(config).await;
    let mut jobs: Vec<NewJob> = (0..20)
        .map(|n| NewJob::new(format!("{{\"n\":{n}}}"), JobOptions::new()))
        .collect();
    jobs.push(NewJob::new("not json", JobOptions::new()));
    a.enqueue_bytes(jobs).await.unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let worker = Worker::builder(b.clone())
        .concurrency(4)
        .batch(3)
        .idle_wait(Duration::from_millis(20))
        .build()
        .unwrap();
    let handle = {
        let runs = runs.clone();
        worker.run(move |job: crate::Job<Task>| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                match job.payload.n {
                    // fails twice, then works
                    7 if job.attempt < 3 => Err(format!("attempt {} failed", job.attempt)),
                    // always fails
                    13 => Err("cursed".to_string()),
                    // panics once
                    5 if job.attempt == 1 => panic!("boom"),
                    n => Ok(n * 2),
                }
            }
        })
    };
    let mut report = None;
    for _ in 0..500 {
        let st = a.stats().await.unwrap();
        if st.waiting + st.active + st.delayed == 0 {
            report = Some(handle.shutdown(Duration::from_secs(5)).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = report.expect("the worker drained the queue");
    // 18 plain jobs + job 7 (3 runs) + job 13 (3 runs) + job 5 (2 runs) = 18 + 8 - 1 ...
    assert_eq!(report.completed, 19, "{report:?}");
    assert_eq!(
        report.dead, 2,
        "job 13 and the undecodable payload: {report:?}"
    );
    assert_eq!(report.failed, 2 + 2 + 1, "{report:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 17 + 3 + 3 + 2);
    let dead = a.list(JobState::Dead, 0, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    for d in dead {
        let info = a.job(&d.id).await.unwrap().unwrap();
        let error = info.error.unwrap();
        assert!(
            error == "cursed" || error.starts_with("undecodable payload"),
            "{error}"
        );
    }
}

pub async fn a_worker_stops_a_handler_whose_lease_is_lost(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new()).await;
    let id = added(
        &a.enqueue(&serde_json::json!({"n": 1}), &JobOptions::new())
            .await
            .unwrap(),
    );
    let started = Arc::new(tokio::sync::Notify::new());
    let worker = Worker::builder(b.clone())
        .visibility_timeout(Duration::from_secs(3))
        .heartbeat(Duration::from_millis(50))
        .idle_wait(Duration::from_millis(20))
        .build()
        .unwrap();
    let handle = {
        let started = started.clone();
        worker.run(move |job: crate::Job<Task>| {
            let started = started.clone();
            async move {
                started.notify_one();
                job.lease_lost().await;
                Ok::<_, String>(())
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("the handler started");
    // the job is taken away (removed) while it runs: the next heartbeat notices
    assert!(a.remove(&id).await.unwrap());
    let mut report = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !handle.is_finished() {
            // the handler returns once its lease is lost; shutdown then finds nothing
            let probe = a.stats().await.unwrap();
            if probe.active == 0 {
                report = Some(handle.shutdown(Duration::from_secs(2)).await);
                break;
            }
        }
    }
    let report = report.expect("shut down");
    assert_eq!(report.lease_lost, 1, "{report:?}");
    assert_eq!(report.completed, 0, "{report:?}");
}

pub async fn shutdown_hands_back_what_did_not_finish(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new()).await;
    let ids: Vec<JobId> = a
        .enqueue_many(
            &[serde_json::json!({"n": 1}), serde_json::json!({"n": 2})],
            &JobOptions::new(),
        )
        .await
        .unwrap()
        .iter()
        .map(added)
        .collect();
    let running = Arc::new(AtomicU32::new(0));
    let worker = Worker::builder(b.clone())
        .concurrency(2)
        .idle_wait(Duration::from_millis(20))
        .build()
        .unwrap();
    let handle = {
        let running = running.clone();
        worker.run(move |_job: crate::Job<Task>| {
            let running = running.clone();
            async move {
                running.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, String>(())
            }
        })
    };
    for _ in 0..250 {
        if running.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(running.load(Ordering::SeqCst), 2);
    let report = handle.shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.released, 2, "{report:?}");
    // both are ready again, no attempt counted
    for id in &ids {
        let info = a.job(id).await.unwrap().unwrap();
        assert_eq!((info.state, info.attempts), (JobState::Waiting, 0));
    }
}

pub async fn a_removed_id_enqueued_again_is_delivered_once(s: &Suite) {
    let (a, b) = s.pair(QueueConfig::new()).await;
    let id = JobId("order-7".into());
    let opts = JobOptions::new().id("order-7");
    added(&a.enqueue(&1, &opts).await.unwrap());
    assert!(a.remove(&id).await.unwrap());
    added(&a.enqueue(&2, &opts).await.unwrap());
    // two workers fetch one job each: the job is delivered once
    let mut got: Vec<crate::Delivery> = a.fetch(1, VIS).await.unwrap().deliveries;
    got.extend(b.fetch(1, VIS).await.unwrap().deliveries);
    got.extend(b.fetch(1, VIS).await.unwrap().deliveries);
    assert_eq!(got.len(), 1, "the job was delivered twice at once");
    let d = got.remove(0);
    assert_eq!(serde_json::from_slice::<i32>(&d.payload).unwrap(), 2);
    assert_eq!(
        a.complete(&[(d.lease.clone(), Bytes::new())])
            .await
            .unwrap(),
        vec![true],
        "the one delivery's completion is accepted"
    );
    assert!(b.fetch(10, VIS).await.unwrap().deliveries.is_empty());
    assert_eq!(a.stats().await.unwrap().active, 0);

    // enqueued again at another priority: delivered once, at its new priority
    let (a, b) = s.pair(QueueConfig::new()).await;
    added(&a.enqueue(&1, &opts).await.unwrap());
    assert!(a.remove(&id).await.unwrap());
    added(
        &a.enqueue(&1, &opts.clone().priority(Priority::Critical))
            .await
            .unwrap(),
    );
    let first = a.fetch(1, VIS).await.unwrap().deliveries;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].priority, Priority::Critical);
    assert!(b.fetch(10, VIS).await.unwrap().deliveries.is_empty());

    // removed twice, enqueued again with a delay: nothing before its time, then once
    let (a, b) = s.pair(QueueConfig::new()).await;
    for _ in 0..2 {
        added(&a.enqueue(&1, &opts).await.unwrap());
        assert!(a.remove(&id).await.unwrap());
    }
    let later = opts.clone().delay(Duration::from_millis(300));
    added(&a.enqueue(&3, &later).await.unwrap());
    assert!(
        b.fetch(10, VIS).await.unwrap().deliveries.is_empty(),
        "a delayed job ran before its time"
    );
    assert_eq!(a.job(&id).await.unwrap().unwrap().state, JobState::Delayed);
    s.time.pass(Duration::from_millis(400)).await;
    let mut got = b.fetch(10, VIS).await.unwrap().deliveries;
    got.extend(a.fetch(10, VIS).await.unwrap().deliveries);
    assert_eq!(got.len(), 1);
    assert_eq!(
        b.complete(&[(got[0].lease.clone(), Bytes::new())])
            .await
            .unwrap(),
        vec![true]
    );
}

/// Takes job `id` (the only ready one) to the end of one terminal path.
async fn end(s: &Suite, q: &Handle, id: &JobId, path: &str) {
    match path {
        "removed while waiting" => assert!(q.remove(id).await.unwrap()),
        "delayed, removed" => assert!(q.remove(id).await.unwrap()),
        _ => {
            let vis = if path == "stalled" {
                Duration::from_millis(100)
            } else {
                VIS
            };
            let d = q.fetch(1, vis).await.unwrap().deliveries.remove(0);
            assert_eq!(d.id(), id);
            match path {
                "completed" => assert_eq!(
                    q.complete(&[(d.lease, Bytes::new())]).await.unwrap(),
                    vec![true]
                ),
                "dead" => q.fail(&d.lease, "no", None).await.unwrap(),
                "removed while running" => assert!(q.remove(id).await.unwrap()),
                "stalled" => {
                    s.time.pass(Duration::from_millis(300)).await;
                    assert!(q.fetch(1, VIS).await.unwrap().deliveries.is_empty());
                }
                other => panic!("{other}"),
            }
        }
    }
}

pub async fn a_unique_key_is_released_on_every_terminal_path(s: &Suite) {
    let until = |k: &str| JobOptions::new().unique(Unique::UntilFinished(k.into()));
    let throttle =
        |k: &str| JobOptions::new().unique(Unique::For(k.into(), Duration::from_secs(5)));
    let kept = Retention::Keep {
        count: None,
        age: None,
    };
    for config in [
        QueueConfig::new().max_attempts(1),
        QueueConfig::new()
            .max_attempts(1)
            .keep_completed(kept)
            .keep_dead(Retention::None),
    ] {
        for path in [
            "completed",
            "dead",
            "stalled",
            "removed while waiting",
            "removed while running",
            "delayed, removed",
        ] {
            let (a, b) = s.pair(config.clone()).await;
            let mut opts = until("u").id("a-1");
            if path == "delayed, removed" {
                opts = opts.delay(Duration::from_secs(60));
            }
            let id = added(&a.enqueue(&"first", &opts).await.unwrap());
            assert_eq!(
                b.enqueue(&"second", &throttle("u")).await.unwrap(),
                Enqueued::Duplicate(id.clone()),
                "{path}: the key is held while the job lives"
            );
            end(s, &a, &id, path).await;
            // another job under the same id (where the first was deleted): a hold left
            // behind would name a live job
            b.enqueue(&"other", &JobOptions::new().id("a-1"))
                .await
                .unwrap();
            assert!(
                matches!(
                    b.enqueue(&"third", &throttle("u")).await.unwrap(),
                    Enqueued::Added(_)
                ),
                "{path} ({config:?}): the key was not released"
            );
        }
    }
    // released only while it still names the job: a dead job retried after another
    // took the key does not free the other's hold when it completes
    let (a, _) = s.pair(QueueConfig::new().max_attempts(1)).await;
    let one = added(&a.enqueue(&"one", &until("k")).await.unwrap());
    end(s, &a, &one, "dead").await;
    let two = added(&a.enqueue(&"two", &until("k")).await.unwrap());
    assert_eq!(
        a.retry_dead(std::slice::from_ref(&one), 10).await.unwrap(),
        1
    );
    let got = a.fetch(10, VIS).await.unwrap().deliveries;
    let d = got.iter().find(|d| d.id() == &one).unwrap();
    a.complete(&[(d.lease.clone(), Bytes::new())])
        .await
        .unwrap();
    assert_eq!(
        a.enqueue(&"three", &until("k")).await.unwrap(),
        Enqueued::Duplicate(two)
    );
    // a time-bound key outlives its job: a duplicate until its time is up, whatever
    // became of the first
    let (a, _) = s.pair(QueueConfig::new()).await;
    let first = added(&a.enqueue(&"one", &throttle("t")).await.unwrap());
    let d = a.fetch(1, VIS).await.unwrap().deliveries.remove(0);
    a.complete(&[(d.lease, Bytes::new())]).await.unwrap();
    assert_eq!(
        a.enqueue(&"two", &throttle("t")).await.unwrap(),
        Enqueued::Duplicate(first)
    );
}

pub async fn overflowing_durations_and_counts_are_typed_errors(s: &Suite) {
    let (a, _) = s.pair(QueueConfig::new().events(100)).await;
    let year = Duration::from_secs(365 * 86_400);
    let far = SystemTime::now() + 200 * year;
    fn bad<T>(e: crate::Result<T>) -> bool {
        matches!(e, Err(Error::InvalidArgument(_)))
    }
    for opts in [
        JobOptions::new().delay(Duration::MAX),
        JobOptions::new().delay(crate::MAX_DURATION + Duration::from_secs(1)),
        JobOptions::new().run_at(far),
        JobOptions::new().timeout(Duration::MAX),
        JobOptions::new().backoff(Backoff::Fixed(Duration::MAX)),
        JobOptions::new().backoff(Backoff::Exponential {
            base: Duration::from_secs(1),
            max: Duration::MAX,
        }),
        JobOptions::new().unique(Unique::For("k".into(), Duration::MAX)),
        JobOptions::new().max_attempts(u32::MAX),
    ] {
        let e = a.enqueue(&1, &opts).await;
        assert!(
            matches!(e, Err(Error::InvalidArgument(_))),
            "{opts:?}: {e:?}"
        );
    }
    assert_eq!(a.stats().await.unwrap(), crate::Stats::default());
    // the longest delay is taken
    added(
        &a.enqueue(&1, &JobOptions::new().delay(crate::MAX_DURATION))
            .await
            .unwrap(),
    );
    assert_eq!(a.stats().await.unwrap().delayed, 1);
    assert!(bad(a.fetch(1, Duration::MAX).await.map(drop)));
    assert!(bad(a.extend(&[], Duration::MAX).await.map(drop)));
    assert!(bad(a.wait(Duration::MAX).await));
    assert!(bad(a
        .list(JobState::Waiting, usize::MAX, 10)
        .await
        .map(drop)));
    assert!(bad(a.schedule_lease("me", Duration::MAX).await.map(drop)));
    assert!(bad(a
        .events(&EventId::start(), 1, Duration::MAX)
        .await
        .map(drop)));
    assert!(bad(a
        .fire("s", far, NewJob::new("1", JobOptions::new()))
        .await
        .map(drop)));
    // a retry wait too long for the queue leaves the lease as it was
    added(&a.enqueue(&2, &JobOptions::new()).await.unwrap());
    let d = a.fetch(1, VIS).await.unwrap().deliveries.remove(0);
    assert!(bad(a.fail(&d.lease, "x", Some(Duration::MAX)).await));
    assert_eq!(
        a.complete(&[(d.lease, Bytes::new())]).await.unwrap(),
        vec![true]
    );
    // options of the queue, the worker and the scheduler
    for config in [
        QueueConfig::new().events(u64::MAX),
        QueueConfig::new().timeout(Duration::MAX),
        QueueConfig::new().backoff(Backoff::Fixed(Duration::MAX)),
        QueueConfig::new().keep_completed(Retention::Keep {
            count: None,
            age: Some(Duration::MAX),
        }),
    ] {
        assert!(
            matches!(config.validate("jobs"), Err(Error::InvalidConfig(_))),
            "{config:?}"
        );
    }
    let q: Handle = a.clone();
    for w in [
        Worker::builder(q.clone()).visibility_timeout(Duration::MAX),
        Worker::builder(q.clone()).idle_wait(Duration::MAX),
    ] {
        assert!(matches!(w.build(), Err(Error::InvalidConfig(_))));
    }
    assert!(matches!(
        crate::Scheduler::builder(q.clone())
            .lease(Duration::MAX)
            .build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        crate::Schedule::every(Duration::MAX),
        Err(Error::InvalidArgument(_))
    ));
    // a count past anything storable keeps every job
    let (a, _) = s
        .pair(QueueConfig::new().keep_completed(Retention::Keep {
            count: Some(u64::MAX),
            age: None,
        }))
        .await;
    a.enqueue_many(&[1, 2], &JobOptions::new()).await.unwrap();
    let done: Vec<_> = a
        .fetch(2, VIS)
        .await
        .unwrap()
        .deliveries
        .into_iter()
        .map(|d| (d.lease, Bytes::new()))
        .collect();
    assert_eq!(a.complete(&done).await.unwrap(), vec![true; 2]);
    assert_eq!(a.stats().await.unwrap().completed, 2);
}

/// Runs every conformance case as a test: `conformance_suite!(name, async { suite })`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@case $make;
                jobs_run_in_order_and_complete,
                completed_jobs_are_kept_with_their_results_when_asked,
                higher_priorities_run_first,
                delayed_jobs_wait_for_their_time,
                failures_retry_then_die_and_dead_jobs_can_be_retried,
                a_lost_lease_cannot_settle_a_redelivered_job,
                jobs_that_keep_stalling_die,
                progress_is_kept_and_events_tell_what_happened,
                an_occurrence_is_enqueued_once_and_one_scheduler_holds_the_lease,
                schedulers_in_two_processes_run_each_occurrence_once,
                missed_occurrences_run_once_or_are_skipped,
                duplicates_are_refused_by_id_and_unique_key,
                pause_release_list_and_remove,
                bad_input_is_a_typed_error,
                a_worker_runs_retries_and_dead_letters,
                a_worker_stops_a_handler_whose_lease_is_lost,
                shutdown_hands_back_what_did_not_finish,
                a_removed_id_enqueued_again_is_delivered_once,
                a_unique_key_is_released_on_every_terminal_path,
                overflowing_durations_and_counts_are_typed_errors
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
