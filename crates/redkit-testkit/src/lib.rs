//! Real Redis servers for redkit's tests: standalone, AOF, TLS, ACL, cluster, sentinel and
//! several independent servers, plus faults (kill -9, restart, pause, a loopback proxy).
//!
//! [`redis`] gives a test a handle to a server shared by the whole test binary:
//! `REDIS_URL` if set; otherwise a `redis-server` from PATH on a free loopback port;
//! otherwise a `redis:7` container when a Docker engine answers (forced with
//! `REDKIT_TEST_DOCKER=1`); otherwise the test fails with a message that says how to get a
//! server. It never skips silently. Tests on a shared server keep to their own key prefix
//! ([`prefix`]) and never flush it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod cluster;
mod docker;
mod proxy;
mod sentinel;
mod server;
mod tls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use cluster::Cluster;
pub use docker::Container;

/// Whether a Docker engine answers (the docker fallback and `REDKIT_TEST_DOCKER=1` need one).
pub fn docker_available() -> bool {
    docker::engine_available()
}
pub use proxy::Proxy;
pub use redkit_core::{Redis, same_slot};

/// How a conformance suite lets time pass: real time for Redis backends, a manual clock
/// that the backend reads for in-memory ones.
#[derive(Debug, Clone)]
pub enum Time {
    /// Real time passes (Redis backends).
    Real,
    /// A manual clock the backend reads (memory backends).
    Manual(redkit_core::ManualClock),
}

impl Time {
    /// Lets `d` pass: sleeps, or advances the manual clock.
    pub async fn pass(&self, d: std::time::Duration) {
        match self {
            Time::Real => tokio::time::sleep(d).await,
            Time::Manual(c) => c.advance(d),
        }
    }
}
pub use sentinel::{MASTER_NAME, SentinelGroup};
pub use server::{Server, ServerBuilder, free_port, redis_server_available};
pub use tls::TlsFiles;

/// Where the shared server of this test binary comes from.
#[derive(Debug)]
pub enum Shared {
    /// `REDIS_URL`.
    Url(String),
    /// A `redis-server` this process started.
    Spawned(Server),
    /// A container this process started.
    Docker(Container),
}

impl Shared {
    /// The server's URL.
    pub fn url(&self) -> String {
        match self {
            Shared::Url(u) => u.clone(),
            Shared::Spawned(s) => s.url(),
            Shared::Docker(c) => c.url(),
        }
    }

    /// The spawned server, when this process started one (fault tests need it).
    pub fn server(&self) -> Option<&Server> {
        match self {
            Shared::Spawned(s) => Some(s),
            _ => None,
        }
    }
}

/// The server shared by every test of this binary (started on first use).
pub fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let force_docker = std::env::var("REDKIT_TEST_DOCKER").is_ok_and(|v| v == "1");
        if !force_docker {
            if let Ok(url) = std::env::var("REDIS_URL")
                && !url.is_empty()
            {
                return Shared::Url(url);
            }
            if redis_server_available() {
                return Shared::Spawned(Server::start());
            }
        }
        if docker::engine_available() {
            return Shared::Docker(Container::start());
        }
        panic!("{}", server::no_server_help());
    })
}

/// A new handle to the shared server, with test timeouts.
pub async fn redis() -> Redis {
    let url = shared().url();
    let config = match shared().server() {
        Some(s) => s.config(),
        None => redkit_core::RedisConfig::builder()
            .url(&url)
            .response_timeout(Duration::from_secs(2)),
    };
    Redis::from_config(config.build().unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A 3-master cluster shared by every test of this binary (started on first use).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if !redis_server_available() {
            panic!(
                "cluster tests start redis-server from PATH. {}",
                server::no_server_help()
            );
        }
        Cluster::start()
    })
}

/// `count` independent servers (for Redlock), each killed when dropped.
pub fn servers(count: usize) -> Vec<Server> {
    (0..count).map(|_| Server::start()).collect()
}

/// A Redis for examples: from `REDIS_URL`, else a private `redis-server` from PATH on a
/// free port (stopped when this value is dropped). `None` when neither is available, so
/// the example can fall back to its in-memory backend.
#[derive(Debug)]
pub struct LocalRedis {
    /// The handle.
    pub redis: Redis,
    _server: Option<Server>,
}

/// See [`LocalRedis`]. Connection failures to an explicit `REDIS_URL` are errors.
pub async fn local_redis() -> redkit_core::Result<Option<LocalRedis>> {
    if let Ok(url) = std::env::var("REDIS_URL")
        && !url.is_empty()
    {
        return Ok(Some(LocalRedis {
            redis: Redis::connect(&url).await?,
            _server: None,
        }));
    }
    if !redis_server_available() {
        return Ok(None);
    }
    let server = Server::start();
    Ok(Some(LocalRedis {
        redis: Redis::connect(&server.url()).await?,
        _server: Some(server),
    }))
}

/// A key prefix no other test uses: `t-<name>-<random>`.
pub fn prefix(name: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t-{name}-{}", &id[..12])
}

/// Every `*.lua` file in `dir` with its text, sorted by path. Panics (a test helper) when
/// the folder or a file cannot be read.
pub fn lua_scripts(dir: impl AsRef<Path>) -> Vec<(PathBuf, String)> {
    let dir = dir.as_ref();
    let mut scripts: Vec<(PathBuf, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{e}")).path())
        .filter(|path| path.extension().is_some_and(|e| e == "lua"))
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            (path, text)
        })
        .collect();
    scripts.sort();
    scripts
}

/// Asserts that no script in `dir` (at least `min_scripts` of them) concatenates strings
/// outside a comment: scripts that need no `..` at all cannot build a key name, so every
/// key they touch comes in KEYS.
pub fn assert_no_lua_concatenation(dir: impl AsRef<Path>, min_scripts: usize) {
    let scripts = lua_scripts(&dir);
    assert!(
        scripts.len() >= min_scripts,
        "found {} scripts in {}",
        scripts.len(),
        dir.as_ref().display()
    );
    for (path, text) in &scripts {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("--").next().unwrap_or("");
            assert!(
                !code.contains(".."),
                "{}:{}: a concatenation; keys are passed in KEYS\n{line}",
                path.display(),
                n + 1
            );
        }
    }
}

/// Asserts that all keys hash to one cluster slot (every key a script touches must).
pub fn assert_same_slot<K: AsRef<str>>(keys: &[K]) {
    let bytes: Vec<&[u8]> = keys.iter().map(|k| k.as_ref().as_bytes()).collect();
    assert!(
        same_slot(&bytes),
        "keys hash to different cluster slots: {:?}",
        keys.iter()
            .map(|k| (k.as_ref(), redkit_core::key_slot(k.as_ref().as_bytes())))
            .collect::<Vec<_>>()
    );
}

/// Polls `check` until it returns true or `timeout` passes; returns whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
