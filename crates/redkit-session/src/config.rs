//! Store configuration shared by both backends.

use std::time::Duration;

use crate::{Error, Result};

/// What a login does when the user already has the maximum number of sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MaxSessions {
    /// Ends the user's oldest sessions to make room (atomically: parallel logins never
    /// leave more than the limit).
    EvictOldest(u32),
    /// Refuses the login with [`Error::TooManySessions`].
    Refuse(u32),
}

impl MaxSessions {
    pub(crate) fn limit(self) -> u32 {
        match self {
            MaxSessions::EvictOldest(n) | MaxSessions::Refuse(n) => n,
        }
    }
}

/// How a session's data is stored in its Redis hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Layout {
    /// One hash field per data field: a save writes only what changed, so concurrent
    /// requests changing different fields never undo each other.
    #[default]
    Fields,
    /// All data as one JSON object in one field: loads are cheaper (one value instead of
    /// one per field), and a save rewrites the whole object, so of two concurrent saves
    /// the last one wins.
    Json,
}

/// Timeouts, limits and the key prefix of a session store.
///
/// ```
/// use redkit_session::{MaxSessions, SessionConfig};
/// use std::time::Duration;
/// let config = SessionConfig::new()
///     .idle_timeout(Duration::from_secs(30 * 60))
///     .absolute_timeout(Duration::from_secs(8 * 3600))
///     .max_sessions(MaxSessions::EvictOldest(5));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    pub(crate) prefix: String,
    pub(crate) idle: Duration,
    pub(crate) absolute: Duration,
    pub(crate) touch_every: Option<Duration>,
    pub(crate) max_sessions: Option<MaxSessions>,
    pub(crate) max_size: usize,
    pub(crate) tower_user_key: Option<String>,
    pub(crate) layout: Layout,
    pub(crate) allow_eviction: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig::new()
    }
}

impl SessionConfig {
    /// Idle timeout 30 minutes, absolute timeout 8 hours, touches at most every
    /// idle / 10, no session limit, 64 KiB per session, key prefix `redkit`.
    pub fn new() -> SessionConfig {
        SessionConfig {
            prefix: "redkit".into(),
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(8 * 3600),
            touch_every: None,
            max_sessions: None,
            max_size: 64 * 1024,
            tower_user_key: None,
            layout: Layout::Fields,
            allow_eviction: false,
        }
    }

    /// Accept a server whose `maxmemory-policy` may evict keys (default:
    /// [`RedisSessionStore`] refuses it when built). Under memory pressure such a server
    /// logs users out at random, and under `allkeys-*` it can evict a user's session index
    /// while the sessions live on, so "log out everywhere" misses them. The memory store
    /// ignores it.
    ///
    /// [`RedisSessionStore`]: crate::RedisSessionStore
    pub fn allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }

    /// A session unused this long ends (sliding expiry).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle = d;
        self
    }

    /// A session ends this long after it started, however active (rotation keeps the
    /// start).
    pub fn absolute_timeout(mut self, d: Duration) -> Self {
        self.absolute = d;
        self
    }

    /// Loads extend the idle timeout at most this often, so reads do not write every time
    /// (default: a tenth of the idle timeout). A session may thus end up to this much
    /// before a full idle timeout after its last request.
    pub fn touch_every(mut self, d: Duration) -> Self {
        self.touch_every = Some(d);
        self
    }

    /// Limits each user's concurrent sessions.
    pub fn max_sessions(mut self, policy: MaxSessions) -> Self {
        self.max_sessions = Some(policy);
        self
    }

    /// The largest session, in bytes of field names and values.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// For the tower-sessions store: the session data key that holds the logged-in user's
    /// id (a string or a number). Sessions carrying it are kept in that user's index, so
    /// [`SessionStore::sessions_of`](crate::SessionStore::sessions_of) and
    /// [`SessionStore::logout_everywhere`](crate::SessionStore::logout_everywhere) see them.
    pub fn tower_user_key(mut self, key: impl Into<String>) -> Self {
        self.tower_user_key = Some(key.into());
        self
    }

    /// How data is stored: a field per data field (default) or one JSON object.
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The key prefix: `<prefix>:sess:{<handle>}`, `<prefix>:sess:user:{<user hash>}`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    pub(crate) fn idle_ms(&self) -> i64 {
        ms(self.idle)
    }

    pub(crate) fn absolute_ms(&self) -> i64 {
        ms(self.absolute)
    }

    pub(crate) fn touch_ms(&self) -> i64 {
        ms(self.touch_every.unwrap_or(self.idle / 10))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        const MAX: Duration = Duration::from_secs(366 * 86_400);
        for (what, d) in [("idle", self.idle), ("absolute", self.absolute)] {
            if d < Duration::from_secs(1) || d > MAX {
                return Err(Error::InvalidConfig(format!(
                    "the {what} timeout {d:?} is outside 1 s ..= 366 days"
                )));
            }
        }
        if let Some(t) = self.touch_every
            && t >= self.idle
        {
            return Err(Error::InvalidConfig(format!(
                "touching every {t:?} cannot keep a {:?} idle timeout alive",
                self.idle
            )));
        }
        if self.max_sessions.is_some_and(|m| m.limit() == 0) {
            return Err(Error::InvalidConfig(
                "a session limit of 0 allows no login".into(),
            ));
        }
        if self.max_size < 64 {
            return Err(Error::InvalidConfig(format!(
                "a session size limit of {} bytes is too small",
                self.max_size
            )));
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(Error::InvalidConfig(format!(
                "the key prefix `{}` is empty or contains braces",
                self.prefix
            )));
        }
        Ok(())
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
