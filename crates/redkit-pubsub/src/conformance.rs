//! The suite every [`PubSub`] backend must pass. Run it with [`crate::conformance_suite!`].
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Error, Event, LagPolicy, Options, PubSub, PubSubExt, Subscription, Topic};

type Make = dyn Fn() -> (Arc<dyn PubSub>, Arc<dyn PubSub>) + Send + Sync;

/// Builds pairs of backends over one bus (two "processes"), on a fresh prefix each.
#[derive(Clone)]
pub struct Suite {
    make: Arc<Make>,
    /// Whether `publish` counts every receiver (not on a cluster, where a plain
    /// channel's count covers only the node that took the message).
    pub exact_counts: bool,
}

impl fmt::Debug for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite").finish_non_exhaustive()
    }
}

impl Suite {
    pub fn new(
        make: impl Fn() -> (Arc<dyn PubSub>, Arc<dyn PubSub>) + Send + Sync + 'static,
    ) -> Suite {
        Suite {
            make: Arc::new(make),
            exact_counts: true,
        }
    }

    /// A suite whose plain-channel publish counts are per node (a cluster).
    pub fn per_node_counts(mut self) -> Suite {
        self.exact_counts = false;
        self
    }

    pub fn pair(&self) -> (Arc<dyn PubSub>, Arc<dyn PubSub>) {
        (self.make)()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Price {
    sku: String,
    cents: u64,
}

fn chan(n: &str) -> Topic {
    Topic::Channel(n.into())
}

async fn next<T: serde::de::DeserializeOwned>(sub: &mut Subscription<T>) -> Event<T> {
    tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("no event within 5 s")
        .expect("the subscription ended")
}

async fn next_message<T: serde::de::DeserializeOwned>(
    sub: &mut Subscription<T>,
) -> crate::Received<T> {
    loop {
        if let Event::Message(m) = next(sub).await {
            return m;
        }
    }
}

pub async fn typed_messages_reach_every_subscriber(s: &Suite) {
    let (a, b) = s.pair();
    let mut one = a.subscribe::<Price>(&chan("prices")).await.unwrap();
    let mut two = b.subscribe::<Price>(&chan("prices")).await.unwrap();
    let mut other = b.subscribe::<Price>(&chan("other")).await.unwrap();
    let price = Price {
        sku: "tea".into(),
        cents: 350,
    };
    let n = a.publish(&chan("prices"), &price).await.unwrap();
    if s.exact_counts {
        assert_eq!(n, 2);
    }
    for sub in [&mut one, &mut two] {
        let m = next_message(sub).await;
        assert_eq!(
            (m.channel.as_str(), &m.payload, m.pattern),
            ("prices", &price, None)
        );
    }
    b.publish(&chan("other"), &price).await.unwrap();
    assert_eq!(next_message(&mut other).await.channel, "other");
    // in order
    for cents in 0..20 {
        a.publish(
            &chan("prices"),
            &Price {
                sku: "x".into(),
                cents,
            },
        )
        .await
        .unwrap();
    }
    for cents in 0..20 {
        assert_eq!(next_message(&mut one).await.payload.cents, cents);
    }
}

pub async fn patterns_report_channel_and_pattern(s: &Suite) {
    let (a, b) = s.pair();
    let mut sub = a
        .subscribe::<u32>(&Topic::Pattern("orders.*".into()))
        .await
        .unwrap();
    b.publish(&chan("invoices.eu"), &1).await.unwrap();
    let n = b.publish(&chan("orders.eu"), &2).await.unwrap();
    if s.exact_counts {
        assert_eq!(n, 1);
    }
    let m = next_message(&mut sub).await;
    assert_eq!(m.channel, "orders.eu");
    assert_eq!(m.pattern.as_deref(), Some("orders.*"));
    assert_eq!(m.payload, 2);
}

pub async fn sharded_channels_deliver_too(s: &Suite) {
    let (a, b) = s.pair();
    let topic = Topic::Sharded("{cart:7}:events".into());
    let mut sub = a.subscribe::<String>(&topic).await.unwrap();
    assert_eq!(b.publish(&topic, &"added".to_string()).await.unwrap(), 1);
    let m = next_message(&mut sub).await;
    assert_eq!(
        (m.channel.as_str(), m.payload.as_str()),
        ("{cart:7}:events", "added")
    );
}

pub async fn dropping_a_subscription_unsubscribes(s: &Suite) {
    let (a, b) = s.pair();
    // sharded: the count is exact everywhere (the slot's node holds the subscription)
    let topic = Topic::Sharded("gone".into());
    let sub = a.subscribe::<u32>(&topic).await.unwrap();
    assert_eq!(b.publish(&topic, &1).await.unwrap(), 1);
    drop(sub);
    let mut receivers = 1;
    for _ in 0..100 {
        receivers = b.publish(&topic, &2).await.unwrap();
        if receivers == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        receivers, 0,
        "the server no longer sends to the dropped subscription"
    );
}

pub async fn undecodable_payloads_are_reported_not_fatal(s: &Suite) {
    let (a, b) = s.pair();
    let mut sub = a.subscribe::<Price>(&chan("mixed")).await.unwrap();
    b.publish_raw(&chan("mixed"), b"{not json").await.unwrap();
    b.publish(
        &chan("mixed"),
        &Price {
            sku: "ok".into(),
            cents: 1,
        },
    )
    .await
    .unwrap();
    match next(&mut sub).await {
        Event::Undecodable { channel, error } => {
            assert_eq!(channel, "mixed");
            assert!(!error.is_empty());
        }
        other => panic!("expected an undecodable report, got {other:?}"),
    }
    assert_eq!(next_message(&mut sub).await.payload.sku, "ok");
}

pub async fn slow_subscribers_lag_by_their_policy(s: &Suite) {
    let (a, b) = s.pair();
    let opts = |lag| Options::new().buffer(4).lag(lag);
    let mut newest = a
        .subscribe_with::<u32>(&chan("lag"), opts(LagPolicy::DropNewest))
        .await
        .unwrap();
    let mut oldest = a
        .subscribe_with::<u32>(&chan("lag"), opts(LagPolicy::DropOldest))
        .await
        .unwrap();
    let mut strict = a
        .subscribe_with::<u32>(&chan("lag"), opts(LagPolicy::Disconnect))
        .await
        .unwrap();
    for i in 0..20u32 {
        b.publish(&chan("lag"), &i).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // the gap comes where the messages were dropped: after the buffered ones
    for i in 0..4 {
        assert_eq!(next_message(&mut newest).await.payload, i);
    }
    assert_eq!(next(&mut newest).await, Event::Lagged { missed: 16 });
    assert_eq!(next(&mut oldest).await, Event::Lagged { missed: 16 });
    for i in 16..20 {
        assert_eq!(next_message(&mut oldest).await.payload, i);
    }
    for i in 0..4 {
        assert_eq!(next_message(&mut strict).await.payload, i);
    }
    assert!(matches!(next(&mut strict).await, Event::Lagged { .. }));
    let end = tokio::time::timeout(Duration::from_secs(2), strict.recv())
        .await
        .unwrap();
    assert_eq!(end, None, "a disconnected subscription ends");
}

pub async fn bad_input_is_a_typed_error(s: &Suite) {
    let (a, _) = s.pair();
    let e = a.subscribe::<u32>(&chan("")).await.unwrap_err();
    assert!(matches!(e, Error::InvalidChannel(_)), "{e:?}");
    let e = a.publish(&chan(""), &1).await.unwrap_err();
    assert!(matches!(e, Error::InvalidChannel(_)), "{e:?}");
    let e = a
        .publish(&Topic::Pattern("a.*".into()), &1)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidChannel(_)), "{e:?}");
    let huge = "c".repeat(2000);
    assert!(a.subscribe::<u32>(&chan(&huge)).await.is_err());
    let e = a.publish(&chan("x"), &f64::NAN).await;
    // serde_json writes NaN as null: it encodes; a map with non-string keys does not
    assert!(e.is_ok());
    let bad: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
    let e = a.publish(&chan("x"), &bad).await.unwrap_err();
    assert!(matches!(e, Error::Encode(_)), "{e:?}");
}

/// Item 10 of issue 18: a buffer of 0 messages is a typed error before anything is sent
/// (it used to become 1 silently); `usize::MAX` is an unbounded buffer, not a panic.
pub async fn buffer_sizes_at_the_edges(s: &Suite) {
    let (a, b) = s.pair();
    let mut zero = Options::new();
    zero.buffer = Some(0);
    for options in [Options::new().buffer(0), zero] {
        let e = a
            .subscribe_with::<u32>(&chan("edge"), options)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
    let mut unbounded = a
        .subscribe_with::<u32>(&chan("edge"), Options::new().buffer(usize::MAX))
        .await
        .unwrap();
    for i in 0..50u32 {
        b.publish(&chan("edge"), &i).await.unwrap();
    }
    for i in 0..50u32 {
        assert_eq!(next_message(&mut unbounded).await.payload, i);
    }
}

/// Runs every case of the suite as a test: `conformance_suite!(name, async { Suite })`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@case $make;
                typed_messages_reach_every_subscriber,
                patterns_report_channel_and_pattern,
                sharded_channels_deliver_too,
                dropping_a_subscription_unsubscribes,
                undecodable_payloads_are_reported_not_fatal,
                slow_subscribers_lag_by_their_policy,
                bad_input_is_a_typed_error,
                buffer_sizes_at_the_edges
            );
        }
    };
    (@case $make:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let suite: $crate::conformance::Suite = $make.await;
                $crate::conformance::$case(&suite).await;
            }
        )+
    };
}
