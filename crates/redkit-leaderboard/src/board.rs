//! A board's configuration, and the arithmetic both backends share: score encoding,
//! periods, validation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Error, MAX_BATCH, MAX_DATA_LEN, MAX_MEMBER_LEN, Result, Scope, Submission};

/// Which end of the board is the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Order {
    /// Higher scores rank first (points).
    #[default]
    HighFirst,
    /// Lower scores rank first (lap times, golf).
    LowFirst,
}

/// How equal scores share ranks. With scores 50, 50, 30, 30, 10:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Ranking {
    /// 1, 2, 3, 4, 5: every member its own rank, in board order (time tie-break, else
    /// member name).
    #[default]
    Ordinal,
    /// 1, 1, 3, 3, 5: standard competition ranking ("1224").
    Standard,
    /// 1, 1, 2, 2, 3: dense ranking ("1223"). Keeps a second sorted set of the distinct
    /// scores, so writes cost a little more.
    Dense,
}

/// A board's recurring period. Period boards start at midnight (or the hour) in the
/// board's UTC offset; weeks start on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Period {
    /// Every hour.
    Hourly,
    /// Every day.
    Daily,
    /// Every week, from Monday.
    Weekly,
    /// Every calendar month.
    Monthly,
    /// Every calendar year.
    Yearly,
}

impl Period {
    pub(crate) fn code(self) -> char {
        match self {
            Period::Hourly => 'h',
            Period::Daily => 'd',
            Period::Weekly => 'w',
            Period::Monthly => 'm',
            Period::Yearly => 'y',
        }
    }

    /// The index of the period containing `secs` (UNIX seconds, already shifted to local).
    pub(crate) fn index(self, local_secs: i64) -> i64 {
        let day = local_secs.div_euclid(86_400);
        match self {
            Period::Hourly => local_secs.div_euclid(3600),
            Period::Daily => day,
            Period::Weekly => (day + 3).div_euclid(7),
            Period::Monthly => {
                let (y, m) = civil_from_days(day);
                y * 12 + m - 1
            }
            Period::Yearly => civil_from_days(day).0,
        }
    }

    /// The local UNIX second at which period `index` starts.
    pub(crate) fn start(self, index: i64) -> i64 {
        match self {
            Period::Hourly => index * 3600,
            Period::Daily => index * 86_400,
            Period::Weekly => (index * 7 - 3) * 86_400,
            Period::Monthly => {
                let y = index.div_euclid(12);
                days_from_civil(y, index - y * 12 + 1) * 86_400
            }
            Period::Yearly => days_from_civil(index, 1) * 86_400,
        }
    }
}

/// Year and month (1..=12) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

/// Days since 1970-01-01 of the first day of `y`-`m`.
fn days_from_civil(y: i64, m: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How [`Leaderboard::combine`](crate::Leaderboard::combine) merges a member's scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Aggregate {
    /// The sum of the member's scores (a member missing from a source adds nothing).
    Sum,
    /// The highest of the member's scores.
    Max,
    /// The lowest of the member's scores.
    Min,
}

impl Aggregate {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Aggregate::Sum => "s",
            Aggregate::Max => "M",
            Aggregate::Min => "m",
        }
    }
}

/// Orders equal scores by the time they were reached: earlier first.
///
/// The score and the time share one sorted-set score (a double, exact up to 2^53): the
/// stored value is `s · 2^k + t`, where `t` counts `resolution` steps since `epoch` and `k`
/// is the number of bits `horizon / resolution` needs. Scores must then be integers with
/// `|s| <= 2^(53 - k) - 1` ([`TieBreak::max_score`]); anything else is a typed
/// [`Error::InvalidScore`], never a silent reorder. Budgets: 1 s over 68 years (k = 31)
/// allows ±4,194,303; 1 s over 1 year (k = 25) ±268,435,455; 1 ms over 31 days (k = 32)
/// ±2,097,151.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TieBreak {
    epoch: SystemTime,
    resolution: Duration,
    horizon: Duration,
}

