//! Subscriptions: one RESP3 connection per handle shared by every subscriber, resubscribed
//! after reconnects, with explicit gap signals.
//!
//! Redis pub/sub is at-most-once: a message published while the link is down is lost.
//! A [`Subscription`] therefore tells its owner when that may have happened
//! ([`Event::Disconnected`], [`Event::Lagged`]) and when delivery works again
//! ([`Event::Resubscribed`]), so a cache can drop what it holds and a lock waiter can
//! re-check the lock instead of waiting for a wake-up that will never come.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};

use crate::config::{RedisConfig, Topology};
use crate::error::{Error, Result};
use crate::handle::client_for;

/// One message received on a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// The channel it was published on.
    pub channel: String,
    /// The pattern that matched, for pattern subscriptions.
    pub pattern: Option<String>,
    /// The payload as published.
    pub payload: Vec<u8>,
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A published message.
    Message(Message),
    /// The subscription connection dropped or stopped answering: messages published from
    /// now until [`Event::Resubscribed`] may be lost.
    Disconnected,
    /// The connection is back and every channel is subscribed again.
    Resubscribed,
    /// This subscriber did not keep up: its buffer was full and `missed` messages were
    /// dropped *here*, between the events before it and those after it. Treat it like a
    /// disconnection that is already over.
    Lagged {
        /// How many messages were dropped.
        missed: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Channel,
    Pattern,
    Sharded,
}

/// What a subscription does when its buffer is full because its owner reads too slowly.
/// Memory stays bounded either way, and the owner always learns how many messages it
/// missed ([`Event::Lagged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum LagPolicy {
    /// Keep the buffered messages and drop new ones until there is room.
    #[default]
    DropNewest,
    /// Drop the oldest buffered messages to make room: the owner sees the latest ones.
    DropOldest,
    /// End the subscription: it yields what it had buffered, then [`Event::Lagged`], and
    /// then ends (`None`).
    Disconnect,
}

/// Options of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Messages buffered for this subscription (default: the handle's
    /// `subscription_buffer`).
    pub buffer: Option<usize>,
    /// What a full buffer does.
    pub lag: LagPolicy,
}

impl SubscribeOptions {
    /// The defaults: the handle's buffer size, [`LagPolicy::DropNewest`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer size, in messages (at least 1).
    pub fn buffer(mut self, messages: usize) -> Self {
        self.buffer = Some(messages.max(1));
        self
    }

    /// The lag policy.
    pub fn lag(mut self, policy: LagPolicy) -> Self {
        self.lag = policy;
        self
    }
}

/// A bounded queue for one slow reader of a fan-out, with a [`LagPolicy`]: memory stays
/// bounded and the reader learns how much it missed, *where* it missed it: a dropped item
/// leaves a gap marker in its place, which the reader gets after the items pushed before
/// the drop and before those pushed after it (adjacent gaps add up). So the reader never
/// misses an item without a gap in that position (tests `gaps_are_reported_in_place_*`).
/// Subscriptions use it; pattern crates with their own fan-out (redkit-pubsub's memory
/// bus) do too.
pub struct LagQueue<T> {
    items: Mutex<Items<T>>,
    capacity: usize,
    policy: LagPolicy,
    droppable: fn(&T) -> bool,
    closed: AtomicBool,
    waker: futures_util::task::AtomicWaker,
}

/// The queued items and gap markers, and how many of them are items.
struct Items<T> {
    slots: std::collections::VecDeque<Slot<T>>,
    len: usize,
}

enum Slot<T> {
    Item(T),
    /// This many items were dropped here.
    Gap(u64),
}

impl<T> Items<T> {
    /// Records one dropped item at `at` (an index into `slots`), merged with a gap
    /// marker right before or at that place.
    fn gap_at(&mut self, at: usize) {
        if let Some(Slot::Gap(n)) = at.checked_sub(1).and_then(|i| self.slots.get_mut(i)) {
            *n = n.saturating_add(1);
        } else if let Some(Slot::Gap(n)) = self.slots.get_mut(at) {
            *n = n.saturating_add(1);
        } else {
            self.slots.insert(at, Slot::Gap(1));
        }
    }
}

