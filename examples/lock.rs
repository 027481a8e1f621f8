//! `cargo run --example lock`: two workers share one invoice; the lock and its fencing
//! tokens keep them from overwriting each other, even when one of them stalls.
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH, else the in-memory lock.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use redkit::lock::{AcquireOptions, FenceGate, Lock, LockExt, MemoryLock, RedisLock};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let local = redkit_testkit::local_redis().await?;
    let locks: Arc<dyn Lock> = match &local {
        Some(l) => Arc::new(
            RedisLock::builder(l.redis.clone())
                .prefix("example")
                .build()?,
        ),
        None => {
            println!("no Redis available: using the in-memory lock");
            Arc::new(MemoryLock::default())
        }
    };
    let invoice = Arc::new(FenceGate::default());

    // A worker that stalls past its TTL: its lease reports the loss before the TTL ends.
    let started = std::time::Instant::now();
    let slow = locks
        .try_acquire("invoice:7", Duration::from_millis(500))
        .await?
        .expect("free");
    let slow_token = slow.fencing_token();
    println!("slow worker holds invoice:7 with fencing token {slow_token}");
    slow.lost().await;
    println!(
        "slow worker: lost() fired after {:?}, before its 500ms ttl ends",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Another worker takes over and writes with its larger token.
    let opts = AcquireOptions::new(Duration::from_secs(5))
        .wait(Duration::from_secs(2))
        .auto_extend(true);
    let gate = Arc::clone(&invoice);
    let fast_token = locks
        .with_lock("invoice:7", opts, |lease| async move {
            let ok = gate.admit(lease.fencing_token());
            println!(
                "fast worker writes with token {} -> accepted: {ok}",
                lease.fencing_token()
            );
            lease.fencing_token()
        })
        .await?;

    // The slow worker wakes up and tries to write anyway: its token is stale.
    println!(
        "slow worker writes with token {slow_token} -> accepted: {} (highest seen: {fast_token})",
        invoice.admit(slow_token)
    );
    println!(
        "slow worker releases: still held = {}",
        slow.release().await?
    );
    Ok(())
}
