//! The in-memory backend: the same boards, encoding and periods on a [`Clock`].

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use redkit_core::{Clock, SystemClock};

use crate::board::{Spec, check_batch, check_count, check_member};
use crate::{
    Aggregate, Board, Entry, Error, Leaderboard, Mode, Ranking, Removal, Result, Scope, Submission,
    Submitted,
};

/// A [`Leaderboard`] in process memory, for tests and single-process apps.
///
/// It passes the same conformance suite as [`RedisLeaderboard`](crate::RedisLeaderboard).
/// Ranks are found by walking an ordered set: a rank costs O(position), not O(log n) as on
/// Redis, which suits boards of thousands, not millions. Time (periods, tie-break) comes
/// from its [`Clock`]. Clones share the boards.
#[derive(Clone)]
pub struct MemoryLeaderboard {
    spec: Arc<Spec>,
    clock: Arc<dyn Clock>,
    boards: Arc<Mutex<HashMap<String, Sheet>>>,
}

impl fmt::Debug for MemoryLeaderboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLeaderboard")
            .field("board", &self.spec.board)
            .finish()
    }
}

/// A stored value ordered like a sorted-set score.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stored(f64);

impl Eq for Stored {}

impl PartialOrd for Stored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Stored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One board: a sorted set and its member data.
#[derive(Debug, Default, Clone)]
struct Sheet {
    scores: HashMap<String, f64>,
    order: BTreeSet<(Stored, String)>,
    data: HashMap<String, String>,
    expires_at_ms: Option<i64>,
}

impl Sheet {
    fn set(&mut self, member: &str, stored: f64) {
        if let Some(old) = self.scores.insert(member.to_string(), stored) {
            self.order.remove(&(Stored(old), member.to_string()));
        }
        self.order.insert((Stored(stored), member.to_string()));
    }

    fn remove(&mut self, member: &str) -> bool {
        self.data.remove(member);
        match self.scores.remove(member) {
            Some(old) => self.order.remove(&(Stored(old), member.to_string())),
            None => false,
        }
    }

    fn position(&self, stored: f64, member: &str) -> u64 {
        self.order
            .range(..(Stored(stored), member.to_string()))
            .count() as u64
    }

    /// The rank of an entry at position `pos` with group `g`.
    fn first_rank(&self, spec: &Spec, g: f64, pos: u64) -> u64 {
        match spec.board.ranking {
            Ranking::Ordinal => pos + 1,
            Ranking::Standard => {
                self.order
                    .iter()
                    .take_while(|(s, _)| spec.group(s.0) < g)
                    .count() as u64
                    + 1
            }
            _ => {
                let mut distinct = 0;
                let mut last = None;
                for (s, _) in &self.order {
                    let sg = spec.group(s.0);
                    if sg >= g {
                        break;
                    }
                    if last != Some(sg) {
                        distinct += 1;
                        last = Some(sg);
                    }
                }
                distinct + 1
            }
        }
    }

    /// Entries for a run of the order that starts at position `pos`.
    fn ranked<'a>(
        &self,
        spec: &Spec,
        run: impl Iterator<Item = &'a (Stored, String)>,
        pos: u64,
    ) -> Vec<Entry> {
        let run: Vec<&(Stored, String)> = run.collect();
        let groups: Vec<f64> = run.iter().map(|(s, _)| spec.group(s.0)).collect();
        let Some(&g0) = groups.first() else {
            return Vec::new();
        };
        let ranks = spec.ranks(self.first_rank(spec, g0, pos), pos, &groups);
        run.into_iter()
            .zip(ranks)
            .map(|((stored, member), rank)| Entry {
                member: member.clone(),
                score: spec.decode(stored.0),
                rank,
                data: self.data.get(member).cloned(),
            })
            .collect()
    }
}

/// Builds a [`MemoryLeaderboard`].
#[derive(Debug)]
pub struct MemoryLeaderboardBuilder {
    board: Board,
    clock: Arc<dyn Clock>,
}

impl MemoryLeaderboardBuilder {
    /// The clock for periods and the tie-break (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Validates the board.
    pub fn build(self) -> Result<MemoryLeaderboard> {
        Ok(MemoryLeaderboard {
            spec: Arc::new(Spec::new(self.board)?),
            clock: self.clock,
            boards: Arc::default(),
        })
    }
}

impl MemoryLeaderboard {
    /// A leaderboard on the system clock; validates the board.
    pub fn new(board: Board) -> Result<MemoryLeaderboard> {
        MemoryLeaderboard::builder(board).build()
    }

