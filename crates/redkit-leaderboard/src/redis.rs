//! The Redis backend: one sorted set per board, member data in a hash beside it, every
//! operation one Lua script (one round trip, atomic).

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redkit_core::redis::{Value, cmd};
use redkit_core::{Invocation, Key, Redis, Script};

use crate::board::{Spec, check_batch, check_count, check_member};
use crate::{
    Aggregate, Board, Entry, Error, Leaderboard, Mode, Ranking, Removal, Result, Scope, Submission,
    Submitted,
};

macro_rules! script {
    ($name:literal) => {
        LazyLock::new(|| {
            Script::new(
                $name,
                concat!(
                    include_str!("../lua/common.lua"),
                    include_str!(concat!("../lua/", $name, ".lua"))
                ),
            )
        })
    };
}

static SUBMIT: LazyLock<Script> = script!("submit");
static READ: LazyLock<Script> = script!("read");
static REMOVE: LazyLock<Script> = script!("remove");
static COMBINE: LazyLock<Script> = script!("combine");

/// A [`Leaderboard`] on Redis.
///
/// Keys: `<prefix>:lb:{<name>}:all` for the all-time board, `...:<period code>:<index>`
/// for period boards (`d:20415` is the 20,415th day since 1970), `...:x:<name>` for
/// combined boards, each with `:data` (member data) and, for dense ranking, `:ties`. All
/// share the board's hash tag, so a board lives on one cluster slot. Periods and the
/// tie-break time come from the server's clock.
#[derive(Clone)]
pub struct RedisLeaderboard {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    spec: Spec,
    base: Key,
}

impl fmt::Debug for RedisLeaderboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLeaderboard")
            .field("key", &self.inner.base.as_str())
            .field("board", &self.inner.spec.board)
            .finish()
    }
}

impl RedisLeaderboard {
    /// A leaderboard over `redis`; validates the board.
    pub fn new(redis: &Redis, board: Board) -> Result<RedisLeaderboard> {
        let spec = Spec::new(board)?;
        let base = redis
            .keyspace(&spec.board.prefix)?
            .child("lb")?
            .tagged(&spec.board.name)?;
        Ok(RedisLeaderboard {
            inner: Arc::new(Inner {
                redis: redis.clone(),
                spec,
                base,
            }),
        })
    }

    /// The board's base key (every key of the board starts with it).
    pub fn key(&self) -> &str {
        self.inner.base.as_str()
    }

    fn call(&self, script: &'static Script) -> Invocation<'static> {
        let mut call = script.call().key(self.inner.base.as_str());
        for arg in &self.inner.spec.args {
            call = call.arg(arg.as_str());
        }
        call
    }

    fn read(&self, scope: &Scope) -> Result<Invocation<'static>> {
        Ok(self.call(&READ).arg(self.inner.spec.scope_arg(scope)?))
    }

    /// The key of a scope that needs no clock (all-time and combined boards): those are
    /// read with plain commands where one command answers, without a script.
    fn fixed_key(&self, scope: &Scope) -> Result<Option<String>> {
        Ok(match scope {
            Scope::AllTime | Scope::Combined(_) => Some(format!(
                "{}:{}",
                self.inner.base.as_str(),
                self.inner.spec.scope_arg(scope)?
            )),
            _ => None,
        })
    }

    /// The key of a scope whose range reads may skip the script: a board without member
    /// data, read where no clock is needed.
    fn direct_key(&self, scope: &Scope) -> Result<Option<String>> {
        if self.inner.spec.board.member_data {
            return Ok(None);
        }
        self.fixed_key(scope)
    }

    /// A range read with one `ZRANGE ... WITHSCORES`: ranks follow from the position on
    /// ordinal boards, and from the top on the first page of the others.
    async fn range_direct(&self, key: &str, start: u64, count: u64) -> Result<Vec<Entry>> {
        let spec = &self.inner.spec;
        let range: Value = self
            .inner
            .redis
            .query(
                cmd("ZRANGE")
                    .arg(key)
                    .arg(start)
                    .arg(start + count - 1)
                    .arg("WITHSCORES"),
            )
            .await?;
        let pairs = parse_pairs(range)?;
        let groups: Vec<f64> = pairs.iter().map(|(_, s)| spec.group(*s)).collect();
        let ranks = spec.ranks(start + 1, start, &groups);
        Ok(pairs
            .into_iter()
            .zip(ranks)
            .map(|((member, stored), rank)| Entry {
                member,
                score: spec.decode(stored),
                rank,
                data: None,
            })
            .collect())
    }

