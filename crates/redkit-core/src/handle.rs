//! The [`Redis`] handle: one shared multiplexed connection plus a pool of dedicated ones.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, ProtocolVersion, RedisFuture, Value,
};
use tracing::Instrument;

use crate::config::{RedisConfig, Topology, redact_url};
use crate::error::{Error, Result};
use crate::keyspace::{Key, Keyspace};
use crate::subscribe::{Subscriber, Subscription};

/// The oldest server redkit runs on: GEOSEARCH, XAUTOCLAIM, BLMOVE and GETEX need 6.2.
pub const MIN_SERVER_VERSION: (u32, u32, u32) = (6, 2, 0);

/// What the server said about itself on connect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// `redis_version` from `INFO server` (Valkey reports its Redis compatibility level).
    pub version: (u32, u32, u32),
    /// `valkey_version`, when the server is Valkey.
    pub valkey_version: Option<(u32, u32, u32)>,
    /// `maxmemory_policy` from `INFO memory`, or `None` when the server would not say
    /// (an ACL user without `INFO`, a proxy that hides it).
    pub maxmemory_policy: Option<String>,
}

impl ServerInfo {
    /// Whether the server is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version >= (major, minor, 0)
    }

    /// [`Error::UnsupportedServer`] for servers older than [`MIN_SERVER_VERSION`].
    pub fn ensure_supported(&self) -> Result<()> {
        if self.version < MIN_SERVER_VERSION {
            let (a, b, c) = self.version;
            return Err(Error::UnsupportedServer(format!(
                "server runs Redis {a}.{b}.{c}; redkit needs 6.2 or later"
            )));
        }
        Ok(())
    }

    fn parse(info: &str) -> Result<ServerInfo> {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| parse_version(v.trim()))
        };
        let version = field("redis_version")
            .flatten()
            .ok_or_else(|| Error::unexpected_reply("INFO server has no redis_version"))?;
        Ok(ServerInfo {
            version,
            valkey_version: field("valkey_version").flatten(),
            maxmemory_policy: None,
        })
    }

    /// Whether the server may evict keys under memory pressure: `Some(true)` for every
    /// `maxmemory-policy` but `noeviction` (`volatile-*` evicts keys that have an expiry,
    /// such as a held lock; `allkeys-*` evicts any key, such as a fence counter or a job),
    /// `None` when the policy is unknown.
    pub fn evicts_keys(&self) -> Option<bool> {
        self.maxmemory_policy.as_deref().map(|p| p != "noeviction")
    }

    /// Takes `maxmemory_policy` from the text of `INFO memory`.
    fn read_memory(&mut self, info: &str) {
        self.maxmemory_policy = memory_policy(info);
    }
}

