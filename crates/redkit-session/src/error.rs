//! The crate's error type.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with a session store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store's configuration is invalid (found when it is built).
    #[error("invalid session configuration: {0}")]
    InvalidConfig(String),

    /// The session does not exist (any more): it expired, was deleted, rotated away or
    /// logged out, or its id was never issued or is malformed — callers cannot tell which.
    /// Saves never bring such a session back.
    #[error("no such session")]
    Unknown,

    /// The session is larger than the store's limit.
    #[error("the session would be {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The session's size in bytes (field names and values).
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// A field value could not be encoded, or stored data could not be decoded as the
    /// requested type. The session itself stays usable.
    #[error("session data codec error: {0}")]
    Codec(String),

    /// An argument is unusable (an empty field name or user id, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A login was refused because the user already has the maximum number of sessions
    /// (with [`MaxSessions::Refuse`](crate::MaxSessions::Refuse)).
    #[error("the user already has {limit} sessions")]
    TooManySessions {
        /// The limit.
        limit: u32,
    },

    /// A login with [`MaxSessions::EvictOldest`](crate::MaxSessions::EvictOldest) was
    /// evicted by parallel logins of the same user before its session was written, on
    /// every attempt: it did not happen. The sessions it evicted on the way have ended.
    #[error("parallel logins of the same user displaced this login")]
    LoginDisplaced {
        /// The sessions this login evicted before giving up.
        evicted: Vec<crate::SessionHandle>,
    },

    /// The store (Redis) failed.
    #[error(transparent)]
    Store(redkit_core::Error),
}

impl From<redkit_core::Error> for Error {
    fn from(e: redkit_core::Error) -> Self {
        match e {
            redkit_core::Error::InvalidKey(msg) | redkit_core::Error::InvalidArgument(msg) => {
                Error::InvalidArgument(msg)
            }
            other => Error::Store(other),
        }
    }
}
