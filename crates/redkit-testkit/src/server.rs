//! One `redis-server` process on a loopback port, with faults: kill -9, restart on the same
//! port and data, pause and resume.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redkit_core::{Redis, RedisConfig, RedisConfigBuilder};

use crate::tls::TlsFiles;

/// How long a server may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether `redis-server` can be run from PATH.
pub fn redis_server_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The message every test that cannot find a server fails with.
pub(crate) fn no_server_help() -> String {
    "redkit tests need a Redis server (6.2+). Either set REDIS_URL=redis://host:port, \
     install redis-server on PATH (Debian/Ubuntu: `apt-get install redis-server`; macOS: \
     `brew install redis`), or run a Docker engine so a redis:7 container can be started."
        .to_string()
}

/// A loopback port that is free now, and whose cluster bus port (+10000) is free too.
///
/// Both lie below Linux's ephemeral range (32768 and up by default): a port the kernel
/// handed out for `bind(0)` and took back can next be the local port of any outgoing
/// connection, which then keeps `redis-server` from binding it. Ports are drawn at
/// random and never handed out twice by one process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..2000 {
        let port = fastrand::u16(12_000..22_700);
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// Settings for one server; see [`Server::builder`].
#[derive(Debug, Clone, Default)]
pub struct ServerBuilder {
    aof: bool,
    tls: bool,
    tls_files: Option<TlsFiles>,
    users: Vec<(String, String)>,
    requirepass: Option<String>,
    extra: Vec<String>,
    port: Option<u16>,
}

impl ServerBuilder {
    /// Append-only file with `appendfsync always`: every acknowledged write survives kill -9.
    pub fn aof(mut self) -> Self {
        self.aof = true;
        self
    }

    /// Serve TLS only, with a CA and server certificate generated now.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Serve TLS only with these certificates (several servers sharing one CA, as a
    /// sentinel group does); `tls-replication yes` too, so a replica reaches its master
    /// over TLS.
    pub fn tls_with(mut self, files: TlsFiles) -> Self {
        self.tls = true;
        self.tls_files = Some(files);
        self
    }

    /// An ACL user with full access and this password.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// A password for the `default` user.
    pub fn requirepass(mut self, password: &str) -> Self {
        self.requirepass = Some(password.to_string());
        self
    }

    /// One more config line, e.g. `"cluster-enabled yes"`.
    pub fn config(mut self, line: &str) -> Self {
        self.extra.push(line.to_string());
        self
    }

    /// Use this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(self) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("redkit-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let port = self.port.unwrap_or_else(free_port);
        let shared_tls = self.tls_files.is_some();
        let tls = match self.tls_files {
            Some(files) => Some(files),
            None => self.tls.then(|| TlsFiles::generate(dir.path())),
        };
        let mut conf = vec![
            "bind 127.0.0.1".to_string(),
            "protected-mode no".to_string(),
            format!("dir {}", dir.path().display()),
            "logfile redis.log".to_string(),
            "save \"\"".to_string(),
            "daemonize no".to_string(),
            "enable-debug-command yes".to_string(),
        ];
        if let Some(tls) = &tls {
            conf.push("port 0".into());
            conf.push(format!("tls-port {port}"));
            conf.push(format!("tls-cert-file {}", tls.server_cert.display()));
            conf.push(format!("tls-key-file {}", tls.server_key.display()));
            conf.push(format!("tls-ca-cert-file {}", tls.ca_cert.display()));
            conf.push("tls-auth-clients no".into());
            if shared_tls {
                conf.push("tls-replication yes".into());
            }
        } else {
            conf.push(format!("port {port}"));
        }
        if self.aof {
            conf.push("appendonly yes".into());
            conf.push("appendfsync always".into());
        } else {
            conf.push("appendonly no".into());
        }
        for (user, password) in &self.users {
            conf.push(format!("user {user} on >{password} ~* &* +@all"));
        }
        if let Some(p) = &self.requirepass {
            conf.push(format!("requirepass {p}"));
        }
        conf.extend(self.extra.iter().cloned());
        let conf_path = dir.path().join("redis.conf");
        fs::write(&conf_path, conf.join("\n") + "\n").unwrap_or_else(|e| panic!("{e}"));
        let mut server = Server {
            port,
            tls,
            conf: conf_path,
            child: None,
            password: self.requirepass,
            dir,
            sentinel: false,
        };
        server.spawn();
        server
    }
}

/// A `redis-server` child process on 127.0.0.1; killed when dropped (and, through a small
/// watchdog, when the test process exits without dropping it).
#[derive(Debug)]
pub struct Server {
    port: u16,
    tls: Option<TlsFiles>,
    conf: PathBuf,
    child: Option<Child>,
    password: Option<String>,
    dir: tempfile::TempDir,
    pub(crate) sentinel: bool,
}

