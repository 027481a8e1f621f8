//! A pipeline on a cluster while a slot is being migrated: a command that ran must not
//! run again when another command of its slot group is redirected.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use redkit_core::{Pipeline, redis};
use redkit_testkit::{Cluster, Server};

fn node_id(node: &Server) -> String {
    node.cli(&["cluster", "myid"]).trim().to_string()
}

#[tokio::test]
async fn a_pipeline_runs_each_command_once_while_its_slot_migrates() {
    let cluster = Cluster::start();
    let redis = cluster.redis().await;
    let (present, absent) = ("{reshard}present", "{reshard}absent");
    let slot = redkit_core::key_slot(present.as_bytes()).to_string();
    let src = &cluster.nodes()[cluster.master_index(present)];
    let dst = cluster
        .nodes()
        .iter()
        .find(|n| n.port() != src.port())
        .unwrap();
    assert_eq!(src.cli(&["rpush", present, "before"]).trim(), "1");
    // the slot is half migrated: `present` is still on the source, `absent` (no such
    // key on the source) is answered with ASK
    assert!(
        dst.cli(&["cluster", "setslot", &slot, "importing", &node_id(src)])
            .contains("OK")
    );
    assert!(
        src.cli(&["cluster", "setslot", &slot, "migrating", &node_id(dst)])
            .contains("OK")
    );

    let mut pipe = Pipeline::new();
    pipe.cmd(redis::cmd("RPUSH").arg(present).arg("once").clone());
    pipe.cmd(redis::cmd("INCR").arg(absent).clone());
    let result = pipe.execute(&redis).await;

    let on_src = src.cli(&["lrange", present, "0", "-1"]);
    let on_dst = dst.cli(&["cluster", "countkeysinslot", &slot]);
    // the RPUSH ran at most once, wherever it ran
    let pushes = on_src.lines().filter(|l| l.trim() == "once").count();
    assert!(
        pushes <= 1,
        "RPUSH ran {pushes} times on the source (pipeline answered {result:?}); \
         the target holds {} keys of the slot",
        on_dst.trim()
    );
    // here the group cannot run on either node (one key on each): it fails as a whole,
    // with an error a caller may retry, and nothing ran
    let err = result.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(pushes, 0, "{on_src}");
    assert_eq!(on_dst.trim(), "0");

    // once the migration is over (the slot stays on the source), the same pipeline
    // runs each command once
    for node in [src, dst] {
        assert!(
            node.cli(&["cluster", "setslot", &slot, "stable"])
                .contains("OK")
        );
    }
    let values = pipe.execute(&redis).await.unwrap();
    assert_eq!(values, [redis::Value::Int(2), redis::Value::Int(1)]);
    assert_eq!(src.cli(&["lrange", present, "0", "-1"]).lines().count(), 2);
}

#[tokio::test]
async fn a_cluster_url_with_an_empty_password_connects_like_a_plain_url() {
    let cluster = redkit_testkit::cluster();
    let addr = cluster.nodes()[0].addr();
    for url in [
        format!("redis+cluster://:@{addr}"),
        format!("redis://:@{addr}"),
    ] {
        redkit_core::Redis::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}
