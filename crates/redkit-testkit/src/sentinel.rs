//! A sentinel group: one master, one replica and three sentinels.

use std::time::{Duration, Instant};

use redkit_core::{Redis, RedisConfig, RedisConfigBuilder};

use crate::server::{Server, free_port};

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "redkit";

/// Master, replica and three sentinels watching them (quorum 2, down after 1 s).
#[derive(Debug)]
pub struct SentinelGroup {
    /// The server that is master at start.
    pub master: Server,
    /// Its replica.
    pub replica: Server,
    /// The sentinels.
    pub sentinels: Vec<Server>,
}

impl SentinelGroup {
    /// Starts the group and waits until every sentinel knows the master and the replica.
    pub fn start() -> SentinelGroup {
        let master = Server::start();
        let replica = Server::builder()
            .config(&format!("replicaof 127.0.0.1 {}", master.port()))
            .start();
        let sentinels: Vec<Server> = (0..3)
            .map(|_| {
                Server::start_sentinel(
                    free_port(),
                    &[
                        format!(
                            "sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2",
                            master.port()
                        ),
                        format!("sentinel down-after-milliseconds {MASTER_NAME} 1000"),
                        format!("sentinel failover-timeout {MASTER_NAME} 3000"),
                        format!("sentinel parallel-syncs {MASTER_NAME} 1"),
                    ],
                )
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        for s in &sentinels {
            loop {
                let replicas = s.cli(&["sentinel", "replicas", MASTER_NAME]);
                let master_ok = s
                    .cli(&["sentinel", "get-master-addr-by-name", MASTER_NAME])
                    .contains(&master.port().to_string());
                if master_ok && replicas.contains(&replica.port().to_string()) {
                    break;
                }
                if Instant::now() > deadline {
                    panic!("sentinels did not discover the group");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        SentinelGroup {
            master,
            replica,
            sentinels,
        }
    }

    /// Sentinel URLs.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Server::url).collect()
    }

    /// A configuration builder for the group with short test timeouts.
    pub fn config(&self) -> RedisConfigBuilder {
        RedisConfig::builder()
            .sentinel(MASTER_NAME, self.sentinel_urls())
            .connect_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
            .reconnect_max_delay(Duration::from_millis(200))
    }

    /// A new handle that finds the master through the sentinels.
    pub async fn redis(&self) -> Redis {
        let config = self.config().build().unwrap_or_else(|e| panic!("{e}"));
        Redis::from_config(config)
            .await
            .unwrap_or_else(|e| panic!("connect through sentinels: {e}"))
    }
}