impl Server {
    /// A plain standalone server on a free port.
    pub fn start() -> Server {
        Self::builder().start()
    }

    /// A server with options (AOF, TLS, ACL users, extra config).
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts `redis-server <conf> --sentinel` with these config lines; with `tls`, it
    /// serves TLS only and reaches the servers and the other sentinels over TLS.
    pub(crate) fn start_sentinel_with(
        port: u16,
        conf_lines: &[String],
        tls: Option<TlsFiles>,
    ) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("redkit-sentinel-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut conf = vec![
            "bind 127.0.0.1".to_string(),
            "protected-mode no".to_string(),
            format!("dir {}", dir.path().display()),
            "logfile redis.log".to_string(),
        ];
        match &tls {
            Some(tls) => conf.extend([
                "port 0".to_string(),
                format!("tls-port {port}"),
                format!("tls-cert-file {}", tls.server_cert.display()),
                format!("tls-key-file {}", tls.server_key.display()),
                format!("tls-ca-cert-file {}", tls.ca_cert.display()),
                "tls-auth-clients no".to_string(),
                "tls-replication yes".to_string(),
            ]),
            None => conf.push(format!("port {port}")),
        }
        conf.extend(conf_lines.iter().cloned());
        let conf_path = dir.path().join("sentinel.conf");
        fs::write(&conf_path, conf.join("\n") + "\n").unwrap_or_else(|e| panic!("{e}"));
        let mut server = Server {
            port,
            tls,
            conf: conf_path,
            child: None,
            password: None,
            dir,
            sentinel: true,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("redis.log");
        let mark = if self.sentinel {
            "Sentinel ID is"
        } else {
            "Ready to accept connections"
        };
        let ready_marks_before = count_ready(&log, mark);
        let mut cmd = Command::new("redis-server");
        cmd.arg(&self.conf);
        if self.sentinel {
            cmd.arg("--sentinel");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run redis-server ({e}). {}", no_server_help()));
        watchdog(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if count_ready(&log, mark) > ready_marks_before {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                {
                    let mut err = String::new();
                    if let Some(mut s) = child.stderr.take() {
                        let _ = s.read_to_string(&mut err);
                    }
                    let log = fs::read_to_string(&log).unwrap_or_default();
                    panic!(
                        "redis-server exited ({status}) on port {}: {err}\n{log}",
                        self.port
                    );
                }
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "redis-server on port {} not ready in time:\n{log}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (AOF and RDB files, logs, certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `redis://127.0.0.1:port` (`rediss://` for TLS servers).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TLS files, for TLS servers.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// A configuration builder for this server: URL, the default user's password and the
    /// CA certificate when the server uses TLS, and short timeouts fit for tests.
    pub fn config(&self) -> RedisConfigBuilder {
        let mut b = RedisConfig::builder()
            .url(self.url())
            .connect_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
            .reconnect_max_delay(Duration::from_millis(200));
        if let Some(p) = &self.password {
            b = b.password(p);
        }
        if let Some(tls) = &self.tls {
            b = b.tls_root_ca_pem(tls.ca_pem.clone().into_bytes());
        }
        b
    }

    /// A new handle to this server.
    pub async fn redis(&self) -> Redis {
        let config = self.config().build().unwrap_or_else(|e| panic!("{e}"));
        Redis::from_config(config)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()))
    }

    /// Whether the process is running (paused counts as running).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`: the process dies at once, with no chance to save anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data directory (a server
    /// with AOF comes back with every acknowledged write). Kills it first if it runs.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                panic!("port {} still busy after kill", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.spawn();
    }

    /// `SIGSTOP`: the process stays alive but answers nothing until [`Server::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// `SIGCONT` after [`Server::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(sig)
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.arg("-p").arg(self.port.to_string());
        if let Some(p) = &self.password {
            cmd.arg("--no-auth-warning").arg("-a").arg(p);
        }
        if let Some(tls) = &self.tls {
            cmd.arg("--tls").arg("--cacert").arg(&tls.ca_cert);
        }
        let out = cmd
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("redis-cli: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

fn count_ready(log: &Path, mark: &str) -> usize {
    fs::read_to_string(log)
        .map(|s| s.matches(mark).count())
        .unwrap_or(0)
}

/// Kills `pid` once this test process is gone, so servers held in statics (shared per test
/// binary) do not outlive the tests.
fn watchdog(pid: u32) {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 0.5; done; kill -9 {pid} 2>/dev/null"
    );
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