impl<T> fmt::Debug for LagQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LagQueue")
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<T> LagQueue<T> {
    /// A queue of at most `capacity` items (at least 1). `droppable` says which items
    /// [`LagPolicy::DropOldest`] may drop (the oldest such one goes; others are kept).
    pub fn new(capacity: usize, policy: LagPolicy, droppable: fn(&T) -> bool) -> Self {
        LagQueue {
            items: Mutex::new(Items {
                slots: std::collections::VecDeque::new(),
                len: 0,
            }),
            capacity: capacity.max(1),
            policy,
            droppable,
            closed: AtomicBool::new(false),
            waker: futures_util::task::AtomicWaker::new(),
        }
    }

    fn items(&self) -> MutexGuard<'_, Items<T>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an item, or applies the policy when full. Items that are not `droppable`
    /// (the link events of a subscription) are always added, beyond the capacity if need
    /// be; only droppable ones are dropped.
    pub fn push(&self, item: T) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        {
            let mut items = self.items();
            let full = items.len >= self.capacity;
            if !full || !(self.droppable)(&item) {
                items.len += 1;
                items.slots.push_back(Slot::Item(item));
            } else {
                match self.policy {
                    LagPolicy::DropNewest => {
                        let end = items.slots.len();
                        items.gap_at(end);
                    }
                    LagPolicy::DropOldest => {
                        let oldest = items
                            .slots
                            .iter()
                            .position(|s| matches!(s, Slot::Item(e) if (self.droppable)(e)));
                        match oldest {
                            Some(i) => {
                                items.slots.remove(i);
                                items.gap_at(i);
                                items.slots.push_back(Slot::Item(item));
                            }
                            None => {
                                let end = items.slots.len();
                                items.gap_at(end);
                            }
                        }
                    }
                    LagPolicy::Disconnect => {
                        let end = items.slots.len();
                        items.gap_at(end);
                        self.closed.store(true, Ordering::Release);
                    }
                }
            }
        }
        self.waker.wake();
    }

    /// The next item, or `Err(missed)` where `missed` items were dropped (in their
    /// place: after the items pushed before them); `None` once a
    /// [`LagPolicy::Disconnect`] queue is drained.
    pub fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<std::result::Result<T, u64>>> {
        // check, register the waker, check again: a push between the two is not missed
        for registered in [false, true] {
            let next = {
                let mut items = self.items();
                let next = items.slots.pop_front();
                if matches!(next, Some(Slot::Item(_))) {
                    items.len -= 1;
                }
                next
            };
            match next {
                Some(Slot::Item(item)) => return Poll::Ready(Some(Ok(item))),
                Some(Slot::Gap(missed)) => return Poll::Ready(Some(Err(missed))),
                None => {}
            }
            if self.closed.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            if !registered {
                self.waker.register(cx.waker());
            }
        }
        Poll::Pending
    }
}

fn is_message(event: &Event) -> bool {
    matches!(event, Event::Message(_))
}

struct Sink {
    id: u64,
    queue: Arc<LagQueue<Event>>,
}

impl Sink {
    fn deliver(&self, event: Event) {
        self.queue.push(event);
    }
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    sinks: HashMap<(Kind, Vec<u8>), Vec<Sink>>,
}

struct Shared {
    registry: Mutex<Registry>,
    down: AtomicBool,
    /// A connection dropped since every subscription was last confirmed again.
    lost: AtomicBool,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn broadcast(&self, event: &Event) {
        for sinks in self.registry().sinks.values() {
            for sink in sinks {
                sink.deliver(event.clone());
            }
        }
    }

