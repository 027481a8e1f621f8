//! The handle against a real standalone server: commands, scripts, pipelines, dedicated
//! connections and subscriptions.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::LazyLock;
use std::time::Duration;

use redkit_core::{Error, Event, Pipeline, Redis, Script, redis};
use redkit_testkit as testkit;

static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "add",
        "-- KEYS[1] counter, KEYS[2] log; ARGV[1] step\n\
         local n = redis.call('INCRBY', KEYS[1], ARGV[1])\n\
         redis.call('RPUSH', KEYS[2], n)\n\
         return n",
    )
});

static FAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "fail",
        "-- KEYS: none\nreturn redis.error_reply('BOOM nope')",
    )
});

#[tokio::test]
async fn commands_and_scripts_on_the_shared_connection() {
    let redis = testkit::redis().await;
    let ks = redis.keyspace(&testkit::prefix("script")).unwrap();
    let counter = ks.tagged("c").unwrap();
    let log = counter.child("log").unwrap();
    testkit::assert_same_slot(&[counter.as_str(), log.as_str()]);

    let n: i64 = ADD
        .call()
        .key(&counter)
        .key(&log)
        .arg(5)
        .invoke(&redis)
        .await
        .unwrap();
    assert_eq!(n, 5);
    let n: i64 = ADD
        .call()
        .key(&counter)
        .key(&log)
        .arg(2)
        .invoke(&redis)
        .await
        .unwrap();
    assert_eq!(n, 7);
    let entries: Vec<i64> = redis
        .query(redis::cmd("LRANGE").arg(&log).arg(0).arg(-1))
        .await
        .unwrap();
    assert_eq!(entries, vec![5, 7]);

    let err = FAIL.call().invoke::<()>(&redis).await.unwrap_err();
    match &err {
        Error::Script { name, .. } => assert_eq!(*name, "fail"),
        other => panic!("expected a script error, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn scripts_survive_a_flushed_script_cache() {
    // A private server: SCRIPT FLUSH would disturb other tests on a shared one.
    let server = testkit::Server::start();
    let redis = server.redis().await;
    let ks = redis.keyspace("noscript").unwrap();
    let counter = ks.tagged("c").unwrap();
    let log = counter.child("log").unwrap();

    let _: i64 = ADD
        .call()
        .key(&counter)
        .key(&log)
        .arg(1)
        .invoke(&redis)
        .await
        .unwrap();
    let _: () = redis
        .query(redis::cmd("SCRIPT").arg("FLUSH"))
        .await
        .unwrap();
    let n: i64 = ADD
        .call()
        .key(&counter)
        .key(&log)
        .arg(1)
        .invoke(&redis)
        .await
        .unwrap();
    assert_eq!(n, 2, "EVALSHA fell back to EVAL once, and ran once");

    // In a pipeline, only the lost script is re-sent; the INCR beside it runs once.
    let _: () = redis
        .query(redis::cmd("SCRIPT").arg("FLUSH"))
        .await
        .unwrap();
    let other = ks.key("other").unwrap();
    let mut pipe = Pipeline::new();
    let mut incr = redis::cmd("INCR");
    incr.arg(&other);
    pipe.cmd(incr)
        .invoke(ADD.call().key(&counter).key(&log).arg(10));
    let (other_n, n): (i64, i64) = pipe.query(&redis).await.unwrap();
    assert_eq!((other_n, n), (1, 12));
    let other_now: i64 = redis.query(redis::cmd("GET").arg(&other)).await.unwrap();
    assert_eq!(other_now, 1, "the plain command was not repeated");
    let entries: Vec<i64> = redis
        .query(redis::cmd("LRANGE").arg(&log).arg(0).arg(-1))
        .await
        .unwrap();
    assert_eq!(entries, vec![1, 2, 12], "each script call ran exactly once");
}

static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "push",
        "-- KEYS[1] list; ARGV[1] value\nreturn redis.call('RPUSH', KEYS[1], ARGV[1])",
    )
});

