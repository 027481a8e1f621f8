//! How to reach Redis: URLs, topology, credentials, TLS, timeouts and pool sizes.

use std::fmt;
use std::time::Duration;

use redis::io::tcp::TcpSettings;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion};

use crate::error::{Error, Result};

/// Which kind of deployment the handle talks to.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One server (or a proxy) at a URL.
    Standalone {
        /// `redis://`, `rediss://` or `unix://` URL.
        url: String,
    },
    /// A Redis Cluster, reached through one or more seed nodes.
    Cluster {
        /// Seed node URLs; the rest of the cluster is discovered.
        nodes: Vec<String>,
    },
    /// A primary found through Redis Sentinel.
    Sentinel {
        /// The monitored master's name (`sentinel monitor <name> ...`).
        master: String,
        /// Sentinel URLs.
        sentinels: Vec<String>,
    },
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Standalone { url } => f
                .debug_struct("Standalone")
                .field("url", &redact_url(url))
                .finish(),
            Topology::Cluster { nodes } => f
                .debug_struct("Cluster")
                .field(
                    "nodes",
                    &nodes.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
                )
                .finish(),
            Topology::Sentinel { master, sentinels } => f
                .debug_struct("Sentinel")
                .field("master", master)
                .field(
                    "sentinels",
                    &sentinels.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

/// A password that never shows in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; call it only where the value is sent to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// Replaces every credential in a URL with `<redacted>`: the password of `user:pass@`
/// (how redis-rs reads TCP and TLS URLs) and the value of a `pass` query parameter (how
/// it reads `unix://` and `redis+unix://` URLs), as well as `password`, `passwd`, `pwd`,
/// `secret`, `token` and `auth` parameters, which other clients use. User names stay.
/// Returns unparseable input unchanged only when it holds no `@` and no `?` (otherwise
/// a placeholder, so no secret can leak).
pub(crate) fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("<redacted>"));
            }
            let secret = |k: &str| {
                [
                    "pass", "password", "passwd", "pwd", "secret", "token", "auth",
                ]
                .iter()
                .any(|s| k.eq_ignore_ascii_case(s))
            };
            if u.query_pairs().any(|(k, _)| secret(&k)) {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if secret(&k) { "<redacted>".into() } else { v };
                        (k.into_owned(), v.into_owned())
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            if u.fragment().is_some() {
                u.set_fragment(Some("<redacted>"));
            }
            u.to_string()
        }
        Err(_) if raw.contains(['@', '?', '#']) => "<unparseable url>".to_string(),
        Err(_) => raw.to_string(),
    }
}

/// The largest [`RedisConfigBuilder::pool_size`] accepted.
pub const MAX_POOL_SIZE: usize = 10_000;

/// Everything a [`crate::Redis`] handle needs to connect.
///
/// Build one with [`RedisConfig::builder`], or from a URL with [`RedisConfig::from_url`].
/// `Debug` output never contains passwords.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Standalone, cluster or sentinel.
    pub topology: Topology,
    /// ACL user name; overrides one given in the URL.
    pub username: Option<String>,
    /// Password; overrides one given in the URL.
    pub password: Option<Secret>,
    /// Logical database (standalone and sentinel only).
    pub database: Option<i64>,
    /// PEM-encoded CA certificate(s) trusted for `rediss://` besides the system roots.
    pub tls_root_ca_pem: Option<Vec<u8>>,
    /// PEM-encoded client certificate and key for mutual TLS.
    pub tls_client_cert: Option<(Vec<u8>, Secret)>,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long a non-blocking command may wait for its reply.
    pub response_timeout: Duration,
    /// How many reconnect attempts a broken shared connection makes before an operation fails.
    pub reconnect_retries: usize,
    /// The longest pause between reconnect attempts.
    pub reconnect_max_delay: Duration,
    /// The most dedicated connections (blocking commands, transactions) open at once.
    pub pool_size: usize,
    /// How long to wait for a free dedicated connection.
    pub pool_wait_timeout: Duration,
    /// How long creating a dedicated connection may take.
    pub pool_create_timeout: Duration,
    /// How long checking a returned dedicated connection may take.
    pub pool_recycle_timeout: Duration,
    /// How often the subscription connection is pinged to find silent links.
    pub subscription_ping_interval: Duration,
    /// How many messages one subscriber may have unread before it is told it lagged.
    pub subscription_buffer: usize,
    /// `TCP_NODELAY` on every connection (default on: lowest latency per command).
    pub tcp_nodelay: bool,
}

