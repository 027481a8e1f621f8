//! `cargo run --example queue_worker`: a producer enqueues thumbnail jobs (some urgent,
//! some for later, one that always fails, one duplicate), a worker with concurrency 8
//! runs them with retries, and Ctrl-C (or the end of the work) shuts it down gracefully:
//! no new fetches, running jobs finish, the rest is handed back.
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH, else the memory backend.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use redkit::queue::{
    Backoff, Job, JobOptions, JobState, MemoryQueue, Priority, Queue, QueueConfig, QueueExt,
    RedisQueue, Unique, Worker,
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
        });
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
        tokio::time::sleep(Duration::from_millis(20)).await; // the resize
        Ok(format!("{}@{}", job.payload.image, job.payload.size))
    });

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
    Ok(())
}
