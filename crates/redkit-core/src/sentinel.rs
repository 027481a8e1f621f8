//! Redis Sentinel: the master is asked of the sentinels on connect, and asked again when
//! the shared connection fails or the old master answers `READONLY` after a failover.
//!
//! TLS: with `rediss://` sentinel URLs (all of them; a mix is refused), the master is
//! reached over TLS too, by the shared connection, the dedicated pool and subscriptions
//! alike, trusting the configured CA and presenting the configured client certificate
//! to the sentinels and the master. With `redis://` sentinels the master is reached in
//! cleartext. Either way, the configured TCP settings apply to every connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Client, Cmd, ErrorKind, ProtocolVersion, RedisError, RedisFuture, ServerErrorKind, Value,
};

use crate::config::{RedisConfig, redact_url};
use crate::error::{Error, Result};
use crate::handle::{
    ConnKind, Connection, Pool, ServerInfo, build_pool, check_server, connection_config,
    manager_config,
};

/// Whether the sentinels are reached over TLS (then the master is too): every sentinel
/// URL is `rediss://`, or none is.
fn sentinels_use_tls(sentinels: &[String]) -> Result<bool> {
    let mut tls = Vec::with_capacity(sentinels.len());
    for url in sentinels {
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
            .map_err(|e| Error::Config(format!("sentinel {} ({e})", redact_url(url))))?;
        tls.push(matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }));
    }
    match (tls.iter().all(|&t| t), tls.iter().any(|&t| t)) {
        (true, _) if !tls.is_empty() => Ok(true),
        (_, false) => Ok(false),
        _ => Err(Error::Config(
            "sentinel URLs mix rediss:// and redis://: use TLS for all sentinels or for none \
             (the master is reached over TLS when the sentinels are)"
                .into(),
        )),
    }
}

/// Connection settings the sentinels' answer is combined with (credentials, database).
fn node_info(config: &RedisConfig, protocol: ProtocolVersion) -> SentinelNodeConnectionInfo {
    let mut redis = redis::RedisConnectionInfo::default().set_protocol(protocol);
    if let Some(user) = &config.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &config.password {
        redis = redis.set_password(password.expose());
    }
    if let Some(db) = config.database {
        redis = redis.set_db(db);
    }
    SentinelNodeConnectionInfo::default()
        .set_redis_connection_info(redis)
        .set_tcp_settings(config.tcp_settings())
}

pub(crate) fn sentinel_client(
    config: &RedisConfig,
    master: &str,
    sentinels: &[String],
    protocol: ProtocolVersion,
) -> Result<SentinelClient> {
    if sentinels_use_tls(sentinels)? {
        #[cfg(feature = "tls")]
        return tls_sentinel_client(config, master, sentinels, protocol);
        #[cfg(not(feature = "tls"))]
        return Err(Error::Config(
            "rediss:// sentinels need the `tls` feature of redkit-core".into(),
        ));
    }
    // `build` takes a `String` without the `tls` feature and `impl AsRef<str>` with it.
    #[allow(clippy::unnecessary_to_owned)]
    SentinelClient::build(
        sentinels.to_vec(),
        master.to_string(),
        Some(node_info(config, protocol)),
        SentinelServerType::Master,
    )
    .map_err(|e| {
        let shown: Vec<_> = sentinels.iter().map(|s| redact_url(s)).collect();
        Error::Config(format!("sentinels {shown:?}: {e}"))
    })
}

/// A sentinel client that reaches the sentinels and the master over TLS, with the
/// configured certificates for both, and the sentinels' credentials from their URLs
/// (which must then agree: one set applies to every sentinel).
#[cfg(feature = "tls")]
fn tls_sentinel_client(
    config: &RedisConfig,
    master: &str,
    sentinels: &[String],
    protocol: ProtocolVersion,
) -> Result<SentinelClient> {
    use redis::sentinel::SentinelClientBuilder;
    let shown = || sentinels.iter().map(|s| redact_url(s)).collect::<Vec<_>>();
    let mut addrs = Vec::with_capacity(sentinels.len());
    let mut auth: Option<(Option<String>, Option<String>)> = None;
    for url in sentinels {
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
            .map_err(|e| Error::Config(format!("sentinel {} ({e})", redact_url(url))))?;
        let this = (
            info.redis_settings().username().map(str::to_string),
            info.redis_settings().password().map(str::to_string),
        );
        match &auth {
            Some(first) if *first != this => {
                return Err(Error::Config(format!(
                    "sentinels {:?}: TLS sentinels must share one user and password",
                    shown()
                )));
            }
            _ => auth = Some(this),
        }
        addrs.push(info.addr().clone());
    }
    crate::tls::install_crypto_provider();
    let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
        .map_err(|e| Error::Config(format!("sentinels {:?}: {e}", shown())))?
        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
        .set_client_to_redis_protocol(protocol)
        .set_client_to_redis_tcp_settings(config.tcp_settings())
        .set_client_to_sentinel_tcp_settings(config.tcp_settings());
    if let Some(user) = &config.username {
        b = b.set_client_to_redis_username(user);
    }
    if let Some(password) = &config.password {
        b = b.set_client_to_redis_password(password.expose());
    }
    if let Some(db) = config.database {
        b = b.set_client_to_redis_db(db);
    }
    if let Some((user, password)) = auth {
        if let Some(user) = user {
            b = b.set_client_to_sentinel_username(user);
        }
        if let Some(password) = password {
            b = b.set_client_to_sentinel_password(password);
        }
    }
    if let Some(certs) = crate::tls::certificates(config) {
        b = b
            .set_client_to_sentinel_certificates(certs.clone())
            .set_client_to_redis_certificates(certs);
    }
    b.build()
        .map_err(|e| Error::Config(format!("sentinels {:?}: {e}", shown())))
}

