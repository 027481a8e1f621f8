//! `cargo run --example session_axum --features axum,tower-sessions`: an axum app on
//! tower-sessions with redkit's Redis store — a visit counter, login (with id rotation),
//! logout, the user's session list, and log-out-everywhere.
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH. Try it:
//! `curl -c jar -b jar localhost:3000/`, `curl -c jar -b jar -X POST localhost:3000/login/ann`,
//! `curl -c jar -b jar localhost:3000/sessions`, `curl -c jar -b jar -X POST localhost:3000/logout-everywhere`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use redkit::Redis;
use redkit::session::{RedisSessionStore, SessionConfig, SessionStore};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

type Store = Arc<RedisSessionStore>;
type Reply = Result<String, (StatusCode, String)>;

fn fail(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn home(session: Session) -> Reply {
    let visits: u64 = session.get("visits").await.map_err(fail)?.unwrap_or(0) + 1;
    session.insert("visits", visits).await.map_err(fail)?;
    let user: Option<String> = session.get("user_id").await.map_err(fail)?;
    Ok(format!(
        "hello {}, visit {visits}\n",
        user.as_deref().unwrap_or("anonymous")
    ))
}

async fn login(session: Session, Path(user): Path<String>) -> Reply {
    // a new id at every privilege change; the data comes along
    session.cycle_id().await.map_err(fail)?;
    session.insert("user_id", &user).await.map_err(fail)?;
    Ok(format!("logged in as {user}\n"))
}

async fn logout(session: Session) -> Reply {
    session.flush().await.map_err(fail)?;
    Ok("logged out\n".into())
}

async fn sessions(session: Session, State(store): State<Store>) -> Reply {
    let Some(user) = session.get::<String>("user_id").await.map_err(fail)? else {
        return Err((StatusCode::UNAUTHORIZED, "log in first\n".into()));
    };
    let list = store.sessions_of(&user).await.map_err(fail)?;
    Ok(format!("{user} has {} sessions\n", list.len()))
}

async fn logout_everywhere(session: Session, State(store): State<Store>) -> Reply {
    let Some(user) = session.get::<String>("user_id").await.map_err(fail)? else {
        return Err((StatusCode::UNAUTHORIZED, "log in first\n".into()));
    };
    let ended = store.logout_everywhere(&user, None).await.map_err(fail)?;
    session.flush().await.map_err(fail)?;
    Ok(format!("ended {ended} sessions of {user}\n"))
}

/// The app: every route behind the session layer, the store shared as state.
pub(crate) fn app(store: RedisSessionStore) -> Router {
    let store = Arc::new(store);
    let layer = SessionManagerLayer::new((*store).clone())
        .with_secure(false) // plain http on localhost; keep the default (true) in production
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
    Router::new()
        .route("/", get(home))
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions))
        .route("/logout-everywhere", post(logout_everywhere))
        .with_state(store)
        .layer(layer)
}

/// The store the app uses: 8-hour absolute timeout, `user_id` feeds the user index.
pub(crate) fn store(redis: &Redis, prefix: &str) -> RedisSessionStore {
    let config = SessionConfig::new()
        .prefix(prefix)
        .tower_user_key("user_id");
    RedisSessionStore::new(redis, config).expect("valid config")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _server;
    let redis = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Redis::connect(&url).await?,
        _ => {
            let server = redkit_testkit::Server::start();
            let redis = Redis::connect(&server.url()).await?;
            _server = server;
            redis
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(store(&redis, "example"))).await?;
    Ok(())
}