    async fn ranked(&self, call: Invocation<'static>) -> Result<Vec<Entry>> {
        let values: Vec<Value> = call.invoke(&self.inner.redis).await?;
        Ok(parse_entries(&self.inner.spec, values)?
            .into_iter()
            .flatten()
            .collect())
    }
}

fn unexpected(what: impl Into<String>) -> Error {
    Error::Store(redkit_core::Error::unexpected_reply(what))
}

fn text(v: &Value) -> Result<Option<String>> {
    match v {
        Value::Nil | Value::Boolean(false) => Ok(None),
        Value::BulkString(b) => String::from_utf8(b.clone())
            .map(Some)
            .map_err(|_| unexpected("a member or its data is not UTF-8")),
        Value::SimpleString(s) => Ok(Some(s.clone())),
        other => Err(unexpected(format!("expected a string, got {other:?}"))),
    }
}

fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(unexpected(format!("expected an integer, got {other:?}"))),
    }
}

fn parse_stored(s: &str) -> Result<f64> {
    s.parse::<f64>()
        .map_err(|_| unexpected(format!("`{s}` is not a score")))
}

/// Member and stored value pairs of a `ZRANGE ... WITHSCORES` reply: flat on RESP2, pairs
/// on RESP3.
fn parse_pairs(v: Value) -> Result<Vec<(String, f64)>> {
    let Value::Array(items) = v else {
        return Err(unexpected(format!("ZRANGE replied {v:?}")));
    };
    let score = |v: &Value| match v {
        Value::Double(d) => Ok(*d),
        other => parse_stored(&text(other)?.ok_or_else(|| unexpected("a nil score"))?),
    };
    let member = |v: &Value| text(v)?.ok_or_else(|| unexpected("a nil member"));
    if items.iter().all(|i| matches!(i, Value::Array(_))) {
        items
            .iter()
            .map(|pair| match pair {
                Value::Array(p) if p.len() == 2 => Ok((member(&p[0])?, score(&p[1])?)),
                other => Err(unexpected(format!("a ZRANGE pair {other:?}"))),
            })
            .collect()
    } else {
        items
            .chunks(2)
            .map(|p| match p {
                [m, s] => Ok((member(m)?, score(s)?)),
                _ => Err(unexpected("an odd ZRANGE reply")),
            })
            .collect()
    }
}

/// Entries from the scripts' flat member, stored, rank, data reply.
fn parse_entries(spec: &Spec, values: Vec<Value>) -> Result<Vec<Option<Entry>>> {
    if !values.len().is_multiple_of(4) {
        return Err(unexpected(format!(
            "{} values are not whole entries",
            values.len()
        )));
    }
    values
        .chunks_exact(4)
        .map(|e| {
            let Some(member) = text(&e[0])? else {
                return Ok(None);
            };
            let stored = text(&e[1])?.ok_or_else(|| unexpected("an entry without a score"))?;
            Ok(Some(Entry {
                member,
                score: spec.decode(parse_stored(&stored)?),
                rank: u64::try_from(int(&e[2])?).map_err(|_| unexpected("a negative rank"))?,
                data: text(&e[3])?,
            }))
        })
        .collect()
}

fn mode_code(mode: Mode) -> &'static str {
    match mode {
        Mode::Replace => "r",
        Mode::Best => "b",
        Mode::Increment => "i",
    }
}

