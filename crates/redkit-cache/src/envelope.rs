//! What a cache entry holds in Redis: a small header and the value's bytes.
//!
//! ```text
//! 0xCA | kind (1) | fresh until, unix ms (u64 LE) | stale until (u64 LE) | load time ms (u32 LE) | value
//! ```
//!
//! Times come from the writer's clock: they decide when an entry counts as stale and when
//! an early refresh may start. Expiry itself is the key's TTL, kept by the server; clock
//! skew between processes only shifts when refreshes start.

use bytes::Bytes;

const MAGIC: u8 = 0xCA;
pub(crate) const HEADER: usize = 22;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value.
    Value,
    /// The loader found nothing (negative caching).
    Absent,
    /// The loader failed; the value is its message (`cache_errors`).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) kind: Kind,
    pub(crate) fresh_until: u64,
    pub(crate) stale_until: u64,
    pub(crate) delta_ms: u32,
    pub(crate) payload: Bytes,
}

impl Envelope {
    /// The header alone.
    fn header(&self) -> [u8; HEADER] {
        let mut out = [0u8; HEADER];
        out[0] = MAGIC;
        out[1] = match self.kind {
            Kind::Value => 0,
            Kind::Absent => 1,
            Kind::Failed => 2,
        };
        out[2..10].copy_from_slice(&self.fresh_until.to_le_bytes());
        out[10..18].copy_from_slice(&self.stale_until.to_le_bytes());
        out[18..22].copy_from_slice(&self.delta_ms.to_le_bytes());
        out
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.payload.len());
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.payload);
        out
    }

    /// `None` for bytes that are not an entry (written by something else, truncated).
    pub(crate) fn decode(bytes: Bytes) -> Option<Envelope> {
        if bytes.len() < HEADER || bytes[0] != MAGIC {
            return None;
        }
        let kind = match bytes[1] {
            0 => Kind::Value,
            1 => Kind::Absent,
            2 => Kind::Failed,
            _ => return None,
        };
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let mut d = [0u8; 4];
        d.copy_from_slice(&bytes[18..22]);
        Some(Envelope {
            kind,
            fresh_until: u64_at(2),
            stale_until: u64_at(10),
            delta_ms: u32::from_le_bytes(d),
            payload: bytes.slice(HEADER..),
        })
    }

    pub(crate) fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until
    }

    pub(crate) fn is_usable(&self, now_ms: u64) -> bool {
        now_ms < self.stale_until
    }

    /// XFetch: refresh early with probability `exp(-(fresh_until - now) / (beta·delta))`.
    pub(crate) fn wants_early_refresh(&self, now_ms: u64, beta: f64) -> bool {
        if beta <= 0.0 || self.delta_ms == 0 || !self.is_fresh(now_ms) {
            return false;
        }
        // u in (0, 1]: -ln(u) >= 0
        let u = 1.0 - fastrand::f64();
        let lead = -(f64::from(self.delta_ms)) * beta * u.ln();
        now_ms as f64 + lead >= self.fresh_until as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_bytes() {
        let e = Envelope {
            kind: Kind::Absent,
            fresh_until: 1_700_000_000_123,
            stale_until: 1_700_000_005_000,
            delta_ms: 42,
            payload: Bytes::from_static(b"hello"),
        };
        assert_eq!(Envelope::decode(Bytes::from(e.encode())), Some(e.clone()));
        assert_eq!(
            Envelope::decode(Bytes::from_static(b"plain text value!!!!!!!")),
            None
        );
        assert_eq!(Envelope::decode(Bytes::from_static(&[MAGIC, 0, 1])), None);
        let mut bad_kind = vec![MAGIC, 9];
        bad_kind.extend([0u8; 20]);
        assert_eq!(Envelope::decode(Bytes::from(bad_kind)), None);
    }

    #[test]
    fn early_refresh_follows_the_xfetch_probability() {
        let e = Envelope {
            kind: Kind::Value,
            fresh_until: 10_000,
            stale_until: 10_000,
            delta_ms: 400,
            payload: Bytes::new(),
        };
        // remaining 400 ms = one load time, beta 1: p = e^-1 = 36.8%
        let n = 20_000;
        let hits = (0..n).filter(|_| e.wants_early_refresh(9_600, 1.0)).count();
        let p = hits as f64 / n as f64;
        assert!((0.34..0.40).contains(&p), "p = {p}");
        // far from expiry: practically never; beta 0: never; expired: not "early"
        assert_eq!(
            (0..n).filter(|_| e.wants_early_refresh(1_000, 1.0)).count(),
            0
        );
        assert!(!e.wants_early_refresh(9_999, 0.0));
        assert!(!e.wants_early_refresh(10_000, 1.0));
    }
}
