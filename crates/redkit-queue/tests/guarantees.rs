//! Redis-only guarantees: a batch that fails partway writes nothing, a corrupt job does
//! not stop the queue, and no state is left behind by any terminal path.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use redkit_core::Redis;
use redkit_core::redis::cmd;
use redkit_queue::{
    Enqueued, Error, JobId, JobOptions, JobState, NewJob, Queue, QueueConfig, QueueExt, RedisQueue,
    Retention, Unique,
};

const VIS: Duration = Duration::from_secs(30);

async fn queue(redis: &Redis, config: QueueConfig) -> (RedisQueue, String) {
    let prefix = redkit_testkit::prefix("queue");
    let q = RedisQueue::new(redis, "g", config.prefix(prefix.clone())).unwrap();
    (q, format!("{prefix}:queue:{{g}}:"))
}

async fn run(redis: &Redis, args: &[&str]) {
    let mut c = cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    let _: redkit_core::redis::Value = redis.query(&c).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_batch_that_fails_partway_writes_nothing() {
    let redis = redkit_testkit::redis().await;
    let (q, keys) = queue(&redis, QueueConfig::new()).await;
    // request 3's unique key holds another type: the script fails on it
    run(&redis, &["HSET", &format!("{keys}unique:u"), "f", "v"]).await;
    let batch = vec![
        NewJob::new("1", JobOptions::new()),
        NewJob::new("2", JobOptions::new().id("custom-2")),
        NewJob::new(
            "3",
            JobOptions::new().unique(Unique::For("u".into(), Duration::from_secs(5))),
        ),
    ];
    assert!(q.enqueue_bytes(batch.clone()).await.is_err());
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.waiting, 0, "half the batch was written: {stats:?}");
    assert!(
        q.job(&JobId::custom("custom-2").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let seq: Option<u64> = redis
        .query(cmd("GET").arg(format!("{keys}seq")))
        .await
        .unwrap();
    assert_eq!(seq, None, "ids were drawn for a batch that was not added");
    run(&redis, &["DEL", &format!("{keys}unique:u")]).await;
    let out = q.enqueue_bytes(batch).await.unwrap();
    assert!(
        out.iter().all(|e| matches!(e, Enqueued::Added(_))),
        "{out:?}"
    );
}

#[derive(Debug)]
struct Flaky(u32);

impl serde::Serialize for Flaky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 1500 {
            return Err(serde::ser::Error::custom("cannot encode 1500"));
        }
        s.serialize_u32(self.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_many_checks_every_chunk_before_it_sends_one() {
    let redis = redkit_testkit::redis().await;
    let (q, _) = queue(&redis, QueueConfig::new().max_payload(100)).await;
    let flaky: Vec<Flaky> = (0..1600).map(Flaky).collect();
    assert!(matches!(
        q.enqueue_many(&flaky, &JobOptions::new()).await,
        Err(Error::Codec(_))
    ));
    let mut big: Vec<String> = (0..1600).map(|i| i.to_string()).collect();
    big[1200] = "x".repeat(200);
    assert!(matches!(
        q.enqueue_many(&big, &JobOptions::new()).await,
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(
        q.stats().await.unwrap().waiting,
        0,
        "a first chunk was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_that_fails_partway_loses_no_job() {
    let redis = redkit_testkit::redis().await;
    let (q, keys) = queue(&redis, QueueConfig::new()).await;
    q.enqueue_many(&[1, 2, 3], &JobOptions::new())
        .await
        .unwrap();
    run(&redis, &["SET", &format!("{keys}inflight"), "x"]).await;
    assert!(q.fetch(3, VIS).await.is_err());
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.waiting, stats.active),
        (3, 0),
        "jobs were taken from the ready list and leased to nobody"
    );
    run(&redis, &["DEL", &format!("{keys}inflight")]).await;
    assert_eq!(q.fetch(3, VIS).await.unwrap().deliveries.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_batch_that_fails_partway_records_nothing() {
    let redis = redkit_testkit::redis().await;
    let kept = Retention::Keep {
        count: None,
        age: None,
    };
    let (q, keys) = queue(&redis, QueueConfig::new().keep_completed(kept)).await;
    q.enqueue_many(&[1, 2], &JobOptions::new()).await.unwrap();
    let done: Vec<_> = q
        .fetch(2, VIS)
        .await
        .unwrap()
        .deliveries
        .into_iter()
        .map(|d| (d.lease, Bytes::from_static(b"7")))
        .collect();
    run(&redis, &["SET", &format!("{keys}results"), "x"]).await;
    assert!(q.complete_and_fetch(&done, 5, VIS).await.is_err());
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.active, stats.completed),
        (2, 0),
        "completions half recorded: {stats:?}"
    );
    run(&redis, &["DEL", &format!("{keys}results")]).await;
    assert_eq!(q.complete(&done).await.unwrap(), vec![true; 2]);
    assert_eq!(q.stats().await.unwrap().completed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_job_is_dead_lettered_and_does_not_stop_the_queue() {
    let redis = redkit_testkit::redis().await;
    let (q, keys) = queue(&redis, QueueConfig::new()).await;
    let jobs = format!("{keys}jobs");
    // one fetched and failed by its worker, one whose worker died with it
    q.enqueue_many(&[1, 2, 3], &JobOptions::new())
        .await
        .unwrap();
    let got = q
        .fetch(2, Duration::from_millis(100))
        .await
        .unwrap()
        .deliveries;
    for d in &got {
        run(&redis, &["HSET", &jobs, d.id().as_str(), "x"]).await;
    }
    q.fail(&got[0].lease, "not a job", None).await.unwrap();
    let info = q.job(got[0].id()).await;
    assert!(matches!(info, Err(Error::Corrupt(_))), "{info:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // the stalled corrupt job goes dead; the good job is still handed out
    let next = q.fetch(5, VIS).await.unwrap().deliveries;
    assert_eq!(next.len(), 1);
    assert_eq!(serde_json::from_slice::<i32>(&next[0].payload).unwrap(), 3);
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.dead, stats.active, stats.waiting),
        (2, 1, 0),
        "{stats:?}"
    );
    // retrying dead jobs skips what is not a job
    assert_eq!(q.retry_dead(&[], 10).await.unwrap(), 0);
    assert_eq!(q.stats().await.unwrap().dead, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_state_is_left_behind_by_any_terminal_path() {
    let redis = redkit_testkit::redis().await;
    let config = QueueConfig::new()
        .max_attempts(1)
        .keep_dead(Retention::None)
        .events(0);
    let (q, keys) = queue(&redis, config).await;
    let until = |k: &str| JobOptions::new().unique(Unique::UntilFinished(k.into()));
    // completed, dead by failure, dead by stall, removed while waiting / running /
    // delayed, removed and enqueued again under its id
    let ids: Vec<JobId> = q
        .enqueue_bytes(
            ["a", "b", "c", "d", "e"]
                .iter()
                .map(|k| NewJob::new("1", until(k)))
                .collect(),
        )
        .await
        .unwrap()
        .iter()
        .map(|e| e.id().clone())
        .collect();
    let delayed = q
        .enqueue(&1, &until("f").delay(Duration::from_secs(60)))
        .await
        .unwrap();
    q.enqueue(&1, &JobOptions::new().id("again")).await.unwrap();
    assert!(q.remove(&ids[3]).await.unwrap());
    assert!(q.remove(delayed.id()).await.unwrap());
    assert!(q.remove(&JobId::custom("again").unwrap()).await.unwrap());
    q.enqueue(&1, &JobOptions::new().id("again")).await.unwrap();
    let got = q
        .fetch(5, Duration::from_millis(200))
        .await
        .unwrap()
        .deliveries;
    assert_eq!(got.len(), 4, "{got:?}");
    let by = |i: usize| {
        got.iter()
            .find(|d| d.id() == &ids[i])
            .unwrap()
            .lease
            .clone()
    };
    assert_eq!(
        q.complete(&[(by(0), Bytes::new())]).await.unwrap(),
        vec![true]
    );
    q.fail(&by(1), "no", None).await.unwrap();
    assert!(q.remove(&ids[4]).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    // ids[2] stalls to death; "again" is delivered once
    let rest = q.fetch(10, VIS).await.unwrap().deliveries;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].id().as_str(), "again");
    let last = (rest[0].lease.clone(), Bytes::new());
    assert_eq!(q.complete(&[last]).await.unwrap(), vec![true]);
    let left: Vec<String> = redis
        .query(cmd("KEYS").arg(format!("{keys}*")))
        .await
        .unwrap();
    let mut left: Vec<String> = left
        .into_iter()
        .map(|k| k[keys.len()..].to_string())
        .filter(|k| k != "seq" && k != "meta" && k != "signal")
        .collect();
    left.sort();
    assert_eq!(left, Vec::<String>::new(), "state left behind");
    let info = q.job(&ids[2]).await.unwrap();
    assert!(info.is_none() || info.unwrap().state == JobState::Dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_job_is_never_leased_again_through_a_second_place_in_line() {
    let redis = redkit_testkit::redis().await;
    let (q, keys) = queue(&redis, QueueConfig::new()).await;
    let id = q.enqueue(&1, &JobOptions::new()).await.unwrap();
    let first = q.fetch(1, VIS).await.unwrap().deliveries.remove(0);
    // a second place in line for the leased job (as a bug or another tool would leave)
    run(
        &redis,
        &["RPUSH", &format!("{keys}ready:2"), id.id().as_str()],
    )
    .await;
    run(
        &redis,
        &["RPUSH", &format!("{keys}ready:2"), id.id().as_str()],
    )
    .await;
    assert!(q.fetch(5, VIS).await.unwrap().deliveries.is_empty());
    assert_eq!(
        q.complete(&[(first.lease, Bytes::new())]).await.unwrap(),
        vec![true],
        "the first delivery's token was overwritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_corrupt_waiting_job_leaves_no_place_for_its_id() {
    let redis = redkit_testkit::redis().await;
    let kept = Retention::Keep {
        count: None,
        age: None,
    };
    let (q, keys) = queue(&redis, QueueConfig::new().keep_completed(kept)).await;
    let id = JobId::custom("c-1").unwrap();
    let opts = JobOptions::new().id("c-1");
    // an older removed place of the id, then a waiting job whose stored data is not a job
    q.enqueue(&0, &opts).await.unwrap();
    assert!(q.remove(&id).await.unwrap());
    q.enqueue(&1, &opts).await.unwrap();
    run(&redis, &["HSET", &format!("{keys}jobs"), "c-1", "x"]).await;
    assert!(q.remove(&id).await.unwrap());
    // the id enqueued again runs once, and once completed is not handed out again
    q.enqueue(&2, &opts).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got = q.fetch(1, VIS).await.unwrap().deliveries;
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1);
    assert_eq!(serde_json::from_slice::<i32>(&got[0].payload).unwrap(), 2);
    assert_eq!(
        q.complete(&[(got[0].lease.clone(), Bytes::new())])
            .await
            .unwrap(),
        vec![true]
    );
    for _ in 0..3 {
        let again = q.fetch(1, VIS).await.unwrap().deliveries;
        assert!(again.is_empty(), "a completed job was delivered again");
    }
    assert_eq!(
        q.job(&id).await.unwrap().unwrap().state,
        JobState::Completed
    );

    // the same for a delayed job whose stored data is not a job: its entry does not come
    // due later as a second place of the id
    let (q, keys) = queue(&redis, QueueConfig::new().keep_completed(kept)).await;
    q.enqueue(&1, &opts.clone().delay(Duration::from_millis(200)))
        .await
        .unwrap();
    run(&redis, &["HSET", &format!("{keys}jobs"), "c-1", "x"]).await;
    assert!(q.remove(&id).await.unwrap());
    q.enqueue(&2, &opts).await.unwrap();
    let got = q.fetch(10, VIS).await.unwrap().deliveries;
    assert_eq!(got.len(), 1);
    assert_eq!(
        q.complete(&[(got[0].lease.clone(), Bytes::new())])
            .await
            .unwrap(),
        vec![true]
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        q.fetch(10, VIS).await.unwrap().deliveries.is_empty(),
        "a completed job was delivered again"
    );
}
