//! The conformance suite on memory, standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::ManualClock;
use redkit_lock::conformance::{Suite, Time};
use redkit_lock::{MemoryLock, RedisLock};

redkit_lock::conformance_suite!(memory, async {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
    let lock = Arc::new(MemoryLock::builder().clock(clock.clone()).build());
    Suite {
        a: lock.clone(),
        b: lock,
        time: Time::Manual(clock),
    }
});

redkit_lock::conformance_suite!(standalone, async {
    let prefix = redkit_testkit::prefix("lock");
    let a = RedisLock::builder(redkit_testkit::redis().await)
        .prefix(&prefix)
        .build()
        .unwrap();
    let b = RedisLock::builder(redkit_testkit::redis().await)
        .prefix(&prefix)
        .build()
        .unwrap();
    Suite {
        a: Arc::new(a),
        b: Arc::new(b),
        time: Time::Real,
    }
});

redkit_lock::conformance_suite!(cluster, async {
    let prefix = redkit_testkit::prefix("lock");
    let cluster = redkit_testkit::cluster();
    let a = RedisLock::builder(cluster.redis().await)
        .prefix(&prefix)
        .build()
        .unwrap();
    let b = RedisLock::builder(cluster.redis().await)
        .prefix(&prefix)
        .build()
        .unwrap();
    Suite {
        a: Arc::new(a),
        b: Arc::new(b),
        time: Time::Real,
    }
});
