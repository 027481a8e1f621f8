//! Read-write locks and semaphores on memory, standalone and cluster, plus the mutex
//! suite run against the writer side and a one-permit semaphore.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::ManualClock;
use redkit_lock::conformance::{self as c, MultiSuite, RwSuite, SemSuite, Suite, Time};
use redkit_lock::{Lock, MemoryLock, RedisLock};

fn manual() -> ManualClock {
    ManualClock::new(Duration::from_secs(1_700_000_000))
}

async fn redis_pair(cluster: bool) -> (RedisLock, RedisLock) {
    let prefix = redkit_testkit::prefix("kinds");
    let (ra, rb) = if cluster {
        let c = redkit_testkit::cluster();
        (c.redis().await, c.redis().await)
    } else {
        (redkit_testkit::redis().await, redkit_testkit::redis().await)
    };
    (
        RedisLock::builder(ra).prefix(&prefix).build().unwrap(),
        RedisLock::builder(rb).prefix(&prefix).build().unwrap(),
    )
}

fn rw_redis(a: &RedisLock, b: &RedisLock) -> RwSuite {
    RwSuite {
        read_a: Arc::new(a.read()),
        write_a: Arc::new(a.write()),
        read_b: Arc::new(b.read()),
        write_b: Arc::new(b.write()),
        time: Time::Real,
    }
}

fn sem_redis(a: RedisLock, b: RedisLock) -> SemSuite {
    SemSuite {
        a: Arc::new(move |n| Arc::new(a.semaphore(n).unwrap()) as Arc<dyn Lock>),
        b: Arc::new(move |n| Arc::new(b.semaphore(n).unwrap()) as Arc<dyn Lock>),
        time: Time::Real,
    }
}

fn rw_memory() -> RwSuite {
    let clock = manual();
    let m = MemoryLock::builder().clock(clock.clone()).build();
    RwSuite {
        read_a: Arc::new(m.read()),
        write_a: Arc::new(m.write()),
        read_b: Arc::new(m.read()),
        write_b: Arc::new(m.write()),
        time: Time::Manual(clock),
    }
}

fn sem_memory() -> SemSuite {
    let clock = manual();
    let m = MemoryLock::builder().clock(clock.clone()).build();
    let m2 = m.clone();
    SemSuite {
        a: Arc::new(move |n| Arc::new(m.semaphore(n).unwrap()) as Arc<dyn Lock>),
        b: Arc::new(move |n| Arc::new(m2.semaphore(n).unwrap()) as Arc<dyn Lock>),
        time: Time::Manual(clock),
    }
}

macro_rules! kinds {
    ($name:ident, $rw:expr, $sem:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn readers_share_and_writers_exclude() {
                c::readers_share_and_writers_exclude(&$rw.await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_writer_is_woken_when_the_last_reader_leaves() {
                c::a_writer_is_woken_when_the_last_reader_leaves(&$rw.await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_expired_reader_does_not_block_writers() {
                c::an_expired_reader_does_not_block_writers(&$rw.await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_waiting_writer_keeps_new_readers_out() {
                c::a_waiting_writer_keeps_new_readers_out(&$rw.await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_writer_that_does_not_wait_or_gives_up_leaves_readers_in() {
                c::a_writer_that_does_not_wait_or_gives_up_leaves_readers_in(&$rw.await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_semaphore_admits_at_most_its_permits() {
                c::a_semaphore_admits_at_most_its_permits(&$sem.await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn semaphore_permits_expire_and_wake_waiters() {
                c::semaphore_permits_expire_and_wake_waiters(&$sem.await).await;
            }
        }
    };
}

kinds!(memory, async { rw_memory() }, async { sem_memory() });
kinds!(
    standalone,
    async {
        let (a, b) = redis_pair(false).await;
        rw_redis(&a, &b)
    },
    async {
        let (a, b) = redis_pair(false).await;
        sem_redis(a, b)
    }
);
kinds!(
    cluster,
    async {
        let (a, b) = redis_pair(true).await;
        rw_redis(&a, &b)
    },
    async {
        let (a, b) = redis_pair(true).await;
        sem_redis(a, b)
    }
);

// The mutex suite holds for the writer side and for a one-permit semaphore as well.
redkit_lock::conformance_suite!(writer_side, async {
    let (a, b) = redis_pair(false).await;
    Suite {
        a: Arc::new(a.write()),
        b: Arc::new(b.write()),
        time: Time::Real,
    }
});
redkit_lock::conformance_suite!(one_permit, async {
    let (a, b) = redis_pair(false).await;
    Suite {
        a: Arc::new(a.semaphore(1).unwrap()),
        b: Arc::new(b.semaphore(1).unwrap()),
        time: Time::Real,
    }
});
redkit_lock::conformance_suite!(memory_one_permit, async {
    let clock = manual();
    let m = MemoryLock::builder().clock(clock.clone()).build();
    let s = Arc::new(m.semaphore(1).unwrap());
    Suite {
        a: s.clone(),
        b: s,
        time: Time::Manual(clock),
    }
});

macro_rules! multi {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn all_or_none_over_a_group() {
                c::all_or_none_over_a_group(&$make.await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn acquire_all_waits_for_the_overlapping_holder() {
                c::acquire_all_waits_for_the_overlapping_holder(&$make.await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_expired_multi_hold_is_not_released_by_its_old_owner() {
                c::an_expired_multi_hold_is_not_released_by_its_old_owner(&$make.await).await;
            }
        }
    };
}

multi!(multi_memory, async {
    let clock = manual();
    let m = Arc::new(MemoryLock::builder().clock(clock.clone()).build());
    MultiSuite {
        a: m.clone(),
        b: m,
        time: Time::Manual(clock),
    }
});
multi!(multi_standalone, async {
    let (a, b) = redis_pair(false).await;
    MultiSuite {
        a: Arc::new(a),
        b: Arc::new(b),
        time: Time::Real,
    }
});
multi!(multi_cluster, async {
    let (a, b) = redis_pair(true).await;
    MultiSuite {
        a: Arc::new(a),
        b: Arc::new(b),
        time: Time::Real,
    }
});
