//! A 3-master Redis Cluster on loopback, created with `redis-cli --cluster create`.

use std::process::Command;
use std::time::{Duration, Instant};

use redkit_core::{Redis, RedisConfig, RedisConfigBuilder};

use crate::server::Server;

/// Three cluster-enabled masters holding all 16384 slots (and, from
/// [`Cluster::start_with_replicas`], one replica each).
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Server>,
}

impl Cluster {
    /// Starts three masters and joins them; returns once every node reports
    /// `cluster_state:ok`.
    pub fn start() -> Cluster {
        Self::start_nodes(0)
    }

    /// Starts three masters with one replica each (six servers), for failovers.
    pub fn start_with_replicas() -> Cluster {
        Self::start_nodes(1)
    }

    fn start_nodes(replicas: usize) -> Cluster {
        let masters = 3;
        let nodes: Vec<Server> = (0..masters * (1 + replicas))
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
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
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
                < nodes.len()
            {
                if Instant::now() > deadline {
                    panic!("cluster slots did not propagate");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Cluster { nodes }
    }

    /// The slot of `key`.
    fn slot(&self, key: &str) -> u16 {
        // any node that answers (one may be down)
        self.nodes
            .iter()
            .find_map(|n| n.cli(&["cluster", "keyslot", key]).trim().parse().ok())
            .unwrap_or_else(|| panic!("no node answers cluster keyslot {key}"))
    }

    /// The index in [`Cluster::nodes`] of the master serving `key`'s slot (as node 0
    /// sees it): the node a subscription to the channel or pattern `key` lives on.
    pub fn master_index(&self, key: &str) -> usize {
        let slot = redkit_core::key_slot(key.as_bytes());
        let view = self.nodes[0].cli(&["cluster", "nodes"]);
        let port = view
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.len() > 8 && f[2].contains("master") && serves(f, slot))
            .map(|f| port_of(f[1]))
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {view}"));
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// The ports of the master serving `key` and of its replica (as node 0 sees them).
    /// Needs [`Cluster::start_with_replicas`].
    pub fn master_and_replica(&self, key: &str) -> (u16, u16) {
        let slot = self.slot(key);
        let view = self.nodes[0].cli(&["cluster", "nodes"]);
        let lines: Vec<Vec<&str>> = view.lines().map(|l| l.split(' ').collect()).collect();
        let master = lines
            .iter()
            .find(|f| f.len() > 8 && f[2].contains("master") && serves(f, slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {view}"));
        let replica = lines
            .iter()
            .find(|f| f.len() > 3 && f[2].contains("slave") && f[3] == master[0])
            .unwrap_or_else(|| panic!("the master of slot {slot} has no replica: {view}"));
        (port_of(master[1]), port_of(replica[1]))
    }

    /// Waits until the replica of `key`'s master has every write the master took so far
    /// (its replication offset caught up).
    pub fn wait_replicated(&self, key: &str) {
        let (master, _) = self.master_and_replica(key);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = self.node(master).cli(&["info", "replication"]);
            let field = |name: &str| -> Option<u64> {
                info.lines()
                    .find_map(|l| l.trim().strip_prefix(name))
                    .and_then(|v| v.parse().ok())
            };
            let acked = info
                .lines()
                .find(|l| l.starts_with("slave0:"))
                .and_then(|l| l.split(',').find_map(|p| p.strip_prefix("offset=")))
                .and_then(|v| v.parse::<u64>().ok());
            if let (Some(at), Some(acked)) = (field("master_repl_offset:"), acked)
                && acked >= at
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replica did not catch up: {info}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn node(&self, port: u16) -> &Server {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Fails the master of `key`'s slot over to its replica with `CLUSTER FAILOVER` (a
    /// coordinated failover: the replica catches up first, nothing acknowledged is lost)
    /// and waits until every node sees the new master. Returns the new master's port.
    pub fn failover(&self, key: &str) -> u16 {
        let (_, replica) = self.master_and_replica(key);
        let reply = self.node(replica).cli(&["cluster", "failover"]);
        assert!(reply.contains("OK"), "CLUSTER FAILOVER: {reply}");
        self.wait_master(key, replica, &[]);
        replica
    }

    /// Waits until every node but `down` sees the node on `port` as the master of `key`'s
    /// slot (after a failover, or the replica's promotion when its master died).
    pub fn wait_master(&self, key: &str, port: u16, down: &[u16]) {
        let slot = self.slot(key);
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in self.nodes.iter().filter(|n| !down.contains(&n.port())) {
            loop {
                let nodes = n.cli(&["cluster", "nodes"]);
                let promoted = nodes.lines().any(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    f.len() > 8
                        && port_of(f[1]) == port
                        && f[2].contains("master")
                        && serves(&f, slot)
                });
                if promoted {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{port} not seen as master: {nodes}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
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

/// Whether a `CLUSTER NODES` line's slot ranges hold `slot`.
fn serves(fields: &[&str], slot: u16) -> bool {
    fields.iter().skip(8).any(|r| {
        let (lo, hi) = r.split_once('-').unwrap_or((r, r));
        matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if lo <= slot && slot <= hi)
    })
}

/// The port of a `CLUSTER NODES` address (`ip:port@cport`).
fn port_of(addr: &str) -> u16 {
    addr.split(['@', ':'])
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("node address {addr}"))
}