    /// A builder, to set the clock.
    pub fn builder(board: Board) -> MemoryLeaderboardBuilder {
        MemoryLeaderboardBuilder {
            board,
            clock: Arc::new(SystemClock),
        }
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now().as_millis()).unwrap_or(i64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Sheet>> {
        let now = self.now_ms();
        let mut boards = self.boards.lock().unwrap_or_else(|e| e.into_inner());
        boards.retain(|_, b| b.expires_at_ms.is_none_or(|at| at > now) && !b.scores.is_empty());
        boards
    }

    fn key(&self, scope: &Scope) -> Result<String> {
        let arg = self.spec.scope_arg(scope)?;
        Ok(self.spec.resolve(&arg, self.now_ms().div_euclid(1000)))
    }

    /// The all-time key and the current period keys with their expiry.
    fn targets(&self) -> Vec<(String, Option<i64>)> {
        let secs = self.now_ms().div_euclid(1000);
        let mut out = vec![("all".to_string(), None)];
        for p in &self.spec.board.periods {
            let key = self.spec.resolve(&format!("{}-0", p.code()), secs);
            out.push((key, Some(self.spec.expires_at_ms(*p, secs))));
        }
        out
    }

    fn read<T>(&self, scope: &Scope, f: impl FnOnce(&Sheet) -> T) -> Result<T> {
        let key = self.key(scope)?;
        let boards = self.lock();
        Ok(match boards.get(&key) {
            Some(sheet) => f(sheet),
            None => f(&Sheet::default()),
        })
    }
}

#[async_trait]
impl Leaderboard for MemoryLeaderboard {
    async fn submit_batch(&self, submissions: &[Submission]) -> Result<Vec<Submitted>> {
        let spec = &*self.spec;
        spec.check_submissions(submissions)?;
        if submissions.is_empty() {
            return Ok(Vec::new());
        }
        let step = spec.step(self.now_ms())?;
        let targets = self.targets();
        let mut boards = self.lock();
        // plan on copies, so an invalid submission changes nothing
        let mut sheets: Vec<Sheet> = targets
            .iter()
            .map(|(k, _)| boards.get(k).cloned().unwrap_or_default())
            .collect();
        let mut out = Vec::with_capacity(submissions.len());
        for s in submissions {
            let mut changed = false;
            for (t, sheet) in sheets.iter_mut().enumerate() {
                let cur = sheet.scores.get(&s.member).copied();
                let mut g = spec.sign * s.score;
                let new = match (s.mode, cur) {
                    (Mode::Replace, Some(c)) if spec.group(c) == g => None,
                    (Mode::Best, Some(c)) if g >= spec.group(c) => None,
                    (Mode::Increment, Some(_)) if s.score == 0.0 => None,
                    (Mode::Increment, Some(c)) => {
                        g += spec.group(c);
                        spec.check_group(g, &format!("the new score of `{}`", s.member))
                            .map_err(|_| {
                                Error::InvalidScore(format!(
                                    "adding {} to `{}` would take its score beyond the budget of ±{}",
                                    s.score, s.member, spec.max_group
                                ))
                            })?;
                        Some(spec.encode(g, step))
                    }
                    _ => Some(spec.encode(g, step)),
                };
                if let Some(v) = new {
                    sheet.set(&s.member, v);
                    changed |= t == 0;
                }
                if let Some(d) = &s.data {
                    sheet.data.insert(s.member.clone(), d.clone());
                }
            }
            let score = sheets[0]
                .scores
                .get(&s.member)
                .map(|v| spec.decode(*v))
                .unwrap_or(0.0);
            out.push(Submitted { score, changed });
        }
        for ((key, expires), mut sheet) in targets.into_iter().zip(sheets) {
            sheet.expires_at_ms = expires;
            boards.insert(key, sheet);
        }
        Ok(out)
    }

