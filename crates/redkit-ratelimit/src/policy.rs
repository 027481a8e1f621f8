//! What both backends share: the validated limits, request checks, key phases and the
//! decoding of the per-limit numbers every backend produces.

use std::collections::HashSet;
use std::time::Duration;

use crate::limit::{Algorithm, Limit, MAX_CAPACITY, MAX_WINDOW, micros_ceil};
use crate::{Decision, Error, LimitStatus, Op, Request, Result};

/// A validated set of limits.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) limits: Vec<Limit>,
    /// Key suffix per limit.
    pub(crate) suffixes: Vec<String>,
    /// Per limit: script id, capacity, window or interval (us), block (us).
    pub(crate) params: Vec<[u64; 4]>,
    /// The smallest capacity: the largest cost that can ever pass.
    max_cost: (u64, usize),
    aligned: bool,
}

/// Per-limit numbers of one decision, as both backends produce them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raw {
    pub(crate) remaining: i64,
    pub(crate) reset_us: i64,
    /// -1: this limit alone had room.
    pub(crate) retry_us: i64,
}

/// A request with its validated numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prepared {
    /// The script's op code: 1 check, 2 peek, 3 penalty, 4 reward, 5 block, 6 reset.
    pub(crate) op: u8,
    /// Cost, points, or block microseconds.
    pub(crate) amount: u64,
    pub(crate) phase: u64,
}

/// The key suffix of a limit's state in a limiter: the limit's own (every parameter),
/// plus `_a` for a window limit of a limiter with aligned windows, whose windows start at
/// other instants than per-key offset ones, plus `=<name>` for a named limit, so two
/// purposes with equal numbers (login and password reset, 5 a minute each) keep apart
/// when named. `=` appears in no parameter and in no name.
pub(crate) fn state_suffix(l: &Limit, aligned: bool) -> String {
    let mut s = l.suffix();
    if aligned
        && matches!(
            l.algorithm(),
            Algorithm::FixedWindow | Algorithm::SlidingWindow
        )
    {
        s.push_str("_a");
    }
    if let Some(name) = l.given_name() {
        s.push('=');
        s.push_str(name);
    }
    s
}

impl Policy {
    pub(crate) fn new(limits: Vec<Limit>, aligned: bool) -> Result<Policy> {
        if limits.is_empty() {
            return Err(Error::InvalidLimit(
                "a rate limiter needs at least one limit".into(),
            ));
        }
        let mut suffixes = HashSet::new();
        let mut names = HashSet::new();
        for l in &limits {
            l.validate()?;
            if !suffixes.insert(state_suffix(l, aligned)) {
                return Err(Error::InvalidLimit(format!(
                    "the {} limit {l:?} is given twice: the two would share their state",
                    l.algorithm(),
                )));
            }
            if !names.insert(l.policy_name()) {
                return Err(Error::InvalidLimit(format!(
                    "two limits are named {:?}",
                    l.policy_name()
                )));
            }
        }
        let params = limits
            .iter()
            .map(|l| {
                [
                    u64::from(l.algorithm().script_id()),
                    l.capacity(),
                    l.interval_us(),
                    micros_ceil(l.block()),
                ]
            })
            .collect();
        let max_cost = limits
            .iter()
            .enumerate()
            .map(|(i, l)| (l.capacity(), i))
            .min()
            .unwrap_or((0, 0));
        Ok(Policy {
            suffixes: limits.iter().map(|l| state_suffix(l, aligned)).collect(),
            limits,
            params,
            max_cost,
            aligned,
        })
    }

