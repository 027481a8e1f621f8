//! Redis-only behaviour: a consumer killed mid-batch, entries deleted while pending, a
//! block longer than the response timeout, and a server restart under a running consumer.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redkit_core::redis::cmd;
use redkit_streams::{Consumer, Message, Producer, RedisStreamStore, StartFrom, StreamStore};

fn store(redis: &redkit_core::Redis, prefix: &str) -> Arc<RedisStreamStore> {
    Arc::new(RedisStreamStore::new(redis, prefix).unwrap())
}

async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_batch_loses_nothing() {
    let prefix = redkit_testkit::prefix("st");
    let (ra, rb) = (redkit_testkit::redis().await, redkit_testkit::redis().await);
    let (a, b) = (store(&ra, &prefix), store(&rb, &prefix));
    let producer = Producer::<u32>::new(a.clone(), "work");
    let all: Vec<u32> = (0..500).collect();
    for chunk in all.chunks(250) {
        producer.send_batch(chunk).await.unwrap();
    }
    // runs per job, across both consumers
    let runs: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let handler = |runs: Arc<Mutex<HashMap<u32, u32>>>, delay: Duration| {
        move |m: Message<u32>| {
            let runs = runs.clone();
            async move {
                tokio::time::sleep(delay).await;
                *runs.lock().unwrap().entry(m.payload).or_default() += 1;
                Ok::<(), String>(())
            }
        }
    };
    let doomed = Consumer::builder(a.clone(), "work", "g")
        .name("doomed")
        .concurrency(8)
        .batch(16)
        .build()
        .unwrap()
        .run(handler(runs.clone(), Duration::from_millis(20)));
    assert!(wait_for(Duration::from_secs(10), || runs.lock().unwrap().len() >= 40).await);
    doomed.abort(); // mid-batch: handlers running, entries read and not yet acked
    let at_kill = runs.lock().unwrap().len();
    let pending = b.pending_summary("work", "g").await.unwrap();
    assert!(pending.count > 0, "the kill left entries pending");

    let survivor = Consumer::builder(b.clone(), "work", "g")
        .name("survivor")
        .concurrency(16)
        .batch(32)
        .block(Duration::from_millis(100))
        .claim_after(Duration::from_millis(300))
        .claim_every(Duration::from_millis(100))
        .build()
        .unwrap()
        .run(handler(runs.clone(), Duration::ZERO));
    assert!(
        wait_for(Duration::from_secs(20), || runs.lock().unwrap().len()
            == 500)
        .await,
        "only {} of 500 handled",
        runs.lock().unwrap().len()
    );
    let report = survivor.shutdown(Duration::from_secs(2)).await;
    let runs = runs.lock().unwrap().clone();
    let total: u32 = runs.values().sum();
    let repeated = runs.values().filter(|n| **n > 1).count();
    // a job runs twice only if the killed consumer ran it without acking (at most its
    // concurrency were in flight)
    assert!(repeated <= 8, "{repeated} jobs ran twice");
    assert_eq!(
        total as usize,
        500 + runs.values().map(|n| (*n - 1) as usize).sum::<usize>()
    );
    assert!(report.processed as usize >= 500 - at_kill, "{report:?}");
    assert_eq!(
        b.pending_summary("work", "g").await.unwrap().count,
        0,
        "all acked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_deleted_while_pending_leave_the_pending_list() {
    let redis = redkit_testkit::redis().await;
    let s = store(&redis, &redkit_testkit::prefix("st"));
    s.create_group("d", "g", StartFrom::Beginning)
        .await
        .unwrap();
    let ids = s
        .append(
            "d",
            &[
                vec![("p".into(), "1".into())],
                vec![("p".into(), "2".into())],
                vec![("p".into(), "3".into())],
            ],
            None,
        )
        .await
        .unwrap();
    s.read_new("d", "g", "c1", 10, None).await.unwrap();
    let _: i64 = redis
        .query(cmd("XDEL").arg(s.key("d").unwrap()).arg(&ids[1]))
        .await
        .unwrap();
    // the own re-read acks the deleted one; a claim would not return it either
    let own = s.read_own_pending("d", "g", "c1", "0-0", 10).await.unwrap();
    assert_eq!(own.cursor, "0-0");
    assert_eq!(
        own.deliveries
            .iter()
            .map(|d| d.entry.id.clone())
            .collect::<Vec<_>>(),
        [ids[0].clone(), ids[2].clone()]
    );
    let _: i64 = redis
        .query(cmd("XDEL").arg(s.key("d").unwrap()).arg(&ids[2]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claimed = s
        .claim("d", "g", "c2", Duration::from_millis(10), 10, "0-0")
        .await
        .unwrap()
        .deliveries;
    assert_eq!(
        claimed
            .iter()
            .map(|d| d.entry.id.clone())
            .collect::<Vec<_>>(),
        [ids[0].clone()]
    );
    assert_eq!(
        s.pending_summary("d", "g").await.unwrap().count,
        1,
        "deleted entries left the list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_longer_than_the_response_timeout_is_not_an_error() {
    let server = redkit_testkit::shared().url();
    let config = redkit_core::RedisConfig::builder()
        .url(&server)
        .response_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let redis = redkit_core::Redis::from_config(config).await.unwrap();
    let s = store(&redis, &redkit_testkit::prefix("st"));
    s.create_group("b", "g", StartFrom::End).await.unwrap();
    let started = Instant::now();
    let got = s
        .read_new("b", "g", "c", 10, Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(got.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_rides_out_a_server_restart() {
    let mut server = redkit_testkit::Server::builder().aof().start();
    let redis = server.redis().await;
    let s = store(&redis, "restart");
    let producer = Producer::<u32>::new(s.clone(), "r");
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let log = seen.clone();
    let consumer = Consumer::builder(s.clone(), "r", "g")
        .block(Duration::from_millis(100))
        .claim_after(Duration::from_millis(500))
        .claim_every(Duration::from_millis(100))
        .build()
        .unwrap()
        .run(move |m: Message<u32>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(m.payload);
                Ok::<(), String>(())
            }
        });
    producer.send(&1).await.unwrap();
    assert!(wait_for(Duration::from_secs(5), || seen.lock().unwrap().contains(&1)).await);
    server.kill();
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.restart();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let p = producer.clone();
            tokio::spawn(async move { p.send(&2).await.ok() });
            seen.lock().unwrap().contains(&2)
        })
        .await,
        "the consumer resumed after the restart"
    );
    let report = consumer.shutdown(Duration::from_secs(1)).await;
    assert!(
        report.store_errors > 0,
        "the outage was seen and survived: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_reach_idle_entries_deep_in_a_long_pending_list() {
    let redis = redkit_testkit::redis().await;
    let s = store(&redis, &redkit_testkit::prefix("st"));
    s.create_group("deep", "g", StartFrom::Beginning)
        .await
        .unwrap();
    let entries: Vec<redkit_streams::Fields> = (0..600)
        .map(|i| vec![("p".to_string(), i.to_string())])
        .collect();
    let ids = s.append("deep", &entries, None).await.unwrap();
    s.read_new("deep", "g", "gone", 600, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // a live consumer keeps the first 590 busy (their idle time restarts); the last 10,
    // behind them in the pending list, stay abandoned
    let key = s.key("deep").unwrap();
    for chunk in ids[..590].chunks(100) {
        let mut c = cmd("XCLAIM");
        c.arg(&key).arg("g").arg("busy").arg(0);
        for id in chunk {
            c.arg(id);
        }
        c.arg("JUSTID");
        let _: Vec<String> = redis.query(&c).await.unwrap();
    }
    // one claim scans at most 16 XAUTOCLAIM windows of COUNT*10: following the cursor
    // gets to the end; starting over each time would not
    let (mut cursor, mut claimed, mut calls) = ("0-0".to_string(), Vec::new(), 0);
    while claimed.len() < 10 && calls < 20 {
        let c = s
            .claim(
                "deep",
                "g",
                "rescuer",
                Duration::from_millis(150),
                1,
                &cursor,
            )
            .await
            .unwrap();
        claimed.extend(c.deliveries.into_iter().map(|d| d.entry.id));
        cursor = c.cursor;
        calls += 1;
    }
    assert_eq!(claimed, ids[590..].to_vec(), "after {calls} calls");
}