impl TieBreak {
    /// Earlier wins, counting `resolution` steps from `epoch` for `horizon`.
    pub fn earliest_first(epoch: SystemTime, resolution: Duration, horizon: Duration) -> Self {
        TieBreak {
            epoch,
            resolution,
            horizon,
        }
    }

    fn bits(&self) -> Result<u32> {
        let res = self.resolution.as_millis();
        if res == 0 || !self.resolution.as_nanos().is_multiple_of(1_000_000) {
            return Err(Error::InvalidConfig(format!(
                "the tie-break resolution must be a whole number of milliseconds, not {:?}",
                self.resolution
            )));
        }
        let steps = self.horizon.as_millis() / res;
        if steps < 2 {
            return Err(Error::InvalidConfig(format!(
                "the tie-break horizon {:?} must span at least two steps of {:?}",
                self.horizon, self.resolution
            )));
        }
        let bits = u128::BITS - (steps - 1).leading_zeros();
        if bits > 48 {
            return Err(Error::InvalidConfig(format!(
                "a tie-break of {steps} steps needs {bits} bits of the 53 a score has, \
                 leaving scores no room; use a coarser resolution or a shorter horizon"
            )));
        }
        if self.epoch.duration_since(UNIX_EPOCH).is_err() {
            return Err(Error::InvalidConfig(
                "the tie-break epoch is before 1970".into(),
            ));
        }
        Ok(bits)
    }

    /// The largest score magnitude this tie-break can encode exactly, or an error when
    /// the configuration is invalid.
    pub fn max_score(&self) -> Result<i64> {
        Ok((1i64 << (53 - self.bits()?)) - 1)
    }
}

/// A leaderboard's configuration, shared by [`RedisLeaderboard`](crate::RedisLeaderboard)
/// and [`MemoryLeaderboard`](crate::MemoryLeaderboard).
///
/// ```
/// use redkit_leaderboard::{Board, Order, Period, Ranking};
/// let board = Board::named("arena")
///     .order(Order::HighFirst)
///     .ranking(Ranking::Standard)
///     .periods([Period::Daily, Period::Weekly])
///     .keep_finished(1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    pub(crate) name: String,
    pub(crate) prefix: String,
    pub(crate) order: Order,
    pub(crate) ranking: Ranking,
    pub(crate) tie_break: Option<TieBreak>,
    pub(crate) periods: Vec<Period>,
    pub(crate) utc_offset: i32,
    pub(crate) keep_finished: u32,
    pub(crate) member_data: bool,
}

impl Board {
    /// A board named `name`: high scores first, ordinal ranks, no periods, equal scores
    /// in member-name order. Keys: `<prefix>:lb:{<name>}:...`, prefix `redkit`.
    pub fn named(name: impl Into<String>) -> Board {
        Board {
            name: name.into(),
            prefix: "redkit".into(),
            order: Order::HighFirst,
            ranking: Ranking::Ordinal,
            tie_break: None,
            periods: Vec::new(),
            utc_offset: 0,
            keep_finished: 1,
            member_data: false,
        }
    }

    /// Stores data with members (`Submission::data`) and returns it with every entry, in
    /// the same round trip as the ranks. Off by default: submissions with data are then
    /// refused, and reads of all-time and combined boards that one command answers are
    /// sent as that command, without a script.
    pub fn member_data(mut self, on: bool) -> Board {
        self.member_data = on;
        self
    }