impl RedisConfig {
    /// A builder with the defaults: `redis://127.0.0.1:6379`, 5 s connect and response
    /// timeouts, 16 dedicated connections.
    pub fn builder() -> RedisConfigBuilder {
        RedisConfigBuilder::default()
    }

    /// A configuration from one URL, with the default settings otherwise: one server
    /// (`redis://`, `rediss://`, `unix://`), a cluster
    /// (`redis+cluster://[user:password@]host:port,host:port`) or a sentinel group
    /// (`redis+sentinel://[user:password@]host:port,host:port/master[/db]`); the
    /// `rediss+` forms use TLS. Credentials apply to the data nodes.
    pub fn from_url(url: &str) -> Result<Self> {
        crate::topology_url::builder_for(url)?.build()
    }

    pub(crate) fn tcp_settings(&self) -> TcpSettings {
        TcpSettings::default().set_nodelay(self.tcp_nodelay)
    }

    /// Parses one URL and applies the configured credentials, database and protocol.
    pub(crate) fn connection_info(
        &self,
        url: &str,
        protocol: ProtocolVersion,
    ) -> Result<ConnectionInfo> {
        let info = url
            .into_connection_info()
            .map_err(|e| Error::Config(format!("{} ({e})", redact_url(url))))?;
        if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) && !cfg!(feature = "tls") {
            return Err(Error::Config(
                "a rediss:// URL needs the `tls` feature of redkit-core".into(),
            ));
        }
        let mut redis = info.redis_settings().clone().set_protocol(protocol);
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password.expose());
        }
        if let Some(db) = self.database {
            redis = redis.set_db(db);
        }
        Ok(info
            .set_redis_settings(redis)
            .set_tcp_settings(self.tcp_settings()))
    }

    /// Every URL of the topology (the node URLs, or the sentinels).
    pub(crate) fn urls(&self) -> &[String] {
        match &self.topology {
            Topology::Standalone { url } => std::slice::from_ref(url),
            Topology::Cluster { nodes } => nodes,
            Topology::Sentinel { sentinels, .. } => sentinels,
        }
    }
}

/// Builds a [`RedisConfig`]; `build()` checks every setting and returns
/// [`Error::Config`] for the first one that is wrong.
#[derive(Debug, Clone)]
pub struct RedisConfigBuilder {
    config: RedisConfig,
}

impl Default for RedisConfigBuilder {
    fn default() -> Self {
        Self {
            config: RedisConfig {
                topology: Topology::Standalone {
                    url: "redis://127.0.0.1:6379".to_string(),
                },
                username: None,
                password: None,
                database: None,
                tls_root_ca_pem: None,
                tls_client_cert: None,
                connect_timeout: Duration::from_secs(5),
                response_timeout: Duration::from_secs(5),
                reconnect_retries: 4,
                reconnect_max_delay: Duration::from_secs(1),
                pool_size: 16,
                pool_wait_timeout: Duration::from_secs(5),
                pool_create_timeout: Duration::from_secs(5),
                pool_recycle_timeout: Duration::from_secs(2),
                subscription_ping_interval: Duration::from_secs(1),
                subscription_buffer: 1024,
                tcp_nodelay: true,
            },
        }
    }
}