#[async_trait]
impl Leaderboard for RedisLeaderboard {
    async fn submit_batch(&self, submissions: &[Submission]) -> Result<Vec<Submitted>> {
        let spec = &self.inner.spec;
        spec.check_submissions(submissions)?;
        if submissions.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.call(&SUBMIT).arg(submissions.len());
        for s in submissions {
            call = call
                .arg(s.member.as_str())
                .arg(mode_code(s.mode))
                .arg(s.score.to_string());
            call = match &s.data {
                Some(d) => call.arg(format!("+{d}")),
                None => call.arg("-"),
            };
        }
        let values: Vec<Value> = call.invoke(&self.inner.redis).await?;
        match values.first().map(int).transpose()? {
            Some(1) => {}
            Some(-1) => {
                let i = values.get(1).map(int).transpose()?.unwrap_or(0);
                let s = usize::try_from(i)
                    .ok()
                    .and_then(|i| submissions.get(i))
                    .ok_or_else(|| unexpected("an invalid submission index"))?;
                return Err(Error::InvalidScore(format!(
                    "adding {} to `{}` would take its score beyond the budget of ±{}",
                    s.score, s.member, spec.max_group
                )));
            }
            Some(-2) => {
                return Err(Error::HorizonPassed(
                    "the server's clock is outside the tie-break window".into(),
                ));
            }
            _ => return Err(unexpected(format!("submit replied {values:?}"))),
        }
        values[1..]
            .chunks_exact(2)
            .map(|pair| {
                let stored = text(&pair[0])?.ok_or_else(|| unexpected("no score"))?;
                Ok(Submitted {
                    score: spec.decode(parse_stored(&stored)?),
                    changed: int(&pair[1])? == 1,
                })
            })
            .collect()
    }

    async fn remove(&self, members: &[&str]) -> Result<u64> {
        check_batch(members.len())?;
        members.iter().try_for_each(|m| check_member(m))?;
        if members.is_empty() {
            return Ok(0);
        }
        let mut call = self.call(&REMOVE).arg("members");
        for m in members {
            call = call.arg(*m);
        }
        let n: u64 = call.invoke(&self.inner.redis).await?;
        Ok(n)
    }

    async fn remove_range(&self, scope: &Scope, removal: Removal) -> Result<u64> {
        let spec = &self.inner.spec;
        let call = match removal {
            Removal::OutsideTop(n) => self
                .call(&REMOVE)
                .arg("outside")
                .arg(spec.scope_arg(scope)?)
                .arg(n),
            Removal::ScoreRange { min, max } => {
                let (lo, hi) = spec.stored_range(min, max)?;
                self.call(&REMOVE)
                    .arg("score")
                    .arg(spec.scope_arg(scope)?)
                    .arg(bound(lo))
                    .arg(bound(hi))
            }
        };
        let n: u64 = call.invoke(&self.inner.redis).await?;
        Ok(n)
    }

    async fn entries(&self, scope: &Scope, members: &[&str]) -> Result<Vec<Option<Entry>>> {
        check_batch(members.len())?;
        members.iter().try_for_each(|m| check_member(m))?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.read(scope)?.arg("entries");
        for m in members {
            call = call.arg(*m);
        }
        let values: Vec<Value> = call.invoke(&self.inner.redis).await?;
        parse_entries(&self.inner.spec, values)
    }

    async fn range(&self, scope: &Scope, start: u64, count: u64) -> Result<Vec<Entry>> {
        check_count(count)?;
        if start > i64::MAX as u64 / 2 {
            return Ok(Vec::new());
        }
        if let Some(key) = self.direct_key(scope)?
            && (start == 0 || self.inner.spec.board.ranking == Ranking::Ordinal)
        {
            return self.range_direct(&key, start, count).await;
        }
        self.ranked(self.read(scope)?.arg("range").arg(start).arg(count))
            .await
    }

    async fn around(&self, scope: &Scope, member: &str, n: u64) -> Result<Vec<Entry>> {
        check_member(member)?;
        check_count(n.saturating_mul(2).saturating_add(1))?;
        self.ranked(self.read(scope)?.arg("around").arg(member).arg(n))
            .await
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
        let (lo, hi) = self.inner.spec.stored_range(min, max)?;
        self.ranked(
            self.read(scope)?
                .arg("score")
                .arg(bound(lo))
                .arg(bound(hi))
                .arg(offset.min(i64::MAX as u64))
                .arg(count),
        )
        .await
    }