    /// The key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Board {
        self.prefix = prefix.into();
        self
    }

    /// Which end is the top.
    pub fn order(mut self, order: Order) -> Board {
        self.order = order;
        self
    }

    /// How equal scores share ranks.
    pub fn ranking(mut self, ranking: Ranking) -> Board {
        self.ranking = ranking;
        self
    }

    /// Orders equal scores by the time they were reached. See [`TieBreak`] for the score
    /// budget it leaves.
    pub fn tie_break(mut self, tie_break: TieBreak) -> Board {
        self.tie_break = Some(tie_break);
        self
    }

    /// Keeps a board per period besides the all-time one; every submission writes all of
    /// them in one step. Period boards expire by themselves.
    pub fn periods(mut self, periods: impl IntoIterator<Item = Period>) -> Board {
        self.periods = periods.into_iter().collect();
        self
    }

    /// The UTC offset, in seconds, at which periods start (e.g. `3600` for UTC+1). Fixed:
    /// daylight-saving changes are not followed.
    pub fn utc_offset(mut self, seconds: i32) -> Board {
        self.utc_offset = seconds;
        self
    }

    /// How many finished periods stay readable (as [`Scope::Previous`]) before their boards
    /// expire. Default 1: yesterday's daily board lives until today ends.
    pub fn keep_finished(mut self, periods: u32) -> Board {
        self.keep_finished = periods;
        self
    }
}

/// A validated board: what the backends work from.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) board: Board,
    /// −1 for high-first boards (stored ascending either way), +1 for low-first.
    pub(crate) sign: f64,
    pub(crate) bits: u32,
    pub(crate) pow: f64,
    pub(crate) epoch_ms: i64,
    pub(crate) resolution_ms: i64,
    pub(crate) max_group: f64,
    /// The fixed script arguments, ARGV[1..=8].
    pub(crate) args: [String; 8],
}

impl Spec {
    pub(crate) fn new(board: Board) -> Result<Spec> {
        check_name("board", &board.name)?;
        check_name("prefix", &board.prefix)?;
        let mut periods = board.periods.clone();
        periods.sort();
        periods.dedup();
        if periods.len() != board.periods.len() {
            return Err(Error::InvalidConfig("a period is listed twice".into()));
        }
        if board.utc_offset.unsigned_abs() > 18 * 3600 {
            return Err(Error::InvalidConfig(format!(
                "a UTC offset of {} s is beyond ±18 h",
                board.utc_offset
            )));
        }
        if board.keep_finished > 10_000 {
            return Err(Error::InvalidConfig(
                "keep_finished above 10,000 periods".into(),
            ));
        }
        let (bits, epoch_ms, resolution_ms) = match &board.tie_break {
            Some(t) => (
                t.bits()?,
                i64::try_from(
                    t.epoch
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis(),
                )
                .map_err(|_| Error::InvalidConfig("the tie-break epoch is too far".into()))?,
                i64::try_from(t.resolution.as_millis()).unwrap_or(i64::MAX),
            ),
            None => (0, 0, 1),
        };
        let sign = match board.order {
            Order::HighFirst => -1.0,
            Order::LowFirst => 1.0,
        };
        let pow = 2f64.powi(bits as i32);
        let max_group = if bits == 0 {
            f64::MAX
        } else {
            2f64.powi(53 - bits as i32) - 1.0
        };
        let ranking = match board.ranking {
            Ranking::Ordinal => "o",
            Ranking::Standard => "s",
            Ranking::Dense => "d",
        };
        let codes: String = board.periods.iter().map(|p| p.code()).collect();
        let args = [
            format!("{sign}"),
            bits.to_string(),
            epoch_ms.to_string(),
            resolution_ms.to_string(),
            ranking.to_string(),
            board.utc_offset.to_string(),
            board.keep_finished.to_string(),
            codes,
        ];
        Ok(Spec {
            board,
            sign,
            bits,
            pow,
            epoch_ms,
            resolution_ms,
            max_group,
            args,
        })
    }

    /// The group (signed, order-adjusted score) of a stored value.
    pub(crate) fn group(&self, stored: f64) -> f64 {
        if self.bits == 0 {
            stored
        } else {
            (stored / self.pow).floor()
        }
    }