/// `maxmemory_policy` in the text of `INFO memory`.
pub(crate) fn memory_policy(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// A cheap-to-clone handle to one Redis deployment, shared by every pattern crate.
///
/// * Non-blocking commands, scripts and pipelines go through one shared, auto-reconnecting
///   multiplexed connection ([`Redis::conn`]): concurrent callers are pipelined onto it.
/// * Blocking commands and transactions take a [`Dedicated`] connection from a bounded pool
///   ([`Redis::dedicated`]).
/// * Notifications arrive through one subscription connection per handle
///   ([`Redis::subscribe`]), which resubscribes after reconnects and reports gaps.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Connection,
    pool: Pool,
    config: RedisConfig,
    server: ServerInfo,
    subscriber: tokio::sync::OnceCell<Subscriber>,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("topology", &self.inner.config.topology)
            .field("server", &self.inner.server)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Connects to one server at `url` with default settings.
    pub async fn connect(url: &str) -> Result<Redis> {
        Self::from_config(RedisConfig::from_url(url)?).await
    }

    /// Connects to the URL in the `REDIS_URL` environment variable.
    pub async fn from_env() -> Result<Redis> {
        let url = std::env::var("REDIS_URL")
            .map_err(|_| Error::Config("REDIS_URL is not set (or not unicode)".into()))?;
        Self::connect(&url).await
    }

    /// Connects with a full configuration: checks that the server answers, that the
    /// credentials work and that it runs Redis 6.2 or later, then sets up the shared
    /// connection and the (lazily filled) dedicated pool.
    pub async fn from_config(config: RedisConfig) -> Result<Redis> {
        let span = tracing::info_span!("redkit.connect", topology = ?config.topology);
        async move {
            let (shared, pool, server) = match &config.topology {
                Topology::Standalone { url } => {
                    let client = client_for(&config, url, ProtocolVersion::RESP2)?;
                    let server = check_server(&config, &client).await?;
                    let manager = ConnectionManager::new_lazy_with_config(
                        client.clone(),
                        manager_config(&config),
                    )?;
                    let pool = Pool::single(&config, &client)?;
                    (Connection(ConnKind::Single(manager)), pool, server)
                }
                #[cfg(feature = "cluster")]
                Topology::Cluster { nodes } => {
                    let (conn, pool, server) = crate::cluster::connect(&config, nodes).await?;
                    (conn, pool, server)
                }
                #[cfg(feature = "sentinel")]
                Topology::Sentinel { master, sentinels } => {
                    crate::sentinel::connect(&config, master, sentinels).await?
                }
                #[allow(unreachable_patterns)]
                _ => return Err(Error::Config("topology not enabled in this build".into())),
            };
            Ok(Redis {
                inner: Arc::new(Inner {
                    shared,
                    pool,
                    config,
                    server,
                    subscriber: tokio::sync::OnceCell::new(),
                }),
            })
        }
        .instrument(span)
        .await
    }

    /// The shared multiplexed connection. Cloning it is cheap; use it for every
    /// non-blocking command. It implements [`redis::aio::ConnectionLike`].
    pub fn conn(&self) -> Connection {
        self.inner.shared.clone()
    }

    /// Runs one command on the shared connection.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let mut conn = self.conn();
        cmd.query_async(&mut conn).await.map_err(Error::from)
    }

    /// Takes a dedicated connection from the pool, for blocking commands
    /// (`BLMOVE`, `XREADGROUP BLOCK`) and `WATCH`/`MULTI` transactions. It goes back to
    /// the pool when dropped.
    pub async fn dedicated(&self) -> Result<Dedicated> {
        let span = tracing::debug_span!("redkit.dedicated");
        self.inner
            .pool
            .get(self.inner.config.response_timeout)
            .instrument(span)
            .await
    }

    /// A keyspace rooted at `root`.
    pub fn keyspace(&self, root: &str) -> Result<Keyspace> {
        Keyspace::new(root)
    }

    /// What the server reported on connect.
    pub fn server_info(&self) -> &ServerInfo {
        &self.inner.server
    }

    /// [`Error::UnsupportedServer`] when the server may evict keys (any
    /// `maxmemory-policy` but `noeviction`, as reported on connect), naming `pattern` and
    /// what eviction would break. Locks, queues, session stores and rate limiters call it
    /// when they are built and refuse such a server unless their builder's
    /// `allow_eviction(true)` says the user accepts the risk. An unknown policy (the
    /// server would not answer `INFO memory`) passes, with a warning in the log.
    ///
    /// The policy is the one the server had when this handle connected (on a cluster,
    /// that of every master then: one evicting master is enough to refuse, test
    /// `an_evicting_policy_on_any_cluster_master_is_refused`); a `CONFIG SET
    /// maxmemory-policy` after that, or a master added later, is not seen.
    pub fn ensure_no_eviction(&self, pattern: &str, what_breaks: &str) -> Result<()> {
        match (
            self.inner.server.evicts_keys(),
            &self.inner.server.maxmemory_policy,
        ) {
            (Some(true), Some(policy)) => Err(Error::UnsupportedServer(format!(
                "maxmemory-policy is `{policy}`: under memory pressure the server may evict \
                 {pattern} keys, and then {what_breaks}; set `maxmemory-policy noeviction` \
                 on the server, or build with `allow_eviction(true)` to accept the risk"
            ))),
            (None, _) => {
                tracing::warn!(
                    pattern,
                    "the server did not report its maxmemory-policy; assuming noeviction"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The configuration this handle was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Whether the handle talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.config.topology, Topology::Cluster { .. })
    }

    /// Groups item indices by the hash slot of each item's key, for batches that must
    /// send one script call per slot: one group of everything on a standalone server or
    /// sentinel, one group per slot (in slot order) on a cluster.
    pub fn group_by_slot<T>(&self, items: &[T], key: impl Fn(&T) -> &Key) -> Vec<Vec<usize>> {
        if !self.is_cluster() {
            return vec![(0..items.len()).collect()];
        }
        let mut groups: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
        for (i, item) in items.iter().enumerate() {
            groups.entry(key(item).slot()).or_default().push(i);
        }
        groups.into_values().collect()
    }

    /// The subscription hub of this handle (created on first use).
    pub async fn subscriber(&self) -> Result<&Subscriber> {
        self.inner
            .subscriber
            .get_or_try_init(|| Subscriber::start(&self.inner.config))
            .await
    }

    /// Subscribes to one channel. See [`Subscription`] for the events it yields.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription> {
        self.subscriber().await?.subscribe(channel).await
    }

    /// Subscribes to every channel matching a glob pattern.
    pub async fn psubscribe(&self, pattern: &str) -> Result<Subscription> {
        self.subscriber().await?.psubscribe(pattern).await
    }

    /// Subscribes to a sharded channel; see [`Subscriber::ssubscribe`].
    pub async fn ssubscribe(&self, channel: &str) -> Result<Subscription> {
        self.subscriber().await?.ssubscribe(channel).await
    }

    /// Publishes to a sharded channel: `SPUBLISH` on a cluster (to the channel's slot),
    /// `PUBLISH` on a single node, matching [`Redis::ssubscribe`]. Returns how many
    /// subscribers received it.
    pub async fn spublish(&self, channel: &str, payload: &[u8]) -> Result<u64> {
        let command = if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        self.query(redis::cmd(command).arg(channel).arg(payload))
            .await
    }

    /// Publishes a message; returns how many subscribers received it.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64> {
        self.query(redis::cmd("PUBLISH").arg(channel).arg(payload))
            .await
    }
}

