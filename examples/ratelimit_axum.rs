//! `cargo run --example ratelimit_axum --features axum`: an axum app limited per client IP
//! to 5 requests per 10 s (fixed window) and 2 per second (GCRA), sharing its limits
//! with every other instance through Redis. It sends itself a few requests and prints the
//! answers; add `serve` to listen on 127.0.0.1:3000 instead (then try `curl -i`).
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH, else the in-memory limiter.
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

    let app = Router::new()
        .route("/api", get(|| async { "hello\n" }))
        .layer(RateLimitLayer::new(limiter, KeyExtractor::peer_ip()));

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

    // The same app, called in process as from 10.0.0.7.
    for i in 1..=4 {
        let mut req = Request::get("/api").body(Body::empty())?;
        req.extensions_mut()
            .insert(ConnectInfo("10.0.0.7:5000".parse::<SocketAddr>()?));
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
