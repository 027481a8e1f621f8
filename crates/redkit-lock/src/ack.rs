//! Waiting for replicas (`WAIT`) or for the append-only file (`WAITAOF`) to acknowledge an
//! acquisition, as Redisson's locks do by default.

use std::time::Duration;

use redkit_core::redis::{self, Value};
use redkit_core::{Key, Redis, Script};
use tokio::sync::oneshot;

use crate::{Error, Result};

/// What an acquisition waits for before it counts (see
/// [`RedisLockBuilder::wait_for_replicas`](crate::RedisLockBuilder::wait_for_replicas)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    /// `WAIT replicas timeout`.
    Replicas { replicas: u32, timeout: Duration },
    /// `WAITAOF local replicas timeout` (Redis 7.2 and later).
    Aof {
        local: bool,
        replicas: u32,
        timeout: Duration,
    },
}

impl Ack {
    /// Checks the settings against the server the handle connected to.
    pub(crate) fn check(self, redis: &Redis) -> Result<Ack> {
        let (wanted, timeout) = match self {
            Ack::Replicas { replicas, timeout } => (replicas, timeout),
            Ack::Aof {
                local,
                replicas,
                timeout,
            } => {
                if !redis.server_info().at_least(7, 2) {
                    let (a, b, c) = redis.server_info().version;
                    return Err(Error::Core(redkit_core::Error::UnsupportedServer(format!(
                        "WAITAOF needs Redis 7.2 or later; the server runs {a}.{b}.{c} \
                         (use wait_for_replicas)"
                    ))));
                }
                (replicas + u32::from(local), timeout)
            }
        };
        if wanted == 0 {
            return Err(Error::InvalidArgument(
                "waiting for acknowledgements needs at least one replica (or the local AOF)".into(),
            ));
        }
        if timeout < Duration::from_millis(1) {
            // WAIT 0 would block for ever
            return Err(Error::InvalidArgument(
                "the acknowledgement timeout must be at least 1 ms".into(),
            ));
        }
        crate::check_duration("acknowledgement timeout", timeout)?;
        Ok(self)
    }

    pub(crate) fn timeout(self) -> Duration {
        match self {
            Ack::Replicas { timeout, .. } | Ack::Aof { timeout, .. } => timeout,
        }
    }

    fn wanted(self) -> u32 {
        match self {
            Ack::Replicas { replicas, .. } => replicas,
            Ack::Aof {
                local, replicas, ..
            } => replicas + u32::from(local),
        }
    }

    fn command(self) -> redis::Cmd {
        let ms = u64::try_from(self.timeout().as_millis()).unwrap_or(u64::MAX);
        match self {
            Ack::Replicas { replicas, .. } => redis::cmd("WAIT").arg(replicas).arg(ms).clone(),
            Ack::Aof {
                local, replicas, ..
            } => redis::cmd("WAITAOF")
                .arg(u32::from(local))
                .arg(replicas)
                .arg(ms)
                .clone(),
        }
    }

    /// How many of the wanted acknowledgements came, from the reply of the wait command.
    fn acked(self, reply: &Value) -> Option<u32> {
        let int = |v: &Value| match v {
            Value::Int(n) => u32::try_from(*n).ok(),
            _ => None,
        };
        match (self, reply) {
            (Ack::Replicas { .. }, v) => int(v),
            (
                Ack::Aof {
                    local, replicas, ..
                },
                Value::Array(v),
            ) if v.len() == 2 => {
                let l = u32::from(local).min(int(&v[0])?);
                Some(l + replicas.min(int(&v[1])?))
            }
            _ => None,
        }
    }
}

/// One acquisition whose success waits for acknowledgements: the acquire script and the
/// wait command go in one pipeline on a dedicated connection (the wait covers that
/// connection's writes), and a hold whose acknowledgements fall short is released again.
pub(crate) struct Acked {
    pub(crate) redis: Redis,
    pub(crate) ack: Ack,
    pub(crate) resource: String,
    pub(crate) script: &'static Script,
    pub(crate) keys: Vec<Key>,
    /// The script's arguments after the owner token.
    pub(crate) args: Vec<u64>,
    pub(crate) token: String,
    /// The release script (owner-checked) with its keys and channel.
    pub(crate) release: &'static Script,
    pub(crate) release_keys: Vec<Key>,
    pub(crate) channel: String,
}

/// A dedicated connection that is closed, not pooled, unless the call on it finished (a
/// wait still blocking on the server must not delay the next user).
struct Conn {
    inner: redkit_core::Dedicated,
    done: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.done {
            self.inner.discard();
        }
    }
}