    fn mark_down(&self) {
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!("subscription link lost; subscribers may miss messages");
            self.broadcast(&Event::Disconnected);
        }
    }

    fn mark_up(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("subscription link restored");
            self.broadcast(&Event::Resubscribed);
        }
    }

    fn on_push(&self, push: PushInfo) {
        let (kind, name, channel, pattern, payload) = match (push.kind, push.data.as_slice()) {
            (PushKind::Message, [channel, payload]) => (
                Kind::Channel,
                bytes(channel),
                bytes(channel),
                None,
                bytes(payload),
            ),
            (PushKind::SMessage, [channel, payload]) => (
                Kind::Sharded,
                bytes(channel),
                bytes(channel),
                None,
                bytes(payload),
            ),
            (PushKind::PMessage, [pattern, channel, payload]) => (
                Kind::Pattern,
                bytes(pattern),
                bytes(channel),
                Some(bytes(pattern)),
                bytes(payload),
            ),
            (PushKind::Disconnection, _) => {
                self.lost.store(true, Ordering::Release);
                return self.mark_down();
            }
            _ => return,
        };
        let registry = self.registry();
        if let Some(sinks) = registry.sinks.get(&(kind, name)) {
            let message = Message {
                channel: String::from_utf8_lossy(&channel).into_owned(),
                pattern: pattern.map(|p| String::from_utf8_lossy(&p).into_owned()),
                payload,
            };
            for sink in sinks {
                sink.deliver(Event::Message(message.clone()));
            }
        }
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

#[derive(Clone)]
enum SubConn {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl SubConn {
    async fn command(
        &mut self,
        subscribe: bool,
        kind: Kind,
        name: &[u8],
    ) -> redis::RedisResult<()> {
        match self {
            // a single node has no shards: sharded channels are plain channels there
            // (`Redis::spublish` publishes with PUBLISH to match)
            SubConn::Single(c) => match (kind, subscribe) {
                (Kind::Channel | Kind::Sharded, true) => c.subscribe(name).await,
                (Kind::Channel | Kind::Sharded, false) => c.unsubscribe(name).await,
                (Kind::Pattern, true) => c.psubscribe(name).await,
                (Kind::Pattern, false) => c.punsubscribe(name).await,
            },
            #[cfg(feature = "cluster")]
            // one SSUBSCRIBE per channel (never CROSSSLOT); redis-rs re-sends it to the
            // slot's owner after a reconnect or a slot move
            SubConn::Cluster(c) => match (kind, subscribe) {
                (Kind::Channel, true) => c.subscribe(name).await,
                (Kind::Channel, false) => c.unsubscribe(name).await,
                (Kind::Pattern, true) => c.psubscribe(name).await,
                (Kind::Pattern, false) => c.punsubscribe(name).await,
                (Kind::Sharded, true) => c.ssubscribe(name).await,
                (Kind::Sharded, false) => c.sunsubscribe(name).await,
            },
        }
    }

    /// On a cluster: whether every node that owns the slot of one of `names` answers a
    /// `PING` sent to it by address, so that subscribing these names again reaches their
    /// owners. (Sent while an owner is down, redis-rs would route a `SUBSCRIBE` to another
    /// node, and the channel would be subscribed twice once the owner is back.) On a single
    /// node: always true.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    async fn owners_reachable(&mut self, names: &[&[u8]], timeout: std::time::Duration) -> bool {
        match self {
            SubConn::Single(_) => true,
            #[cfg(feature = "cluster")]
            SubConn::Cluster(c) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let slots = tokio::time::timeout(
                    timeout,
                    redis::cmd("CLUSTER").arg("SLOTS").query_async::<Value>(c),
                )
                .await;
                let Ok(Ok(slots)) = slots else {
                    return false;
                };
                let mut owners: Vec<(String, u16)> = Vec::new();
                for name in names {
                    let Some(owner) = slot_owner(&slots, crate::keyspace::key_slot(name)) else {
                        return false;
                    };
                    if !owners.contains(&owner) {
                        owners.push(owner);
                    }
                }
                for (host, port) in owners {
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    let pong =
                        tokio::time::timeout(timeout, c.route_command(redis::cmd("PING"), routing))
                            .await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return false;
                    }
                }
                true
            }
        }
    }

    async fn ping(&mut self) -> redis::RedisResult<()> {
        let cmd = redis::cmd("PING");
        match self {
            SubConn::Single(c) => cmd.query_async::<()>(c).await,
            #[cfg(feature = "cluster")]
            SubConn::Cluster(c) => cmd.query_async::<()>(c).await,
        }
    }
}

struct Hub {
    conn: std::sync::RwLock<SubConn>,
    shared: Arc<Shared>,
    ops: tokio::sync::Mutex<()>,
    config: RedisConfig,
    /// The master the connection points at, for sentinel topologies.
    master: Mutex<Option<String>>,
    pinger: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Hub {
    fn conn(&self) -> SubConn {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(pinger) = self
            .pinger
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            pinger.abort();
        }
    }
}

/// The subscription hub of a [`crate::Redis`] handle; get it with
/// [`crate::Redis::subscriber`].
#[derive(Clone)]
pub struct Subscriber {
    hub: Arc<Hub>,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("channels", &self.hub.shared.registry().sinks.len())
            .finish()
    }
}

