//! [`MemoryRateLimiter`]: the same algorithms and arithmetic as the Redis script, in
//! process memory, on any [`Clock`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redkit_core::{Clock, Keyspace, SystemClock};

use crate::limit::{Limit, MAX_CAPACITY};
use crate::policy::{Policy, Prepared, Raw};
use crate::{Decision, Error, RateLimiter, Request, Result};

const MAX_POINTS: i64 = MAX_CAPACITY as i64;
const MAX_AHEAD: i64 = 1 << 45;
/// The latest time the arithmetic takes (2^53 µs, as the script's doubles): a clock past
/// it is an error, never an overflow.
const MAX_NOW: i64 = 1 << 53;

/// A rate limiter in process memory: for tests (with a
/// [`ManualClock`](redkit_core::ManualClock)), single-process services, and as the
/// insurance of a [`RedisRateLimiter`](crate::RedisRateLimiter).
///
/// It decides exactly as the Redis backend does (the conformance suite holds both to the
/// same answers). Expired state is swept as the map grows, so idle keys do not pile up.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Policy,
    /// The policy's limits as the arithmetic reads them.
    params: Vec<P>,
    ns: Keyspace,
    clock: Arc<dyn Clock>,
    map: Mutex<Map>,
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("limits", &self.inner.policy.limits)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

