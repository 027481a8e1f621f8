//! Reading what a Lua script packed with `cmsgpack.pack`, and packing numbers for
//! `cmsgpack.unpack`.
//!
//! A script that answers many numbers (one or more per request of a batch) can return
//! them as one MessagePack string: packing costs the server no more than an array reply,
//! and the client reads one bulk string instead of parsing every integer as a RESP
//! value, which at large batches is a large share of the client's time. The other way, a
//! batch script that takes several numbers per request can take them as one packed
//! argument: one `cmsgpack.unpack` in C instead of a Redis string, a Lua string and a
//! `tonumber` per number.
//!
//! ```
//! use redkit_core::PackedInts;
//! let reply = redis::Value::BulkString(vec![0x93, 0x01, 0xff, 0xcc, 200]);
//! let PackedInts(numbers) = redis::from_redis_value(reply).unwrap();
//! assert_eq!(numbers, [1, -1, 200]);
//! ```

use redis::{FromRedisValue, ParsingError, Value};

use crate::error::{Error, Result};

/// The integers of a MessagePack array, as `cmsgpack.pack` makes of a Lua array of whole
/// numbers. Also a [`FromRedisValue`], so `invoke::<PackedInts>` reads a script's reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackedInts(pub Vec<i64>);

impl PackedInts {
    /// Reads a packed array; anything else (another type, a fraction, trailing bytes) is
    /// an [`Error::UnexpectedReply`].
    pub fn unpack(bytes: &[u8]) -> Result<PackedInts> {
        unpack(bytes).map(PackedInts)
    }
}

impl PackedInts {
    /// The largest number a Lua script reads exactly (2^53, as every Lua number).
    pub const MAX_EXACT: u64 = 1 << 53;

    /// [`PackedInts::pack_unsigned`] that refuses, with an [`Error::InvalidArgument`],
    /// a number above [`PackedInts::MAX_EXACT`] (Lua would read it rounded) or more
    /// numbers than a MessagePack array holds (2^32 - 1), instead of packing them.
    pub fn try_pack_unsigned(numbers: impl IntoIterator<Item = u64>) -> Result<Vec<u8>> {
        let numbers: Vec<u64> = numbers.into_iter().collect();
        if let Some(n) = numbers.iter().find(|&&n| n > Self::MAX_EXACT) {
            return Err(Error::invalid_argument(format!(
                "{n} is above 2^53: a Lua script would read it rounded"
            )));
        }
        if u32::try_from(numbers.len()).is_err() {
            return Err(Error::invalid_argument(format!(
                "{} numbers are more than one MessagePack array holds",
                numbers.len()
            )));
        }
        Ok(Self::pack_unsigned(numbers))
    }

    /// Packs whole numbers as a MessagePack array, which `cmsgpack.unpack` turns into a
    /// Lua array of numbers (exact up to 2^53, as every Lua number: larger ones arrive
    /// rounded; [`PackedInts::try_pack_unsigned`] refuses them).
    pub fn pack_unsigned(numbers: impl IntoIterator<Item = u64>) -> Vec<u8> {
        let mut body = Vec::new();
        let mut len = 0usize;
        for n in numbers {
            len += 1;
            match n {
                0..=0x7f => body.push(n as u8),
                0x80..=0xff => body.extend_from_slice(&[0xcc, n as u8]),
                0x100..=0xffff => {
                    body.push(0xcd);
                    body.extend_from_slice(&(n as u16).to_be_bytes());
                }
                0x1_0000..=0xffff_ffff => {
                    body.push(0xce);
                    body.extend_from_slice(&(n as u32).to_be_bytes());
                }
                _ => {
                    body.push(0xcf);
                    body.extend_from_slice(&n.to_be_bytes());
                }
            }
        }
        let mut out = Vec::with_capacity(body.len() + 5);
        match len {
            0..=15 => out.push(0x90 | len as u8),
            16..=0xffff => {
                out.push(0xdc);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0xdd);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        out.extend_from_slice(&body);
        out
    }
}

impl FromRedisValue for PackedInts {
    fn from_redis_value(v: Value) -> std::result::Result<Self, ParsingError> {
        match v {
            Value::BulkString(bytes) => {
                PackedInts::unpack(&bytes).map_err(|e| ParsingError::from(e.to_string()))
            }
            other => Err(ParsingError::from(format!(
                "expected a MessagePack string, got {other:?}"
            ))),
        }
    }
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |n, &d| (n << 8) | u64::from(d))
}