/// Opens the subscription connection; returns it and, for sentinel, the master's address.
async fn open(config: &RedisConfig, shared: &Arc<Shared>) -> Result<(SubConn, Option<String>)> {
    let sink = Arc::clone(shared);
    let push = move |info: PushInfo| -> std::result::Result<(), std::convert::Infallible> {
        sink.on_push(info);
        Ok(())
    };
    Ok(match &config.topology {
        Topology::Standalone { url } => {
            let client = client_for(config, url, ProtocolVersion::RESP3)?;
            let manager = ConnectionManager::new_lazy_with_config(
                client,
                sub_manager_config(config).set_push_sender(push),
            )?;
            (SubConn::Single(manager), None)
        }
        #[cfg(feature = "sentinel")]
        Topology::Sentinel { master, sentinels } => {
            let client = crate::sentinel::sentinel_client(
                config,
                master,
                sentinels,
                ProtocolVersion::RESP3,
            )?
            .async_get_client()
            .await?;
            let addr = client.get_connection_info().addr().to_string();
            let manager = ConnectionManager::new_lazy_with_config(
                client,
                sub_manager_config(config).set_push_sender(push),
            )?;
            (SubConn::Single(manager), Some(addr))
        }
        #[cfg(feature = "cluster")]
        Topology::Cluster { nodes } => {
            let client = crate::cluster::client_builder(config, nodes, ProtocolVersion::RESP3)?
                .push_sender(push)
                .build()
                .map_err(|e| Error::Config(e.to_string()))?;
            (SubConn::Cluster(client.get_async_connection().await?), None)
        }
        #[allow(unreachable_patterns)]
        _ => return Err(Error::Config("topology not enabled in this build".into())),
    })
}

impl Subscriber {
    pub(crate) async fn start(config: &RedisConfig) -> Result<Subscriber> {
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::default()),
            down: AtomicBool::new(false),
            lost: AtomicBool::new(false),
        });
        let (conn, master) = open(config, &shared).await?;
        let hub = Arc::new(Hub {
            conn: std::sync::RwLock::new(conn),
            shared,
            ops: tokio::sync::Mutex::new(()),
            config: config.clone(),
            master: Mutex::new(master),
            pinger: Mutex::new(None),
        });
        let pinger = tokio::spawn(ping_loop(Arc::downgrade(&hub)));
        *hub.pinger.lock().unwrap_or_else(|p| p.into_inner()) = Some(pinger);
        Ok(Subscriber { hub })
    }

    /// Subscribes to one channel.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription> {
        self.add(Kind::Channel, channel, SubscribeOptions::new())
            .await
    }

    /// Subscribes to every channel matching a glob pattern (`PSUBSCRIBE`).
    pub async fn psubscribe(&self, pattern: &str) -> Result<Subscription> {
        self.add(Kind::Pattern, pattern, SubscribeOptions::new())
            .await
    }

    /// Subscribes to a sharded channel (`SSUBSCRIBE` on a cluster, where the channel
    /// lives on its slot's node; a plain channel on a single node).
    pub async fn ssubscribe(&self, channel: &str) -> Result<Subscription> {
        self.add(self.sharded(), channel, SubscribeOptions::new())
            .await
    }

    /// [`Subscriber::subscribe`] with options.
    pub async fn subscribe_with(
        &self,
        channel: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        self.add(Kind::Channel, channel, options).await
    }

    /// [`Subscriber::psubscribe`] with options.
    pub async fn psubscribe_with(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        self.add(Kind::Pattern, pattern, options).await
    }

    /// [`Subscriber::ssubscribe`] with options.
    pub async fn ssubscribe_with(
        &self,
        channel: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        self.add(self.sharded(), channel, options).await
    }

    fn sharded(&self) -> Kind {
        match self.hub.conn() {
            #[cfg(feature = "cluster")]
            SubConn::Cluster(_) => Kind::Sharded,
            _ => Kind::Channel,
        }
    }

    /// Whether the subscription link is currently known to be down.
    pub fn is_down(&self) -> bool {
        self.hub.shared.down.load(Ordering::Acquire)
    }

    async fn add(&self, kind: Kind, name: &str, options: SubscribeOptions) -> Result<Subscription> {
        if name.is_empty() {
            return Err(Error::invalid_argument("channel name is empty"));
        }
        let key = (kind, name.as_bytes().to_vec());
        let capacity = options
            .buffer
            .unwrap_or(self.hub.config.subscription_buffer);
        let queue = Arc::new(LagQueue::new(capacity, options.lag, is_message));
        let _ops = self.hub.ops.lock().await;
        let (id, first) = {
            let mut registry = self.hub.shared.registry();
            registry.next_id += 1;
            let id = registry.next_id;
            let sinks = registry.sinks.entry(key.clone()).or_default();
            sinks.push(Sink {
                id,
                queue: Arc::clone(&queue),
            });
            (id, sinks.len() == 1)
        };
        if first {
            let mut conn = self.hub.conn();
            if let Err(e) = conn.command(true, kind, &key.1).await {
                remove_sink(&self.hub.shared, &key, id);
                return Err(e.into());
            }
        }
        tracing::debug!(channel = name, "subscribed");
        Ok(Subscription {
            queue,
            id,
            key,
            hub: Arc::clone(&self.hub),
        })
    }
}