fn rpush(list: &redkit_core::Key, value: &str) -> redis::Cmd {
    let mut c = redis::cmd("RPUSH");
    c.arg(list).arg(value);
    c
}

async fn list(redis: &Redis, list: &redkit_core::Key) -> Vec<String> {
    redis
        .query(redis::cmd("LRANGE").arg(list).arg(0).arg(-1))
        .await
        .unwrap()
}

#[tokio::test]
async fn pipelined_scripts_keep_their_order_after_a_script_flush() {
    // A private server: SCRIPT FLUSH would disturb other tests on a shared one.
    let server = testkit::Server::start();
    let redis = server.redis().await;
    let ks = redis.keyspace("order").unwrap();
    let jobs = ks.tagged("jobs").unwrap();
    let _: i64 = PUSH
        .call()
        .key(&jobs)
        .arg("j0")
        .invoke(&redis)
        .await
        .unwrap();

    // The script cache is lost between two calls: j1 (script), j2 (plain), j3 (script).
    let _: () = redis
        .query(redis::cmd("SCRIPT").arg("FLUSH"))
        .await
        .unwrap();
    let mut pipe = Pipeline::new();
    pipe.invoke(PUSH.call().key(jobs.clone()).arg("j1"))
        .cmd(rpush(&jobs, "j2"))
        .invoke(PUSH.call().key(jobs.clone()).arg("j3"));
    let lens: Vec<i64> = pipe.query(&redis).await.unwrap();
    assert_eq!(lens, [2, 3, 4]);
    assert_eq!(list(&redis, &jobs).await, ["j0", "j1", "j2", "j3"]);

    // Lost while the pipeline runs (a flush between its commands): the call that
    // answers NOSCRIPT did not run and is not sent again after the later commands.
    let mut pipe = Pipeline::new();
    pipe.invoke(PUSH.call().key(jobs.clone()).arg("a"))
        .cmd(redis::cmd("SCRIPT").arg("FLUSH").to_owned())
        .invoke(PUSH.call().key(jobs.clone()).arg("b"))
        .cmd(rpush(&jobs, "c"));
    let values = pipe.execute(&redis).await.unwrap();
    assert!(
        matches!(&values[2], redis::Value::ServerError(e) if e.code() == "NOSCRIPT"),
        "{values:?}"
    );
    assert_eq!(
        list(&redis, &jobs).await,
        ["j0", "j1", "j2", "j3", "a", "c"]
    );
    let err = pipe.query::<Vec<redis::Value>>(&redis).await.unwrap_err();
    assert!(matches!(err, Error::Script { name: "push", .. }), "{err:?}");
    assert_eq!(
        list(&redis, &jobs).await,
        ["j0", "j1", "j2", "j3", "a", "c", "a", "c"]
    );
}

#[tokio::test]
async fn pipeline_errors_name_the_failing_script() {
    let redis = testkit::redis().await;
    let ks = redis.keyspace(&testkit::prefix("pipe")).unwrap();
    let mut pipe = Pipeline::new();
    let mut set = redis::cmd("SET");
    set.arg(ks.key("a").unwrap()).arg("1");
    pipe.cmd(set).invoke(FAIL.call());
    let err = pipe.query::<((), ())>(&redis).await.unwrap_err();
    assert!(matches!(err, Error::Script { name: "fail", .. }), "{err:?}");
    let values = pipe.execute(&redis).await.unwrap();
    assert_eq!(values.len(), 2);
    assert!(matches!(values[1], redis::Value::ServerError(_)));
}

