//! Turning values into bytes and back.

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

/// Encodes values for storage in Redis and decodes them again.
///
/// Pattern crates are generic over a codec with [`JsonCodec`] as the default. A decode
/// failure is an [`Error::Codec`], never a panic: callers decide whether undecodable data
/// is a miss, a dead letter or an error.
pub trait Codec: Send + Sync + 'static {
    /// Encodes a value.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>>;
    /// Decodes a value.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T>;
}

/// JSON through serde_json: readable in `redis-cli`, interoperable with other languages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(Error::codec)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(Error::codec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Email {
        to: String,
        retries: u32,
    }

    #[test]
    fn round_trip_and_typed_errors() {
        let c = JsonCodec;
        let e = Email {
            to: "a@b.c".into(),
            retries: 3,
        };
        let bytes = c.encode(&e).unwrap();
        assert_eq!(c.decode::<Email>(&bytes).unwrap(), e);
        let err = c.decode::<Email>(b"{not json").unwrap_err();
        assert!(matches!(err, Error::Codec(_)), "{err:?}");
        let err = c.decode::<Email>(br#"{"to":1}"#).unwrap_err();
        assert!(matches!(err, Error::Codec(_)), "{err:?}");
    }
}
