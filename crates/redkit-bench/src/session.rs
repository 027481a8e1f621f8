//! `session`: operations per second with `C` concurrent callers (default 64) on one
//! handle over 1000 sessions of ten fields (~500 bytes), each caller awaiting its call.
//! Modes, each next to what a hand-written store sends on the same connection:
//! - `load` (hash layout) and `load-json` (JSON layout): redkit `load()` (one `HGETALL`,
//!   plus the touch script when a touch is due) against raw `GET`, raw `GETEX PX` (read
//!   and slide in one command) and raw `HGETALL` of the same ten fields;
//! - `save` / `save-json`: redkit `save()` after changing one field (the hash layout
//!   writes only that field, the JSON layout the whole object; both only to a live
//!   session) against raw `SETEX` of the whole JSON blob.
//!
//! Rounds rotate the order; the median is reported.

use std::sync::Arc;

use redkit_core::{Redis, RedisConfig, redis};
use redkit_session::{Layout, RedisSessionStore, Session, SessionConfig, SessionId, SessionStore};

use crate::{Bench, report, run_concurrent};

const SESSIONS: usize = 1000;

fn blob() -> serde_json::Value {
    let fields: serde_json::Map<String, serde_json::Value> = (0..10)
        .map(|f| (format!("field{f}"), serde_json::json!("x".repeat(40))))
        .collect();
    serde_json::Value::Object(fields)
}

type Sessions = (Arc<Vec<SessionId>>, Arc<Vec<Session>>);

struct Setup {
    fields: Sessions,
    json: Sessions,
    raw: Arc<Vec<String>>,
}

async fn sessions(store: &RedisSessionStore) -> Sessions {
    let mut ids = Vec::with_capacity(SESSIONS);
    let mut sessions = Vec::with_capacity(SESSIONS);
    let blob = blob();
    for _ in 0..SESSIONS {
        let mut s: Session = store.create().await.expect("create");
        for (k, v) in blob.as_object().expect("object") {
            s.insert(k, v).expect("insert");
        }
        store.save(&mut s).await.expect("save");
        ids.push(s.id().clone());
        sessions.push(s);
    }
    (Arc::new(ids), Arc::new(sessions))
}

async fn setup(redis: &Redis, fields: &RedisSessionStore, json: &RedisSessionStore) -> Setup {
    let mut raw = Vec::with_capacity(SESSIONS);
    let blob = blob();
    for i in 0..SESSIONS {
        let key = format!("bench:sess:raw:{i}");
        let _: () = redis
            .query(
                redis::cmd("SETEX")
                    .arg(&key)
                    .arg(1800)
                    .arg(blob.to_string()),
            )
            .await
            .expect("SETEX");
        let mut hset = redis::cmd("HSET");
        hset.arg(format!("{key}:h"));
        for (k, v) in blob.as_object().expect("object") {
            hset.arg(k).arg(v.to_string());
        }
        let _: () = redis.query(&hset).await.expect("HSET");
        raw.push(key);
    }
    Setup {
        fields: sessions(fields).await,
        json: sessions(json).await,
        raw: Arc::new(raw),
    }
}

async fn measure(
    mode: &str,
    b: &Bench,
    redis: &Redis,
    stores: &[Arc<RedisSessionStore>; 2],
    data: &Setup,
) -> f64 {
    let json = mode.ends_with("-json");
    let (ids, sessions) = if json {
        data.json.clone()
    } else {
        data.fields.clone()
    };
    let raw = data.raw.clone();
    let redis = redis.clone();
    let store = stores[usize::from(json)].clone();
    let mode = mode.trim_end_matches("-json");
    let blob = Arc::new(blob().to_string());
    match mode {
        "load" => {
            run_concurrent(b.n, b.c, move |i| {
                let (store, ids) = (store.clone(), ids.clone());
                async move {
                    assert!(store.load(&ids[i % SESSIONS]).await.unwrap().is_some());
                }
            })
            .await
        }
        "raw-get" => {
            run_concurrent(b.n, b.c, move |i| {
                let (redis, raw) = (redis.clone(), raw.clone());
                async move {
                    let v: Option<String> = redis
                        .query(redis::cmd("GET").arg(&raw[i % SESSIONS]))
                        .await
                        .unwrap();
                    let _: serde_json::Value = serde_json::from_str(&v.unwrap()).unwrap();
                }
            })
            .await
        }
        "raw-hgetall" => {
            run_concurrent(b.n, b.c, move |i| {
                let (redis, raw) = (redis.clone(), raw.clone());
                async move {
                    let key = format!("{}:h", raw[i % SESSIONS]);
                    let v: Vec<(String, String)> =
                        redis.query(redis::cmd("HGETALL").arg(key)).await.unwrap();
                    assert!(!v.is_empty());
                }
            })
            .await
        }
        "raw-getex" => {
            run_concurrent(b.n, b.c, move |i| {
                let (redis, raw) = (redis.clone(), raw.clone());
                async move {
                    let v: Option<String> = redis
                        .query(
                            redis::cmd("GETEX")
                                .arg(&raw[i % SESSIONS])
                                .arg("PX")
                                .arg(1_800_000),
                        )
                        .await
                        .unwrap();
                    let _: serde_json::Value = serde_json::from_str(&v.unwrap()).unwrap();
                }
            })
            .await
        }
        "save" => {
            run_concurrent(b.n, b.c, move |i| {
                let (store, sessions) = (store.clone(), sessions.clone());
                async move {
                    // a session as a request has it: loaded, one field changed
                    let mut s = sessions[i % SESSIONS].clone();
                    s.insert("field3", &i).unwrap();
                    store.save(&mut s).await.unwrap();
                }
            })
            .await
        }
        _ => {
            run_concurrent(b.n, b.c, move |i| {
                let (redis, raw, blob) = (redis.clone(), raw.clone(), blob.clone());
                async move {
                    let _: () = redis
                        .query(
                            redis::cmd("SETEX")
                                .arg(&raw[i % SESSIONS])
                                .arg(1800)
                                .arg(blob.as_str()),
                        )
                        .await
                        .unwrap();
                }
            })
            .await
        }
    }
}

pub(crate) async fn run(b: &Bench) {
    let rounds = crate::env_usize("ROUNDS").unwrap_or(5).max(1);
    let config = RedisConfig::builder().url(&b.url).build().expect("config");
    let redis = Redis::from_config(config).await.expect("connect");
    let prefix = format!("bench-sess-{}", std::process::id());
    let config = SessionConfig::new().prefix(prefix);
    let stores = [
        Arc::new(RedisSessionStore::new(&redis, config.clone()).expect("store")),
        Arc::new(RedisSessionStore::new(&redis, config.layout(Layout::Json)).expect("store")),
    ];
    let data = setup(&redis, &stores[0], &stores[1]).await;
    for group in [
        ["raw-get", "raw-getex", "raw-hgetall", "load", "load-json"].as_slice(),
        ["raw-setex", "save", "save-json"].as_slice(),
    ] {
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); group.len()];
        for round in 0..rounds {
            for k in 0..group.len() {
                let idx = (round + k) % group.len();
                results[idx].push(measure(group[idx], b, &redis, &stores, &data).await);
            }
        }
        for (mode, mut r) in group.iter().zip(results) {
            r.sort_by(f64::total_cmp);
            let peer = if mode.starts_with("raw") {
                "redis-rs"
            } else {
                "redkit"
            };
            report(peer, "session", mode, b.n, b.c, "ops_per_s", r[r.len() / 2]);
        }
    }
}
