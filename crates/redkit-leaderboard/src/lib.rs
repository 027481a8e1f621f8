#![doc = include_str!("../README.md")]

mod board;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod memory;
mod redis;

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

pub use board::{Aggregate, Board, Order, Period, Ranking, TieBreak};
pub use error::{Error, Result};
pub use memory::MemoryLeaderboard;
pub use redis::RedisLeaderboard;

/// The longest member name, in bytes.
pub const MAX_MEMBER_LEN: usize = 1024;
/// The longest member data, in bytes.
pub const MAX_DATA_LEN: usize = 64 * 1024;
/// The most entries one read returns, and the most submissions or members in one batch.
pub const MAX_BATCH: usize = 1000;

/// Which board of a leaderboard a call reads: all-time, a period's, or a combined one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// The all-time board.
    AllTime,
    /// The board of the current period (by the server's clock, in the board's UTC offset).
    Current(Period),
    /// The board of `n` periods ago (`Previous(Daily, 1)` is yesterday's). It exists as
    /// long as [`Board::keep_finished`] keeps it.
    Previous(Period, u32),
    /// The board of the period that contains the given time.
    On(Period, SystemTime),
    /// A board written by [`Leaderboard::combine`].
    Combined(String),
}

impl Scope {
    /// The board of the period containing `at`.
    pub fn on(period: Period, at: SystemTime) -> Scope {
        Scope::On(period, at)
    }

    /// A combined board by name.
    pub fn combined(name: impl Into<String>) -> Scope {
        Scope::Combined(name.into())
    }
}

/// How a submission changes a member's score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Set the score (an equal score keeps the time it was first reached).
    Replace,
    /// Keep the better of the old and the new score (higher on [`Order::HighFirst`]
    /// boards, lower on [`Order::LowFirst`]).
    Best,
    /// Add to the score (negative deltas subtract). The tie-break time becomes the time
    /// of this submission: ties go to whoever reached the total first.
    Increment,
}

/// One score to write: to the all-time board and to the current board of every period
/// the leaderboard keeps, in one atomic step.
#[derive(Clone, PartialEq)]
pub struct Submission {
    pub(crate) member: String,
    pub(crate) score: f64,
    pub(crate) mode: Mode,
    pub(crate) data: Option<String>,
}

impl fmt::Debug for Submission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submission")
            .field("member", &self.member)
            .field("score", &self.score)
            .field("mode", &self.mode)
            .field("data", &self.data.as_ref().map(|d| d.len()))
            .finish()
    }
}

impl Submission {
    /// Sets `member`'s score.
    pub fn replace(member: impl Into<String>, score: f64) -> Submission {
        Submission::new(member, score, Mode::Replace)
    }

    /// Keeps the better of `member`'s score and `score`.
    pub fn best(member: impl Into<String>, score: f64) -> Submission {
        Submission::new(member, score, Mode::Best)
    }

    /// Adds `delta` to `member`'s score (a missing member starts at 0).
    pub fn increment(member: impl Into<String>, delta: f64) -> Submission {
        Submission::new(member, delta, Mode::Increment)
    }

    /// A submission with an explicit mode.
    pub fn new(member: impl Into<String>, score: f64, mode: Mode) -> Submission {
        Submission {
            member: member.into(),
            score,
            mode,
            data: None,
        }
    }

    /// Stores `data` (a display name, a JSON blob) with the member on every board written,
    /// returned with its entries. It replaces earlier data.
    pub fn data(mut self, data: impl Into<String>) -> Submission {
        self.data = Some(data.into());
        self
    }

    /// The member.
    pub fn member(&self) -> &str {
        &self.member
    }
}

/// The outcome of one [`Submission`] on the all-time board.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Submitted {
    /// The member's all-time score after the submission.
    pub score: f64,
    /// Whether the all-time score changed.
    pub changed: bool,
}

/// A ranked member.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// The member.
    pub member: String,
    /// Its score.
    pub score: f64,
    /// Its rank, from 1, in the board's [`Ranking`] style.
    pub rank: u64,
    /// The member's data, if any was submitted.
    pub data: Option<String>,
}

/// Which members a range removal takes.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Removal {
    /// Everyone ranked below the first `n` (by position).
    OutsideTop(u64),
    /// Everyone whose score is in `[min, max]`.
    ScoreRange {
        /// The lowest score removed.
        min: f64,
        /// The highest score removed.
        max: f64,
    },
}