pub(crate) fn manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
        .set_number_of_retries(config.reconnect_retries)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(config.reconnect_max_delay)
}

pub(crate) fn connection_config(
    config: &RedisConfig,
    response: Option<Duration>,
) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(response)
}

/// A client for one URL, with the configured credentials and TLS certificates.
pub(crate) fn client_for(
    config: &RedisConfig,
    url: &str,
    protocol: ProtocolVersion,
) -> Result<Client> {
    let info = config.connection_info(url, protocol)?;
    #[cfg(feature = "tls")]
    {
        crate::tls::install_crypto_provider();
        if let Some(certs) = crate::tls::certificates(config) {
            return Client::build_with_tls(info, certs)
                .map_err(|e| Error::Config(format!("TLS settings for {}: {e}", redact_url(url))));
        }
    }
    Client::open(info).map_err(|e| Error::Config(format!("{}: {e}", redact_url(url))))
}

/// Connects once, authenticates and reads the server version.
pub(crate) async fn check_server(config: &RedisConfig, client: &Client) -> Result<ServerInfo> {
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&connection_config(
            config,
            Some(config.response_timeout),
        ))
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await?;
    let mut server = ServerInfo::parse(&info)?;
    server.ensure_supported()?;
    // The eviction policy decides whether locks, jobs, sessions and rate-limit state can
    // vanish under memory pressure; a server that will not say is reported as unknown.
    match redis::cmd("INFO")
        .arg("memory")
        .query_async::<String>(&mut conn)
        .await
    {
        Ok(memory) => server.read_memory(&memory),
        Err(e) => tracing::debug!(error = %e, "INFO memory refused; eviction policy unknown"),
    }
    tracing::debug!(version = ?server.version, "connected");
    Ok(server)
}

/// The shared connection of a [`Redis`] handle; implements [`redis::aio::ConnectionLike`].
#[derive(Clone)]
pub struct Connection(pub(crate) ConnKind);

