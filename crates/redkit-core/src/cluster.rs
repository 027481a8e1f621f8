//! Redis Cluster: one async cluster connection shared by all callers, a pool of cluster
//! connections for blocking work.

use redis::cluster::ClusterClientBuilder;
use redis::{ConnectionInfo, ProtocolVersion};

use crate::config::RedisConfig;
use crate::error::{Error, Result};
use crate::handle::{ConnKind, Connection, Pool, ServerInfo, build_pool, check_server, client_for};

fn node_infos(
    config: &RedisConfig,
    nodes: &[String],
    protocol: ProtocolVersion,
) -> Result<Vec<ConnectionInfo>> {
    nodes
        .iter()
        .map(|n| config.connection_info(n, protocol))
        .collect()
}

pub(crate) fn client_builder(
    config: &RedisConfig,
    nodes: &[String],
    protocol: ProtocolVersion,
) -> Result<ClusterClientBuilder> {
    Ok(pool_client_builder(config, nodes, protocol)?.response_timeout(config.response_timeout))
}

/// [`client_builder`] without a response timeout: the dedicated pool's client (its
/// blocking commands wait longer; [`crate::Dedicated`] applies a limit per call).
fn pool_client_builder(
    config: &RedisConfig,
    nodes: &[String],
    protocol: ProtocolVersion,
) -> Result<ClusterClientBuilder> {
    let builder = ClusterClientBuilder::new(node_infos(config, nodes, protocol)?)
        .connection_timeout(config.connect_timeout)
        .use_protocol(protocol)
        .tcp_settings(config.tcp_settings());
    #[cfg(feature = "tls")]
    let builder = match crate::tls::certificates(config) {
        Some(certs) => builder.certs(certs),
        None => builder,
    };
    Ok(builder)
}

/// Checks the first seed node that answers, then opens the shared cluster connection.
pub(crate) async fn connect(
    config: &RedisConfig,
    nodes: &[String],
) -> Result<(Connection, Pool, ServerInfo)> {
    let mut last = None;
    let mut server = None;
    for node in nodes {
        let client = client_for(config, node, ProtocolVersion::RESP2)?;
        match check_server(config, &client).await {
            Ok(s) => {
                server = Some(s);
                break;
            }
            Err(e @ (Error::Auth(_) | Error::UnsupportedServer(_))) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    let Some(server) = server else {
        return Err(last.unwrap_or_else(|| Error::Config("no cluster seed node".into())));
    };
    let client = client_builder(config, nodes, ProtocolVersion::RESP2)?
        .build()
        .map_err(|e| Error::Config(e.to_string()))?;
    let mut conn = client.get_async_connection().await?;
    let mut server = server;
    server.maxmemory_policy = masters_policy(&mut conn, config).await;
    let manager = PoolManager {
        client: pool_client_builder(config, nodes, ProtocolVersion::RESP2)?
            .build()
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    let pool = build_pool!(ClusterPool, manager, config)?;
    Ok((
        Connection(ConnKind::Cluster(conn)),
        Pool::Cluster(pool),
        server,
    ))
}

/// The eviction policy of the cluster as a whole: the policy of a master that evicts keys
/// if any does (the seed checked first is only one of the masters, and a lock or a job
/// lives on whichever owns its slot), `noeviction` when every master says so, `None` when
/// a master would not say.
async fn masters_policy(
    conn: &mut redis::cluster_async::ClusterConnection,
    config: &RedisConfig,
) -> Option<String> {
    use redis::Value;
    use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    let mut info = redis::cmd("INFO");
    info.arg("memory");
    let replies = match tokio::time::timeout(
        config.response_timeout,
        conn.route_command(info, routing),
    )
    .await
    {
        Ok(Ok(Value::Map(replies))) => replies,
        other => {
            tracing::debug!(reply = ?other.map(|r| r.map(|_| ())), "INFO memory of the masters");
            return None;
        }
    };
    let mut all_noeviction = !replies.is_empty();
    for (node, reply) in replies {
        let text = match reply {
            Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            Value::VerbatimString { text, .. } => text,
            Value::SimpleString(s) => s,
            _ => String::new(),
        };
        match crate::handle::memory_policy(&text) {
            Some(p) if p == "noeviction" => {}
            Some(p) => {
                tracing::warn!(node = ?node, policy = %p, "a cluster master may evict keys");
                return Some(p);
            }
            None => all_noeviction = false,
        }
    }
    all_noeviction.then(|| "noeviction".to_string())
}

/// Dedicated cluster connections from a client built like the shared connection's (the
/// configured CA and client certificate, TCP settings, connect timeout, credentials), so
/// a `rediss://` cluster with a private CA serves them too (test
/// `a_tls_cluster_with_a_private_ca_serves_shared_and_dedicated_connections`).
pub(crate) struct PoolManager {
    client: redis::cluster::ClusterClient,
}

/// The dedicated pool of a cluster handle, and one connection taken from it.
pub(crate) type ClusterPool = deadpool::managed::Pool<PoolManager>;
pub(crate) type ClusterConn = deadpool::managed::Object<PoolManager>;

impl deadpool::managed::Manager for PoolManager {
    type Type = redis::cluster_async::ClusterConnection;
    type Error = redis::RedisError;

    async fn create(&self) -> std::result::Result<Self::Type, redis::RedisError> {
        self.client.get_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut Self::Type,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<redis::RedisError> {
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