#[tokio::test]
async fn many_tasks_share_one_connection() {
    let redis = testkit::redis().await;
    let key = redis
        .keyspace(&testkit::prefix("shared"))
        .unwrap()
        .key("n")
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let redis = redis.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let _: i64 = redis.query(redis::cmd("INCR").arg(&key)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n: i64 = redis.query(redis::cmd("GET").arg(&key)).await.unwrap();
    assert_eq!(n, 64 * 50);
}

#[tokio::test]
async fn dedicated_connections_block_and_time_out() {
    let server = testkit::Server::start();
    let config = server
        .config()
        .pool_size(2)
        .pool_wait_timeout(Duration::from_millis(300));
    let redis = Redis::from_config(config.build().unwrap()).await.unwrap();
    let list = redis.keyspace("ded").unwrap().key("jobs").unwrap();

    // A blocking pop waits on its own connection while the shared one keeps working.
    let waiter = {
        let redis = redis.clone();
        let list = list.clone();
        tokio::spawn(async move {
            let mut conn = redis.dedicated().await.unwrap();
            let got: Option<(String, String)> = conn
                .blocking(
                    redis::cmd("BLPOP").arg(&list).arg(5),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            got
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: i64 = redis
        .query(redis::cmd("RPUSH").arg(&list).arg("job-1"))
        .await
        .unwrap();
    let got = waiter.await.unwrap();
    assert_eq!(got.map(|(_, v)| v).as_deref(), Some("job-1"));

    // A blocking call gets its block time plus the response timeout.
    let mut conn = redis.dedicated().await.unwrap();
    let none: Option<Vec<String>> = conn
        .blocking(
            redis::cmd("BLPOP").arg(&list).arg(1),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(none, None);

    // A call that outlives its limit is a timeout, and that connection is not reused.
    let id_before: i64 = conn
        .query(&redis::cmd("CLIENT").arg("ID").to_owned())
        .await
        .unwrap();
    let slow = conn
        .query::<()>(redis::cmd("DEBUG").arg("SLEEP").arg(3))
        .await
        .unwrap_err();
    assert!(matches!(slow, Error::Timeout(_)), "{slow:?}");
    assert!(slow.is_retryable());
    drop(conn);
    let mut fresh = redis.dedicated().await.unwrap();
    let id_after: i64 = fresh
        .query(&redis::cmd("CLIENT").arg("ID").to_owned())
        .await
        .unwrap();
    assert_ne!(
        id_before, id_after,
        "the timed-out connection went back to the pool"
    );

    // A blocking call abandoned half-way (its future dropped by a select) leaves BLPOP
    // running on the server: that connection is not reused either.
    let id_before: i64 = fresh
        .query(&redis::cmd("CLIENT").arg("ID").to_owned())
        .await
        .unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        fresh.blocking::<Option<Vec<String>>>(
            redis::cmd("BLPOP").arg(&list).arg(5),
            Duration::from_secs(5),
        ),
    )
    .await;
    assert!(abandoned.is_err());
    drop(fresh);
    let mut next = redis.dedicated().await.unwrap();
    let id_after: i64 = next
        .query(&redis::cmd("CLIENT").arg("ID").to_owned())
        .await
        .unwrap();
    assert_ne!(
        id_before, id_after,
        "the abandoned connection went back to the pool"
    );
    drop(next);

    // The pool is bounded: with both connections held, a third waits, then times out.
    let a = redis.dedicated().await.unwrap();
    let b = redis.dedicated().await.unwrap();
    let err = redis.dedicated().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    drop((a, b));
    let mut c = redis.dedicated().await.unwrap();
    let pong: String = c.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// A second subscription to `channel` with room for 100 messages.
async fn witness(redis: &Redis, channel: &str) -> redkit_core::Subscription {
    redis
        .subscriber()
        .await
        .unwrap()
        .subscribe_with(channel, redkit_core::SubscribeOptions::new().buffer(100))
        .await
        .unwrap()
}

async fn next_message(sub: &mut redkit_core::Subscription) -> redkit_core::Message {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("no event within 5 s")
            .expect("subscription ended");
        if let Event::Message(m) = event {
            return m;
        }
    }
}

#[tokio::test]
async fn subscriptions_receive_and_unsubscribe_on_drop() {
    let redis = testkit::redis().await;
    let channel = testkit::prefix("chan");
    let mut a = redis.subscribe(&channel).await.unwrap();
    let mut b = redis.subscribe(&channel).await.unwrap();
    let mut p = redis.psubscribe(&format!("{channel}*")).await.unwrap();

    let receivers = redis.publish(&channel, b"hello").await.unwrap();
    assert_eq!(
        receivers, 2,
        "one channel and one pattern subscription on the server"
    );
    assert_eq!(next_message(&mut a).await.payload, b"hello");
    assert_eq!(next_message(&mut b).await.payload, b"hello");
    let m = next_message(&mut p).await;
    assert_eq!(m.pattern.as_deref(), Some(format!("{channel}*").as_str()));
    assert_eq!(m.channel, channel);

    let numsub = |redis: Redis, channel: String| async move {
        let v: (String, i64) = redis
            .query(redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel))
            .await
            .unwrap();
        v.1
    };
    drop(a);
    assert_eq!(
        numsub(redis.clone(), channel.clone()).await,
        1,
        "b still listens"
    );
    drop(b);
    assert!(
        testkit::eventually(Duration::from_secs(3), || {
            let (r, c) = (redis.clone(), channel.clone());
            async move { numsub(r, c).await == 0 }
        })
        .await,
        "the last drop unsubscribes on the server"
    );
}

#[tokio::test]
async fn a_slow_subscriber_is_told_it_lagged_and_memory_stays_bounded() {
    let server = testkit::Server::start();
    let config = server.config().subscription_buffer(4).build().unwrap();
    let redis = Redis::from_config(config).await.unwrap();
    let mut sub = redis.subscribe("lag").await.unwrap();
    let mut witness = witness(&redis, "lag").await;
    for i in 0..20 {
        redis
            .publish("lag", format!("{i}").as_bytes())
            .await
            .unwrap();
    }
    // Every message reached the slow subscriber's queue before any is read: a
    // subscriber with room for all of them, fed in the same order, has all 20.
    for _ in 0..20 {
        next_message(&mut witness).await;
    }
    // the buffered messages first, then the gap where 4..19 were dropped, then what
    // came after it
    assert_lagged_in_place(&mut sub, &redis, "lag").await;
}

/// Expects messages 0..3 (published 0..19 into a buffer of 4), then the gap of 16,
/// then a message published after it.
async fn assert_lagged_in_place(sub: &mut redkit_core::Subscription, redis: &Redis, channel: &str) {
    for i in 0..4 {
        let event = sub.recv().await.unwrap();
        assert!(
            matches!(&event, Event::Message(m) if m.payload == format!("{i}").as_bytes()),
            "{event:?}"
        );
    }
    redis.publish(channel, b"later").await.unwrap();
    assert_eq!(sub.recv().await.unwrap(), Event::Lagged { missed: 16 });
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&event, Event::Message(m) if m.payload == b"later"),
        "{event:?}"
    );
}

#[tokio::test]
async fn bad_names_are_typed_errors() {
    let redis = testkit::redis().await;
    assert!(matches!(redis.keyspace(""), Err(Error::InvalidKey(_))));
    assert!(matches!(redis.keyspace("a{b}"), Err(Error::InvalidKey(_))));
    assert!(matches!(
        redis.subscribe("").await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn drop_oldest_keeps_the_latest_and_disconnect_ends_the_subscription() {
    use redkit_core::{LagPolicy, SubscribeOptions};
    let redis = testkit::redis().await;
    let channel = testkit::prefix("lag-policy");
    let sub = redis.subscriber().await.unwrap();
    let opts = |lag| SubscribeOptions::new().buffer(4).lag(lag);
    let mut oldest = sub
        .subscribe_with(&channel, opts(LagPolicy::DropOldest))
        .await
        .unwrap();
    let mut strict = sub
        .subscribe_with(&channel, opts(LagPolicy::Disconnect))
        .await
        .unwrap();
    let mut witness = witness(&redis, &channel).await;
    for i in 0..20 {
        redis
            .publish(&channel, format!("{i}").as_bytes())
            .await
            .unwrap();
    }
    for _ in 0..20 {
        next_message(&mut witness).await;
    }
    assert_eq!(oldest.recv().await.unwrap(), Event::Lagged { missed: 16 });
    let mut kept = Vec::new();
    for _ in 0..4 {
        kept.push(next_message(&mut oldest).await.payload);
    }
    assert_eq!(
        kept,
        [
            b"16".to_vec(),
            b"17".to_vec(),
            b"18".to_vec(),
            b"19".to_vec()
        ]
    );

    for i in 0..4 {
        assert_eq!(
            next_message(&mut strict).await.payload,
            format!("{i}").into_bytes()
        );
    }
    assert!(matches!(strict.recv().await.unwrap(), Event::Lagged { .. }));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(1), strict.recv())
            .await
            .unwrap(),
        None,
        "a disconnected subscription ends"
    );
    // the other subscription of the same channel goes on
    redis.publish(&channel, b"after").await.unwrap();
    assert_eq!(next_message(&mut oldest).await.payload, b"after".to_vec());
}

#[tokio::test]
async fn sharded_channels_work_on_a_single_node() {
    let redis = testkit::redis().await;
    let channel = testkit::prefix("sharded");
    let mut sub = redis.ssubscribe(&channel).await.unwrap();
    assert_eq!(redis.spublish(&channel, b"hi").await.unwrap(), 1);
    let m = next_message(&mut sub).await;
    assert_eq!((m.channel, m.payload), (channel, b"hi".to_vec()));
}

#[tokio::test]
async fn extreme_settings_connect_and_work() {
    let server = testkit::Server::start();
    let config = redkit_core::RedisConfig::builder()
        .url(server.url())
        .connect_timeout(Duration::MAX)
        .response_timeout(Duration::MAX)
        .reconnect_retries(usize::MAX)
        .reconnect_max_delay(Duration::MAX)
        .pool_size(redkit_core::MAX_POOL_SIZE)
        .pool_wait_timeout(Duration::MAX)
        .pool_create_timeout(Duration::MAX)
        .pool_recycle_timeout(Duration::MAX)
        .subscription_ping_interval(Duration::MAX)
        .subscription_buffer(usize::MAX)
        .build()
        .unwrap();
    let redis = Redis::from_config(config).await.unwrap();
    let pong: String = redis.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    let mut conn = redis.dedicated().await.unwrap();
    let none: Option<(String, String)> = conn
        .blocking(
            redis::cmd("BLPOP").arg("extreme-list").arg(0.05),
            Duration::MAX,
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    drop(conn);
    let mut sub = redis.subscribe("extreme").await.unwrap();
    redis.publish("extreme", b"x").await.unwrap();
    assert_eq!(next_message(&mut sub).await.payload, b"x");

    // a database the server does not have is a typed error, not a panic
    let config = server.config().database(i64::MAX).build().unwrap();
    let err = Redis::from_config(config).await.unwrap_err();
    assert!(matches!(err, Error::Redis(_) | Error::Config(_)), "{err:?}");

    // a batch whose answer could not fit in memory is refused before anything is sent
    let ks = redis.keyspace("extreme").unwrap();
    let keys = [ks.tagged("a").unwrap(), ks.tagged("b").unwrap()];
    let call = |_: &[usize]| PUSH.call();
    let err = redis
        .invoke_by_slot(&keys, |k| k, usize::MAX, call)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let each = redis
        .invoke_by_slot_each(&keys, |k| k, usize::MAX, call)
        .await;
    assert_eq!(each.len(), 2);
    assert!(
        each.iter()
            .all(|r| matches!(r, Err(Error::InvalidArgument(_)))),
        "{each:?}"
    );
}
