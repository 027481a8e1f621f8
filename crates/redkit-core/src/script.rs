//! Embedded Lua scripts: `EVALSHA` first, `EVAL` when the server lost its script cache
//! (restart, failover, `SCRIPT FLUSH`), alone or inside a [`Pipeline`].
//!
//! ```
//! use std::sync::LazyLock;
//! use redkit_core::Script;
//!
//! static INCR_BY: LazyLock<Script> = LazyLock::new(|| {
//!     Script::new("incr_by", "-- KEYS[1] counter; ARGV[1] step\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
//! });
//! assert_eq!(INCR_BY.name(), "incr_by");
//! assert_eq!(INCR_BY.hash().len(), 40);
//! ```

use std::fmt;

use redis::{Cmd, ErrorKind, FromRedisValue, ServerErrorKind, ToRedisArgs, Value};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::handle::Redis;
use crate::keyspace::{Key, key_slot};
use crate::packed::PackedInts;

/// A Lua script with a name (used in errors and traces) and its SHA1.
pub struct Script {
    name: &'static str,
    inner: redis::Script,
    code: String,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("name", &self.name)
            .field("sha1", &self.inner.get_hash())
            .finish()
    }
}

impl Script {
    /// A script from its source (usually `include_str!("../lua/<name>.lua")`).
    pub fn new(name: &'static str, code: &str) -> Self {
        Script {
            name,
            inner: redis::Script::new(code),
            code: code.to_string(),
        }
    }

    /// The script's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The SHA1 the server knows the script by.
    pub fn hash(&self) -> &str {
        self.inner.get_hash()
    }

    /// The Lua source.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Starts a call: add keys first, then arguments.
    pub fn call(&self) -> Invocation<'_> {
        Invocation {
            script: self,
            keys: ArgBuf::default(),
            args: ArgBuf::default(),
        }
    }
}

/// Arguments packed into one buffer: no allocation per argument.
#[derive(Default, Clone)]
struct ArgBuf {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl ArgBuf {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let arg = &self.data[start..end];
            start = end;
            arg
        })
    }

    fn first(&self) -> Option<&[u8]> {
        self.iter().next()
    }
}

impl redis::RedisWrite for ArgBuf {
    fn write_arg(&mut self, arg: &[u8]) {
        self.data.extend_from_slice(arg);
        self.ends.push(self.data.len());
    }

    fn writer_for_next_arg(&mut self) -> impl std::io::Write + '_ {
        ArgWriter { buf: self }
    }
}

/// Appends to the last argument; the argument ends when the writer is dropped.
struct ArgWriter<'a> {
    buf: &'a mut ArgBuf,
}

impl std::io::Write for ArgWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.data.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ArgWriter<'_> {
    fn drop(&mut self) {
        self.buf.ends.push(self.buf.data.len());
    }
}

/// One call of a [`Script`] with its keys and arguments.
pub struct Invocation<'s> {
    script: &'s Script,
    keys: ArgBuf,
    args: ArgBuf,
}

impl fmt::Debug for Invocation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation")
            .field("script", &self.script.name)
            .field("keys", &self.keys.len())
            .field("args", &self.args.len())
            .finish()
    }
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

impl<'s> Invocation<'s> {
    /// Adds a key (`KEYS[n]`).
    pub fn key(mut self, key: impl ToRedisArgs) -> Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    /// Adds an argument (`ARGV[n]`).
    pub fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// The keys added so far, to check that they share one cluster slot.
    pub fn keys(&self) -> Vec<&[u8]> {
        self.keys.iter().collect()
    }

    fn command(&self, by_hash: bool) -> Cmd {
        let mut cmd = if by_hash {
            let mut c = redis::cmd("EVALSHA");
            c.arg(self.script.hash());
            c
        } else {
            let mut c = redis::cmd("EVAL");
            c.arg(self.script.code.as_str());
            c
        };
        cmd.arg(self.keys.len());
        for k in self.keys.iter() {
            cmd.arg(k);
        }
        for a in self.args.iter() {
            cmd.arg(a);
        }
        cmd
    }

    /// Runs the script on the shared connection.
    pub async fn invoke<T: FromRedisValue>(&self, redis: &Redis) -> Result<T> {
        let name = self.script.name;
        let span = tracing::debug_span!("redkit.script", script = name);
        async move {
            let mut conn = redis.conn();
            let value: Value = match self.command(true).query_async(&mut conn).await {
                Err(e) if is_noscript(&e) => self
                    .command(false)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| Error::from_script(name, e))?,
                other => other.map_err(|e| Error::from_script(name, e))?,
            };
            redis::from_redis_value(value).map_err(|e| {
                Error::unexpected_reply(format!(
                    "script `{name}` returned an unexpected value: {e}"
                ))
            })
        }
        .instrument(span)
        .await
    }
}

