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