#[derive(Clone)]
pub(crate) enum ConnKind {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    #[cfg(feature = "sentinel")]
    Sentinel(Arc<crate::sentinel::SentinelShared>),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            ConnKind::Single(_) => "standalone",
            #[cfg(feature = "cluster")]
            ConnKind::Cluster(_) => "cluster",
            #[cfg(feature = "sentinel")]
            ConnKind::Sentinel(_) => "sentinel",
        };
        write!(f, "Connection({kind})")
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            ConnKind::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            ConnKind::Cluster(c) => c.req_packed_command(cmd),
            #[cfg(feature = "sentinel")]
            ConnKind::Sentinel(s) => s.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            ConnKind::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            ConnKind::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "sentinel")]
            ConnKind::Sentinel(s) => s.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            ConnKind::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            ConnKind::Cluster(c) => c.get_db(),
            #[cfg(feature = "sentinel")]
            ConnKind::Sentinel(s) => s.get_db(),
        }
    }
}

/// The pool of dedicated connections.
pub(crate) enum Pool {
    Single(deadpool_redis::Pool),
    #[cfg(feature = "cluster")]
    Cluster(crate::cluster::ClusterPool),
    #[cfg(feature = "sentinel")]
    Sentinel(crate::sentinel::SentinelPool),
}

macro_rules! build_pool {
    ($pool:ty, $manager:expr, $config:expr) => {{
        let c = $config;
        <$pool>::builder($manager)
            .max_size(c.pool_size)
            .wait_timeout(Some(c.pool_wait_timeout))
            .create_timeout(Some(c.pool_create_timeout))
            .recycle_timeout(Some(c.pool_recycle_timeout))
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Config(format!("dedicated connection pool: {e}")))
    }};
}
#[allow(unused_imports)]
pub(crate) use build_pool;

impl Pool {
    /// A pool of plain connections to the server the client points at. Dedicated
    /// connections have no response timeout of their own: [`Dedicated`] applies one per
    /// call, longer than the block time of blocking commands.
    pub(crate) fn single(config: &RedisConfig, client: &Client) -> Result<Pool> {
        let manager = deadpool_redis::Manager::new_with_config(
            client.get_connection_info().clone(),
            connection_config(config, None),
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Pool::Single(build_pool!(
            deadpool_redis::Pool,
            manager,
            config
        )?))
    }

    async fn get(&self, response_timeout: Duration) -> Result<Dedicated> {
        let conn = match self {
            Pool::Single(p) => DedicatedKind::Single(p.get().await?),
            #[cfg(feature = "cluster")]
            Pool::Cluster(p) => DedicatedKind::Cluster(p.get().await?),
            #[cfg(feature = "sentinel")]
            Pool::Sentinel(p) => DedicatedKind::Sentinel(p.get().await?),
        };
        Ok(Dedicated {
            conn: Some(conn),
            response_timeout,
            poisoned: false,
        })
    }
}

enum DedicatedKind {
    Single(deadpool_redis::Connection),
    #[cfg(feature = "cluster")]
    Cluster(crate::cluster::ClusterConn),
    #[cfg(feature = "sentinel")]
    Sentinel(crate::sentinel::SentinelConn),
}

/// A connection taken from the pool for blocking commands and transactions.
///
/// [`Dedicated::query`] waits at most the configured response timeout;
/// [`Dedicated::blocking`] waits the block time plus that timeout. A connection whose call
/// timed out is discarded on drop instead of going back to the pool, since a late reply
/// could otherwise be read by its next user.
pub struct Dedicated {
    conn: Option<DedicatedKind>,
    response_timeout: Duration,
    poisoned: bool,
}

