//! `cargo run --example ratelimit_axum --features axum`: an axum app limited per client IP
//! to 5 requests per 10 s (fixed window) and 2 per second (GCRA), sharing its limits
//! with every other instance through Redis. It sends itself a few requests and prints the
//! answers; add `serve` to listen on 127.0.0.1:3000 instead (then try `curl -i`).
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH, else the in-memory limiter.
//!
//! The key is the peer IP (IPv6 clients by their /64). Behind reverse proxies, key by the
//! address the proxies forward instead, naming how many you run:
//! `KeyExtractor::forwarded_for(1)` behind one proxy that appends to `X-Forwarded-For`
//! (nginx's `$proxy_add_x_forwarded_for`). Never take the header's leftmost entry: the
//! client writes it. Set `TRUSTED_PROXIES=1` to run the example that way.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use redkit::Redis;
use redkit::ratelimit::tower::{KeyExtractor, RateLimitLayer};
use redkit::ratelimit::{Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limits = [
        Limit::fixed_window(5, Duration::from_secs(10)).name("burst"),
        Limit::gcra(2, Duration::from_secs(1)).name("steady"),
    ];
    let _server;
    let limiter: Arc<dyn RateLimiter> = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            Arc::new(redis_limiter(Redis::connect(&url).await?, &limits)?)
        }
        _ if redkit_testkit::redis_server_available() => {
            let server = redkit_testkit::Server::start();
            let redis = Redis::connect(&server.url()).await?;
            _server = server;
            Arc::new(redis_limiter(redis, &limits)?)
        }
        _ => {
            println!("no Redis available: using the in-memory limiter");
            let mut b = MemoryRateLimiter::builder();
            for l in &limits {
                b = b.limit(l.clone());
            }
            Arc::new(b.build()?)
        }
    };

    // Behind N proxies: the N-th X-Forwarded-For entry from the right; requests that did
    // not come through them (too few entries) are refused with 400.
    let trusted_proxies: usize = std::env::var("TRUSTED_PROXIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let key = if trusted_proxies > 0 {
        KeyExtractor::forwarded_for(trusted_proxies)
    } else {
        KeyExtractor::peer_ip()
    };
    let app = Router::new()
        .route("/api", get(|| async { "hello\n" }))
        .layer(RateLimitLayer::new(limiter, key));

    if std::env::args().any(|a| a == "serve") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("listening on http://127.0.0.1:3000/api");
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await?;
        return Ok(());
    }

    // The same app, called in process as from 10.0.0.7 (through a proxy at 10.0.0.2 when
    // TRUSTED_PROXIES=1; the client's made-up leftmost entries change nothing).
    for i in 1..=4 {
        let mut req = Request::get("/api")
            .header("x-forwarded-for", format!("192.0.2.{i}, 10.0.0.7"))
            .body(Body::empty())?;
        let peer = if trusted_proxies > 0 {
            "10.0.0.2:5000"
        } else {
            "10.0.0.7:5000"
        };
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>()?));
        let resp = app.clone().oneshot(req).await?;
        let h = resp.headers();
        println!(
            "request {i}: {} RateLimit: {} {}",
            resp.status(),
            h.get("ratelimit")
                .map_or("-", |v| v.to_str().unwrap_or("?")),
            h.get("retry-after")
                .map(|v| format!("Retry-After: {}", v.to_str().unwrap_or("?")))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

fn redis_limiter(redis: Redis, limits: &[Limit]) -> redkit::ratelimit::Result<RedisRateLimiter> {
    let mut b = RedisRateLimiter::builder(redis).prefix("example");
    for l in limits {
        b = b.limit(l.clone());
    }
    b.build()
}
