//! The crate's error type.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with a leaderboard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The board's configuration is invalid (found when the backend is built).
    #[error("invalid leaderboard configuration: {0}")]
    InvalidConfig(String),

    /// A score is unusable: NaN or infinite, fractional or out of the tie-break budget, or
    /// an increment that would leave the budget.
    #[error("invalid score: {0}")]
    InvalidScore(String),

    /// A member name is empty or too long, or member data is too long.
    #[error("invalid member: {0}")]
    InvalidMember(String),

    /// A board, prefix or combined-board name is unusable: empty, too long, or contains
    /// `{` or `}`.
    #[error("invalid leaderboard name: {0}")]
    InvalidName(String),

    /// An argument is out of range (page 0, a range longer than the limit, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The time tie-break's horizon has passed (or its epoch is still ahead): scores can no
    /// longer be encoded. Configure a later epoch or a longer horizon.
    #[error("the tie-break window ({0}) does not cover the current time")]
    HorizonPassed(String),

    /// The store (Redis) failed.
    #[error(transparent)]
    Store(redkit_core::Error),
}

impl From<redkit_core::Error> for Error {
    fn from(e: redkit_core::Error) -> Self {
        match e {
            redkit_core::Error::InvalidKey(msg) => Error::InvalidName(msg),
            redkit_core::Error::InvalidArgument(msg) => Error::InvalidArgument(msg),
            other => Error::Store(other),
        }
    }
}