impl RedisConfigBuilder {
    /// One standalone server (the default topology).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.topology = Topology::Standalone { url: url.into() };
        self
    }

    /// A Redis Cluster reached through these seed nodes.
    pub fn cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.topology = Topology::Cluster {
            nodes: nodes.into_iter().map(Into::into).collect(),
        };
        self
    }

    /// A primary monitored by Redis Sentinel under `master`, found through `sentinels`.
    pub fn sentinel<I, S>(mut self, master: impl Into<String>, sentinels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.topology = Topology::Sentinel {
            master: master.into(),
            sentinels: sentinels.into_iter().map(Into::into).collect(),
        };
        self
    }

    /// ACL user name.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.config.username = Some(username.into());
        self
    }

    /// Password (kept out of `Debug` output).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.config.password = Some(Secret::new(password));
        self
    }

    /// Logical database number.
    pub fn database(mut self, db: i64) -> Self {
        self.config.database = Some(db);
        self
    }

    /// Trust this PEM CA certificate for `rediss://` connections.
    pub fn tls_root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.config.tls_root_ca_pem = Some(pem.into());
        self
    }

    /// Present this PEM client certificate and key (mutual TLS).
    pub fn tls_client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<String>) -> Self {
        self.config.tls_client_cert = Some((cert.into(), Secret::new(key)));
        self
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long a non-blocking command may wait for its reply.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.config.response_timeout = timeout;
        self
    }

    /// Reconnect attempts of the shared connection before an operation fails.
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.config.reconnect_retries = retries;
        self
    }

    /// The longest pause between reconnect attempts.
    pub fn reconnect_max_delay(mut self, delay: Duration) -> Self {
        self.config.reconnect_max_delay = delay;
        self
    }

    /// The most dedicated connections open at once (1 to [`MAX_POOL_SIZE`]).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.config.pool_size = size;
        self
    }

    /// How long to wait for a free dedicated connection.
    pub fn pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_wait_timeout = timeout;
        self
    }

    /// How long creating a dedicated connection may take.
    pub fn pool_create_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_create_timeout = timeout;
        self
    }

    /// How long checking a returned dedicated connection may take.
    pub fn pool_recycle_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_recycle_timeout = timeout;
        self
    }

    /// How often the subscription connection is pinged to find a silent link.
    pub fn subscription_ping_interval(mut self, interval: Duration) -> Self {
        self.config.subscription_ping_interval = interval;
        self
    }

    /// How many unread messages one subscriber may hold before it is told it lagged.
    pub fn subscription_buffer(mut self, messages: usize) -> Self {
        self.config.subscription_buffer = messages;
        self
    }

    /// `TCP_NODELAY` (default on). On means each command leaves at once: the lowest
    /// latency. Off lets the kernel coalesce the small writes of many concurrent callers,
    /// which measured 25–40% more throughput at 64 concurrent tasks on loopback (see the
    /// `raw` benchmark) at the price of latency under light load.
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.config.tcp_nodelay = on;
        self
    }

    /// Checks the settings and returns the configuration.
    pub fn build(self) -> Result<RedisConfig> {
        let c = self.config;
        let urls = c.urls();
        if urls.is_empty() {
            return Err(Error::Config("no server URL given".into()));
        }
        for url in urls {
            c.connection_info(url, ProtocolVersion::RESP2)?;
        }
        match &c.topology {
            Topology::Cluster { .. } => {
                if !cfg!(feature = "cluster") {
                    return Err(Error::Config(
                        "cluster topology needs the `cluster` feature of redkit-core".into(),
                    ));
                }
                if c.database.is_some_and(|db| db != 0) {
                    return Err(Error::Config("Redis Cluster has only database 0".into()));
                }
            }
            Topology::Sentinel { master, .. } => {
                if !cfg!(feature = "sentinel") {
                    return Err(Error::Config(
                        "sentinel topology needs the `sentinel` feature of redkit-core".into(),
                    ));
                }
                if master.is_empty() {
                    return Err(Error::Config("sentinel master name is empty".into()));
                }
            }
            Topology::Standalone { .. } => {}
        }
        if c.database.is_some_and(|db| db < 0) {
            return Err(Error::Config("database number is negative".into()));
        }
        let durations = [
            ("connect_timeout", c.connect_timeout),
            ("response_timeout", c.response_timeout),
            ("pool_wait_timeout", c.pool_wait_timeout),
            ("pool_create_timeout", c.pool_create_timeout),
            ("pool_recycle_timeout", c.pool_recycle_timeout),
            ("subscription_ping_interval", c.subscription_ping_interval),
            ("reconnect_max_delay", c.reconnect_max_delay),
        ];
        for (name, d) in durations {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be greater than zero")));
            }
        }
        if c.pool_size == 0 {
            return Err(Error::Config("pool_size must be at least 1".into()));
        }
        // the pool sizes its bookkeeping by this number up front (a semaphore and a
        // slot list), so an absurd size would abort the process instead of failing
        if c.pool_size > MAX_POOL_SIZE {
            return Err(Error::Config(format!(
                "pool_size must be at most {MAX_POOL_SIZE} (Redis accepts 10000 clients by default)"
            )));
        }
        if c.subscription_buffer == 0 {
            return Err(Error::Config(
                "subscription_buffer must be at least 1".into(),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_passwords() {
        let c = RedisConfig::builder()
            .url("redis://alice:url-secret@localhost:6379/0")
            .password("builder-secret")
            .tls_client_cert_pem(b"cert".to_vec(), "key-secret")
            .build()
            .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("url-secret"), "{shown}");
        assert!(!shown.contains("builder-secret"), "{shown}");
        assert!(!shown.contains("key-secret"), "{shown}");
        assert!(shown.contains("alice"), "user names may show: {shown}");
    }

    #[test]
    fn every_credential_form_of_a_url_is_redacted() {
        for (url, shown) in [
            (
                "redis://alice:s3cret@localhost:6379/0",
                "redis://alice:%3Credacted%3E@localhost:6379/0",
            ),
            (
                "unix:///tmp/redis.sock?user=alice&pass=s3cret&db=2",
                "unix:///tmp/redis.sock?user=alice&pass=%3Credacted%3E&db=2",
            ),
            (
                "redis+unix:///tmp/redis.sock?pass=s3cret",
                "redis+unix:///tmp/redis.sock?pass=%3Credacted%3E",
            ),
            (
                "unix:///tmp/r.sock?PASSWORD=s3cret&protocol=resp3",
                "unix:///tmp/r.sock?PASSWORD=%3Credacted%3E&protocol=resp3",
            ),
            ("rediss://:s3cret@h:1?token=s3cret#s3cret", ""),
            ("redis://u:s3cret@[bad", "<unparseable url>"),
            ("bad url?pass=s3cret", "<unparseable url>"),
            ("redis://localhost:6379/1", "redis://localhost:6379/1"),
        ] {
            let redacted = redact_url(url);
            assert!(!redacted.contains("s3cret"), "{url}: {redacted}");
            if !shown.is_empty() {
                assert_eq!(redacted, shown);
            }
        }
        // the same through a configuration's Debug output
        let c = RedisConfig::builder()
            .url("unix:///tmp/redis.sock?user=alice&pass=query-secret")
            .build()
            .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("query-secret"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for url in [
            "",
            "http://localhost",
            "redis://",
            "not a url",
            "redis://host:99999",
        ] {
            let err = RedisConfig::from_url(url).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
        }
        let err = RedisConfig::from_url("redis://u:hunter2@[bad").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let zero = RedisConfig::builder()
            .response_timeout(Duration::ZERO)
            .build();
        assert!(matches!(zero, Err(Error::Config(_))));
        let pool = RedisConfig::builder().pool_size(0).build();
        assert!(matches!(pool, Err(Error::Config(_))));
        let none = RedisConfig::builder().cluster(Vec::<String>::new()).build();
        assert!(matches!(none, Err(Error::Config(_))));
        let db = RedisConfig::builder().database(-1).build();
        assert!(matches!(db, Err(Error::Config(_))));
        for size in [MAX_POOL_SIZE + 1, usize::MAX] {
            let pool = RedisConfig::builder().pool_size(size).build();
            assert!(matches!(pool, Err(Error::Config(_))), "{size}");
        }
        assert!(
            RedisConfig::builder()
                .pool_size(MAX_POOL_SIZE)
                .build()
                .is_ok()
        );
        // the largest durations and counts are valid settings ("never"), used as such by
        // `extreme_settings_connect_and_work` in tests/standalone.rs
        let max = RedisConfig::builder()
            .connect_timeout(Duration::MAX)
            .response_timeout(Duration::MAX)
            .reconnect_retries(usize::MAX)
            .reconnect_max_delay(Duration::MAX)
            .pool_wait_timeout(Duration::MAX)
            .pool_create_timeout(Duration::MAX)
            .pool_recycle_timeout(Duration::MAX)
            .subscription_ping_interval(Duration::MAX)
            .subscription_buffer(usize::MAX)
            .build();
        assert!(max.is_ok(), "{max:?}");
    }

    #[test]
    fn credentials_from_the_builder_override_the_url() {
        let c = RedisConfig::builder()
            .url("redis://bob:old@localhost/3")
            .username("alice")
            .password("new")
            .database(5)
            .build()
            .unwrap();
        let info = c
            .connection_info("redis://bob:old@localhost/3", ProtocolVersion::RESP2)
            .unwrap();
        assert_eq!(info.redis_settings().username(), Some("alice"));
        assert_eq!(info.redis_settings().password(), Some("new"));
        assert_eq!(info.redis_settings().db(), 5);
        assert!(info.tcp_settings().nodelay());
    }
}
