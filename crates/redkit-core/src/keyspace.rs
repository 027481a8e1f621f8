//! Key naming: a root prefix, child namespaces and cluster hash tags.
//!
//! ```
//! # fn main() -> redkit_core::Result<()> {
//! use redkit_core::Keyspace;
//! let locks = Keyspace::new("app")?.child("lock")?;
//! let key = locks.tagged("orders:42")?;
//! assert_eq!(key.as_str(), "app:lock:{orders:42}");
//! assert_eq!(key.child("fence")?.as_str(), "app:lock:{orders:42}:fence");
//! assert_eq!(key.slot(), key.child("fence")?.slot());
//! assert!(locks.tagged("bad{name}").is_err());
//! assert_eq!(locks.tagged_child("orders:42", "fence")?, key.child("fence")?);
//! # Ok(()) }
//! ```

use std::fmt;

use crate::error::{Error, Result};

/// The longest key redkit builds, in bytes. Longer names are an [`Error::InvalidKey`]:
/// Redis would take them, but they cost memory and bandwidth on every access.
pub const MAX_KEY_LEN: usize = 4096;

/// Number of hash slots in a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16384;

/// A key prefix: a root and zero or more child namespaces joined by `:`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Keyspace {
    prefix: String,
}

impl fmt::Debug for Keyspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyspace({})", self.prefix)
    }
}

fn check_segment(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidKey(format!("{what} is empty")));
    }
    if name.contains('{') || name.contains('}') {
        return Err(Error::InvalidKey(format!(
            "{what} {name:?} contains `{{` or `}}`, which redkit reserves for cluster hash tags"
        )));
    }
    if name.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey(format!(
            "{what} is {} bytes, more than the limit of {MAX_KEY_LEN}",
            name.len()
        )));
    }
    Ok(())
}

fn check_len(key: String) -> Result<String> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey(format!(
            "key is {} bytes, more than the limit of {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(key)
}

impl Keyspace {
    /// A keyspace rooted at `root` (for example the application's name).
    pub fn new(root: &str) -> Result<Self> {
        check_segment("key prefix", root)?;
        Ok(Keyspace {
            prefix: root.to_string(),
        })
    }

    /// A child namespace: `app` → `app:lock`.
    pub fn child(&self, name: &str) -> Result<Keyspace> {
        check_segment("namespace", name)?;
        Ok(Keyspace {
            prefix: check_len(format!("{}:{name}", self.prefix))?,
        })
    }

    /// A key whose hash tag is `name`: `app:lock` + `orders:42` → `app:lock:{orders:42}`.
    /// Every [`Key::child`] of it lands on the same cluster slot.
    pub fn tagged(&self, name: &str) -> Result<Key> {
        check_segment("name", name)?;
        Ok(Key(check_len(format!("{}:{{{name}}}", self.prefix))?))
    }

    /// [`Keyspace::tagged`] and [`Key::child`] in one step and one allocation:
    /// `app:rl` + `user:7` + `fw60` → `app:rl:{user:7}:fw60`.
    pub fn tagged_child(&self, name: &str, suffix: &str) -> Result<Key> {
        check_segment("name", name)?;
        check_segment("key suffix", suffix)?;
        let mut key = String::with_capacity(self.prefix.len() + name.len() + suffix.len() + 4);
        key.push_str(&self.prefix);
        key.push_str(":{");
        key.push_str(name);
        key.push_str("}:");
        key.push_str(suffix);
        Ok(Key(check_len(key)?))
    }

    /// A key with no hash tag: `app:cache` + `users:7` → `app:cache:users:7`.
    pub fn key(&self, name: &str) -> Result<Key> {
        check_segment("name", name)?;
        Ok(Key(check_len(format!("{}:{name}", self.prefix))?))
    }

    /// The prefix as a string, e.g. `app:lock`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// A full Redis key built by a [`Keyspace`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Key {
    /// The key as an owned string, without copying it.
    pub fn into_string(self) -> String {
        self.0
    }

    /// A sibling key with a suffix, keeping the hash tag: `a:{x}` → `a:{x}:fence`.
    pub fn child(&self, suffix: &str) -> Result<Key> {
        check_segment("key suffix", suffix)?;
        Ok(Key(check_len(format!("{}:{suffix}", self.0))?))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The cluster hash slot of this key.
    pub fn slot(&self) -> u16 {
        key_slot(self.0.as_bytes())
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl redis::ToRedisArgs for Key {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        out.write_arg(self.0.as_bytes())
    }
}

impl redis::ToSingleRedisArg for Key {}

/// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of the hash tag if the key has a
/// non-empty one, else of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16::State::<crc16::XMODEM>::calculate(hashed) % CLUSTER_SLOTS
}

/// Whether all keys hash to one cluster slot (true for zero or one key).
pub fn same_slot<K: AsRef<[u8]>>(keys: &[K]) -> bool {
    let mut slots = keys.iter().map(|k| key_slot(k.as_ref()));
    match slots.next() {
        Some(first) => slots.all(|s| s == first),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_spec() {
        // Reference values from `CLUSTER KEYSLOT` on a real server.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    #[test]
    fn names_with_braces_empty_or_huge_are_rejected() {
        let ks = Keyspace::new("app").unwrap();
        for bad in ["", "a{b", "a}b", "{x}"] {
            assert!(
                matches!(ks.tagged(bad), Err(Error::InvalidKey(_))),
                "{bad:?}"
            );
            assert!(
                matches!(ks.child(bad), Err(Error::InvalidKey(_))),
                "{bad:?}"
            );
            assert!(matches!(ks.key(bad), Err(Error::InvalidKey(_))), "{bad:?}");
        }
        assert!(Keyspace::new("").is_err());
        let huge = "x".repeat(MAX_KEY_LEN);
        assert!(matches!(ks.tagged(&huge), Err(Error::InvalidKey(_))));
    }

    #[test]
    fn tagged_children_share_a_slot() {
        let ks = Keyspace::new("app").unwrap().child("lock").unwrap();
        let key = ks.tagged("orders:42").unwrap();
        assert_eq!(key.as_str(), "app:lock:{orders:42}");
        let keys = [
            key.clone(),
            key.child("fence").unwrap(),
            key.child("waiters").unwrap(),
        ];
        assert!(same_slot(&keys.iter().map(Key::as_str).collect::<Vec<_>>()));
        assert!(!same_slot(&["a", "b", "c", "d"]));
    }
}
