//! A Redis Cluster over TLS with a private CA: the shared connection and the dedicated
//! pool both trust the configured CA.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

use redkit_core::{Redis, RedisConfig, redis};
use redkit_testkit::{Server, TlsFiles};

#[tokio::test]
async fn a_tls_cluster_with_a_private_ca_serves_shared_and_dedicated_connections() {
    let dir = std::env::temp_dir().join(format!("redkit-tls-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = TlsFiles::generate(&dir);
    let nodes: Vec<Server> = (0..3)
        .map(|_| {
            Server::builder()
                .tls_with(files.clone())
                .config("cluster-enabled yes")
                .config("cluster-config-file nodes.conf")
                .config("cluster-node-timeout 2000")
                .config("tls-cluster yes")
                .start()
        })
        .collect();
    let mut create = Command::new("redis-cli");
    create
        .arg("--tls")
        .arg("--cacert")
        .arg(&files.ca_cert)
        .args(["--cluster", "create"]);
    for n in &nodes {
        create.arg(n.addr());
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in &nodes {
        while !n.cli(&["cluster", "info"]).contains("cluster_state:ok")
            || n.cli(&["cluster", "slots"]).matches("127.0.0.1").count() < 3
        {
            assert!(Instant::now() < deadline, "the TLS cluster did not form");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let config = RedisConfig::builder()
        .cluster(nodes.iter().map(Server::url).collect::<Vec<_>>())
        .tls_root_ca_pem(files.ca_pem.clone().into_bytes())
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let redis = Redis::from_config(config).await.unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg("{tls}k").arg("v"))
        .await
        .unwrap();
    let mut dedicated = redis.dedicated().await.expect("a dedicated TLS connection");
    let v: String = dedicated
        .query(redis::cmd("GET").arg("{tls}k"))
        .await
        .unwrap();
    assert_eq!(v, "v");
    let _ = std::fs::remove_dir_all(&dir);
}