    /// The score a stored value means.
    pub(crate) fn decode(&self, stored: f64) -> f64 {
        self.sign * self.group(stored) + 0.0
    }

    /// The ranks of a run of entries that starts at 0-based position `pos`, given the
    /// rank of its first entry and every entry's group: equal groups share a rank in the
    /// standard and dense styles.
    pub(crate) fn ranks(&self, first: u64, pos: u64, groups: &[f64]) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::with_capacity(groups.len());
        for (i, g) in groups.iter().enumerate() {
            let rank = match out.last() {
                None => first,
                Some(_) if self.board.ranking == Ranking::Ordinal => pos + i as u64 + 1,
                Some(&prev) if groups[i - 1] == *g => prev,
                Some(_) if self.board.ranking == Ranking::Standard => pos + i as u64 + 1,
                Some(&prev) => prev + 1,
            };
            out.push(rank);
        }
        out
    }

    /// The tie-break step of a time, or an error outside the horizon.
    pub(crate) fn step(&self, now_ms: i64) -> Result<f64> {
        if self.bits == 0 {
            return Ok(0.0);
        }
        let t = (now_ms - self.epoch_ms).div_euclid(self.resolution_ms);
        if t < 0 || t as f64 >= self.pow {
            return Err(Error::HorizonPassed(format!(
                "step {t} of {} since epoch {} ms",
                self.pow, self.epoch_ms
            )));
        }
        // time counts up, but earlier must sort first within a group on either order
        Ok(t as f64)
    }

    /// The stored value of a group at a tie-break step.
    pub(crate) fn encode(&self, group: f64, step: f64) -> f64 {
        group * self.pow + step
    }

    /// Checks a group against the budget.
    pub(crate) fn check_group(&self, group: f64, what: &str) -> Result<()> {
        if !group.is_finite() {
            return Err(Error::InvalidScore(format!("{what} is not finite")));
        }
        if self.bits > 0 && group.abs() > self.max_group {
            return Err(Error::InvalidScore(format!(
                "{what} {} is beyond ±{} (the tie-break budget)",
                self.sign * group,
                self.max_group
            )));
        }
        Ok(())
    }

    /// Validates a batch of submissions.
    pub(crate) fn check_submissions(&self, subs: &[Submission]) -> Result<()> {
        check_batch(subs.len())?;
        for s in subs {
            check_member(&s.member)?;
            if s.data.is_some() && !self.board.member_data {
                return Err(Error::InvalidArgument(format!(
                    "data for `{}` on a board without member data (see Board::member_data)",
                    s.member
                )));
            }
            if let Some(d) = &s.data
                && d.len() > MAX_DATA_LEN
            {
                return Err(Error::InvalidMember(format!(
                    "data of {} bytes for `{}` is over the limit of {MAX_DATA_LEN}",
                    d.len(),
                    s.member
                )));
            }
            self.check_score(s.score, &s.member)?;
        }
        Ok(())
    }

    /// A score (or increment) must be finite, and an integer within budget with a tie-break.
    pub(crate) fn check_score(&self, score: f64, member: &str) -> Result<()> {
        if !score.is_finite() {
            return Err(Error::InvalidScore(format!(
                "the score {score} for `{member}` is not finite"
            )));
        }
        if self.bits > 0 && score.fract() != 0.0 {
            return Err(Error::InvalidScore(format!(
                "the score {score} for `{member}` is not an integer, which a time tie-break needs"
            )));
        }
        self.check_group(score, &format!("the score for `{member}`"))
    }

    /// The inclusive stored range of scores in `[min, max]`.
    pub(crate) fn stored_range(&self, min: f64, max: f64) -> Result<(f64, f64)> {
        for v in [min, max] {
            if v.is_nan() {
                return Err(Error::InvalidScore("a score bound is NaN".into()));
            }
        }
        if min > max {
            return Err(Error::InvalidArgument(format!(
                "the score range [{min}, {max}] is empty"
            )));
        }
        let (a, b) = if self.sign < 0.0 {
            (-max, -min)
        } else {
            (min, max)
        };
        if self.bits == 0 {
            return Ok((a, b));
        }
        // whole groups: every stored value whose group lies within [ceil a, floor b]
        let lo = a.ceil() * self.pow;
        let hi = b.floor() * self.pow + self.pow - 1.0;
        Ok((lo, hi))
    }

    /// The key suffix of a scope, relative to "now" for current and previous periods.
    pub(crate) fn scope_arg(&self, scope: &Scope) -> Result<String> {
        Ok(match scope {
            Scope::AllTime => "all".into(),
            Scope::Current(p) => format!("{}-0", p.code()),
            Scope::Previous(p, n) => format!("{}-{n}", p.code()),
            Scope::On(p, at) => {
                let secs = at.duration_since(UNIX_EPOCH).map_err(|_| {
                    Error::InvalidArgument("a period before 1970 has no board".into())
                })?;
                if secs.as_secs() > MAX_SECS {
                    return Err(Error::InvalidArgument(format!(
                        "a period after the year 9999 has no board ({} s since 1970)",
                        secs.as_secs()
                    )));
                }
                format!("{}@{}", p.code(), secs.as_secs())
            }
            Scope::Combined(name) => {
                check_name("combined board", name)?;
                format!("x:{name}")
            }
        })
    }

    /// Validates a combine call: the combined board's scope argument and the ttl in ms
    /// (0 for none).
    pub(crate) fn check_combine(
        &self,
        name: &str,
        sources: &[Scope],
        ttl: Option<std::time::Duration>,
    ) -> Result<(String, u64)> {
        let dest = self.scope_arg(&Scope::Combined(name.to_string()))?;
        if sources.is_empty() {
            return Err(Error::InvalidArgument(
                "combine needs at least one source".into(),
            ));
        }
        check_batch(sources.len())?;
        let ttl_ms = match ttl {
            None => 0,
            Some(t) if t.as_millis() == 0 => {
                return Err(Error::InvalidArgument(
                    "a combined board's ttl must be at least 1 ms".into(),
                ));
            }
            Some(t) if t > MAX_TTL => {
                return Err(Error::InvalidArgument(format!(
                    "a combined board's ttl of {t:?} is over the limit of 100 years"
                )));
            }
            // at most 100 years: fits in u64 milliseconds
            Some(t) => t.as_millis() as u64,
        };
        Ok((dest, ttl_ms))
    }

    /// The period index of a relative or absolute scope argument at `now_secs`.
    pub(crate) fn resolve(&self, arg: &str, now_secs: i64) -> String {
        if arg == "all" || arg.starts_with("x:") {
            return arg.to_string();
        }
        let mut chars = arg.chars();
        let code = chars.next().unwrap_or('d');
        let op = chars.next().unwrap_or('-');
        let n: i64 = chars.as_str().parse().unwrap_or(0);
        let period = period_of(code);
        let local = |secs: i64| secs + i64::from(self.board.utc_offset);
        let index = if op == '-' {
            period.index(local(now_secs)) - n
        } else {
            period.index(local(n))
        };
        format!("{code}:{index}")
    }

    /// When the board of `period` containing `now_secs` expires, in UNIX ms.
    pub(crate) fn expires_at_ms(&self, period: Period, now_secs: i64) -> i64 {
        let off = i64::from(self.board.utc_offset);
        let index = period.index(now_secs + off);
        (period.start(index + 1 + i64::from(self.board.keep_finished)) - off) * 1000
    }
}