/// Builds a [`MemoryRateLimiter`].
#[derive(Debug)]
pub struct MemoryRateLimiterBuilder {
    limits: Vec<Limit>,
    aligned: bool,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Map {
    states: HashMap<String, Slot>,
    /// Size after the last sweep: the next sweep runs when the map doubles.
    swept_len: usize,
}

struct Slot {
    state: Stored,
    /// Microseconds since the epoch after which the state is gone (Redis TTL).
    expires: i64,
}

enum Stored {
    Fixed { idx: i64, count: i64 },
    Sliding { idx: i64, cur: i64, prev: i64 },
    Log(VecDeque<i64>),
    Tat(i64),
    Blocked(i64),
}

/// A limit's state while a request is decided (the script's `s`).
struct Work {
    till: Option<i64>,
    kind: Kind,
}

enum Kind {
    Fixed {
        idx: i64,
        count: i64,
        left: i64,
    },
    Sliding {
        idx: i64,
        cur: i64,
        prev: i64,
        elapsed: i64,
    },
    Log {
        times: VecDeque<i64>,
    },
    Tat {
        tat: i64,
    },
}

/// A limit's numbers as the script reads them.
#[derive(Clone, Copy)]
struct P {
    id: u64,
    c: i64,
    w: i64,
    blk: i64,
}

impl MemoryRateLimiter {
    /// A builder; add at least one [`Limit`]. Uses the system clock unless given one.
    pub fn builder() -> MemoryRateLimiterBuilder {
        MemoryRateLimiterBuilder {
            limits: Vec::new(),
            aligned: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// How many keys' states are held (expired ones until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().states.len()
    }

    /// Whether no state is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        self.inner
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MemoryRateLimiterBuilder {
    /// Adds a limit. Several limits are checked and consumed together.
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limits.push(limit);
        self
    }

    /// Windows end at the same instant for every key; see
    /// [`RedisRateLimiterBuilder::aligned_windows`](crate::RedisRateLimiterBuilder::aligned_windows).
    pub fn aligned_windows(mut self, on: bool) -> Self {
        self.aligned = on;
        self
    }

    /// The clock (a [`ManualClock`](redkit_core::ManualClock) for exact tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Validates the limits.
    pub fn build(self) -> Result<MemoryRateLimiter> {
        let policy = Policy::new(self.limits, self.aligned)?;
        let ns = Keyspace::new("memory").and_then(|k| k.child("rl"))?;
        let params = policy
            .params
            .iter()
            .map(|p| P {
                id: p[0],
                c: p[1] as i64,
                w: p[2] as i64,
                blk: p[3] as i64,
            })
            .collect();
        Ok(MemoryRateLimiter {
            inner: Arc::new(Inner {
                policy,
                params,
                ns,
                clock: self.clock,
                map: Mutex::new(Map::default()),
            }),
        })
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Map {
    fn get(&self, key: &str, now: i64) -> Option<&Stored> {
        self.states
            .get(key)
            .filter(|s| s.expires > now)
            .map(|s| &s.state)
    }

    fn put(&mut self, key: &str, state: Stored, expires: i64) {
        self.states.insert(key.to_string(), Slot { state, expires });
    }

    fn del(&mut self, key: &str) {
        self.states.remove(key);
    }

    fn sweep(&mut self, now: i64) {
        if self.states.len() >= (2 * self.swept_len).max(1024) {
            self.states.retain(|_, s| s.expires > now);
            self.swept_len = self.states.len();
        }
    }
}

/// Lua's `math.ceil(us / 1000)` as an expiry in microseconds (PXAT granularity).
fn pxat(us: i64) -> i64 {
    us.div_euclid(1000) * 1000 + if us.rem_euclid(1000) > 0 { 1000 } else { 0 }
}

fn estimate(prev: i64, cur: i64, elapsed: i64, w: i64) -> f64 {
    prev as f64 * (w - elapsed) as f64 / w as f64 + cur as f64
}

impl Work {
    fn load(map: &mut Map, key: &str, p: P, now: i64, ph: i64) -> Work {
        let stored = map.get(key, now);
        if let Some(Stored::Blocked(till)) = stored {
            let till = *till;
            if p.id == 3 && till <= now {
                map.del(key);
            }
            let kind = Work::fresh(p, now, ph);
            return Work {
                till: (till > now).then_some(till),
                kind,
            };
        }
        let mut kind = Work::fresh(p, now, ph);
        match (&mut kind, stored) {
            (Kind::Fixed { idx, count, .. }, Some(Stored::Fixed { idx: i, count: c }))
                if *i == *idx =>
            {
                *count = *c;
            }
            (
                Kind::Sliding { idx, cur, prev, .. },
                Some(Stored::Sliding {
                    idx: i,
                    cur: c,
                    prev: pr,
                }),
            ) => {
                if *i == *idx {
                    (*cur, *prev) = (*c, *pr);
                } else if *i == *idx - 1 {
                    *prev = *c;
                }
            }
            (Kind::Log { times }, Some(Stored::Log(stored))) => {
                times.extend(stored.iter().copied().filter(|&t| t > now - p.w));
            }
            (Kind::Tat { tat }, Some(Stored::Tat(t))) => *tat = (*t).max(now),
            _ => {}
        }
        Work { till: None, kind }
    }

    fn fresh(p: P, now: i64, ph: i64) -> Kind {
        let shifted = now + ph % p.w;
        let idx = shifted.div_euclid(p.w);
        match p.id {
            1 => Kind::Fixed {
                idx,
                count: 0,
                left: (idx + 1) * p.w - shifted,
            },
            2 => Kind::Sliding {
                idx,
                cur: 0,
                prev: 0,
                elapsed: shifted - idx * p.w,
            },
            3 => Kind::Log {
                times: VecDeque::new(),
            },
            _ => Kind::Tat { tat: now },
        }
    }

    fn fits(&self, p: P, now: i64, cost: i64) -> bool {
        if self.till.is_some() {
            return false;
        }
        match &self.kind {
            Kind::Fixed { count, .. } => count + cost <= p.c,
            Kind::Sliding {
                cur, prev, elapsed, ..
            } => estimate(*prev, *cur, *elapsed, p.w) + cost as f64 <= p.c as f64,
            Kind::Log { times } => times.len() as i64 + cost <= p.c,
            Kind::Tat { tat } => tat + cost * p.w - now <= p.c * p.w,
        }
    }

    /// (remaining, reset after)
    fn status(&self, p: P, now: i64) -> (i64, i64) {
        match &self.kind {
            Kind::Fixed { count, left, .. } => ((p.c - count).max(0), *left),
            Kind::Sliding {
                cur, prev, elapsed, ..
            } => {
                let reset = if *cur > 0 {
                    2 * p.w - elapsed
                } else if *prev > 0 {
                    p.w - elapsed
                } else {
                    0
                };
                let est = estimate(*prev, *cur, *elapsed, p.w);
                (((p.c as f64 - est).floor() as i64).max(0), reset)
            }
            Kind::Log { times } => {
                let reset = times.back().map_or(0, |&t| (t + p.w - now).max(0));
                ((p.c - times.len() as i64).max(0), reset)
            }
            Kind::Tat { tat } => (
                ((p.c * p.w - (tat - now)) as f64 / p.w as f64)
                    .floor()
                    .max(0.0) as i64,
                tat - now,
            ),
        }
    }

    fn wait(&self, p: P, now: i64, cost: i64) -> i64 {
        match &self.kind {
            Kind::Fixed { left, .. } => *left,
            Kind::Sliding {
                cur, prev, elapsed, ..
            } => {
                let (w, room) = (p.w as f64, (p.c - cost) as f64);
                let (cur, prev, elapsed) = (*cur as f64, *prev as f64, *elapsed as f64);
                if cur <= room {
                    ((w - (room - cur) * w / prev - elapsed).ceil() as i64).max(1)
                } else {
                    (2.0 * w - room * w / cur - elapsed).ceil() as i64
                }
            }
            Kind::Log { times } => {
                let k = times.len() as i64 + cost - p.c;
                let at = usize::try_from(k - 1)
                    .ok()
                    .and_then(|k| times.get(k))
                    .copied()
                    .unwrap_or(now);
                (at + p.w - now).max(1)
            }
            Kind::Tat { tat } => tat + cost * p.w - p.c * p.w - now,
        }
    }

    fn save(&self, map: &mut Map, key: &str, p: P, now: i64) {
        match &self.kind {
            Kind::Fixed { idx, count, left } => map.put(
                key,
                Stored::Fixed {
                    idx: *idx,
                    count: *count,
                },
                pxat(now + left),
            ),
            Kind::Sliding {
                idx,
                cur,
                prev,
                elapsed,
            } => map.put(
                key,
                Stored::Sliding {
                    idx: *idx,
                    cur: *cur,
                    prev: *prev,
                },
                pxat(now + 2 * p.w - elapsed),
            ),
            Kind::Log { times } => match times.back() {
                Some(&newest) => map.put(key, Stored::Log(times.clone()), pxat(newest + p.w)),
                None => map.del(key),
            },
            Kind::Tat { tat } => {
                if *tat > now {
                    map.put(key, Stored::Tat(*tat), pxat(*tat));
                } else {
                    map.del(key);
                }
            }
        }
    }

    fn consume(&mut self, map: &mut Map, key: &str, p: P, now: i64, cost: i64) {
        match &mut self.kind {
            Kind::Fixed { count, .. } => *count = (*count + cost).min(MAX_POINTS),
            Kind::Sliding { cur, .. } => *cur = (*cur + cost).min(MAX_POINTS),
            Kind::Log { times } => {
                let ts = times.back().map_or(now, |&t| t.max(now));
                for _ in 0..cost.min(p.c) {
                    times.push_back(ts);
                }
            }
            // a penalty of up to 2^40 units of up to 2^45 µs each: saturate, then cap
            Kind::Tat { tat } => {
                *tat = tat
                    .saturating_add(cost.saturating_mul(p.w))
                    .min(now + MAX_AHEAD);
            }
        }
        self.save(map, key, p, now);
    }

    fn give(&mut self, map: &mut Map, key: &str, p: P, now: i64, n: i64) {
        match &mut self.kind {
            Kind::Fixed { count, .. } => *count = (*count - n).max(0),
            Kind::Sliding { cur, prev, .. } => {
                let from_cur = n.min(*cur);
                *cur -= from_cur;
                *prev = (*prev - (n - from_cur)).max(0);
            }
            Kind::Log { times } => {
                for _ in 0..n.min(times.len() as i64) {
                    times.pop_back();
                }
            }
            Kind::Tat { tat } => *tat = (*tat - n.saturating_mul(p.w)).max(now),
        }
        self.save(map, key, p, now);
    }

    fn block(&mut self, map: &mut Map, key: &str, till: i64) {
        self.till = Some(till);
        map.put(key, Stored::Blocked(till), pxat(till));
    }
}

impl MemoryRateLimiter {
    fn one(&self, map: &mut Map, key: &str, prep: Prepared, now: i64) -> Decision {
        let policy = &self.inner.policy;
        let ps = self.inner.params.as_slice();
        let keys: Vec<String> = policy
            .suffixes
            .iter()
            .map(|s| format!("{key}:{s}"))
            .collect();
        let (op, amount, ph) = (prep.op, prep.amount as i64, prep.phase as i64);
        if op == 6 {
            for k in &keys {
                map.del(k);
            }
        }
        let mut works: Vec<Work> = keys
            .iter()
            .zip(ps)
            .map(|(k, &p)| Work::load(map, k, p, now, ph))
            .collect();
        let cost = if op == 1 { amount } else { 1 };
        let mut fits: Vec<bool> = works
            .iter()
            .zip(ps)
            .map(|(w, &p)| w.fits(p, now, cost))
            .collect();
        let mut all = fits.iter().all(|&f| f);
        match op {
            1 => {
                for (j, w) in works.iter_mut().enumerate() {
                    let p = ps[j];
                    if all {
                        w.consume(map, &keys[j], p, now, cost);
                    } else if !fits[j] && w.till.is_none() && p.blk > 0 {
                        w.block(map, &keys[j], now + p.blk);
                    }
                }
            }
            3..=5 => {
                for (j, w) in works.iter_mut().enumerate() {
                    let p = ps[j];
                    if op == 5 {
                        let till = w.till.unwrap_or(0).max(now + amount);
                        w.block(map, &keys[j], till);
                    } else if w.till.is_none() {
                        if op == 3 {
                            w.consume(map, &keys[j], p, now, amount.min(MAX_POINTS));
                        } else {
                            w.give(map, &keys[j], p, now, amount);
                        }
                    }
                    fits[j] = w.fits(p, now, 1);
                }
                all = fits.iter().all(|&f| f);
            }
            _ => {}
        }
        let raws: Vec<Raw> = works
            .iter()
            .zip(ps)
            .zip(&fits)
            .map(|((w, &p), &fit)| match w.till {
                Some(till) => Raw {
                    remaining: 0,
                    reset_us: till - now,
                    retry_us: till - now,
                },
                None => {
                    let (remaining, reset_us) = w.status(p, now);
                    Raw {
                        remaining,
                        reset_us,
                        retry_us: if fit || (op == 1 && all) {
                            -1
                        } else {
                            w.wait(p, now, cost)
                        },
                    }
                }
            })
            .collect();
        policy.decision(all, raws)
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn run(&self, requests: &[Request<'_>]) -> Result<Vec<Decision>> {
        let prepared = requests
            .iter()
            .map(|r| {
                let prep = self.inner.policy.prepare(r)?;
                let key = self.inner.ns.tagged(r.key).map_err(Error::from)?;
                Ok((key, prep))
            })
            .collect::<Result<Vec<_>>>()?;
        let now = micros(self.inner.clock.now());
        if now > MAX_NOW {
            return Err(Error::InvalidArgument(format!(
                "the clock reads {:?} since the UNIX epoch, past the {MAX_NOW} µs \
                 (year 2255) the arithmetic is exact for",
                self.inner.clock.now()
            )));
        }
        let mut map = self.lock();
        map.sweep(now);
        Ok(prepared
            .into_iter()
            .map(|(key, prep)| self.one(&mut map, key.as_str(), prep, now))
            .collect())
    }

    fn limits(&self) -> &[Limit] {
        &self.inner.policy.limits
    }
}
