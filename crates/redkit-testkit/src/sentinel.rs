//! A sentinel group: one master, one replica and three sentinels.

use std::time::{Duration, Instant};

use redkit_core::{Redis, RedisConfig, RedisConfigBuilder};

use crate::server::{Server, free_port};
use crate::tls::TlsFiles;

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
        Self::start_with(None)
    }

    /// The same group with TLS only, everywhere: the master, the replica (replicating
    /// over TLS) and the sentinels serve TLS with certificates of one CA (its PEM is
    /// `master.tls_files().unwrap().ca_pem`, and [`SentinelGroup::config`] trusts it), and
    /// the sentinels reach the servers and each other over TLS. The sentinels' URLs are
    /// `rediss://`.
    pub fn start_tls() -> SentinelGroup {
        let dir = tempfile::Builder::new()
            .prefix("redkit-tls-ca-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        // the files must outlive every server of the group: keep the directory
        let files = TlsFiles::generate(&dir.keep());
        Self::start_with(Some(files))
    }

    fn start_with(tls: Option<TlsFiles>) -> SentinelGroup {
        let server = |lines: &[String]| {
            let mut b = Server::builder();
            if let Some(files) = &tls {
                b = b.tls_with(files.clone());
            }
            for line in lines {
                b = b.config(line);
            }
            b.start()
        };
        let master = server(&[]);
        let replica = server(&[format!("replicaof 127.0.0.1 {}", master.port())]);
        let sentinels: Vec<Server> = (0..3)
            .map(|_| {
                Server::start_sentinel_with(
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
                    tls.clone(),
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

    /// A configuration builder for the group with short test timeouts (and the CA, for a
    /// TLS group).
    pub fn config(&self) -> RedisConfigBuilder {
        let b = RedisConfig::builder()
            .sentinel(MASTER_NAME, self.sentinel_urls())
            .connect_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
            .reconnect_max_delay(Duration::from_millis(200));
        match self.master.tls_files() {
            Some(tls) => b.tls_root_ca_pem(tls.ca_pem.clone().into_bytes()),
            None => b,
        }
    }

    /// A new handle that finds the master through the sentinels.
    pub async fn redis(&self) -> Redis {
        let config = self.config().build().unwrap_or_else(|e| panic!("{e}"));
        Redis::from_config(config)
            .await
            .unwrap_or_else(|e| panic!("connect through sentinels: {e}"))
    }
}