/// The last second of the year 9999: later dates have no period board (their period
/// arithmetic would overflow).
pub(crate) const MAX_SECS: u64 = 253_402_300_799;

/// The longest ttl of a combined board (Redis refuses an expiry past i64 milliseconds).
pub(crate) const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Positions from 2^53 on are past the end of every board (and beyond what a script's
/// numbers hold exactly): reads from there are empty, removals below there remove
/// nothing.
pub(crate) const MAX_POSITION: u64 = 1 << 53;

pub(crate) fn period_of(code: char) -> Period {
    match code {
        'h' => Period::Hourly,
        'w' => Period::Weekly,
        'm' => Period::Monthly,
        'y' => Period::Yearly,
        _ => Period::Daily,
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidName(format!("the {what} name is empty")));
    }
    if name.contains(['{', '}']) {
        return Err(Error::InvalidName(format!(
            "the {what} name `{name}` contains `{{` or `}}`, which would change its hash slot"
        )));
    }
    if name.len() > 256 {
        return Err(Error::InvalidName(format!(
            "the {what} name is {} bytes, over the limit of 256",
            name.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_member(member: &str) -> Result<()> {
    if member.is_empty() {
        return Err(Error::InvalidMember("a member name is empty".into()));
    }
    if member.len() > MAX_MEMBER_LEN {
        return Err(Error::InvalidMember(format!(
            "a member name of {} bytes is over the limit of {MAX_MEMBER_LEN}",
            member.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_batch(len: usize) -> Result<()> {
    if len > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "a batch of {len} is over the limit of {MAX_BATCH}"
        )));
    }
    Ok(())
}

pub(crate) fn check_count(count: u64) -> Result<()> {
    if count == 0 || count > MAX_BATCH as u64 {
        return Err(Error::InvalidArgument(format!(
            "a count of {count} is outside 1..={MAX_BATCH}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_periods_start_where_the_calendar_says() {
        // 2026-11-23 (a Monday) 04:50:14 UTC
        let t = 1_795_409_414;
        let day = Period::Daily.index(t);
        assert_eq!(Period::Daily.start(day), 1_795_392_000);
        let week = Period::Weekly.index(t);
        assert_eq!(
            Period::Weekly.start(week),
            1_795_392_000,
            "weeks start on Monday"
        );
        let month = Period::Monthly.index(t);
        assert_eq!(month, 2026 * 12 + 10);
        assert_eq!(Period::Monthly.start(month), 1_793_491_200); // 2026-11-01
        assert_eq!(Period::Monthly.start(month + 2), 1_798_761_600); // 2027-01-01
        assert_eq!(Period::Yearly.index(t), 2026);
        assert_eq!(Period::Yearly.start(2026), 1_767_225_600);
        assert_eq!(Period::Hourly.start(Period::Hourly.index(t)), 1_795_406_400);
        // before 1970 and leap days
        assert_eq!(Period::Monthly.index(-1), 1969 * 12 + 11);
        assert_eq!(Period::Monthly.start(2024 * 12 + 2), 1_709_251_200); // 2024-03-01
    }

    #[test]
    fn stored_values_round_trip_within_the_budget() {
        let tie = TieBreak::earliest_first(
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            Duration::from_secs(1),
            Duration::from_secs(68 * 365 * 86_400),
        );
        assert_eq!(tie.max_score().unwrap(), 4_194_303);
        for order in [Order::HighFirst, Order::LowFirst] {
            let spec = Spec::new(Board::named("b").order(order).tie_break(tie)).unwrap();
            let max = spec.max_group;
            for s in [0.0, 1.0, -1.0, 17.0, -4_194_303.0, max, -max] {
                let step = spec.pow - 1.0;
                let stored = spec.encode(spec.sign * s, step);
                assert!(stored.abs() < 2f64.powi(53));
                assert_eq!(spec.decode(stored), s, "{order:?} {s}");
            }
            assert!(spec.check_score(max + 1.0, "m").is_err());
            assert!(spec.check_score(0.5, "m").is_err());
        }
        assert!(
            TieBreak::earliest_first(
                UNIX_EPOCH,
                Duration::from_micros(1500),
                Duration::from_secs(1)
            )
            .max_score()
            .is_err()
        );
    }
}
