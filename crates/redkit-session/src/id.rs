//! Session ids (the secret a cookie carries) and handles (their SHA-256, what the store
//! keys by, logs and shows).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The length of an issued id: 256 bits in base64url without padding.
pub const ID_LEN: usize = 43;
/// Presented ids longer than this are not even hashed: they cannot be ours.
const MAX_PRESENTED_LEN: usize = 256;

/// A session id: 256 bits from the operating system's CSPRNG, base64url (43 characters).
///
/// It is the bearer secret of a session, so it never appears in `Debug` output, logs or
/// Redis keys: those use its [`SessionHandle`]. Ids compare in constant time.
#[derive(Clone)]
pub struct SessionId(String);

impl std::hash::Hash for SessionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // consistent with `eq`: equal ids have equal bytes
        self.0.hash(state);
    }
}

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SessionId {}

impl SessionId {
    /// A fresh random id.
    pub fn generate() -> Result<SessionId> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::InvalidConfig(format!("the OS random source failed: {e}")))?;
        Ok(SessionId(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// An id as presented by a client (a cookie value). It is not checked: a malformed id
    /// is looked up like any other and found missing, so a caller cannot tell malformed
    /// from unknown, by answer or by timing.
    pub fn presented(id: impl Into<String>) -> SessionId {
        SessionId(id.into())
    }

    /// The id's text, for the cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The handle of this id: its SHA-256, the only form the store keeps.
    pub fn handle(&self) -> SessionHandle {
        let bytes = self.0.as_bytes();
        if bytes.len() > MAX_PRESENTED_LEN {
            // cannot be an issued id; hash a fixed prefix so the work stays bounded
            return SessionHandle::of(&bytes[..MAX_PRESENTED_LEN]);
        }
        SessionHandle::of(bytes)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(handle {})", self.handle().short())
    }
}

/// The SHA-256 of a session id, in hex: keys, index entries and logs use it, and it can
/// be shown to the user (a "your devices" page) because it cannot be used as a session.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle(String);

impl SessionHandle {
    fn of(bytes: &[u8]) -> SessionHandle {
        let digest = Sha256::digest(bytes);
        let mut hex = String::with_capacity(64);
        for b in digest {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        SessionHandle(hex)
    }

    /// A handle from its hex text (as listed by
    /// [`SessionStore::sessions_of`](crate::SessionStore::sessions_of)). Anything but 64
    /// lowercase hex digits is an error.
    pub fn parse(hex: &str) -> Result<SessionHandle> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(SessionHandle(hex.to_string()))
        } else {
            Err(Error::InvalidArgument(
                "a session handle is 64 hex digits".into(),
            ))
        }
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({})", self.short())
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_256_random_bits_and_never_printed() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), ID_LEN);
        assert_eq!(URL_SAFE_NO_PAD.decode(a.as_str()).unwrap().len(), 32);
        let shown = format!("{a:?} {:?}", a.handle());
        assert!(!shown.contains(a.as_str()), "{shown}");
        assert_eq!(a.handle().as_str().len(), 64);
        assert_eq!(
            SessionHandle::parse(a.handle().as_str()).unwrap(),
            a.handle()
        );
        assert!(SessionHandle::parse("xyz").is_err());
        // known answer: SHA-256("abc")
        assert_eq!(
            SessionId::presented("abc").handle().as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let huge = SessionId::presented("x".repeat(10_000));
        assert_eq!(
            huge.handle(),
            SessionId::presented("x".repeat(256)).handle()
        );
    }
}