impl fmt::Debug for Dedicated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedicated")
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Dedicated {
    /// Runs a non-blocking command.
    pub async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T> {
        let limit = self.response_timeout;
        self.run(cmd, limit).await
    }

    /// Runs a blocking command (`BLMOVE ... 5`, `XREADGROUP ... BLOCK 5000`) whose server-side
    /// block time is `block`; the call gives up after `block` plus the response timeout.
    pub async fn blocking<T: FromRedisValue>(&mut self, cmd: &Cmd, block: Duration) -> Result<T> {
        let limit = block.saturating_add(self.response_timeout);
        self.run(cmd, limit).await
    }

    async fn run<T: FromRedisValue>(&mut self, cmd: &Cmd, limit: Duration) -> Result<T> {
        // poisoned until the reply is in: a caller that drops this future mid-call (a
        // `select!` that took another branch) leaves a command running on the server,
        // and the connection must not go back to the pool behind it
        let was = std::mem::replace(&mut self.poisoned, true);
        match tokio::time::timeout(limit, cmd.query_async(self)).await {
            Ok(result) => {
                self.poisoned = was
                    || matches!(&result, Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout());
                result.map_err(Error::from)
            }
            Err(_) => {
                self.poisoned = true;
                Err(Error::Timeout(format!("no reply within {limit:?}")))
            }
        }
    }

    /// Marks the connection as unusable: it is closed on drop, not returned to the pool.
    /// Call it after abandoning a transaction or a blocking call half-way.
    pub fn discard(&mut self) {
        self.poisoned = true;
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        if self.poisoned {
            match self.conn.take() {
                Some(DedicatedKind::Single(c)) => drop(deadpool_redis::Connection::take(c)),
                #[cfg(feature = "cluster")]
                Some(DedicatedKind::Cluster(c)) => drop(crate::cluster::ClusterConn::take(c)),
                #[cfg(feature = "sentinel")]
                Some(DedicatedKind::Sentinel(c)) => drop(crate::sentinel::SentinelConn::take(c)),
                None => {}
            }
        }
    }
}

impl ConnectionLike for Dedicated {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.conn {
            Some(DedicatedKind::Single(c)) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Some(DedicatedKind::Cluster(c)) => c.req_packed_command(cmd),
            #[cfg(feature = "sentinel")]
            Some(DedicatedKind::Sentinel(c)) => c.req_packed_command(cmd),
            None => Box::pin(async { Err(closed()) }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.conn {
            Some(DedicatedKind::Single(c)) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Some(DedicatedKind::Cluster(c)) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "sentinel")]
            Some(DedicatedKind::Sentinel(c)) => c.req_packed_commands(pipeline, offset, count),
            None => Box::pin(async { Err(closed()) }),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.conn {
            Some(DedicatedKind::Single(c)) => c.get_db(),
            #[cfg(feature = "cluster")]
            Some(DedicatedKind::Cluster(c)) => c.get_db(),
            #[cfg(feature = "sentinel")]
            Some(DedicatedKind::Sentinel(c)) => c.get_db(),
            None => 0,
        }
    }
}

fn closed() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "dedicated connection already closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_are_parsed() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        let s = ServerInfo::parse(info).unwrap();
        assert_eq!(s.version, (7, 0, 15));
        assert!(s.at_least(6, 2));
        let valkey = "redis_version:7.2.4\r\nvalkey_version:8.0.1\r\n";
        let s = ServerInfo::parse(valkey).unwrap();
        assert_eq!(s.valkey_version, Some((8, 0, 1)));
        assert!(s.ensure_supported().is_ok());
        let old = ServerInfo::parse("redis_version:6.0.9\r\n").unwrap();
        let err = old.ensure_supported().unwrap_err();
        assert!(matches!(err, Error::UnsupportedServer(_)), "{err:?}");
        assert!(err.to_string().contains("6.0.9") && err.to_string().contains("6.2"));
        let edge = ServerInfo::parse("redis_version:6.2.0\r\n").unwrap();
        assert!(edge.ensure_supported().is_ok());
        assert!(ServerInfo::parse("nothing").is_err());
    }

    #[test]
    fn eviction_policies_are_read() {
        let mut s = ServerInfo::parse("redis_version:7.0.15\r\n").unwrap();
        assert_eq!(s.evicts_keys(), None);
        s.read_memory("# Memory\r\nused_memory:1\r\nmaxmemory_policy:noeviction\r\n");
        assert_eq!(s.evicts_keys(), Some(false));
        s.read_memory("maxmemory_policy:volatile-lru\r\n");
        assert_eq!(s.maxmemory_policy.as_deref(), Some("volatile-lru"));
        assert_eq!(s.evicts_keys(), Some(true));
        s.read_memory("maxmemory_policy:allkeys-lfu\r\n");
        assert_eq!(s.evicts_keys(), Some(true));
    }
}
