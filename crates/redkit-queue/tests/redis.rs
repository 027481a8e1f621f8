//! Redis-only behaviour: no job lost when a worker dies mid-job, when the queue's cluster
//! master fails over mid-run, and no acknowledged enqueue lost when the server is killed
//! and restarted with `appendfsync always`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redkit_queue::{
    Job, JobId, JobOptions, JobState, Queue, QueueConfig, QueueExt, RedisQueue, Retention, Worker,
};
use redkit_testkit::Server;

const JOBS: u32 = 10_000;
const CONCURRENCY: usize = 20;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Task {
    i: u32,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Handler runs per job.
    runs: Mutex<Vec<u32>>,
    /// Runs that saw an earlier stalled delivery.
    redelivered: AtomicU32,
}

fn worker(queue: &RedisQueue, ledger: &Arc<Ledger>) -> redkit_queue::WorkerHandle {
    let ledger = ledger.clone();
    Worker::builder(Arc::new(queue.clone()))
        .concurrency(CONCURRENCY)
        .batch(CONCURRENCY)
        .visibility_timeout(Duration::from_millis(1500))
        .heartbeat(Duration::from_millis(300))
        .idle_wait(Duration::from_millis(200))
        .build()
        .unwrap()
        .run(move |job: Job<Task>| {
            let ledger = ledger.clone();
            async move {
                ledger.runs.lock().unwrap()[job.payload.i as usize] += 1;
                if job.stalls > 0 {
                    ledger.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(1 + u64::from(job.payload.i % 3))).await;
                Ok::<_, String>(job.payload.i)
            }
        })
}

