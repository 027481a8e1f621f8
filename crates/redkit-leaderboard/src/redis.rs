//! The Redis backend: one sorted set per board, member data in a hash beside it, every
//! operation one Lua script (one round trip, atomic).

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redkit_core::redis::{FromRedisValue, Value, cmd};
use redkit_core::{Clock, Invocation, Key, Redis, Script, SystemClock};

use crate::board::{MAX_POSITION, Spec, check_batch, check_count, check_member};
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
/// share the board's hash tag, so a board lives on one cluster slot. Every key a script
/// touches is passed in `KEYS`: for the current (or a previous) period the client passes
/// the boards of the period its own clock says and of the periods on either side, and
/// the script takes the one the server's clock says (or, when the clocks disagree by more
/// than a period, answers which period it is and the client tries again). Periods and
/// the tie-break time come from the server's clock.
#[derive(Clone)]
pub struct RedisLeaderboard {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    spec: Spec,
    base: Key,
    /// This machine's clock: only to choose which period boards to pass.
    clock: Arc<dyn Clock>,
}

/// How many times a script is sent again with the period the server named.
const PERIOD_ATTEMPTS: usize = 3;

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
                clock: Arc::new(SystemClock),
            }),
        })
    }

    /// Replaces the clock this machine uses to choose the candidate period boards it
    /// passes (tests: a skewed client). The server's clock still decides the period.
    #[doc(hidden)]
    pub fn with_client_clock(self, clock: impl Clock) -> RedisLeaderboard {
        let inner = &self.inner;
        RedisLeaderboard {
            inner: Arc::new(Inner {
                redis: inner.redis.clone(),
                spec: inner.spec.clone(),
                base: inner.base.clone(),
                clock: Arc::new(clock),
            }),
        }
    }

    /// The board's base key (every key of the board starts with it).
    pub fn key(&self) -> &str {
        self.inner.base.as_str()
    }

    /// A call of `script` on `scopes`: their boards' keys, the board's arguments, the
    /// scope tokens; the script's own arguments follow.
    fn call(
        &self,
        script: &'static Script,
        scopes: &[Scope],
        centers: &[(char, i64)],
    ) -> Result<Invocation<'static>> {
        let mut call = script.call();
        let mut tokens = Vec::with_capacity(scopes.len());
        let secs = i64::try_from(self.inner.clock.now().as_secs()).unwrap_or(i64::MAX);
        for scope in scopes {
            let (token, keys) = scope_keys(
                self.inner.base.as_str(),
                &self.inner.spec,
                scope,
                secs,
                centers,
            )?;
            for key in keys {
                call = call.key(key);
            }
            tokens.push(token);
        }
        for arg in &self.inner.spec.args {
            call = call.arg(arg.as_str());
        }
        call = call.arg(tokens.len());
        for token in tokens {
            call = call.arg(token);
        }
        Ok(call)
    }

    /// The all-time board and the current board of every period: where writes go.
    fn write_scopes(&self) -> Vec<Scope> {
        let mut scopes = vec![Scope::AllTime];
        scopes.extend(
            self.inner
                .spec
                .board
                .periods
                .iter()
                .map(|p| Scope::Current(*p)),
        );
        scopes
    }

    /// Runs `script` on `scopes` with its own arguments from `args`; when the server's
    /// period is none of the boards passed, sends it again with the period it named.
    async fn run<T: FromRedisValue>(
        &self,
        script: &'static Script,
        scopes: &[Scope],
        args: impl Fn(Invocation<'static>) -> Invocation<'static>,
    ) -> Result<T> {
        let mut centers: Vec<(char, i64)> = Vec::new();
        for _ in 0..PERIOD_ATTEMPTS {
            let call = args(self.call(script, scopes, &centers)?);
            let value: Value = call.invoke(&self.inner.redis).await?;
            if let Value::SimpleString(s) = &value
                && let Some(named) = s.strip_prefix("PERIOD ")
            {
                let (code, index) = named
                    .split_once(' ')
                    .and_then(|(c, i)| Some((c.chars().next()?, i.parse::<i64>().ok()?)))
                    .ok_or_else(|| unexpected(format!("a script replied {s}")))?;
                centers.retain(|(c, _)| *c != code);
                centers.push((code, index));
                continue;
            }
            return redkit_core::redis::from_redis_value(value)
                .map_err(|e| unexpected(format!("{}: {e}", script.name())));
        }
        Err(unexpected(
            "the server's period changed on every attempt to pick it",
        ))
    }

    async fn read<T: FromRedisValue>(
        &self,
        scope: &Scope,
        args: impl Fn(Invocation<'static>) -> Invocation<'static>,
    ) -> Result<T> {
        self.run(&READ, std::slice::from_ref(scope), args).await
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

    async fn ranked(
        &self,
        scope: &Scope,
        args: impl Fn(Invocation<'static>) -> Invocation<'static>,
    ) -> Result<Vec<Entry>> {
        let values: Vec<Value> = self.read(scope, args).await?;
        Ok(parse_entries(&self.inner.spec, values)?
            .into_iter()
            .flatten()
            .collect())
    }
}

/// How far this machine's clock may be off the server's before a script on a current or
/// previous period board has to be sent again.
const SKEW_MARGIN_SECS: i64 = 300;

/// A scope's token (see lua/common.lua) and the keys of its boards (set, data, ties for
/// each): one board for fixed scopes; for a current or previous period, the boards of the
/// periods this machine's clock (`now_secs`) gives within ±`SKEW_MARGIN_SECS` (one board,
/// two near a boundary), or the period the server named (`centers`).
fn scope_keys(
    base: &str,
    spec: &Spec,
    scope: &Scope,
    now_secs: i64,
    centers: &[(char, i64)],
) -> Result<(String, Vec<String>)> {
    let board = |suffix: &str| {
        [
            format!("{base}:{suffix}"),
            format!("{base}:{suffix}:data"),
            format!("{base}:{suffix}:ties"),
        ]
    };
    let (period, back) = match scope {
        Scope::Current(p) => (*p, 0),
        Scope::Previous(p, n) => (*p, *n),
        Scope::AllTime | Scope::Combined(_) | Scope::On(..) => {
            // fixed boards: the period of a date needs no clock
            let suffix = spec.resolve(&spec.scope_arg(scope)?, 0);
            return Ok(("f".into(), board(&suffix).into()));
        }
    };
    let code = period.code();
    let back = i64::from(back);
    let mut candidates: Vec<i64> = Vec::with_capacity(2);
    match centers.iter().find(|(c, _)| *c == code) {
        Some((_, current)) => candidates.push(current - back),
        None => {
            for t in [-SKEW_MARGIN_SECS, 0, SKEW_MARGIN_SECS] {
                let local = now_secs
                    .saturating_add(t)
                    .saturating_add(i64::from(spec.board.utc_offset));
                let index = period.index(local) - back;
                if !candidates.contains(&index) {
                    candidates.push(index);
                }
            }
        }
    }
    let list: Vec<String> = candidates.iter().map(i64::to_string).collect();
    Ok((
        format!("{code}:{back}:{}", list.join(",")),
        candidates
            .iter()
            .flat_map(|i| board(&format!("{code}:{i}")))
            .collect(),
    ))
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
        let values: Vec<Value> = self
            .run(&SUBMIT, &self.write_scopes(), |call| {
                let mut call = call.arg(submissions.len());
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
                call
            })
            .await?;
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
        self.run(&REMOVE, &self.write_scopes(), |call| {
            let mut call = call.arg("members");
            for m in members {
                call = call.arg(*m);
            }
            call
        })
        .await
    }

    async fn remove_range(&self, scope: &Scope, removal: Removal) -> Result<u64> {
        let spec = &self.inner.spec;
        let scopes = std::slice::from_ref(scope);
        match removal {
            Removal::OutsideTop(n) if n >= MAX_POSITION => {
                // validate the scope as a removal would, then remove nobody
                spec.scope_arg(scope)?;
                Ok(0)
            }
            Removal::OutsideTop(n) => {
                self.run(&REMOVE, scopes, |call| call.arg("outside").arg(n))
                    .await
            }
            Removal::ScoreRange { min, max } => {
                let (lo, hi) = spec.stored_range(min, max)?;
                self.run(&REMOVE, scopes, |call| {
                    call.arg("score").arg(bound(lo)).arg(bound(hi))
                })
                .await
            }
        }
    }

    async fn entries(&self, scope: &Scope, members: &[&str]) -> Result<Vec<Option<Entry>>> {
        check_batch(members.len())?;
        members.iter().try_for_each(|m| check_member(m))?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Value> = self
            .read(scope, |call| {
                let mut call = call.arg("entries");
                for m in members {
                    call = call.arg(*m);
                }
                call
            })
            .await?;
        parse_entries(&self.inner.spec, values)
    }

    async fn range(&self, scope: &Scope, start: u64, count: u64) -> Result<Vec<Entry>> {
        check_count(count)?;
        if start >= MAX_POSITION {
            return Ok(Vec::new());
        }
        if let Some(key) = self.direct_key(scope)?
            && (start == 0 || self.inner.spec.board.ranking == Ranking::Ordinal)
        {
            return self.range_direct(&key, start, count).await;
        }
        self.ranked(scope, |call| call.arg("range").arg(start).arg(count))
            .await
    }

    async fn around(&self, scope: &Scope, member: &str, n: u64) -> Result<Vec<Entry>> {
        check_member(member)?;
        check_count(n.saturating_mul(2).saturating_add(1))?;
        self.ranked(scope, |call| call.arg("around").arg(member).arg(n))
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
        self.ranked(scope, |call| {
            call.arg("score")
                .arg(bound(lo))
                .arg(bound(hi))
                .arg(offset.min(MAX_POSITION))
                .arg(count)
        })
        .await
    }

    async fn count(&self, scope: &Scope) -> Result<u64> {
        self.read(scope, |call| call.arg("count")).await
    }

    async fn percentile(&self, scope: &Scope, member: &str) -> Result<Option<f64>> {
        check_member(member)?;
        let v: Vec<u64> = self.read(scope, |call| call.arg("pct").arg(member)).await?;
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
        let (_, ttl_ms) = spec.check_combine(name, sources, ttl)?;
        let mut scopes = vec![Scope::Combined(name.to_string())];
        scopes.extend(sources.iter().cloned());
        let v: Value = self
            .run(&COMBINE, &scopes, |call| {
                call.arg(aggregate.code()).arg(ttl_ms)
            })
            .await?;
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
            .run(&REMOVE, std::slice::from_ref(scope), |call| {
                call.arg("clear")
            })
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

    use crate::Period;
    use std::time::{Duration, UNIX_EPOCH};

    /// Every scope a script can be given, on a board with every period.
    fn all_scopes() -> Vec<Scope> {
        let mut scopes = vec![Scope::AllTime, Scope::combined("week-total")];
        for p in [
            Period::Hourly,
            Period::Daily,
            Period::Weekly,
            Period::Monthly,
            Period::Yearly,
        ] {
            scopes.push(Scope::Current(p));
            scopes.push(Scope::Previous(p, 3));
            scopes.push(Scope::on(
                p,
                UNIX_EPOCH + Duration::from_secs(1_795_409_414),
            ));
        }
        scopes
    }

    #[test]
    fn every_key_of_every_script_call_shares_one_slot() {
        let board = Board::named("arena").periods([
            Period::Hourly,
            Period::Daily,
            Period::Weekly,
            Period::Monthly,
            Period::Yearly,
        ]);
        let spec = Spec::new(board).unwrap();
        let base = redkit_core::Keyspace::new("app")
            .unwrap()
            .child("lb")
            .unwrap()
            .tagged("arena")
            .unwrap();
        let now = 1_795_409_414;
        // submit and remove-members: the all-time board and every current period board;
        // read, remove-range, clear: one scope; combine: a combined board and sources
        let mut keys = Vec::new();
        for scope in all_scopes() {
            // far from any boundary: one board; ten seconds after an hour began, the
            // hourly board and the one before it (the server may still be in it)
            for (at, hourly) in [(now, 1), (1_795_406_410, 2)] {
                let (token, k) = scope_keys(base.as_str(), &spec, &scope, at, &[]).unwrap();
                let boards = match scope {
                    _ if token == "f" => 1,
                    Scope::Current(Period::Hourly) | Scope::Previous(Period::Hourly, _) => hourly,
                    _ => 1,
                };
                assert_eq!(k.len(), 3 * boards, "{scope:?} at {at}: {token}");
                keys.extend(k);
            }
        }
        // around an index the server named
        let (token, k) = scope_keys(
            base.as_str(),
            &spec,
            &Scope::Previous(Period::Daily, 1),
            now,
            &[('d', 30)],
        )
        .unwrap();
        assert_eq!(token, "d:1:29");
        assert!(
            k[0].ends_with(":d:29") && k[1].ends_with(":d:29:data"),
            "{k:?}"
        );
        keys.extend(k);
        redkit_testkit::assert_same_slot(&keys);
        for key in &keys {
            assert!(key.starts_with(base.as_str()), "{key}");
        }
        for script in [&*SUBMIT, &*READ, &*REMOVE, &*COMBINE] {
            assert!(script.code().starts_with("-- KEYS"), "{}", script.name());
        }
    }

    /// The operands around each `..` of a line of Lua (comments dropped).
    fn concatenations(line: &str) -> Vec<(String, String)> {
        let code = line.split("--").next().unwrap_or("");
        let operand = |c: char| c.is_alphanumeric() || "_[].:'\"".contains(c);
        let parts: Vec<&str> = code.split("..").collect();
        parts
            .windows(2)
            .map(|w| {
                let left: String = w[0]
                    .trim_end()
                    .chars()
                    .rev()
                    .take_while(|c| operand(*c))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let right: String = w[1]
                    .trim_start()
                    .chars()
                    .take_while(|c| operand(*c))
                    .collect();
                (left, right)
            })
            .collect()
    }

    /// Whether a concatenation operand looks like part of a key name.
    fn keyish(operand: &str) -> bool {
        let names = ["key", "base", "dest", "ties", "board", "b.z", "b.d", "b.t"];
        operand.contains("KEYS")
            || names.contains(&operand)
            || operand.ends_with(".z")
            || operand.ends_with(".d")
            || operand.ends_with(".t")
            || operand.starts_with("':")
            || operand.starts_with("\":")
    }

    /// No script makes a key name: no `..` concatenation has a key-like operand (`KEYS`,
    /// a key variable, or a `':<suffix>'` literal).
    #[test]
    fn no_script_builds_a_key_name() {
        assert!(keyish("KEYS[1]") && keyish("key") && keyish("':data'") && keyish("b.z"));
        assert_eq!(
            concatenations("local k = base .. ':' .. code -- ok .. here"),
            [
                ("base".to_string(), "':'".to_string()),
                ("':'".into(), "code".into())
            ]
        );
        assert!(
            !concatenations("x = '(' .. fmt(g)")
                .iter()
                .any(|(l, r)| keyish(l) || keyish(r))
        );
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/lua");
        let scripts = redkit_testkit::lua_scripts(dir);
        for (path, text) in &scripts {
            for (n, line) in text.lines().enumerate() {
                for (left, right) in concatenations(line) {
                    assert!(
                        !keyish(&left) && !keyish(&right),
                        "{}:{}: `{left} .. {right}` looks like a key name being built; \
                         pass the key in KEYS instead\n{line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
        assert!(
            scripts.len() >= 5,
            "found {} scripts in {dir}",
            scripts.len()
        );
    }
}
