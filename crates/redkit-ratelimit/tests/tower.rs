//! The tower Layer: 429 with Retry-After, IETF RateLimit headers and problem+json.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use redkit_ratelimit::tower::{HeaderStyle, KeyExtractor, RateLimitLayer};
use redkit_ratelimit::{Limit, RateLimiter, RedisRateLimiter};
use tower::{Layer, ServiceExt, service_fn};

async fn ok(_req: Request<()>) -> Result<Response<String>, Infallible> {
    Ok(Response::new("hello".to_string()))
}

/// The status a service answers `req` with.
async fn status<S>(svc: &S, req: Request<()>) -> StatusCode
where
    S: tower::Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone,
    S::Future: Send,
{
    svc.clone().oneshot(req).await.unwrap().status()
}

fn request(key: Option<&str>) -> Request<()> {
    let mut b = Request::builder().uri("/");
    if let Some(k) = key {
        b = b.header("x-api-key", k);
    }
    b.body(()).unwrap()
}

async fn limiter(limits: Vec<Limit>) -> Arc<dyn RateLimiter> {
    let mut b = RedisRateLimiter::builder(redkit_testkit::redis().await)
        .prefix(redkit_testkit::prefix("rl-tower"));
    for l in limits {
        b = b.limit(l);
    }
    Arc::new(b.build().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_requests_get_429_with_the_ietf_headers() {
    let l = limiter(vec![
        Limit::fixed_window(2, Duration::from_secs(60)).name("minute"),
        Limit::gcra(100, Duration::from_secs(3600)).name("hour"),
    ])
    .await;
    let svc = RateLimitLayer::new(l, KeyExtractor::header("x-api-key")).layer(service_fn(ok));
    let key = redkit_testkit::prefix("client");
    let resp = svc.clone().oneshot(request(Some(&key))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(
        h["ratelimit-policy"],
        "\"minute\";q=2;w=60, \"hour\";q=100;w=3600"
    );
    let rl = h["ratelimit"].to_str().unwrap();
    assert!(rl.starts_with("\"minute\";r=1;t="), "{rl}");
    assert!(rl.contains("\"hour\";r=99;t=36"), "{rl}");

    svc.clone().oneshot(request(Some(&key))).await.unwrap();
    let resp = svc.clone().oneshot(request(Some(&key))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = resp.headers();
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(h["content-type"], "application/problem+json");
    let rl = h["ratelimit"].to_str().unwrap();
    assert!(rl.starts_with(&format!("\"minute\";r=0;t={retry}")), "{rl}");
    let body: serde_json::Value = serde_json::from_str(resp.body()).unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["violated-policies"], serde_json::json!(["minute"]));

    // another key is unaffected; a key with braces is escaped, not refused
    let other = svc.clone().oneshot(request(Some("{x}"))).await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_key_pass_or_get_400_when_required() {
    let l = limiter(vec![Limit::fixed_window(1, Duration::from_secs(60))]).await;
    let open =
        RateLimitLayer::new(l.clone(), KeyExtractor::header("x-api-key")).layer(service_fn(ok));
    for _ in 0..3 {
        assert_eq!(status(&open, request(None)).await, StatusCode::OK);
    }
    let strict =
        RateLimitLayer::new(l, KeyExtractor::header("x-api-key").required()).layer(service_fn(ok));
    assert_eq!(
        status(&strict, request(None)).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_ip_is_the_key_and_a_dead_store_answers_503() {
    let mut server = redkit_testkit::Server::start();
    let redis = redkit_core::Redis::from_config(
        server
            .config()
            .response_timeout(Duration::from_millis(300))
            .reconnect_retries(1)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let l = RedisRateLimiter::builder(redis)
        .limit(Limit::fixed_window(1, Duration::from_secs(60)))
        .deadline(Duration::from_millis(500))
        .build()
        .unwrap();
    let svc = RateLimitLayer::new(Arc::new(l), KeyExtractor::peer_ip()).layer(service_fn(ok));
    let from = |ip: &str| {
        let mut r = request(None);
        r.extensions_mut().insert(
            format!("{ip}:4000")
                .parse::<std::net::SocketAddr>()
                .unwrap(),
        );
        r
    };
    assert_eq!(status(&svc, from("10.0.0.1")).await, StatusCode::OK);
    assert_eq!(
        status(&svc, from("10.0.0.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&svc, from("10.0.0.2")).await, StatusCode::OK);
    server.kill();
    assert_eq!(
        status(&svc, from("10.0.0.3")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_headers_are_opt_in() {
    let l = limiter(vec![Limit::fixed_window(2, Duration::from_secs(60))]).await;
    let ietf = RateLimitLayer::new(l.clone(), KeyExtractor::global()).layer(service_fn(ok));
    let resp = ietf.oneshot(request(None)).await.unwrap();
    assert!(resp.headers().get("x-ratelimit-limit").is_none());
    let both = RateLimitLayer::new(l, KeyExtractor::global())
        .header_style(HeaderStyle::IetfAndLegacy)
        .layer(service_fn(ok));
    let resp = both.clone().oneshot(request(None)).await.unwrap();
    let h = resp.headers();
    assert_eq!(h["x-ratelimit-limit"], "2");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert!(h.contains_key("ratelimit"));
    let denied = both.oneshot(request(None)).await.unwrap();
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        denied.headers()["x-ratelimit-reset"],
        denied.headers()["retry-after"]
    );
}

/// Issue 18 item 19: behind one appending proxy (nginx `$proxy_add_x_forwarded_for`) the
/// client writes the left part of `X-Forwarded-For` itself. A new made-up address per
/// request must not buy a new bucket: the key is the entry the trusted proxy appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_choose_its_key_through_x_forwarded_for() {
    let l = limiter(vec![Limit::fixed_window(1, Duration::from_secs(60))]).await;
    let svc = RateLimitLayer::new(l, KeyExtractor::forwarded_for(1)).layer(service_fn(ok));
    let from = |spoofed: &str| {
        let mut req = Request::builder()
            .uri("/")
            .header("x-forwarded-for", format!("{spoofed}, 203.0.113.9"))
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert("10.0.0.2:443".parse::<std::net::SocketAddr>().unwrap());
        req
    };
    assert_eq!(status(&svc, from("198.51.100.1")).await, StatusCode::OK);
    assert_eq!(
        status(&svc, from("198.51.100.2")).await,
        StatusCode::TOO_MANY_REQUESTS,
        "a made-up leftmost address got a fresh bucket"
    );
    // a garbage value where the proxy's entry belongs is refused, not keyed by the proxy
    let mut req = Request::builder()
        .uri("/")
        .header("x-forwarded-for", "198.51.100.3, not-an-ip")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert("10.0.0.2:443".parse::<std::net::SocketAddr>().unwrap());
    assert_eq!(status(&svc, req).await, StatusCode::BAD_REQUEST);
}

/// `Forwarded` (RFC 7239) read from the right, IPv6 clients keyed by their /64, and the
/// documented alternative to refusing unusable headers: one named bucket for them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_clients_are_keyed_by_address_and_network() {
    use redkit_ratelimit::tower::Unusable;
    let l = limiter(vec![Limit::fixed_window(1, Duration::from_secs(60))]).await;
    let svc = RateLimitLayer::new(
        l,
        KeyExtractor::forwarded(1).on_unusable(Unusable::SharedKey("unusable-forwarded".into())),
    )
    .layer(service_fn(ok));
    let with = |value: &str| {
        Request::builder()
            .uri("/")
            .header("forwarded", value)
            .body(())
            .unwrap()
    };
    let v6 = |host: &str| format!("for=\"[2001:db8:{host}]:4711\"");
    assert_eq!(status(&svc, with(&v6("7:1::1"))).await, StatusCode::OK);
    // another address of the same /64, behind a spoofed element
    let spoofed = format!("for=192.0.2.200, {}", v6("7:1::ffff"));
    assert_eq!(
        status(&svc, with(&spoofed)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&svc, with(&v6("7:2::1"))).await, StatusCode::OK);
    // unusable headers share one bucket instead of being refused
    assert_eq!(status(&svc, with("for=unknown")).await, StatusCode::OK);
    assert_eq!(
        status(&svc, Request::builder().uri("/").body(()).unwrap()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(KeyExtractor::peer_ip().ipv6_prefix(0).is_err());
    assert!(KeyExtractor::peer_ip().ipv6_prefix(129).is_err());
}
