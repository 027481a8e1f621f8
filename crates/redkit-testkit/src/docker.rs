//! A `redis:7` container through the docker CLI, for machines with an engine but no
//! `redis-server` binary.

use std::process::{Command, Stdio};

/// The image used for containers.
pub(crate) const IMAGE: &str = "redis:7-alpine";

/// Whether a Docker engine answers.
pub(crate) fn engine_available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running container, removed when dropped or when the test process exits.
#[derive(Debug)]
pub struct Container {
    id: String,
    port: u16,
}

impl Container {
    /// Starts a container and publishes its port on 127.0.0.1.
    pub fn start() -> Container {
        let out = Command::new("docker")
            .args(["run", "-d", "--rm", "-p", "127.0.0.1::6379", IMAGE])
            .output()
            .unwrap_or_else(|e| panic!("docker run: {e}"));
        if !out.status.success() {
            panic!(
                "docker run {IMAGE}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let me = std::process::id();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null; do sleep 1; done; docker rm -f {id} >/dev/null 2>&1"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let out = Command::new("docker")
            .args(["port", &id, "6379/tcp"])
            .output()
            .unwrap_or_else(|e| panic!("docker port: {e}"));
        let mapping = String::from_utf8_lossy(&out.stdout);
        let port = mapping
            .lines()
            .find_map(|l| l.rsplit(':').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("docker port gave {mapping:?}"));
        for _ in 0..100 {
            let ping = Command::new("docker")
                .args(["exec", &id, "redis-cli", "ping"])
                .output();
            if ping.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Container { id, port }
    }

    /// `redis://127.0.0.1:<published port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