/// Waits (up to two minutes, through store errors) until all `n` jobs completed and
/// nothing else is left.
async fn all_completed(queue: &RedisQueue, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match queue.stats().await {
            Ok(s) if s.completed == u64::from(n) => {
                assert_eq!(
                    (s.waiting, s.active, s.delayed, s.dead),
                    (0, 0, 0, 0),
                    "{s:?}"
                );
                return;
            }
            Ok(s) => assert!(Instant::now() < deadline, "not all jobs completed: {s:?}"),
            Err(e) => assert!(Instant::now() < deadline, "the queue never recovered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_when_a_worker_dies_mid_job() {
    let config = QueueConfig::new()
        .prefix(redkit_testkit::prefix("queue"))
        .keep_completed(Retention::Keep {
            count: None,
            age: None,
        });
    // two worker "processes", each on its own connections
    let one = RedisQueue::new(&redkit_testkit::redis().await, "work", config.clone()).unwrap();
    let two = RedisQueue::new(&redkit_testkit::redis().await, "work", config).unwrap();
    let tasks: Vec<Task> = (0..JOBS).map(|i| Task { i }).collect();
    one.enqueue_many(&tasks, &JobOptions::new()).await.unwrap();
    let ledger = Arc::new(Ledger::default());
    ledger.runs.lock().unwrap().resize(JOBS as usize, 0);
    let doomed = worker(&one, &ledger);
    let survivor = worker(&two, &ledger);
    // kill the first worker mid-run: its tasks stop where they are, their leases stay
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger
        .runs
        .lock()
        .unwrap()
        .iter()
        .filter(|r| **r > 0)
        .count()
        < 3000
    {
        assert!(Instant::now() < deadline, "the workers did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    doomed.abort();
    drop(one);
    all_completed(&two, JOBS).await;
    let report = survivor.shutdown(Duration::from_secs(5)).await;
    let runs = ledger.runs.lock().unwrap().clone();
    // every job ran; only the jobs the dead worker held came
    // back as redeliveries, and every second run of a job is one of them (a job the dead
    // worker leased but had not started runs once, redelivered)
    assert!(runs.iter().all(|r| *r >= 1), "a job never ran");
    let extra: u32 = runs.iter().map(|r| r - 1).sum();
    let redelivered = ledger.redelivered.load(Ordering::Relaxed);
    assert!(
        redelivered >= 1,
        "the dead worker's jobs were never redelivered"
    );
    // it held its running jobs, and finished ones whose completions waited for its next
    // fetch (at most one batch)
    assert!(
        redelivered as usize <= 2 * CONCURRENCY,
        "{redelivered} redelivered"
    );
    assert!(
        extra <= redelivered,
        "{extra} extra runs, {redelivered} redelivered"
    );
    assert_eq!(report.dead, 0, "{report:?}");
    // the results are the handlers' own
    let sample = two.list(JobState::Completed, 0, 5).await.unwrap();
    for info in sample {
        let full = two.job(&info.id).await.unwrap().unwrap();
        let task: Task = serde_json::from_slice(&full.payload).unwrap();
        let result: u32 = serde_json::from_slice(&full.result.unwrap()).unwrap();
        assert_eq!(result, task.i);
    }
    eprintln!(
        "runs {}, extra {extra}, redelivered {redelivered}, survivor {report:?}",
        runs.iter().sum::<u32>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_enqueue_is_lost_across_a_server_crash() {
    let mut server = Server::builder().aof().start();
    let redis = server.redis().await;
    let queue = RedisQueue::new(
        &redis,
        "durable",
        QueueConfig::new().prefix(redkit_testkit::prefix("queue")),
    )
    .unwrap();
    let acked = Arc::new(Mutex::new(Vec::<JobId>::new()));
    let attempts = Arc::new(AtomicU64::new(0));
    let producer = {
        let (queue, acked, attempts) = (queue.clone(), acked.clone(), attempts.clone());
        tokio::spawn(async move {
            for batch in 0..400u32 {
                // custom ids: a batch retried after an unanswered call cannot add twice
                let jobs: Vec<redkit_queue::NewJob> = (0..10)
                    .map(|k| {
                        let id = format!("job-{batch}-{k}");
                        redkit_queue::NewJob::new(
                            serde_json::to_vec(&Task { i: batch * 10 + k }).unwrap(),
                            JobOptions::new().id(id),
                        )
                    })
                    .collect();
                loop {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    match queue.enqueue_bytes(jobs.clone()).await {
                        Ok(done) => {
                            acked
                                .lock()
                                .unwrap()
                                .extend(done.into_iter().map(|e| e.id().clone()));
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        })
    };
    while acked.lock().unwrap().len() < 1000 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // kill -9 mid-run, then start it again on its append-only file
    server.restart();
    producer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 4000);
    let unique: HashSet<&JobId> = acked.iter().collect();
    assert_eq!(unique.len(), 4000);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.waiting, 4000, "{stats:?}");
    for id in acked.iter().step_by(97) {
        assert_eq!(
            queue.job(id).await.unwrap().unwrap().state,
            JobState::Waiting
        );
    }
    assert!(
        attempts.load(Ordering::Relaxed) > 400,
        "the restart was never felt by the producer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_records_what_happened() {
    let redis = redkit_testkit::redis().await;
    let queue = RedisQueue::new(
        &redis,
        "events",
        QueueConfig::new()
            .prefix(redkit_testkit::prefix("queue"))
            .max_attempts(1)
            .events(1000),
    )
    .unwrap();
    queue
        .enqueue_many(&[1, 2, 3], &JobOptions::new())
        .await
        .unwrap();
    let mut got = queue
        .fetch(3, Duration::from_secs(30))
        .await
        .unwrap()
        .deliveries;
    let (ok, bad) = (got.remove(0), got.remove(0));
    queue
        .complete(&[(ok.lease.clone(), "1".into())])
        .await
        .unwrap();
    queue.fail(&bad.lease, "nope", None).await.unwrap();
    let stalled = got.remove(0);
    queue
        .extend(
            std::slice::from_ref(&stalled.lease),
            Duration::from_millis(1),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    queue.fetch(0, Duration::from_secs(1)).await.unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis
        .query(
            redkit_core::redis::cmd("XRANGE")
                .arg(queue.events_key().as_str())
                .arg("-")
                .arg("+"),
        )
        .await
        .unwrap();
    let seen: Vec<(String, String)> = entries
        .into_iter()
        .map(|(_, fields)| {
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(f, _)| f == k)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            (get("event"), get("id"))
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("completed".to_string(), ok.id().to_string()),
            ("dead".to_string(), bad.id().to_string()),
            ("dead".to_string(), stalled.id().to_string()),
        ]
    );
}

/// How the queue's master goes away mid-run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// `CLUSTER FAILOVER` on its replica: nothing acknowledged is lost.
    Failover,
    /// The master is killed; its replica is promoted after the node timeout.
    Kill,
}

/// Runs jobs on a 3+3 cluster while the queue's master fails over: every job completes,
/// a second run only ever follows a redelivery.
async fn survive(fault: Fault) {
    const N: u32 = 3000;
    let cluster = redkit_testkit::Cluster::start_with_replicas();
    let config = QueueConfig::new()
        .prefix(redkit_testkit::prefix("queue"))
        .keep_completed(Retention::Keep {
            count: None,
            age: None,
        });
    let producer = RedisQueue::new(&cluster.redis().await, "failover", config.clone()).unwrap();
    let queue = RedisQueue::new(&cluster.redis().await, "failover", config).unwrap();
    let key = producer.jobs_key().as_str().to_string();
    let (master, replica) = cluster.master_and_replica(&key);
    let tasks: Vec<Task> = (0..N).map(|i| Task { i }).collect();
    // after a kill, Redis keeps only what reached the replica: the jobs are enqueued
    // up front and replicated before the fault; a coordinated failover loses nothing, so
    // there half of them are enqueued through it
    let upfront = if fault == Fault::Kill { N } else { N / 2 } as usize;
    producer
        .enqueue_many(&tasks[..upfront], &JobOptions::new())
        .await
        .unwrap();
    cluster.wait_replicated(&key);
    let ledger = Arc::new(Ledger::default());
    ledger.runs.lock().unwrap().resize(N as usize, 0);
    let running = worker(&queue, &ledger);
    let ran = || {
        ledger
            .runs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| **r > 0)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while ran() < 500 {
        assert!(Instant::now() < deadline, "the worker did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fault_key = key.clone();
    let fault_task = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        match fault {
            Fault::Failover => {
                cluster.failover(&fault_key);
            }
            Fault::Kill => {
                let node = cluster
                    .nodes_mut()
                    .iter_mut()
                    .find(|n| n.port() == master)
                    .unwrap();
                node.kill();
                cluster.wait_master(&fault_key, replica, &[master]);
            }
        }
        cluster
    });
    let mut enqueue_retries = 0;
    for chunk in tasks[upfront..].chunks(100) {
        let jobs: Vec<redkit_queue::NewJob> = chunk
            .iter()
            .map(|t| {
                redkit_queue::NewJob::new(
                    serde_json::to_vec(t).unwrap(),
                    JobOptions::new().id(format!("late-{}", t.i)),
                )
            })
            .collect();
        // custom ids make a retried batch idempotent
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = producer.enqueue_bytes(jobs.clone()).await {
            enqueue_retries += 1;
            assert!(Instant::now() < deadline, "enqueues never recovered: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cluster = fault_task.await.unwrap();
    let ran_at_fault = ran();
    all_completed(&queue, N).await;
    let report = running.shutdown(Duration::from_secs(5)).await;
    let runs = ledger.runs.lock().unwrap().clone();
    assert!(runs.iter().all(|r| *r >= 1), "a job never ran");
    assert!(
        ran_at_fault < N as usize,
        "the fault came after the run ({ran_at_fault} jobs had run)"
    );
    // a second run only where a delivery was redelivered after its lease ran out (a
    // completion lost with the old master)
    let extra: u32 = runs.iter().map(|r| r - 1).sum();
    let redelivered = ledger.redelivered.load(Ordering::Relaxed);
    assert!(
        extra <= redelivered,
        "{extra} extra runs, {redelivered} redelivered"
    );
    assert_eq!(report.dead, 0, "{report:?}");
    // the data lives on the promoted node now
    let promoted = cluster
        .nodes()
        .iter()
        .find(|n| n.port() == replica)
        .unwrap();
    assert_eq!(promoted.cli(&["hlen", &key]).trim(), N.to_string());
    eprintln!(
        "{fault:?} to {replica} after {ran_at_fault} runs: runs {}, extra {extra}, redelivered {redelivered}, enqueue retries {enqueue_retries}, {report:?}",
        runs.iter().sum::<u32>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_mid_run_loses_no_job() {
    survive(Fault::Failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cluster_master_mid_run_loses_no_replicated_job() {
    survive(Fault::Kill).await;
}
