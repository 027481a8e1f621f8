//! Coalesced and explicit batches (issue 18 item 7): a caller that gets an error never
//! had anything consumed by a partly run batch; on a cluster one slot's failure fails
//! only that slot's callers; and a dropped `check` future consumed exactly when its batch
//! had been sent.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::{Redis, redis};
use redkit_ratelimit::{Limit, RateLimiter, RedisRateLimiter, Request};
use redkit_testkit::{Cluster, Server};

const HOUR: Duration = Duration::from_secs(3600);

fn limiter(redis: &Redis, limit: Limit) -> Arc<RedisRateLimiter> {
    Arc::new(
        RedisRateLimiter::builder(redis.clone())
            .prefix(redkit_testkit::prefix("rl-batch"))
            .limit(limit)
            .build()
            .unwrap(),
    )
}

/// Concurrent checks on subjects spread over the three masters are coalesced into one
/// batch, one script call per slot. One master refuses script calls (an ACL that denies
/// EVALSHA and EVAL, which makes that slot's call fail as a whole): only the checks of its
/// slots fail; every other caller gets its decision. With the old all-or-nothing
/// `invoke_by_slot` every caller of the batch got the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_slot_fails_only_its_own_callers() {
    let cluster = Cluster::start();
    let redis = cluster.redis().await;
    let l = limiter(&redis, Limit::fixed_window(10, HOUR));
    let subjects: Vec<String> = (0..24).map(|i| format!("user:{i}")).collect();
    let node_of = |s: &str| cluster.master_index(&l.state_keys(s).unwrap()[0]);
    let refusing = node_of(&subjects[0]);
    cluster.nodes()[refusing].cli(&["acl", "setuser", "default", "-evalsha", "-eval"]);
    assert!(subjects.iter().any(|s| node_of(s) != refusing));

    let calls: Vec<_> = subjects
        .iter()
        .map(|s| {
            let l = Arc::clone(&l);
            let s = s.clone();
            tokio::spawn(async move { l.check(&s, 1).await })
        })
        .collect();
    for (s, call) in subjects.iter().zip(calls) {
        let result = call.await.unwrap();
        if node_of(s) == refusing {
            let err = result.unwrap_err();
            assert!(err.is_store_failure(), "{s}: {err:?}");
        } else {
            let d = result.unwrap_or_else(|e| panic!("{s} failed with another slot: {e}"));
            assert!(d.allowed && d.remaining == 9, "{s}: {d:?}");
        }
    }
    cluster.nodes()[refusing].cli(&["acl", "setuser", "default", "+@all"]);
    // the refused calls ran nothing
    let d = l.peek(&subjects[0]).await.unwrap();
    assert_eq!(d.remaining, 10, "{d:?}");
}

/// Under `maxmemory` with `noeviction`, Redis refuses a script's first write and lets
/// every later one through, so a batch could stop half-written only if a refused write
/// ended the script. It does not: each request's writes run inside its own pcall, the
/// first write of every request is refused alike, and each caller gets an error with
/// nothing consumed, in coalesced and explicit batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_fails_every_request_and_consumes_nothing() {
    let server = Server::start();
    let redis = Redis::from_config(server.config().build().unwrap())
        .await
        .unwrap();
    for limit in [Limit::fixed_window(5, HOUR), Limit::gcra(5, HOUR)] {
        let l = limiter(&redis, limit.clone());
        assert!(l.check("warm", 1).await.unwrap().allowed);
        server.cli(&["config", "set", "maxmemory", "1"]);
        let (a, b) = tokio::join!(l.check("a", 1), l.check("b", 2));
        assert!(a.unwrap_err().is_store_failure(), "{limit:?}");
        assert!(b.unwrap_err().is_store_failure(), "{limit:?}");
        let err = l
            .run(&[
                Request::check("a", 1),
                Request::penalty("b", 1),
                Request::check("warm", 1),
            ])
            .await
            .unwrap_err();
        assert!(err.is_store_failure(), "{limit:?}: {err:?}");
        server.cli(&["config", "set", "maxmemory", "0"]);
        for (key, left) in [("a", 5), ("b", 5), ("warm", 4)] {
            let d = l.peek(key).await.unwrap();
            assert_eq!(d.remaining, left, "{limit:?} {key}: {d:?}");
        }
    }
}

/// What a dropped `check` future means (README, "Batches and cancellation"): dropped
/// before its batch was sent, it is never sent and consumes nothing; dropped after, the
/// server decides it and the consumption stands, as if the request had been served. The
/// server is paused so that check A's batch is on the wire and check B waits for the
/// next batch (a pipelined coalescer holds at most one batch in flight while it has no
/// returning callers); both futures are dropped, then the server resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_check_consumes_only_if_it_was_sent() {
    let server = Server::start();
    let redis = Redis::from_config(
        server
            .config()
            .response_timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let l = limiter(&redis, Limit::fixed_window(10, HOUR));
    assert_eq!(l.peek("k").await.unwrap().remaining, 10);
    server.pause();
    let sent = {
        let l = Arc::clone(&l);
        tokio::spawn(async move { l.check("k", 1).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = {
        let l = Arc::clone(&l);
        tokio::spawn(async move { l.check("k", 2).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    sent.abort();
    queued.abort();
    assert!(sent.await.unwrap_err().is_cancelled());
    assert!(queued.await.unwrap_err().is_cancelled());
    server.resume();
    let d = l.peek("k").await.unwrap();
    assert_eq!(
        d.remaining, 9,
        "the sent check consumed 1, the queued one (2) nothing: {d:?}"
    );
    // and the limiter goes on as usual
    assert_eq!(l.check("k", 1).await.unwrap().remaining, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_batches_on_a_cluster_decide_every_slot() {
    let cluster = redkit_testkit::cluster();
    let redis = cluster.redis().await;
    let l = limiter(&redis, Limit::sliding_log(3, HOUR));
    let requests: Vec<Request<'_>> = ["x", "y", "z", "x", "y", "x", "x"]
        .iter()
        .map(|k| Request::check(k, 1))
        .collect();
    let ds = l.run(&requests).await.unwrap();
    let allowed: Vec<bool> = ds.iter().map(|d| d.allowed).collect();
    assert_eq!(allowed, [true, true, true, true, true, true, false]);
    let key = l.state_keys("x").unwrap().remove(0);
    let n: u64 = redis.query(redis::cmd("ZCARD").arg(key)).await.unwrap();
    assert_eq!(n, 3);
}