/// Removes one sink; true when it was the last one for its channel.
fn remove_sink(shared: &Shared, key: &(Kind, Vec<u8>), id: u64) -> bool {
    let mut registry = shared.registry();
    let Some(sinks) = registry.sinks.get_mut(key) else {
        return false;
    };
    sinks.retain(|s| s.id != id);
    if sinks.is_empty() {
        registry.sinks.remove(key);
        true
    } else {
        false
    }
}

fn sub_manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    crate::handle::manager_config(config).set_automatic_resubscription()
}

/// Pings the subscription connection: a failed ping marks the link down (a silent link
/// cannot be told from a quiet channel otherwise) and makes the connection reconnect; the
/// first ping that succeeds afterwards runs on a connection that has resubscribed. With
/// sentinel, repeated failures ask the sentinels whether the master moved.
async fn ping_loop(hub: std::sync::Weak<Hub>) {
    let mut failures = 0u32;
    loop {
        let Some(every) = hub.upgrade().map(|h| h.config.subscription_ping_interval) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(hub) = hub.upgrade() else {
            return;
        };
        let mut conn = hub.conn();
        let ok = matches!(
            tokio::time::timeout(hub.config.response_timeout, conn.ping()).await,
            Ok(Ok(()))
        );
        if ok && resubscribe_lost(&hub, &mut conn).await {
            failures = 0;
            hub.shared.mark_up();
        } else {
            failures = failures.saturating_add(1);
            hub.shared.mark_down();
            if failures >= 2
                && matches!(hub.config.topology, Topology::Sentinel { .. })
                && let Err(e) = relocate(&hub).await
            {
                tracing::debug!(error = %e, "subscription: master lookup failed");
            }
        }
    }
}

/// After a connection dropped: subscribes every channel, pattern and sharded channel
/// again and waits for each confirmation, so [`Event::Resubscribed`] is reported only
/// once every subscription is in place. On a cluster a ping that succeeds says nothing
/// (it may reach another node while the dropped one is still down or not yet
/// resubscribed by redis-rs); each command goes to the node that redis-rs subscribes it
/// on (the owner of the name's slot), once that node answers, so nothing is subscribed
/// twice (a sharded channel's command is refused by any other node). On a single node
/// it repeats what the connection manager did on reconnecting (and covers a failed
/// resubscription, whose errors the manager ignores). Returns whether the subscriptions
/// are complete; if not, the link stays down and the next ping tries again.
async fn resubscribe_lost(hub: &Hub, conn: &mut SubConn) -> bool {
    if !hub.shared.lost.swap(false, Ordering::AcqRel) {
        return true;
    }
    let _ops = hub.ops.lock().await;
    let names: Vec<(Kind, Vec<u8>)> = hub.shared.registry().sinks.keys().cloned().collect();
    let routed: Vec<&[u8]> = names
        .iter()
        .filter(|(kind, _)| *kind != Kind::Sharded)
        .map(|(_, name)| name.as_slice())
        .collect();
    if !conn
        .owners_reachable(&routed, hub.config.response_timeout)
        .await
    {
        hub.shared.lost.store(true, Ordering::Release);
        return false;
    }
    for (kind, name) in &names {
        let sent =
            tokio::time::timeout(hub.config.response_timeout, conn.command(true, *kind, name))
                .await;
        if !matches!(sent, Ok(Ok(()))) {
            hub.shared.lost.store(true, Ordering::Release);
            return false;
        }
    }
    true
}

/// The master (host, port) serving `slot` in a `CLUSTER SLOTS` reply.
#[cfg(feature = "cluster")]
fn slot_owner(slots: &Value, slot: u16) -> Option<(String, u16)> {
    let Value::Array(ranges) = slots else {
        return None;
    };
    ranges.iter().find_map(|range| {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        if !(*lo..=*hi).contains(&i64::from(slot)) {
            return None;
        }
        let host = String::from_utf8(bytes(master.first()?)).ok()?;
        let Some(Value::Int(port)) = master.get(1) else {
            return None;
        };
        Some((host, u16::try_from(*port).ok()?))
    })
}

