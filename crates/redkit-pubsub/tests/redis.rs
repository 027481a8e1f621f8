//! Redis-only: a subscription across a server restart resumes and reports the gap.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use redkit_pubsub::{Event, PubSubExt, RedisPubSub, Topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumes_after_a_restart_and_reports_the_gap() {
    let mut server = redkit_testkit::Server::start();
    let config = server
        .config()
        .subscription_ping_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let redis = redkit_core::Redis::from_config(config).await.unwrap();
    let bus = RedisPubSub::with_prefix(&redis, "restart").unwrap();
    let topic = Topic::Channel("news".into());
    let mut sub = bus.subscribe::<String>(&topic).await.unwrap();
    bus.publish(&topic, &"before".to_string()).await.unwrap();
    assert!(matches!(sub.recv().await, Some(Event::Message(m)) if m.payload == "before"));

    server.kill();
    server.restart();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let _ = bus.publish(&topic, &"after".to_string()).await;
        match tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
            Ok(Some(Event::Message(m))) if m.payload == "after" => break,
            Ok(Some(e)) => events.push(e),
            Ok(None) => panic!("the subscription ended"),
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "no message after the restart: {events:?}"
        );
    }
    let gap = events.iter().position(|e| *e == Event::Disconnected);
    let back = events.iter().position(|e| *e == Event::Resubscribed);
    assert!(
        matches!((gap, back), (Some(g), Some(b)) if g < b),
        "{events:?}"
    );
}
