#![doc = include_str!("../README.md")]

mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
#[doc(hidden)]
pub mod hooks;
mod id;
mod memory;
mod redis;
mod session;
#[cfg(feature = "tower-sessions")]
mod tower;

use async_trait::async_trait;
use std::fmt;
use std::time::SystemTime;

pub use config::{Layout, MaxSessions, SessionConfig};
pub use error::{Error, Result};
pub use id::{ID_LEN, SessionHandle, SessionId};
pub use memory::MemorySessionStore;
pub use redis::RedisSessionStore;
pub use session::{ClientInfo, Session};
/// The tower-sessions-core version the `tower-sessions` feature implements.
#[cfg(feature = "tower-sessions")]
pub use tower_sessions_core;

/// One of a user's sessions, as listed by [`SessionStore::sessions_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session's handle (safe to show; use it to [`SessionStore::revoke`]).
    pub handle: SessionHandle,
    /// When the session started (rotation keeps it).
    pub created_at: SystemTime,
    /// The last time the session was touched (reads touch at most once per
    /// [`SessionConfig::touch_every`]).
    pub last_seen: SystemTime,
    /// When it ends at the latest (its absolute timeout).
    pub deadline: SystemTime,
    /// The client that logged in.
    pub client: ClientInfo,
}

/// Server-side sessions: created with a fresh id, loaded by the id a client presents,
/// saved field by field, rotated on privilege changes, and indexed per user.
///
/// Object safe: `Arc<dyn SessionStore>` works.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Starts an anonymous session with a fresh id (never an existing one).
    async fn create(&self) -> Result<Session>;

    /// The session of a presented id, or `None` when it is unknown, malformed, expired or
    /// deleted. Loading counts as activity: it extends the idle timeout (at most once per
    /// [`SessionConfig::touch_every`]), never past the absolute timeout.
    async fn load(&self, id: &SessionId) -> Result<Option<Session>>;

    /// Writes the fields changed since the session was loaded (others' concurrent changes
    /// to other fields survive) and counts as activity. Only an existing session is
    /// updated: a session deleted, logged out or expired meanwhile stays gone and the
    /// save fails with [`Error::Unknown`].
    async fn save(&self, session: &mut Session) -> Result<()>;

    /// Extends the idle timeout without loading. `false` when the session is gone.
    async fn touch(&self, id: &SessionId) -> Result<bool>;

    /// Deletes a session (logout), and its entry in its user's index. `false` when it
    /// was already gone.
    async fn delete(&self, id: &SessionId) -> Result<bool>;

    /// Gives the session a new id, keeping its data, creation time and absolute deadline;
    /// the old id stops working at once. Call it whenever privileges change.
    async fn rotate(&self, session: &mut Session) -> Result<()>;

    /// Logs the session in as `user`: rotates its id, binds it to the user with the
    /// client's details, adds it to the user's index and applies
    /// [`SessionConfig::max_sessions`]. Returns the handles of sessions evicted to make
    /// room.
    async fn login(
        &self,
        session: &mut Session,
        user: &str,
        client: ClientInfo,
    ) -> Result<Vec<SessionHandle>>;

    /// The user's live sessions, oldest first. Entries of sessions that ended are
    /// dropped from the index as a side effect.
    async fn sessions_of(&self, user: &str) -> Result<Vec<SessionInfo>>;

    /// Ends one of the user's sessions by handle. `false` when it was not the user's.
    async fn revoke(&self, user: &str, handle: &SessionHandle) -> Result<bool>;

    /// Ends every session of the user, except `keep` (e.g. the session that changed the
    /// password). Returns how many ended. A save racing with it cannot bring a session
    /// back.
    async fn logout_everywhere(&self, user: &str, keep: Option<&SessionId>) -> Result<u64>;
}

pub(crate) fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > 512 {
        return Err(Error::InvalidArgument(format!(
            "a user id must be 1 to 512 bytes, not {}",
            user.len()
        )));
    }
    Ok(())
}