/// A ranked board: submit scores, read ranks, pages and neighbourhoods.
///
/// Object safe: `Arc<dyn Leaderboard>` works. Reads take the [`Scope`] to read; writes go
/// to the all-time board and the current board of every configured [`Period`] at once.
#[async_trait]
pub trait Leaderboard: Send + Sync + fmt::Debug {
    /// Writes a batch of submissions in one atomic step (all of them or, on an invalid
    /// score, none), in order: a member may appear several times.
    async fn submit_batch(&self, submissions: &[Submission]) -> Result<Vec<Submitted>>;

    /// Removes members from the all-time board and the current period boards, with their
    /// data. Returns how many were on the all-time board.
    async fn remove(&self, members: &[&str]) -> Result<u64>;

    /// Removes a range of members from one board, with their data.
    /// Returns how many were removed.
    async fn remove_range(&self, scope: &Scope, removal: Removal) -> Result<u64>;

    /// The entries of several members (`None` for those not on the board), in one round
    /// trip: a friends list, a team.
    async fn entries(&self, scope: &Scope, members: &[&str]) -> Result<Vec<Option<Entry>>>;

    /// Up to `count` entries from 0-based position `start`, best first.
    async fn range(&self, scope: &Scope, start: u64, count: u64) -> Result<Vec<Entry>>;

    /// The member and up to `n` entries on each side of it; near the top or the bottom
    /// the window slides to keep `2n + 1` entries where the board has them. Empty when
    /// the member is not on the board.
    async fn around(&self, scope: &Scope, member: &str, n: u64) -> Result<Vec<Entry>>;

    /// Entries whose score is in `[min, max]`, best first, skipping `offset` and
    /// returning at most `count`.
    async fn by_score(
        &self,
        scope: &Scope,
        min: f64,
        max: f64,
        offset: u64,
        count: u64,
    ) -> Result<Vec<Entry>>;

    /// How many members the board has.
    async fn count(&self, scope: &Scope) -> Result<u64>;

    /// The percentage of the board's members with a strictly worse score: 100 − ε for the
    /// sole leader of a large board, 0 for the last (and for a lone member). Equal scores
    /// get equal percentiles. `None` when the member is not on the board.
    async fn percentile(&self, scope: &Scope, member: &str) -> Result<Option<f64>>;

    /// Writes the combined board `name` (read it as [`Scope::Combined`]) from `sources`,
    /// aggregating each member's scores; member data comes along. It replaces what the
    /// combined board held and expires after `ttl` when given. Returns its size.
    async fn combine(
        &self,
        name: &str,
        sources: &[Scope],
        aggregate: Aggregate,
        ttl: Option<Duration>,
    ) -> Result<u64>;

    /// Deletes one board with its member data.
    async fn clear(&self, scope: &Scope) -> Result<()>;

    /// Writes one submission. See [`Leaderboard::submit_batch`].
    async fn submit(&self, submission: Submission) -> Result<Submitted> {
        let mut out = self.submit_batch(std::slice::from_ref(&submission)).await?;
        out.pop()
            .ok_or_else(|| Error::Store(redkit_core::Error::unexpected_reply("no outcome")))
    }

    /// One member's entry.
    async fn entry(&self, scope: &Scope, member: &str) -> Result<Option<Entry>> {
        Ok(self.entries(scope, &[member]).await?.pop().flatten())
    }

    /// One member's score.
    async fn score(&self, scope: &Scope, member: &str) -> Result<Option<f64>> {
        Ok(self.entry(scope, member).await?.map(|e| e.score))
    }

    /// One member's rank (from 1).
    async fn rank(&self, scope: &Scope, member: &str) -> Result<Option<u64>> {
        Ok(self.entry(scope, member).await?.map(|e| e.rank))
    }

    /// The best `n` entries.
    async fn top(&self, scope: &Scope, n: u64) -> Result<Vec<Entry>> {
        self.range(scope, 0, n).await
    }

    /// Page `page` (from 1) of `size` entries. A page past the end is empty.
    async fn page(&self, scope: &Scope, page: u64, size: u64) -> Result<Vec<Entry>> {
        if page == 0 {
            return Err(Error::InvalidArgument("pages are numbered from 1".into()));
        }
        let start = (page - 1).checked_mul(size).ok_or_else(|| {
            Error::InvalidArgument(format!("page {page} of size {size} is out of range"))
        })?;
        self.range(scope, start, size).await
    }
}