fn unpack(bytes: &[u8]) -> Result<Vec<i64>> {
    let bad = |what: &str| Error::unexpected_reply(format!("packed script reply: {what}"));
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let field = bytes.get(at..at + n).ok_or_else(|| bad("truncated"))?;
        at += n;
        Ok(field)
    };
    let head = take(1)?[0];
    let len = match head {
        0x90..=0x9f => usize::from(head & 0x0f),
        0x80 => 0, // an empty Lua table packs as an empty map
        0xdc => be(take(2)?) as usize,
        0xdd => be(take(4)?) as usize,
        _ => return Err(bad("not an array")),
    };
    let mut out = Vec::with_capacity(len.min(bytes.len()));
    for _ in 0..len {
        let tag = take(1)?[0];
        let n = match tag {
            0x00..=0x7f => i64::from(tag),
            0xe0..=0xff => i64::from(tag as i8),
            0xcc => be(take(1)?) as i64,
            0xcd => be(take(2)?) as i64,
            0xce => be(take(4)?) as i64,
            0xcf => i64::try_from(be(take(8)?)).map_err(|_| bad("integer out of range"))?,
            0xd0 => i64::from(take(1)?[0] as i8),
            0xd1 => i64::from(be(take(2)?) as u16 as i16),
            0xd2 => i64::from(be(take(4)?) as u32 as i32),
            0xd3 => be(take(8)?) as i64,
            0xcb => {
                let f = f64::from_bits(be(take(8)?));
                if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.0e15 {
                    return Err(bad("a number that is not a whole number"));
                }
                f as i64
            }
            _ => return Err(bad("not an integer")),
        };
        out.push(n);
    }
    if at != bytes.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack_ints(bytes: &[u8]) -> Result<Vec<i64>> {
        PackedInts::unpack(bytes).map(|p| p.0)
    }

    #[test]
    fn packed_numbers_read_back() {
        for numbers in [
            vec![],
            vec![
                0,
                1,
                127,
                128,
                255,
                256,
                65_535,
                65_536,
                1 << 32,
                (1 << 53) - 1,
            ],
            (0..20).collect(),
            (0..70_000).map(|n| n * 7).collect::<Vec<u64>>(),
        ] {
            let packed = PackedInts::pack_unsigned(numbers.iter().copied());
            let back: Vec<u64> = unpack_ints(&packed)
                .unwrap()
                .into_iter()
                .map(|n| n as u64)
                .collect();
            assert_eq!(back, numbers);
        }
        // the smallest encodings: a fixint, and the array header of a short array
        assert_eq!(PackedInts::pack_unsigned([1, 200]), [0x92, 0x01, 0xcc, 200]);
    }

    #[test]
    fn numbers_lua_would_round_are_refused() {
        let max = PackedInts::MAX_EXACT;
        assert_eq!(
            PackedInts::try_pack_unsigned([0, max]).unwrap(),
            PackedInts::pack_unsigned([0, max])
        );
        for n in [max + 1, u64::MAX] {
            assert!(matches!(
                PackedInts::try_pack_unsigned([1, n]),
                Err(Error::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn messagepack_integer_arrays_unpack() {
        // [1, -1, 200, -200, 70000, 1 << 40, -(1 << 40), 3.0]
        let mut b = vec![
            0x98, 0x01, 0xff, 0xcc, 200, 0xd1, 0xff, 0x38, 0xce, 0, 1, 0x11, 0x70,
        ];
        b.push(0xcf);
        b.extend_from_slice(&(1u64 << 40).to_be_bytes());
        b.push(0xd3);
        b.extend_from_slice(&(-(1i64 << 40)).to_be_bytes());
        b.push(0xcb);
        b.extend_from_slice(&3.0f64.to_bits().to_be_bytes());
        assert_eq!(
            unpack_ints(&b).unwrap(),
            [1, -1, 200, -200, 70000, 1 << 40, -(1 << 40), 3]
        );
        assert_eq!(unpack_ints(&[0x90]).unwrap(), Vec::<i64>::new());
        assert_eq!(unpack_ints(&[0x80]).unwrap(), Vec::<i64>::new());
        for bad in [
            &[][..],
            &[0x91],
            &[0x91, 0xcd, 0x01],
            &[0x92, 0x01],
            &[0x91, 0x01, 0x01],
            &[0xa1, b'x'],
            &[0x91, 0xa1],
        ] {
            assert!(unpack_ints(bad).is_err(), "{bad:?}");
        }
        let mut half = vec![0x91, 0xcb];
        half.extend_from_slice(&0.5f64.to_bits().to_be_bytes());
        assert!(unpack_ints(&half).is_err());
    }
}
