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
        let total = answer_len(items.len(), width)?;
        let groups = self.group_by_slot(items, key);
        let replies = futures_util::future::try_join_all(groups.iter().map(|g| {
            let invocation = call(g);
            async move { invocation.invoke::<PackedInts>(self).await }
        }))
        .await?;
        let mut out = vec![0; total];
        for (g, PackedInts(reply)) in groups.iter().zip(replies) {
            // (g.len() <= items.len(), so this cannot overflow)
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
        if let Err(e) = answer_len(items.len(), width) {
            return items.iter().map(|_| Err(e.duplicate())).collect();
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

/// How many numbers `items` items of `width` numbers are, or an
/// [`Error::InvalidArgument`] when that does not fit in memory's address space.
fn answer_len(items: usize, width: usize) -> Result<usize> {
    items
        .checked_mul(width)
        .filter(|&n| n <= isize::MAX as usize / std::mem::size_of::<i64>())
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "{items} items of {width} numbers each are too many numbers"
            ))
        })
}

/// A non-transactional pipeline of commands and script calls sent in one round trip.
///
/// # Order and script loading
///
/// The commands run in the order they were added, each once. A pipeline cannot stop on
/// the server: a command that fails does not keep the later ones from running, so a
/// script call must never answer `NOSCRIPT` and be sent again later (the later commands
/// would have run before it). Hence, of each script called in the pipeline, the *first*
/// call goes as `EVAL` with the source (which also loads the script) and later calls of
/// the same script go as `EVALSHA`. Nothing is ever re-sent.
///
/// # What a pipeline did
///
/// - `Ok(values)` from [`Pipeline::execute`]: every command ran, once, in order; a
///   command that failed on the server has its error in place (`Value::ServerError`) and
///   did nothing the server would undo (a script that failed partway keeps the writes
///   it made before the error). [`Pipeline::query`] turns the first such error into an
///   [`Error`]; the other commands ran all the same.
/// - The one `NOSCRIPT` left: if the server's script cache is emptied *while* the
///   pipeline runs (another client's `SCRIPT FLUSH` between two of its commands, or an
///   `EVAL`-loaded script evicted on Redis 7.4+), a later `EVALSHA` of a script answers
///   `NOSCRIPT` in place: that call did not run, every other command did. It is not
///   re-sent (test `pipelined_scripts_keep_their_order_after_a_script_flush`).
/// - `Err` with a connection error or a timeout: the commands of the failed group may
///   have run in part, always a prefix in order (what the server read before the link
///   broke); whether any did is unknown.
///
/// # Cluster
///
/// On a cluster the commands are grouped by hash slot and each group is sent as its own
/// pipeline to its node, all groups at once: the order holds within a slot, not between
/// slots. Every group runs to its end even if another fails; the first failed group's
/// error is returned, the other groups' commands ran. Replies come back in the order the
/// commands were added. A command's slot is that of its first argument (the key, for
/// every single-key command); a script call's slot is that of its first key.
///
/// Each group runs inside `MULTI`/`EXEC`, so a group runs all at once or not at all:
/// redis-rs sends a cluster pipeline again as a whole when one reply in it is a
/// redirection or a transient error (`ASK` while its slot migrates, `MOVED`, `TRYAGAIN`,
/// `CLUSTERDOWN`), and without the transaction the commands that had run would run again
/// (test `a_pipeline_runs_each_command_once_while_its_slot_migrates`). A command refused
/// when queued (unknown command, wrong arity, keys of another slot, a redirection that
/// outlasted the retries) fails its whole group with that error, and none of the group's
/// commands ran; errors while running stay in place as above. `Err` with a timeout still
/// means "unknown": redis-rs may send the group again after the timeout.
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
    /// `'static` (the usual `LazyLock<Script>`).
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
    /// into an [`Error`]). See [`Pipeline`] for what ran when something failed.
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
            // every group runs to its end: dropping one still in flight would not stop
            // it on the server, only hide what it did
            let replies = futures_util::future::join_all(
                groups
                    .values()
                    .map(|indices| self.execute_group(redis, indices)),
            )
            .await;
            let mut values = vec![Value::Nil; self.entries.len()];
            for (indices, group) in groups.values().zip(replies) {
                let group = group?;
                for (i, v) in indices.iter().zip(group) {
                    values[*i] = v;
                }
            }
            Ok(values)
        }
        .instrument(span)
        .await
    }

    /// Runs the entries at `indices` as one pipeline; replies in the same order. The
    /// first call of each script goes as `EVAL`, so no call answers `NOSCRIPT` unless
    /// the script cache is emptied while the pipeline runs (see [`Pipeline`]).
    async fn execute_group(&self, redis: &Redis, indices: &[usize]) -> Result<Vec<Value>> {
        // On a cluster redis-rs sends a pipeline again as a whole when any reply in it is a
        // redirection or a transient error (ASK while the slot migrates, MOVED, TRYAGAIN,
        // CLUSTERDOWN, ...), so the commands that had run would run again (test
        // `a_pipeline_runs_each_command_once_while_its_slot_migrates`). The group goes
        // inside MULTI/EXEC there: a command refused when it is queued discards the whole
        // transaction, so such a reply means nothing ran and sending it again is safe.
        let transaction = redis.is_cluster();
        let mut pipe = redis::Pipeline::with_capacity(indices.len() + 2);
        if transaction {
            pipe.add_command(redis::cmd("MULTI"));
        }
        let mut loaded: Vec<&str> = Vec::new();
        for &i in indices {
            let entry = &self.entries[i];
            match &entry.script {
                Some(invocation) if !loaded.contains(&invocation.script.hash()) => {
                    loaded.push(invocation.script.hash());
                    pipe.add_command(invocation.command(false));
                }
                _ => {
                    pipe.add_command(entry.cmd.clone());
                }
            }
        }
        if transaction {
            pipe.add_command(redis::cmd("EXEC"));
        }
        pipe.ignore_errors();
        let mut conn = redis.conn();
        let mut values: Vec<Value> = pipe.query_async(&mut conn).await?;
        if !transaction {
            return Ok(values);
        }
        match values.pop() {
            Some(Value::Array(replies)) if replies.len() == indices.len() => Ok(replies),
            exec => {
                // discarded: none of the group's commands ran
                let refused = values.into_iter().chain(exec).find_map(|v| match v {
                    Value::ServerError(e) => Some(e),
                    _ => None,
                });
                Err(match refused {
                    Some(e) => Error::from(redis::RedisError::from(e)),
                    None => Error::unexpected_reply("a pipeline's EXEC answered nothing"),
                })
            }
        }
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
