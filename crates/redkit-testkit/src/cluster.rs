//! A 3-master Redis Cluster on loopback, created with `redis-cli --cluster create`.

use std::process::Command;
use std::time::{Duration, Instant};

use redkit_core::{Redis, RedisConfig, RedisConfigBuilder};

use crate::server::Server;

/// Three cluster-enabled servers holding all 16384 slots.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Server>,
}

impl Cluster {
    /// Starts three masters and joins them; returns once every node reports
    /// `cluster_state:ok`.
    pub fn start() -> Cluster {
        let nodes: Vec<Server> = (0..3)
            .map(|_| {
                Server::builder()
                    .config("cluster-enabled yes")
                    .config("cluster-config-file nodes.conf")
                    .config("cluster-node-timeout 2000")
                    .config("cluster-require-full-coverage no")
                    .start()
            })
            .collect();
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(n.addr());
        }
        let out = cmd
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("redis-cli --cluster create: {e}"));
        if !out.status.success() {
            panic!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in &nodes {
            while !n.cli(&["cluster", "info"]).contains("cluster_state:ok") {
                if Instant::now() > deadline {
                    panic!("cluster did not become ready");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Every node must also know every other node's slots before clients connect.
        for n in &nodes {
            while n
                .cli(&["cluster", "slots"])
                .lines()
                .filter(|l| l.contains("127.0.0.1"))
                .count()
                < 3
            {
                if Instant::now() > deadline {
                    panic!("cluster slots did not propagate");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Cluster { nodes }
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Server] {
        &self.nodes
    }

    /// Mutable access to the nodes, for faults.
    pub fn nodes_mut(&mut self) -> &mut [Server] {
        &mut self.nodes
    }

    /// Seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }

    /// A configuration builder for this cluster with short test timeouts.
    pub fn config(&self) -> RedisConfigBuilder {
        RedisConfig::builder()
            .cluster(self.urls())
            .connect_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
    }

    /// A new cluster handle.
    pub async fn redis(&self) -> Redis {
        let config = self.config().build().unwrap_or_else(|e| panic!("{e}"));
        Redis::from_config(config)
            .await
            .unwrap_or_else(|e| panic!("connect to cluster: {e}"))
    }
}
