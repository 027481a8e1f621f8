//! `tower_sessions_core::SessionStore` for [`RedisSessionStore`] (feature `tower-sessions`).

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use redkit_core::Script;
use redkit_core::redis::Value;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store;

use crate::redis::Commit;
use crate::{RedisSessionStore, SessionId, SessionStore};

static TOWER: LazyLock<Script> =
    LazyLock::new(|| Script::new("tower", include_str!("../lua/tower.lua")));

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl RedisSessionStore {
    fn tower_id(id: &Id) -> SessionId {
        SessionId::presented(id.to_string())
    }

    /// The user a record is logged in as, from the configured data key.
    fn tower_user(&self, record: &Record) -> Option<String> {
        let key = self.config().tower_user_key.as_deref()?;
        match record.data.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    async fn tower_call(&self, op: &str, record: &Record) -> session_store::Result<Value> {
        let user = self.tower_user(record);
        if let Some(u) = &user {
            crate::check_user(u).map_err(backend)?;
        }
        let id = Self::tower_id(&record.id);
        let mut call = TOWER
            .call()
            .key(self.session_key(&id.handle()).map_err(backend)?.as_str())
            .arg(op)
            .arg(ms(record.expiry_date))
            .arg(self.config().absolute_ms())
            .arg(user.as_deref().unwrap_or(""));
        let mut size = 0;
        for (k, v) in &record.data {
            let json = serde_json::to_string(v)
                .map_err(|e| session_store::Error::Encode(e.to_string()))?;
            size += k.len() + json.len();
            call = call.arg(format!("d:{k}")).arg(json);
        }
        if size > self.config().max_size {
            return Err(backend(crate::Error::TooLarge {
                size,
                limit: self.config().max_size,
            }));
        }
        call.invoke(self.redis_handle()).await.map_err(backend)
    }
}

#[async_trait]
impl tower_sessions_core::SessionStore for RedisSessionStore {
    /// Writes a new record under a fresh id: a taken id is re-rolled, never overwritten.
    /// A logged-in record is indexed before it is written and checked afterwards (as a
    /// rotation is), so a crash leaves at most a dangling index entry; a
    /// `logout_everywhere` of the user in between fails the create (the session is
    /// deleted), a revocation of the entry alone makes it start again under a fresh id.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let user = self.tower_user(record);
        if let Some(u) = &user {
            crate::check_user(u).map_err(backend)?;
        }
        // the user's logout epoch when the first id was indexed
        let mut epoch: Option<String> = None;
        for _ in 0..8 {
            let handle = Self::tower_id(&record.id).handle();
            if let Some(u) = &user {
                let now = self.index_add(u, &handle).await.map_err(backend)?;
                epoch.get_or_insert(now);
            }
            crate::hooks::point("tower:step", handle.as_str()).await;
            let created = matches!(self.tower_call("create", record).await?, Value::Int(1));
            match &user {
                Some(u) if created => {
                    let commit = self
                        .index_commit(u, &handle, &handle, epoch.as_deref())
                        .await
                        .map_err(backend)?;
                    if commit == Commit::Done {
                        return Ok(());
                    }
                    // revoked between the two steps: this id must not live
                    SessionStore::delete(self, &Self::tower_id(&record.id))
                        .await
                        .map_err(backend)?;
                    if commit == Commit::LoggedOut {
                        return Err(backend(crate::Error::Unknown));
                    }
                }
                Some(u) => {
                    self.index_remove(u, &handle).await.map_err(backend)?;
                }
                None if created => return Ok(()),
                None => {}
            }
            record.id = Id::default();
        }
        Err(backend("eight fresh session ids in a row were taken"))
    }

    /// Updates a live record only: a session deleted or expired meanwhile stays gone. A
    /// save that logs a user in adds the session to the user's index before it writes
    /// (lua/tower.lua answers INDEX first), so no logged-in session is ever unlisted.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let handle = Self::tower_id(&record.id).handle();
        let user = self.tower_user(record);
        let mut op = "save";
        for _ in 0..2 {
            match self.tower_call(op, record).await? {
                Value::SimpleString(s) if s == "INDEX" && op == "save" => {
                    let u = user
                        .as_deref()
                        .ok_or_else(|| backend("INDEX asked for a record without a user"))?;
                    self.index_add(u, &handle).await.map_err(backend)?;
                    crate::hooks::point("tower:step", handle.as_str()).await;
                    op = "save!";
                }
                Value::Array(prev) => {
                    let previous = match prev.first() {
                        Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                        _ => None,
                    };
                    // after the write: a crash before this leaves a dangling entry only
                    if let Some(p) = previous.filter(|p| Some(p) != user.as_ref()) {
                        self.index_remove(&p, &handle).await.map_err(backend)?;
                    }
                    return Ok(());
                }
                _ => {
                    if let (Some(u), "save!") = (&user, op) {
                        self.index_remove(u, &handle).await.map_err(backend)?;
                    }
                    tracing::debug!(
                        session = handle.short(),
                        "save of a session that is gone: not resurrected"
                    );
                    return Ok(());
                }
            }
        }
        Err(backend(
            "the session's user changed on every attempt to save it",
        ))
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let sid = Self::tower_id(id);
        let reply: Value = TOWER
            .call()
            .key(self.session_key(&sid.handle()).map_err(backend)?.as_str())
            .arg("load")
            .arg(0)
            .arg(0)
            .arg("")
            .invoke(self.redis_handle())
            .await
            .map_err(backend)?;
        let Value::Array(values) = reply else {
            return Ok(None);
        };
        let mut data = HashMap::new();
        let mut expiry = None;
        for pair in values.chunks(2) {
            let [Value::BulkString(k), Value::BulkString(v)] = pair else {
                continue;
            };
            let k = String::from_utf8_lossy(k);
            if let Some(name) = k.strip_prefix("d:") {
                let value = serde_json::from_slice(v)
                    .map_err(|e| session_store::Error::Decode(format!("field `{name}`: {e}")))?;
                data.insert(name.to_string(), value);
            } else if k == "_e" {
                let ms: i128 = String::from_utf8_lossy(v)
                    .parse()
                    .map_err(|_| session_store::Error::Decode("a bad expiry".into()))?;
                expiry = OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok();
            }
        }
        let expiry_date = expiry
            .ok_or_else(|| session_store::Error::Decode("a session without an expiry".into()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    /// Deletes the record and its entry in its user's index.
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        SessionStore::delete(self, &Self::tower_id(id))
            .await
            .map(|_| ())
            .map_err(backend)
    }
}
