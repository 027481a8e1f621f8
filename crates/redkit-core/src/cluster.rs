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
    let builder = ClusterClientBuilder::new(node_infos(config, nodes, protocol)?)
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.response_timeout)
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
    let conn = client.get_async_connection().await?;
    let manager = deadpool_redis::cluster::Manager::new(
        node_infos(config, nodes, ProtocolVersion::RESP2)?,
        false,
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let pool = build_pool!(deadpool_redis::cluster::Pool, manager, config)?;
    Ok((
        Connection(ConnKind::Cluster(conn)),
        Pool::Cluster(pool),
        server,
    ))
}
