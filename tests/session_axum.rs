//! The session_axum example over real HTTP, with a cookie jar per client: login rotates
//! the id and keeps the data, an old id stops working, the user's sessions are listed,
//! and log-out-everywhere ends them on every client; no key holds a session id.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../examples/session_axum.rs"]
#[allow(dead_code)]
mod example;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use redkit::core::redis::cmd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.1 client with a cookie jar.
struct Client {
    addr: SocketAddr,
    jar: BTreeMap<String, String>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            jar: BTreeMap::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n"
        );
        if !cookies.is_empty() {
            request.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if !name.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let mut parts = value.trim().split(';');
            let (k, v) = parts.next().unwrap().split_once('=').unwrap();
            let removed = parts.any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "max-age=0" || p.starts_with("expires=thu, 01 jan 1970")
            });
            if removed || v.is_empty() {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_string(), v.to_string());
            }
        }
        (status, body.to_string())
    }

    fn id(&self) -> Option<String> {
        self.jar.get("id").cloned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rotation_listing_and_logout_everywhere_over_http() {
    let redis = redkit_testkit::redis().await;
    flow(&redis, std::slice::from_ref(&redis)).await;
}

/// The same app on a 3-master cluster (the example's handle is the cluster one; every
/// node is searched for keys that hold a session id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_runs_on_a_cluster() {
    let cluster = redkit_testkit::Cluster::start();
    let redis = cluster.redis().await;
    let mut nodes = Vec::new();
    for node in cluster.nodes() {
        nodes.push(node.redis().await);
    }
    flow(&redis, &nodes).await;
}

/// Drives the example's app over HTTP on `redis`; `nodes` are standalone handles whose
/// keys together are every key of the deployment.
async fn flow(redis: &redkit::Redis, nodes: &[redkit::Redis]) {
    let prefix = redkit_testkit::prefix("web");
    let app = example::app(example::store(redis, &prefix));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut laptop = Client::new(addr);
    let mut phone = Client::new(addr);
    let mut seen_ids = Vec::new();

    assert_eq!(
        laptop.send("GET", "/").await,
        (200, "hello anonymous, visit 1\n".into())
    );
    let anonymous = laptop.id().expect("a session cookie");
    seen_ids.push(anonymous.clone());
    assert_eq!(
        laptop.send("GET", "/").await.1,
        "hello anonymous, visit 2\n"
    );

    assert_eq!(
        laptop.send("POST", "/login/ann").await,
        (200, "logged in as ann\n".into())
    );
    let logged_in = laptop.id().unwrap();
    assert_ne!(logged_in, anonymous, "login rotates the id");
    seen_ids.push(logged_in.clone());
    assert_eq!(
        laptop.send("GET", "/").await.1,
        "hello ann, visit 3\n",
        "data kept"
    );

    // the pre-login id is dead: replaying it starts from scratch
    let mut replay = Client::new(addr);
    replay.jar.insert("id".into(), anonymous.clone());
    assert_eq!(
        replay.send("GET", "/").await.1,
        "hello anonymous, visit 1\n"
    );

    phone.send("GET", "/").await;
    phone.send("POST", "/login/ann").await;
    seen_ids.push(phone.id().unwrap());
    assert_eq!(
        phone.send("GET", "/sessions").await.1,
        "ann has 2 sessions\n"
    );

    // no key, field name or value holds a session id
    let mut keys: Vec<(&redkit::Redis, String)> = Vec::new();
    for node in nodes {
        let found: Vec<String> = node
            .query(cmd("KEYS").arg(format!("{prefix}:*")))
            .await
            .unwrap();
        keys.extend(found.into_iter().map(|k| (node, k)));
    }
    assert!(keys.len() >= 3, "{keys:?}");
    for (node, key) in &keys {
        let dump: Vec<u8> = node.query(cmd("DUMP").arg(key)).await.unwrap();
        for id in &seen_ids {
            assert!(!key.contains(id.as_str()), "{key} holds a session id");
            let haystack = String::from_utf8_lossy(&dump);
            assert!(
                !haystack.contains(id.as_str()),
                "{key}'s value holds a session id"
            );
        }
    }

    let (status, body) = phone.send("POST", "/logout-everywhere").await;
    assert_eq!((status, body.as_str()), (200, "ended 2 sessions of ann\n"));
    assert_eq!(
        laptop.send("GET", "/").await.1,
        "hello anonymous, visit 1\n",
        "laptop ended"
    );
    assert_eq!(phone.send("GET", "/").await.1, "hello anonymous, visit 1\n");
    assert_eq!(phone.send("GET", "/sessions").await.0, 401);

    // a plain logout ends only that session
    laptop.send("POST", "/login/bob").await;
    phone.send("POST", "/login/bob").await;
    laptop.send("POST", "/logout").await;
    assert_eq!(
        phone.send("GET", "/sessions").await.1,
        "bob has 1 sessions\n"
    );
}