/// Dedicated connections to whichever server is master when one is made: the same
/// sentinel client (TLS, certificates, TCP settings, credentials) as the shared
/// connection, and the connect timeout of the configuration.
pub(crate) struct PoolManager {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    connection: redis::AsyncConnectionConfig,
}

/// The dedicated pool of a sentinel handle, and one connection taken from it.
pub(crate) type SentinelPool = deadpool::managed::Pool<PoolManager>;
pub(crate) type SentinelConn = deadpool::managed::Object<PoolManager>;

impl deadpool::managed::Manager for PoolManager {
    type Type = redis::aio::MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> std::result::Result<Self::Type, RedisError> {
        let client = self.sentinel.lock().await.async_get_client().await?;
        client
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await
    }

    async fn recycle(
        &self,
        conn: &mut Self::Type,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<RedisError> {
        let pong: String = redis::cmd("PING").query_async(conn).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(deadpool::managed::RecycleError::message(
                "unexpected PING reply",
            ))
        }
    }
}

/// The shared connection to whichever server is master now.
pub(crate) struct SentinelShared {
    current: RwLock<(ConnectionManager, String)>,
    sentinel: tokio::sync::Mutex<SentinelClient>,
    resolving: AtomicBool,
    config: RedisConfig,
}

fn master_addr(client: &Client) -> String {
    client.get_connection_info().addr().to_string()
}

impl SentinelShared {
    fn manager(&self) -> ConnectionManager {
        match self.current.read() {
            Ok(g) => g.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    fn needs_new_master(e: &RedisError) -> bool {
        e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly))
    }

    fn check(self: &Arc<Self>, result: &redis::RedisResult<impl Sized>) {
        if let Err(e) = result
            && Self::needs_new_master(e)
            && !self.resolving.swap(true, Ordering::AcqRel)
        {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = this.resolve().await {
                    tracing::warn!(error = %e, "asking sentinels for the master failed");
                }
                this.resolving.store(false, Ordering::Release);
            });
        }
    }

    /// Asks the sentinels for the master; swaps the connection if it moved.
    async fn resolve(&self) -> Result<()> {
        let client = self.sentinel.lock().await.async_get_client().await?;
        let addr = master_addr(&client);
        let same = match self.current.read() {
            Ok(g) => g.1 == addr,
            Err(p) => p.into_inner().1 == addr,
        };
        if !same {
            tracing::info!(master = %addr, "sentinel reports a new master");
            let manager =
                ConnectionManager::new_lazy_with_config(client, manager_config(&self.config))?;
            match self.current.write() {
                Ok(mut g) => *g = (manager, addr),
                Err(p) => *p.into_inner() = (manager, addr),
            }
        }
        Ok(())
    }

    pub(crate) fn req_packed_command<'a>(self: &Arc<Self>, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut manager = self.manager();
        let this = Arc::clone(self);
        Box::pin(async move {
            let result = manager.req_packed_command(cmd).await;
            this.check(&result);
            result
        })
    }

    pub(crate) fn req_packed_commands<'a>(
        self: &Arc<Self>,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut manager = self.manager();
        let this = Arc::clone(self);
        Box::pin(async move {
            let result = manager.req_packed_commands(pipeline, offset, count).await;
            this.check(&result);
            result
        })
    }

    pub(crate) fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}

pub(crate) async fn connect(
    config: &RedisConfig,
    master: &str,
    sentinels: &[String],
) -> Result<(Connection, Pool, ServerInfo)> {
    let mut sentinel = sentinel_client(config, master, sentinels, ProtocolVersion::RESP2)?;
    let client = sentinel.async_get_client().await?;
    let server = check_server(config, &client).await?;
    let addr = master_addr(&client);
    let manager = ConnectionManager::new_lazy_with_config(client, manager_config(config))?;
    let shared = Arc::new(SentinelShared {
        current: RwLock::new((manager, addr)),
        sentinel: tokio::sync::Mutex::new(sentinel),
        resolving: AtomicBool::new(false),
        config: config.clone(),
    });

    let manager = PoolManager {
        sentinel: tokio::sync::Mutex::new(sentinel_client(
            config,
            master,
            sentinels,
            ProtocolVersion::RESP2,
        )?),
        connection: connection_config(config, None),
    };
    let pool = build_pool!(SentinelPool, manager, config)?;
    Ok((
        Connection(ConnKind::Sentinel(shared)),
        Pool::Sentinel(pool),
        server,
    ))
}