impl Redis {
    /// Runs a batch of items as one script call per hash slot (one call on a standalone
    /// server), all calls at once. `call` builds the invocation for a group of item
    /// indices; the script must answer `width` integers per item, in the group's order,
    /// packed with `cmsgpack.pack` (see [`PackedInts`]). Returns the numbers of every
    /// item in item order: item `i`'s are at `i * width .. (i + 1) * width`.
    ///
    /// The first failed call fails the whole batch, and the calls of other slots still
    /// running are dropped: on a cluster they may have run without anyone seeing their
    /// answer. A batch whose items belong to different callers, or whose script changes
    /// anything, wants [`Redis::invoke_by_slot_each`], which answers every item.
    pub async fn invoke_by_slot<'s, T>(
        &self,
        items: &[T],
        key: impl Fn(&T) -> &Key,
        width: usize,
        call: impl Fn(&[usize]) -> Invocation<'s>,
    ) -> Result<Vec<i64>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.group_by_slot(items, key);
        let replies = futures_util::future::try_join_all(groups.iter().map(|g| {
            let invocation = call(g);
            async move { invocation.invoke::<PackedInts>(self).await }
        }))
        .await?;
        let mut out = vec![0; items.len() * width];
        for (g, PackedInts(reply)) in groups.iter().zip(replies) {
            if reply.len() != g.len() * width {
                return Err(Error::unexpected_reply(format!(
                    "a script answered {} numbers for {} items of {width}",
                    reply.len(),
                    g.len()
                )));
            }
            for (&i, numbers) in g.iter().zip(reply.chunks_exact(width.max(1))) {
                out[i * width..(i + 1) * width].copy_from_slice(numbers);
            }
        }
        Ok(out)
    }

    /// Like [`Redis::invoke_by_slot`], but answers every item on its own: item `i`'s entry
    /// is its `width` numbers, or the error of its slot group's call (each item of a failed
    /// group gets an equivalent error of the same kind, see [`Error::duplicate`], so
    /// [`Error::is_retryable`] answers the same). Every group's call runs to its end, so on
    /// a cluster one slot's failure no longer fails items whose slot succeeded (test
    /// `invoke_by_slot_each_fails_only_the_failed_slot` in `tests/topologies.rs`).
    pub async fn invoke_by_slot_each<'s, T>(
        &self,
        items: &[T],
        key: impl Fn(&T) -> &Key,
        width: usize,
        call: impl Fn(&[usize]) -> Invocation<'s>,
    ) -> Vec<Result<Vec<i64>>> {
        if items.is_empty() {
            return Vec::new();
        }
        let groups = self.group_by_slot(items, key);
        let replies = futures_util::future::join_all(groups.iter().map(|g| {
            let invocation = call(g);
            async move { invocation.invoke::<PackedInts>(self).await }
        }))
        .await;
        let mut out: Vec<Option<Result<Vec<i64>>>> = (0..items.len()).map(|_| None).collect();
        for (g, reply) in groups.iter().zip(replies) {
            let reply = reply.and_then(|PackedInts(reply)| {
                if reply.len() == g.len() * width {
                    Ok(reply)
                } else {
                    Err(Error::unexpected_reply(format!(
                        "a script answered {} numbers for {} items of {width}",
                        reply.len(),
                        g.len()
                    )))
                }
            });
            match reply {
                Ok(reply) => {
                    for (pos, &i) in g.iter().enumerate() {
                        out[i] = Some(Ok(reply[pos * width..(pos + 1) * width].to_vec()));
                    }
                }
                Err(e) => {
                    for &i in g {
                        out[i] = Some(Err(e.duplicate()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::unexpected_reply("an item in no slot group"))))
            .collect()
    }
}

/// A non-transactional pipeline of commands and script calls sent in one round trip.
///
/// Script calls go as `EVALSHA`; any that the server answers with `NOSCRIPT` are sent
/// again as `EVAL` — only those, so no other command of the pipeline runs twice.
///
/// On a cluster the commands are grouped by hash slot and each group is sent as its own
/// pipeline, all groups at once; replies come back in the order the commands were added.
/// A command's slot is that of its first argument (the key, for every single-key command);
/// a script call's slot is that of its first key.
#[derive(Default)]
pub struct Pipeline {
    entries: Vec<Entry>,
}

struct Entry {
    cmd: Cmd,
    script: Option<Invocation<'static>>,
    slot: u16,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("commands", &self.entries.len())
            .field(
                "scripts",
                &self.entries.iter().filter(|e| e.script.is_some()).count(),
            )
            .finish()
    }
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a command; its reply is part of the result.
    pub fn cmd(&mut self, cmd: Cmd) -> &mut Self {
        let slot = match cmd.args_iter().nth(1) {
            Some(redis::Arg::Simple(key)) => key_slot(key),
            _ => 0,
        };
        self.entries.push(Entry {
            cmd,
            script: None,
            slot,
        });
        self
    }

    /// Adds a script call; its reply is part of the result. Pipelined scripts must be
    /// `'static` (the usual `LazyLock<Script>`), so a `NOSCRIPT` retry can rebuild them.
    pub fn invoke(&mut self, invocation: Invocation<'static>) -> &mut Self {
        let slot = invocation.keys.first().map_or(0, key_slot);
        self.entries.push(Entry {
            cmd: invocation.command(true),
            script: Some(invocation),
            slot,
        });
        self
    }

    /// How many commands the pipeline holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the pipeline is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sends the pipeline and returns every reply, in order. Server errors of single
    /// commands stay in place as `Value::ServerError` (use [`Pipeline::query`] to turn them
    /// into an [`Error`]), except that a script re-sent after `NOSCRIPT` that fails again
    /// fails the call.
    pub async fn execute(&self, redis: &Redis) -> Result<Vec<Value>> {
        if self.entries.is_empty() {
            return Ok(Vec::new());
        }
        let span = tracing::debug_span!("redkit.pipeline", commands = self.entries.len());
        async move {
            let all: Vec<usize> = (0..self.entries.len()).collect();
            if !redis.is_cluster() || self.entries.iter().all(|e| e.slot == self.entries[0].slot) {
                return self.execute_group(redis, &all).await;
            }
            let mut groups: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
            for (i, e) in self.entries.iter().enumerate() {
                groups.entry(e.slot).or_default().push(i);
            }
            let replies = futures_util::future::try_join_all(
                groups
                    .values()
                    .map(|indices| self.execute_group(redis, indices)),
            )
            .await?;
            let mut values = vec![Value::Nil; self.entries.len()];
            for (indices, group) in groups.values().zip(replies) {
                for (i, v) in indices.iter().zip(group) {
                    values[*i] = v;
                }
            }
            Ok(values)
        }
        .instrument(span)
        .await
    }

    /// Runs the entries at `indices` as one pipeline; replies in the same order.
    async fn execute_group(&self, redis: &Redis, indices: &[usize]) -> Result<Vec<Value>> {
        let mut pipe = redis::Pipeline::with_capacity(indices.len());
        for &i in indices {
            pipe.add_command(self.entries[i].cmd.clone());
        }
        pipe.ignore_errors();
        let mut conn = redis.conn();
        let mut values: Vec<Value> = pipe.query_async(&mut conn).await?;
        for (pos, &i) in indices.iter().enumerate() {
            let Some(invocation) = &self.entries[i].script else {
                continue;
            };
            let lost = matches!(values.get(pos),
                Some(Value::ServerError(e)) if e.kind() == Some(ServerErrorKind::NoScript));
            if lost {
                values[pos] = invocation
                    .command(false)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| Error::from_script(invocation.script.name, e))?;
            }
        }
        Ok(values)
    }

    /// Sends the pipeline and converts the replies (a tuple or a `Vec`). The first failed
    /// command becomes the error.
    pub async fn query<T: FromRedisValue>(&self, redis: &Redis) -> Result<T> {
        let values = self.execute(redis).await?;
        for (value, entry) in values.iter().zip(&self.entries) {
            if let Value::ServerError(e) = value {
                let err = redis::RedisError::from(e.clone());
                return Err(match &entry.script {
                    Some(inv) => Error::from_script(inv.script.name, err),
                    None => Error::from(err),
                });
            }
        }
        redis::from_redis_value(Value::Array(values))
            .map_err(|e| Error::unexpected_reply(format!("pipeline reply: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_pack_every_kind_of_argument() {
        let script = Script::new("t", "-- KEYS[1]\nreturn 1");
        let inv = script
            .call()
            .key("k1")
            .key(&["k2", "k3"][..])
            .arg(5i64)
            .arg(1.5f64)
            .arg("")
            .arg(b"bytes".to_vec())
            .arg(vec!["m", "n"]);
        assert_eq!(inv.keys(), vec![&b"k1"[..], b"k2", b"k3"]);
        let cmd = inv.command(true);
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => b"<other>".to_vec(),
            })
            .collect();
        let expected: Vec<&[u8]> = vec![
            b"EVALSHA",
            script.hash().as_bytes(),
            b"3",
            b"k1",
            b"k2",
            b"k3",
            b"5",
            b"1.5",
            b"",
            b"bytes",
            b"m",
            b"n",
        ];
        assert_eq!(
            args,
            expected.iter().map(|a| a.to_vec()).collect::<Vec<_>>()
        );
    }
}
