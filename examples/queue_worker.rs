//! `cargo run --example queue_worker`: a producer enqueues thumbnail jobs (some urgent,
//! some for later, one that always fails, one duplicate), a scheduler adds a repeatable
//! job every 250 ms, a worker with concurrency 8 runs them with retries and reports
//! progress, the event stream tells what happened, and Ctrl-C (or the end of the work)
//! shuts it down gracefully: no new fetches, running jobs finish, the rest is handed back.
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH, else the memory backend.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use redkit::queue::{
    Backoff, EventId, EventKind, Job, JobOptions, JobState, MemoryQueue, Priority, Queue,
    QueueConfig, QueueExt, RedisQueue, Repeat, Schedule, Scheduler, Unique, Worker, occurrence_of,
};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Thumbnail {
    image: String,
    size: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = QueueConfig::new()
        .prefix(format!("example-{}", std::process::id()))
        .max_attempts(3)
        .backoff(Backoff::Exponential {
            base: Duration::from_millis(50),
            max: Duration::from_secs(1),
        })
        .events(10_000);
    let local = redkit_testkit::local_redis().await?;
    let queue: Arc<dyn Queue> = match &local {
        Some(l) => Arc::new(RedisQueue::new(&l.redis, "thumbnails", config)?),
        None => {
            println!("no Redis available: using the memory backend");
            Arc::new(MemoryQueue::new("thumbnails", config)?)
        }
    };

    // the producer: a batch in one round trip, an urgent job, a delayed one, a duplicate
    let batch: Vec<Thumbnail> = (0..20)
        .map(|i| Thumbnail {
            image: format!("img-{i}.png"),
            size: 128,
        })
        .collect();
    queue.enqueue_many(&batch, &JobOptions::new()).await?;
    let urgent = JobOptions::new().priority(Priority::Critical);
    queue
        .enqueue(
            &Thumbnail {
                image: "ceo.png".into(),
                size: 512,
            },
            &urgent,
        )
        .await?;
    let later = JobOptions::new().delay(Duration::from_millis(300));
    queue
        .enqueue(
            &Thumbnail {
                image: "later.png".into(),
                size: 64,
            },
            &later,
        )
        .await?;
    let once = JobOptions::new().unique(Unique::UntilFinished("broken.png".into()));
    let first = queue
        .enqueue(
            &Thumbnail {
                image: "broken.png".into(),
                size: 64,
            },
            &once,
        )
        .await?;
    let second = queue
        .enqueue(
            &Thumbnail {
                image: "broken.png".into(),
                size: 64,
            },
            &once,
        )
        .await?;
    println!("enqueued; the second broken.png is {second:?} of {first:?}");
    println!("stats: {:?}", queue.stats().await?);

    // a repeatable job: run it in every process; one of them owns the schedule
    let logo = Thumbnail {
        image: "logo.png".into(),
        size: 32,
    };
    let scheduler = Scheduler::builder(queue.clone())
        .repeat(Repeat::new(
            "logo",
            Schedule::every(Duration::from_millis(250))?,
            &logo,
        )?)
        .tick(Duration::from_millis(50))
        .build()?
        .start();

    // the worker
    let worker = Worker::builder(queue.clone())
        .concurrency(8)
        .idle_wait(Duration::from_millis(100))
        .build()?;
    let running = worker.run(|job: Job<Thumbnail>| async move {
        if job.payload.image == "broken.png" {
            return Err(format!(
                "cannot decode {} (attempt {})",
                job.payload.image, job.attempt
            ));
        }
        // the resize, in two steps, reported as progress
        tokio::time::sleep(Duration::from_millis(10)).await;
        job.progress(&serde_json::json!({ "step": "decoded" }))
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(format!("{}@{}", job.payload.image, job.payload.size))
    });

    // the schedule runs for a second; then its next occurrence, already enqueued, is
    // removed
    tokio::time::sleep(Duration::from_secs(1)).await;
    scheduler.shutdown().await;
    for job in queue.list(JobState::Delayed, 0, 100).await? {
        if occurrence_of(&job.id).is_some_and(|(name, _)| name == "logo") {
            queue.remove(&job.id).await?;
        }
    }

    // run until the queue is drained or Ctrl-C, then shut down gracefully
    let drained = async {
        loop {
            let s = queue.stats().await.expect("stats");
            if s.waiting + s.active + s.delayed == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        () = drained => println!("queue drained"),
        _ = tokio::signal::ctrl_c() => println!("Ctrl-C: shutting down"),
    }
    let report = running.shutdown(Duration::from_secs(5)).await;
    println!("worker report: {report:?}");
    for dead in queue.list(JobState::Dead, 0, 10).await? {
        let info = queue.job(&dead.id).await?.expect("the dead job is kept");
        println!(
            "dead: job {} after {} attempts: {:?}",
            info.id, info.attempts, info.error
        );
    }
    println!("stats: {:?}", queue.stats().await?);

    // what happened, from the event stream (any process can read it)
    let events = queue
        .events(&EventId::start(), 1000, Duration::ZERO)
        .await?;
    let count = |kind: EventKind| events.iter().filter(|e| e.kind == kind).count();
    let logos = events
        .iter()
        .filter(|e| e.kind == EventKind::Completed)
        .filter(|e| occurrence_of(&e.job).is_some_and(|(name, _)| name == "logo"))
        .count();
    println!(
        "events: {} completed ({logos} of them the repeatable logo), {} progress reports, \
         {} failed, {} dead",
        count(EventKind::Completed),
        count(EventKind::Progress),
        count(EventKind::Failed),
        count(EventKind::Dead),
    );
    Ok(())
}
