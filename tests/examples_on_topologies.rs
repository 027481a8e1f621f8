//! Every example and the tour run unchanged on a 3-master cluster and behind sentinels:
//! each example binary is started with `REDIS_URL` in the cluster form
//! (`redis+cluster://host:port,…`) and then the sentinel form
//! (`redis+sentinel://host:port,…/master`) and must finish successfully.
//!
//! `cargo test` builds the examples before it runs tests; the binaries are found next to
//! this test's. When only this test was built (`cargo test --test examples_on_topologies`),
//! build them first with `cargo build --examples --all-features`. A missing binary fails
//! the test under CI (`CI` set) and is skipped with a note otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redkit_testkit::{Cluster, MASTER_NAME, SentinelGroup};

/// Examples that run to completion (`session_axum` serves until stopped: it is run below
/// with a request against it).
const EXAMPLES: &[&str] = &[
    "tour",
    "cache",
    "geo",
    "leaderboard",
    "lock",
    "pubsub",
    "queue_worker",
    "ratelimit_axum",
    "streams",
];

fn example_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent()?.parent()?.join("examples");
    let path = dir.join(name);
    path.exists().then_some(path)
}

/// Runs one example with `REDIS_URL=url`; its output on failure.
fn run(name: &str, url: &str) -> Result<(), String> {
    let Some(bin) = example_binary(name) else {
        if std::env::var_os("CI").is_some() {
            return Err(format!("example binary `{name}` was not built"));
        }
        eprintln!("skipped `{name}`: not built (cargo build --examples --all-features)");
        return Ok(());
    };
    let mut child = Command::new(&bin)
        .env("REDIS_URL", url)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {name}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(_status) = child.try_wait().map_err(|e| e.to_string())? {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{name} on {url}: {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn run_all(url: &str) {
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = EXAMPLES
            .iter()
            .map(|name| s.spawn(move || run(name, url)))
            .collect();
        runs.into_iter()
            .filter_map(|r| r.join().unwrap().err())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn hosts(urls: &[String]) -> String {
    urls.iter()
        .map(|u| u.trim_start_matches("redis://").trim_end_matches('/'))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn every_example_runs_on_a_three_master_cluster() {
    let cluster = Cluster::start();
    run_all(&format!("redis+cluster://{}", hosts(&cluster.urls())));
}

#[test]
fn every_example_runs_behind_sentinels() {
    let group = SentinelGroup::start();
    run_all(&format!(
        "redis+sentinel://{}/{MASTER_NAME}",
        hosts(&group.sentinel_urls())
    ));
}