/// Sentinel: if the sentinels name another master, subscribes everything there and
/// switches to it.
async fn relocate(hub: &Hub) -> Result<()> {
    let (mut conn, master) = open(&hub.config, &hub.shared).await?;
    let current = hub.master.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if master == current {
        return Ok(());
    }
    let _ops = hub.ops.lock().await;
    let keys: Vec<(Kind, Vec<u8>)> = hub.shared.registry().sinks.keys().cloned().collect();
    for (kind, name) in &keys {
        conn.command(true, *kind, name).await?;
    }
    tracing::info!(master = ?master, "subscription: moved to the new master");
    *hub.conn.write().unwrap_or_else(|p| p.into_inner()) = conn;
    *hub.master.lock().unwrap_or_else(|p| p.into_inner()) = master;
    Ok(())
}

/// A stream of [`Event`]s for one channel or pattern. Dropping it unsubscribes (when no
/// other subscription of the same handle needs the channel).
pub struct Subscription {
    queue: Arc<LagQueue<Event>>,
    id: u64,
    key: (Kind, Vec<u8>),
    hub: Arc<Hub>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &String::from_utf8_lossy(&self.key.1))
            .field("pattern", &(self.key.0 == Kind::Pattern))
            .finish()
    }
}

impl Subscription {
    /// The next event. Never returns `None` while the handle is alive.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The channel or pattern this subscription listens to.
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.key.1).into_owned()
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.queue
            .poll_pop(cx)
            .map(|e| e.map(|e| e.unwrap_or_else(|missed| Event::Lagged { missed })))
    }
}

impl futures_util::Stream for Subscription {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_event(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let hub = Arc::clone(&self.hub);
        let key = self.key.clone();
        let id = self.id;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            remove_sink(&hub.shared, &key, id);
            return;
        };
        runtime.spawn(async move {
            let _ops = hub.ops.lock().await;
            if remove_sink(&hub.shared, &key, id) {
                let mut conn = hub.conn();
                if let Err(e) = conn.command(false, key.0, &key.1).await {
                    tracing::debug!(error = %e, "unsubscribe failed");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Got {
        Item(u32),
        Gap(u64),
        End,
    }

    fn message(n: &u32) -> bool {
        *n < 1000
    }

    /// Pops everything queued now.
    fn drain(q: &LagQueue<u32>) -> Vec<Got> {
        take(q, usize::MAX)
    }

    /// Pops at most `n` of what is queued now.
    fn take(q: &LagQueue<u32>, n: usize) -> Vec<Got> {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut got = Vec::new();
        while got.len() < n {
            match q.poll_pop(&mut cx) {
                Poll::Ready(Some(Ok(n))) => got.push(Got::Item(n)),
                Poll::Ready(Some(Err(missed))) => got.push(Got::Gap(missed)),
                Poll::Ready(None) => {
                    got.push(Got::End);
                    return got;
                }
                Poll::Pending => return got,
            }
        }
        got
    }

    #[test]
    fn gaps_are_reported_in_place_when_dropping_the_newest() {
        use Got::{Gap, Item};
        let q = LagQueue::new(3, LagPolicy::DropNewest, message);
        for n in 0..6 {
            q.push(n);
        }
        // a link event is never dropped
        q.push(1000);
        assert_eq!(take(&q, 2), [Item(0), Item(1)]);
        q.push(6);
        q.push(7);
        assert_eq!(
            drain(&q),
            [Item(2), Gap(3), Item(1000), Item(6), Gap(1)],
            "the gap comes after what was buffered before it"
        );
    }

    #[test]
    fn gaps_are_reported_in_place_when_dropping_the_oldest() {
        use Got::{Gap, Item};
        let q = LagQueue::new(3, LagPolicy::DropOldest, message);
        q.push(1000);
        for n in 0..5 {
            q.push(n);
        }
        // 0, 1 and 2 went, where they were: after the link event
        assert_eq!(drain(&q), [Item(1000), Gap(3), Item(3), Item(4)]);
        for n in 5..9 {
            q.push(n);
        }
        assert_eq!(drain(&q), [Gap(1), Item(6), Item(7), Item(8)]);
    }

    #[test]
    fn gaps_are_reported_in_place_when_disconnecting() {
        use Got::{End, Gap, Item};
        let q = LagQueue::new(2, LagPolicy::Disconnect, message);
        for n in 0..4 {
            q.push(n);
        }
        assert_eq!(drain(&q), [Item(0), Item(1), Gap(1), End]);
    }
}
