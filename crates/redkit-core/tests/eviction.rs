//! The eviction policy read on connect, and the check that patterns which must not lose
//! keys (locks, jobs, sessions, rate-limit state) make when they are built.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use redkit_core::{Error, Redis, redis};
use redkit_testkit::Server;

#[tokio::test]
async fn an_evicting_policy_is_refused_and_noeviction_passes() {
    let plain = Server::start();
    let redis = plain.redis().await;
    assert_eq!(
        redis.server_info().maxmemory_policy.as_deref(),
        Some("noeviction")
    );
    assert_eq!(redis.server_info().evicts_keys(), Some(false));
    redis.ensure_no_eviction("lock", "two holders").unwrap();

    for policy in [
        "volatile-lru",
        "allkeys-lru",
        "volatile-ttl",
        "allkeys-random",
    ] {
        let server = Server::builder()
            .config(&format!("maxmemory-policy {policy}"))
            .start();
        let redis = server.redis().await;
        assert_eq!(
            redis.server_info().maxmemory_policy.as_deref(),
            Some(policy)
        );
        let err = redis
            .ensure_no_eviction("lock", "a second caller can take a held lock")
            .unwrap_err();
        assert!(matches!(err, Error::UnsupportedServer(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(policy), "{text}");
        assert!(
            text.contains("noeviction") && text.contains("allow_eviction"),
            "{text}"
        );
        assert!(
            text.contains("a second caller can take a held lock"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_server_that_hides_its_policy_is_treated_as_unknown() {
    let server = Server::builder()
        .config("maxmemory-policy allkeys-lfu")
        .start();
    let admin = server.redis().await;
    // A user that may read `INFO server` (the version check needs it) but not
    // `INFO memory`, as some managed services set it up.
    let _: () = admin
        .query(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("app")
                .arg("on")
                .arg(">secret")
                .arg("~*")
                .arg("&*")
                .arg("+@all")
                .arg("-info")
                .arg("+info|server"),
        )
        .await
        .unwrap();
    let url = format!("redis://app:secret@127.0.0.1:{}", server.port());
    let hidden = Redis::connect(&url).await.unwrap();
    assert_eq!(hidden.server_info().maxmemory_policy, None);
    assert_eq!(hidden.server_info().evicts_keys(), None);
    hidden.ensure_no_eviction("queue", "jobs vanish").unwrap();
    // The admin handle saw the policy and refuses.
    assert!(admin.ensure_no_eviction("queue", "jobs vanish").is_err());
}

#[tokio::test]
async fn an_evicting_policy_on_any_cluster_master_is_refused() {
    // the first seed keeps noeviction; another master evicts
    let cluster = redkit_testkit::Cluster::start();
    let evicting = &cluster.nodes()[2];
    assert!(
        evicting
            .cli(&["config", "set", "maxmemory-policy", "allkeys-lru"])
            .contains("OK")
    );
    let redis = cluster.redis().await;
    assert_eq!(
        redis.server_info().maxmemory_policy.as_deref(),
        Some("allkeys-lru")
    );
    let err = redis
        .ensure_no_eviction("lock", "a second caller can take a held lock")
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedServer(_)), "{err:?}");

    // every master with noeviction passes
    evicting.cli(&["config", "set", "maxmemory-policy", "noeviction"]);
    let redis = cluster.redis().await;
    assert_eq!(
        redis.server_info().maxmemory_policy.as_deref(),
        Some("noeviction")
    );
    redis.ensure_no_eviction("lock", "two holders").unwrap();
}
