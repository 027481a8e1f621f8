//! The error type shared by every redkit crate.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// A `Result` with [`Error`] as its error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when talking to Redis through redkit.
///
/// Pattern crates wrap this type in their own error with `#[from]`, so callers can always
/// reach the core cause and ask [`Error::is_retryable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (bad URL, zero pool size, missing nodes, ...).
    #[error("invalid redis configuration: {0}")]
    Config(String),

    /// The server refused the credentials (wrong password, unknown user, missing ACL permission).
    #[error("redis authentication failed: {0}")]
    Auth(#[source] RedisError),

    /// The connection could not be made, or it broke during the operation.
    #[error("redis connection error: {0}")]
    Connection(#[source] RedisError),

    /// The server did not answer in time, or no pooled connection became free in time.
    #[error("redis operation timed out: {0}")]
    Timeout(String),

    /// A Lua script failed on the server.
    #[error("redis script `{name}` failed: {source}")]
    Script {
        /// The script's name (its file name without `.lua`).
        name: &'static str,
        /// What the server answered.
        #[source]
        source: RedisError,
    },

    /// A value could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// A key or name is not usable (empty, contains `{` or `}`, too long).
    #[error("invalid key: {0}")]
    InvalidKey(String),

    /// An argument is out of its valid range (zero duration, NaN score, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The server is older than redkit supports, or lacks a needed capability.
    #[error("unsupported redis server: {0}")]
    UnsupportedServer(String),

    /// The server answered something redkit did not expect.
    #[error("unexpected reply from redis: {0}")]
    UnexpectedReply(String),

    /// Any other error reported by the server or the driver.
    #[error("redis error: {0}")]
    Redis(#[source] RedisError),
}

impl Error {
    /// Whether trying the same operation again later may succeed: connection failures,
    /// timeouts, and the transient server states of a failover or resharding
    /// (`TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `MASTERDOWN`, `READONLY`, and an `ASK` or
    /// `MOVED` left after the cluster client's retries: the command did not run).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connection(_) | Error::Timeout(_) => true,
            Error::Redis(e) | Error::Script { source: e, .. } => is_transient(e),
            _ => false,
        }
    }

    /// Builds a [`Error::Codec`] from any error.
    pub fn codec(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Codec(Box::new(err))
    }

    /// Builds a [`Error::InvalidArgument`].
    pub fn invalid_argument(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// Builds a [`Error::UnexpectedReply`].
    pub fn unexpected_reply(msg: impl Into<String>) -> Self {
        Error::UnexpectedReply(msg.into())
    }

    /// Classifies the error a script invocation returned: connection problems keep their
    /// own kind, server-side failures become [`Error::Script`].
    pub fn from_script(name: &'static str, err: RedisError) -> Self {
        match Error::from(err) {
            Error::Redis(source) => Error::Script { name, source },
            other => other,
        }
    }

    /// A copy of this error, for handing one failure to several waiters (a failed batch).
    /// Errors that cannot be cloned keep their message.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Config(m) => Error::Config(m.clone()),
            Error::Auth(e) => Error::Auth(e.clone()),
            Error::Connection(e) => Error::Connection(e.clone()),
            Error::Timeout(m) => Error::Timeout(m.clone()),
            Error::Script { name, source } => Error::Script {
                name,
                source: source.clone(),
            },
            Error::Codec(e) => Error::Codec(e.to_string().into()),
            Error::InvalidKey(m) => Error::InvalidKey(m.clone()),
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::UnsupportedServer(m) => Error::UnsupportedServer(m.clone()),
            Error::UnexpectedReply(m) => Error::UnexpectedReply(m.clone()),
            Error::Redis(e) => Error::Redis(e.clone()),
        }
    }

    /// The underlying driver error, if there is one.
    pub fn redis_error(&self) -> Option<&RedisError> {
        match self {
            Error::Auth(e) | Error::Connection(e) | Error::Redis(e) => Some(e),
            Error::Script { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn is_transient(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::TryAgain
                // a redirection left over once the client's retries are spent: the
                // command did not run (a slot migrating or moved)
                | ServerErrorKind::Ask
                | ServerErrorKind::Moved
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
        )
    )
}

fn is_auth(e: &RedisError) -> bool {
    if e.kind() == ErrorKind::AuthenticationFailed {
        return true;
    }
    matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        || matches!(e.kind(), ErrorKind::Server(ServerErrorKind::NoPerm))
}

impl From<RedisError> for Error {
    fn from(e: RedisError) -> Self {
        if is_auth(&e) {
            Error::Auth(e)
        } else if e.is_timeout() {
            Error::Timeout(e.to_string())
        } else if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.kind() == ErrorKind::ClusterConnectionNotFound
        {
            Error::Connection(e)
        } else if e.kind() == ErrorKind::InvalidClientConfig {
            Error::Config(e.to_string())
        } else {
            Error::Redis(e)
        }
    }
}

impl From<deadpool_redis::PoolError> for Error {
    fn from(e: deadpool_redis::PoolError) -> Self {
        use deadpool_redis::PoolError;
        match e {
            PoolError::Backend(e) => Error::from(e),
            PoolError::Timeout(kind) => {
                Error::Timeout(format!("waiting for a dedicated connection ({kind:?})"))
            }
            other => Error::Connection(RedisError::from((
                ErrorKind::Io,
                "dedicated connection pool",
                other.to_string(),
            ))),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Codec(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_retryable_and_config_errors_are_not() {
        let io = Error::from(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        assert!(matches!(io, Error::Connection(_)), "{io:?}");
        assert!(io.is_retryable());
        assert!(!Error::Config("bad".into()).is_retryable());
        assert!(!Error::invalid_argument("zero ttl").is_retryable());
    }

    #[test]
    fn auth_failures_are_classified() {
        let e = Error::from(RedisError::from((
            ErrorKind::AuthenticationFailed,
            "invalid password",
        )));
        assert!(matches!(e, Error::Auth(_)), "{e:?}");
        assert!(!e.is_retryable());
    }
}