    async fn count(&self, scope: &Scope) -> Result<u64> {
        let n: u64 = self
            .read(scope)?
            .arg("count")
            .invoke(&self.inner.redis)
            .await?;
        Ok(n)
    }

    async fn percentile(&self, scope: &Scope, member: &str) -> Result<Option<f64>> {
        check_member(member)?;
        let v: Vec<u64> = self
            .read(scope)?
            .arg("pct")
            .arg(member)
            .invoke(&self.inner.redis)
            .await?;
        Ok(match v.as_slice() {
            [worse, total] if *total > 0 => Some(100.0 * *worse as f64 / *total as f64),
            _ => None,
        })
    }

    async fn combine(
        &self,
        name: &str,
        sources: &[Scope],
        aggregate: Aggregate,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        let spec = &self.inner.spec;
        let (dest, ttl_ms) = spec.check_combine(name, sources, ttl)?;
        let mut call = self
            .call(&COMBINE)
            .arg(dest)
            .arg(aggregate.code())
            .arg(ttl_ms);
        for s in sources {
            call = call.arg(spec.scope_arg(s)?);
        }
        let v: Value = call.invoke(&self.inner.redis).await?;
        match v {
            Value::Int(n) if n >= 0 => Ok(n as u64),
            Value::Array(_) => Err(Error::InvalidScore(format!(
                "a combined score is beyond the budget of ±{}",
                spec.max_group
            ))),
            other => Err(unexpected(format!("combine replied {other:?}"))),
        }
    }

    async fn rank(&self, scope: &Scope, member: &str) -> Result<Option<u64>> {
        check_member(member)?;
        match self.fixed_key(scope)? {
            Some(key) if self.inner.spec.board.ranking == Ranking::Ordinal => {
                let pos: Option<u64> = self
                    .inner
                    .redis
                    .query(cmd("ZRANK").arg(key).arg(member))
                    .await?;
                Ok(pos.map(|p| p + 1))
            }
            _ => Ok(self.entry(scope, member).await?.map(|e| e.rank)),
        }
    }

    async fn score(&self, scope: &Scope, member: &str) -> Result<Option<f64>> {
        check_member(member)?;
        match self.fixed_key(scope)? {
            Some(key) => {
                let stored: Option<String> = self
                    .inner
                    .redis
                    .query(cmd("ZSCORE").arg(key).arg(member))
                    .await?;
                stored
                    .map(|s| parse_stored(&s).map(|v| self.inner.spec.decode(v)))
                    .transpose()
            }
            None => Ok(self.entry(scope, member).await?.map(|e| e.score)),
        }
    }

    async fn clear(&self, scope: &Scope) -> Result<()> {
        let _: u64 = self
            .call(&REMOVE)
            .arg("clear")
            .arg(self.inner.spec.scope_arg(scope)?)
            .invoke(&self.inner.redis)
            .await?;
        Ok(())
    }
}

/// A sorted-set bound with every digit a double has.
fn bound(x: f64) -> String {
    if x == f64::INFINITY {
        "+inf".into()
    } else if x == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{x:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_board_shares_one_slot() {
        let base = redkit_core::Keyspace::new("app")
            .unwrap()
            .child("lb")
            .unwrap()
            .tagged("arena")
            .unwrap();
        let b = base.as_str();
        redkit_testkit::assert_same_slot(&[
            b.to_string(),
            format!("{b}:all"),
            format!("{b}:all:data"),
            format!("{b}:all:ties"),
            format!("{b}:d:20415"),
            format!("{b}:d:20415:data"),
            format!("{b}:w:2916:ties"),
            format!("{b}:x:week-total"),
            format!("{b}:x:week-total:data"),
        ]);
        for script in [&*SUBMIT, &*READ, &*REMOVE, &*COMBINE] {
            assert!(script.code().starts_with("-- KEYS[1]"), "{}", script.name());
            assert!(
                !script.code().contains("KEYS[2]"),
                "{} declares one key and derives the rest from it",
                script.name()
            );
        }
    }
}