    /// The key's window phase in microseconds: spreads window ends of different keys
    /// (FNV-1a of the key, 40 bits); 0 for aligned windows.
    pub(crate) fn phase(&self, key: &str) -> u64 {
        if self.aligned {
            return 0;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h >> 24
    }

    /// Checks a request's numbers (the key is checked where keys are built).
    pub(crate) fn prepare(&self, r: &Request<'_>) -> Result<Prepared> {
        let (op, amount) = match r.op {
            Op::Check { cost } => {
                if cost == 0 {
                    return Err(Error::InvalidArgument(
                        "a check costs at least 1 (use peek to look without consuming)".into(),
                    ));
                }
                let (capacity, i) = self.max_cost;
                if cost > capacity {
                    return Err(Error::CostTooLarge {
                        cost,
                        capacity,
                        limit: self.limits[i].policy_name(),
                    });
                }
                (1, cost)
            }
            Op::Peek => (2, 1),
            Op::Penalty { points } => (3, self.points(points)?),
            Op::Reward { points } => (4, self.points(points)?),
            Op::Block { duration } => {
                if duration.is_zero() || duration > MAX_WINDOW {
                    return Err(Error::InvalidArgument(format!(
                        "a block lasts more than zero and at most {MAX_WINDOW:?}, not {duration:?}"
                    )));
                }
                (5, micros_ceil(duration))
            }
            Op::Reset => (6, 0),
        };
        Ok(Prepared {
            op,
            amount,
            phase: self.phase(r.key),
        })
    }

    fn points(&self, points: u64) -> Result<u64> {
        if points > MAX_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "{points} points is more than the largest supported, {MAX_CAPACITY}"
            )));
        }
        Ok(points)
    }

    /// A decision from the allowed flag and one `Raw` per limit.
    pub(crate) fn decision(&self, allowed: bool, raws: impl IntoIterator<Item = Raw>) -> Decision {
        let statuses = self
            .limits
            .iter()
            .zip(raws)
            .map(|(l, r)| LimitStatus {
                allowed: r.retry_us < 0,
                limit: l.capacity(),
                remaining: u64::try_from(r.remaining).unwrap_or(0),
                reset_after: Duration::from_micros(u64::try_from(r.reset_us).unwrap_or(0)),
                retry_after: u64::try_from(r.retry_us).ok().map(Duration::from_micros),
            })
            .collect();
        Decision::from_statuses(allowed, statuses)
    }

    /// Decodes the script's reply: per request, three numbers per limit (remaining, reset,
    /// retry); a request passed when every retry is -1, and failed when they are -2.
    #[cfg(test)]
    pub(crate) fn decode(&self, reply: &[i64], requests: usize) -> Result<Vec<Result<Decision>>> {
        let width = 3 * self.limits.len();
        if reply.len() != width * requests {
            return Err(Error::Store(redkit_core::Error::unexpected_reply(format!(
                "rate-limit script returned {} numbers for {requests} requests",
                reply.len()
            ))));
        }
        Ok(reply
            .chunks_exact(width)
            .map(|chunk| self.decode_one(chunk))
            .collect())
    }

    /// Decodes one request's numbers (see [`Policy::decode`]).
    pub(crate) fn decode_one(&self, numbers: &[i64]) -> Result<Decision> {
        if numbers.len() != 3 * self.limits.len() {
            return Err(Error::Store(redkit_core::Error::unexpected_reply(format!(
                "rate-limit script returned {} numbers for a request of {} limits",
                numbers.len(),
                self.limits.len()
            ))));
        }
        if numbers[0] == -2 {
            return Err(Error::Store(redkit_core::Error::unexpected_reply(
                "a key of this rate limit holds another type of value (WRONGTYPE)",
            )));
        }
        let allowed = numbers.chunks_exact(3).all(|n| n[2] < 0);
        let raws = numbers.chunks_exact(3).map(|n| Raw {
            remaining: n[0],
            reset_us: n[1],
            retry_us: n[2],
        });
        Ok(self.decision(allowed, raws))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_algorithm_and_window_twice_is_refused() {
        let s = Duration::from_secs(1);
        assert!(Policy::new(vec![], false).is_err());
        assert!(
            Policy::new(
                vec![Limit::fixed_window(5, s), Limit::fixed_window(5, s)],
                false
            )
            .is_err()
        );
        // differing in capacity only: two states, no clash
        let p = Policy::new(
            vec![Limit::fixed_window(1, s), Limit::fixed_window(5, s)],
            false,
        )
        .unwrap();
        assert_ne!(p.suffixes[0], p.suffixes[1]);
        // aligned windows are other windows
        let fw = || vec![Limit::fixed_window(5, s)];
        assert_ne!(
            Policy::new(fw(), true).unwrap().suffixes,
            Policy::new(fw(), false).unwrap().suffixes
        );
        assert!(
            Policy::new(
                vec![
                    Limit::fixed_window(1, s).name("a"),
                    Limit::sliding_window(5, s).name("a")
                ],
                false
            )
            .is_err()
        );
        assert!(
            Policy::new(
                vec![Limit::fixed_window(1, s), Limit::sliding_window(5, s)],
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn costs_are_checked_against_the_smallest_capacity() {
        let p = Policy::new(
            vec![
                Limit::fixed_window(10, Duration::from_secs(1)),
                Limit::gcra(3, Duration::from_secs(1)).name("steady"),
            ],
            false,
        )
        .unwrap();
        assert!(p.prepare(&Request::check("k", 3)).is_ok());
        match p.prepare(&Request::check("k", 4)) {
            Err(Error::CostTooLarge {
                cost: 4,
                capacity: 3,
                limit,
            }) => assert_eq!(limit, "steady"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.prepare(&Request::check("k", 0)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            p.prepare(&Request::block("k", Duration::ZERO)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            p.prepare(&Request::penalty("k", u64::MAX)),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn replies_decode_and_short_ones_are_errors() {
        let p = Policy::new(vec![Limit::fixed_window(5, Duration::from_secs(1))], false).unwrap();
        let ds = p
            .decode(&[4, 1000, -1, 0, 500, 500, -2, -2, -2], 3)
            .unwrap();
        assert!(ds[0].as_ref().unwrap().allowed);
        let denied = ds[1].as_ref().unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Some(Duration::from_micros(500)));
        assert!(ds[2].is_err());
        assert!(p.decode(&[4, 1000], 1).is_err());
    }

    #[test]
    fn phases_differ_by_key_unless_aligned() {
        let l = vec![Limit::fixed_window(1, Duration::from_secs(1))];
        let p = Policy::new(l.clone(), false).unwrap();
        assert_ne!(p.phase("a"), p.phase("b"));
        assert!(p.phase("a") < 1 << 40);
        assert_eq!(Policy::new(l, true).unwrap().phase("a"), 0);
    }
}