impl Acked {
    /// Runs the acquisition on a task of its own, so a caller who drops the future does not
    /// cut it short: a hold taken for a caller who is gone is released. Returns the acquire
    /// script's `(status, number)`.
    pub(crate) async fn run(self) -> Result<(i64, i64)> {
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (redis, release, keys, token, channel) = (
                self.redis.clone(),
                self.release,
                self.release_keys.clone(),
                self.token.clone(),
                self.channel.clone(),
            );
            let result = self.attempt().await;
            if let Err(Ok((1, _))) = tx.send(result) {
                crate::redis::release_in_background(&redis, release, keys, token, channel);
            }
        });
        rx.await.map_err(|_| {
            Error::Core(redkit_core::Error::Connection(redis::RedisError::from((
                redis::ErrorKind::Io,
                "lock acquisition",
                "the acquiring task ended without an answer".to_string(),
            ))))
        })?
    }

    async fn attempt(self) -> Result<(i64, i64)> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(self.script.code())
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.token)
            .arg(&self.args);
        let mut pipe = redis::pipe();
        pipe.add_command(eval)
            .add_command(self.ack.command())
            .ignore_errors();
        let limit = self
            .ack
            .timeout()
            .saturating_add(self.redis.config().response_timeout);
        let mut conn = Conn {
            inner: self.redis.dedicated().await?,
            done: false,
        };
        let replies: Vec<Value> =
            match tokio::time::timeout(limit, pipe.query_async(&mut conn.inner)).await {
                Ok(Ok(replies)) => replies,
                Ok(Err(e)) => {
                    // the link failed after the script may have run (a cut while the wait
                    // blocks): the caller gets an error, so undo, owner-checked
                    crate::redis::release_in_background(
                        &self.redis,
                        self.release,
                        self.release_keys.clone(),
                        self.token.clone(),
                        self.channel.clone(),
                    );
                    return Err(Error::Core(redkit_core::Error::from(e)));
                }
                Err(_) => {
                    // the script may have run: undo, owner-checked
                    crate::redis::release_in_background(
                        &self.redis,
                        self.release,
                        self.release_keys.clone(),
                        self.token.clone(),
                        self.channel.clone(),
                    );
                    return Err(Error::Core(redkit_core::Error::Timeout(format!(
                        "no answer to an acknowledged acquisition within {limit:?}"
                    ))));
                }
            };
        conn.done = true;
        let [answer, acks]: [Value; 2] = replies.try_into().map_err(|r: Vec<Value>| {
            redkit_core::Error::unexpected_reply(format!("{} replies to a pipeline of 2", r.len()))
        })?;
        let (status, n): (i64, i64) = match redis::from_redis_value(answer) {
            Ok(answer) => answer,
            Err(e) => {
                // a script that failed partway may have written: undo, owner-checked
                self.undo().await;
                return Err(Error::Core(redkit_core::Error::from_script(
                    self.script.name(),
                    e.into(),
                )));
            }
        };
        if status != 1 {
            return Ok((status, n));
        }
        let acked = match (&acks, self.ack.acked(&acks)) {
            (_, Some(acked)) => acked,
            (Value::ServerError(e), None) => {
                self.undo().await;
                let msg = e.details().unwrap_or_default().to_string();
                let err = if e.code().eq_ignore_ascii_case("ERR") && msg.contains("unknown command")
                {
                    redkit_core::Error::UnsupportedServer(format!(
                        "the server does not know the wait command: {msg}"
                    ))
                } else {
                    redkit_core::Error::Redis(redis::RedisError::from((
                        redis::ErrorKind::Extension,
                        "wait for acknowledgements",
                        format!("{} {msg}", e.code()),
                    )))
                };
                return Err(Error::Core(err));
            }
            (other, None) => {
                self.undo().await;
                return Err(Error::Core(redkit_core::Error::unexpected_reply(format!(
                    "unexpected answer to the wait command: {other:?}"
                ))));
            }
        };
        if acked < self.ack.wanted() {
            self.undo().await;
            return Err(Error::NotReplicated {
                resource: self.resource,
                wanted: self.ack.wanted(),
                acked,
            });
        }
        Ok((status, n))
    }

    /// Releases the hold just taken (owner-checked), reporting nothing: if it fails, the
    /// hold expires by its TTL.
    async fn undo(&self) {
        let mut call = self.release.call();
        for k in &self.release_keys {
            call = call.key(k);
        }
        let released: redkit_core::Result<i64> = call
            .arg(&self.token)
            .arg(&self.channel)
            .invoke(&self.redis)
            .await;
        if let Err(e) = released {
            tracing::warn!(resource = %self.resource, error = %e,
                "release after too few acknowledgements failed; the lock expires by its ttl");
        }
    }
}
