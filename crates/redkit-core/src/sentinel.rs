//! Redis Sentinel: the master is asked of the sentinels on connect, and asked again when
//! the shared connection fails or the old master answers `READONLY` after a failover.

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
    ConnKind, Connection, Pool, ServerInfo, build_pool, check_server, manager_config,
};

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

    let node = deadpool_redis::sentinel::SentinelNodeConnectionInfo {
        redis_connection_info: Some(deadpool_redis::RedisConnectionInfo {
            db: config.database.unwrap_or(0),
            username: config.username.clone(),
            password: config.password.as_ref().map(|p| p.expose().to_string()),
            protocol: deadpool_redis::ProtocolVersion::RESP2,
        }),
        ..Default::default()
    };
    let manager = deadpool_redis::sentinel::Manager::new(
        sentinels.to_vec(),
        master.to_string(),
        Some(node),
        deadpool_redis::sentinel::SentinelServerType::Master,
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let pool = build_pool!(deadpool_redis::sentinel::Pool, manager, config)?;
    Ok((
        Connection(ConnKind::Sentinel(shared)),
        Pool::Sentinel(pool),
        server,
    ))
}
