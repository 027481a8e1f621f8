//! A loaded session: its data as JSON fields, with the changes a save will write.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result, SessionHandle, SessionId};

/// The longest field name, in bytes.
pub(crate) const MAX_FIELD_NAME: usize = 256;

/// The client a session was logged in from: shown in a user's session list, never used to
/// bind the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The client's IP address.
    pub ip: Option<String>,
}

impl ClientInfo {
    /// Details of a client; either may be absent.
    pub fn new(user_agent: Option<String>, ip: Option<String>) -> ClientInfo {
        ClientInfo { user_agent, ip }
    }
}

/// A session: its id, its data (JSON values by field name), the changes to save, and
/// its timestamps.
#[derive(Clone, PartialEq)]
pub struct Session {
    pub(crate) id: SessionId,
    pub(crate) fields: BTreeMap<String, String>,
    pub(crate) changes: BTreeMap<String, Option<String>>,
    pub(crate) user: Option<String>,
    pub(crate) client: ClientInfo,
    pub(crate) created_ms: i64,
    pub(crate) touched_ms: i64,
    pub(crate) deadline_ms: i64,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .field("changed", &self.changes.keys().collect::<Vec<_>>())
            .finish()
    }
}

pub(crate) fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Session {
    pub(crate) fn new(id: SessionId, created_ms: i64, deadline_ms: i64) -> Session {
        Session {
            id,
            fields: BTreeMap::new(),
            changes: BTreeMap::new(),
            user: None,
            client: ClientInfo::default(),
            created_ms,
            touched_ms: created_ms,
            deadline_ms,
        }
    }

    /// The id to send to the client (in a `Secure`, `HttpOnly` cookie).
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The handle the store knows this session by.
    pub fn handle(&self) -> SessionHandle {
        self.id.handle()
    }

    /// The user it is logged in as.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The client it was logged in from.
    pub fn client(&self) -> &ClientInfo {
        &self.client
    }

    /// When the session started.
    pub fn created_at(&self) -> SystemTime {
        time_of(self.created_ms)
    }

    /// When it was last touched.
    pub fn last_seen(&self) -> SystemTime {
        time_of(self.touched_ms)
    }

    /// When it ends at the latest (its absolute timeout).
    pub fn deadline(&self) -> SystemTime {
        time_of(self.deadline_ms)
    }

    /// A field's value (including unsaved changes), decoded. A value that does not decode
    /// as `T` is an [`Error::Codec`]; the session stays usable.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.get_raw(name) {
            None => Ok(None),
            Some(json) => serde_json::from_str(json)
                .map(Some)
                .map_err(|e| Error::Codec(format!("field `{name}`: {e}"))),
        }
    }

    /// A field's JSON text (including unsaved changes).
    pub fn get_raw(&self, name: &str) -> Option<&str> {
        match self.changes.get(name) {
            Some(change) => change.as_deref(),
            None => self.fields.get(name).map(String::as_str),
        }
    }

    /// Sets a field; written by the next save.
    pub fn insert<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<()> {
        check_field(name)?;
        let json = serde_json::to_string(value)
            .map_err(|e| Error::Codec(format!("field `{name}`: {e}")))?;
        self.changes.insert(name.to_string(), Some(json));
        Ok(())
    }

    /// Removes a field; the next save removes it from the store.
    pub fn remove(&mut self, name: &str) {
        if self.get_raw(name).is_some() {
            self.changes.insert(name.to_string(), None);
        }
    }

    /// Reads and removes a field (a flash message, a one-time value): gone from the
    /// store once the session is saved.
    pub fn take<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>> {
        let value = self.get(name)?;
        self.remove(name);
        Ok(value)
    }

    /// The field names (including unsaved changes).
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .fields
            .keys()
            .map(String::as_str)
            .filter(|k| !matches!(self.changes.get(*k), Some(None)))
            .collect();
        for (k, v) in &self.changes {
            if v.is_some() && !self.fields.contains_key(k) {
                keys.push(k);
            }
        }
        keys.sort_unstable();
        keys
    }

    /// Whether there are unsaved changes.
    pub fn is_modified(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The size the session will have once saved: field names and values in bytes.
    pub fn size(&self) -> usize {
        self.keys()
            .iter()
            .map(|k| k.len() + self.get_raw(k).map_or(0, str::len))
            .sum()
    }

    /// The data with unsaved changes applied, as one JSON object.
    pub(crate) fn merged_json(&self) -> String {
        let mut out = String::from("{");
        for (i, k) in self.keys().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::String((*k).to_string()).to_string());
            out.push(':');
            out.push_str(self.get_raw(k).unwrap_or("null"));
        }
        out.push('}');
        out
    }

    /// Folds saved changes into the fields.
    pub(crate) fn commit(&mut self) {
        for (k, v) in std::mem::take(&mut self.changes) {
            match v {
                Some(v) => self.fields.insert(k, v),
                None => self.fields.remove(&k),
            };
        }
    }
}

pub(crate) fn check_field(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_FIELD_NAME {
        return Err(Error::InvalidArgument(format!(
            "a field name must be 1 to {MAX_FIELD_NAME} bytes, not {}",
            name.len()
        )));
    }
    Ok(())
}