    async fn remove(&self, members: &[&str]) -> Result<u64> {
        check_batch(members.len())?;
        members.iter().try_for_each(|m| check_member(m))?;
        let targets = self.targets();
        let mut boards = self.lock();
        let mut removed = 0;
        for (i, (key, _)) in targets.iter().enumerate() {
            if let Some(sheet) = boards.get_mut(key) {
                for m in members {
                    if sheet.remove(m) && i == 0 {
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    async fn remove_range(&self, scope: &Scope, removal: Removal) -> Result<u64> {
        let key = self.key(scope)?;
        let range = match removal {
            Removal::ScoreRange { min, max } => Some(self.spec.stored_range(min, max)?),
            Removal::OutsideTop(_) => None,
        };
        let mut boards = self.lock();
        let Some(sheet) = boards.get_mut(&key) else {
            return Ok(0);
        };
        let victims: Vec<String> = match (removal, range) {
            (Removal::OutsideTop(n), _) => sheet
                .order
                .iter()
                .skip(usize::try_from(n).unwrap_or(usize::MAX))
                .map(|(_, m)| m.clone())
                .collect(),
            (_, Some((lo, hi))) => sheet
                .order
                .iter()
                .filter(|(s, _)| s.0 >= lo && s.0 <= hi)
                .map(|(_, m)| m.clone())
                .collect(),
            _ => Vec::new(),
        };
        for m in &victims {
            sheet.remove(m);
        }
        Ok(victims.len() as u64)
    }

    async fn entries(&self, scope: &Scope, members: &[&str]) -> Result<Vec<Option<Entry>>> {
        check_batch(members.len())?;
        members.iter().try_for_each(|m| check_member(m))?;
        let spec = &*self.spec;
        self.read(scope, |sheet| {
            members
                .iter()
                .map(|m| {
                    let stored = *sheet.scores.get(*m)?;
                    let pos = sheet.position(stored, m);
                    let item = (Stored(stored), m.to_string());
                    sheet.ranked(spec, std::iter::once(&item), pos).pop()
                })
                .collect()
        })
    }

    async fn range(&self, scope: &Scope, start: u64, count: u64) -> Result<Vec<Entry>> {
        check_count(count)?;
        let spec = &*self.spec;
        self.read(scope, |sheet| {
            let skip = usize::try_from(start).unwrap_or(usize::MAX);
            let run = sheet.order.iter().skip(skip).take(count as usize);
            sheet.ranked(spec, run, start)
        })
    }

    async fn around(&self, scope: &Scope, member: &str, n: u64) -> Result<Vec<Entry>> {
        check_member(member)?;
        check_count(n.saturating_mul(2).saturating_add(1))?;
        let spec = &*self.spec;
        self.read(scope, |sheet| {
            let Some(&stored) = sheet.scores.get(member) else {
                return Vec::new();
            };
            let pos = sheet.position(stored, member);
            let len = sheet.order.len() as u64;
            let mut start = pos.saturating_sub(n);
            let stop = (start + 2 * n).min(len - 1);
            if stop - start < 2 * n {
                start = stop.saturating_sub(2 * n);
            }
            let run = sheet
                .order
                .iter()
                .skip(start as usize)
                .take((stop - start + 1) as usize);
            sheet.ranked(spec, run, start)
        })
    }

    async fn by_score(
        &self,
        scope: &Scope,
        min: f64,
        max: f64,
        offset: u64,
        count: u64,
    ) -> Result<Vec<Entry>> {
        check_count(count)?;
        let (lo, hi) = self.spec.stored_range(min, max)?;
        let spec = &*self.spec;
        self.read(scope, |sheet| {
            let first = sheet
                .order
                .iter()
                .position(|(s, _)| s.0 >= lo)
                .unwrap_or(sheet.order.len());
            let skip = usize::try_from(offset).unwrap_or(usize::MAX);
            let run = sheet
                .order
                .iter()
                .skip(first)
                .take_while(|(s, _)| s.0 <= hi)
                .skip(skip)
                .take(count as usize);
            sheet.ranked(spec, run, (first as u64).saturating_add(offset))
        })
    }

    async fn count(&self, scope: &Scope) -> Result<u64> {
        self.read(scope, |sheet| sheet.order.len() as u64)
    }

    async fn percentile(&self, scope: &Scope, member: &str) -> Result<Option<f64>> {
        check_member(member)?;
        let spec = &*self.spec;
        self.read(scope, |sheet| {
            let stored = *sheet.scores.get(member)?;
            let g = spec.group(stored);
            let total = sheet.order.len();
            let worse = sheet
                .order
                .iter()
                .filter(|(s, _)| spec.group(s.0) > g)
                .count();
            Some(100.0 * worse as f64 / total as f64)
        })
    }

    async fn combine(
        &self,
        name: &str,
        sources: &[Scope],
        aggregate: Aggregate,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        let spec = &*self.spec;
        spec.check_combine(name, sources, ttl)?;
        let dest = self.key(&Scope::Combined(name.to_string()))?;
        let keys = sources
            .iter()
            .map(|s| self.key(s))
            .collect::<Result<Vec<_>>>()?;
        let mut boards = self.lock();
        let mut acc: HashMap<String, (f64, f64)> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut data: HashMap<String, String> = HashMap::new();
        for key in &keys {
            let Some(sheet) = boards.get(key) else {
                continue;
            };
            for (stored, m) in &sheet.order {
                let g = spec.group(stored.0);
                let st = stored.0 - g * spec.pow;
                let s = spec.sign * g;
                match acc.get_mut(m) {
                    None => {
                        acc.insert(m.clone(), (s, st));
                        order.push(m.clone());
                    }
                    Some(cur) => match aggregate {
                        Aggregate::Sum => {
                            cur.0 += s;
                            cur.1 = cur.1.max(st);
                        }
                        Aggregate::Max if s > cur.0 => *cur = (s, st),
                        Aggregate::Min if s < cur.0 => *cur = (s, st),
                        _ if s == cur.0 && st < cur.1 => cur.1 = st,
                        _ => {}
                    },
                }
                if let Some(d) = sheet.data.get(m) {
                    data.entry(m.clone()).or_insert_with(|| d.clone());
                }
            }
        }
        let mut sheet = Sheet::default();
        for m in &order {
            let (s, st) = acc[m];
            let g = spec.sign * s;
            spec.check_group(g, "a combined score").map_err(|_| {
                Error::InvalidScore(format!(
                    "a combined score is beyond the budget of ±{}",
                    spec.max_group
                ))
            })?;
            sheet.set(m, spec.encode(g, st));
        }
        sheet.data = data;
        sheet.expires_at_ms = ttl.map(|t| {
            self.now_ms()
                .saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
        });
        let n = sheet.order.len() as u64;
        boards.insert(dest, sheet);
        Ok(n)
    }

    async fn clear(&self, scope: &Scope) -> Result<()> {
        let key = self.key(scope)?;
        self.lock().remove(&key);
        Ok(())
    }
}
