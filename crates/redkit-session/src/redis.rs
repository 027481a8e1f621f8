//! The Redis backend: one hash per session keyed by the id's SHA-256, one sorted set per
//! user, every step a script on the server's clock.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use redkit_core::redis::{Value, cmd};
use redkit_core::{Invocation, Key, Keyspace, Pipeline, Redis, Script};
use sha2::{Digest, Sha256};

use crate::session::{check_field, time_of};
use crate::{
    ClientInfo, Error, Layout, MaxSessions, Result, Session, SessionConfig, SessionHandle,
    SessionId, SessionInfo, SessionStore, check_user,
};

macro_rules! script {
    ($name:literal) => {
        LazyLock::new(|| {
            Script::new(
                $name,
                concat!(
                    include_str!("../lua/common.lua"),
                    include_str!(concat!("../lua/", $name, ".lua"))
                ),
            )
        })
    };
}

static TOUCH: LazyLock<Script> = script!("touch");
static SAVE: LazyLock<Script> = script!("save");
static CREATE: LazyLock<Script> = script!("create");
static DELETE: LazyLock<Script> = script!("delete");
static FREEZE: LazyLock<Script> = script!("freeze");
/// How often a login tries again after parallel logins of the same user evicted it
/// before its session was written.
const LOGIN_ATTEMPTS: usize = 4;

static INDEX: LazyLock<Script> =
    LazyLock::new(|| Script::new("index", include_str!("../lua/index.lua")));

/// The outcome of a move's commit point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Both handles are indexed.
    Done,
    /// A handle left the index (revoked, evicted, or ended).
    Revoked,
    /// The user was logged out everywhere since the move began.
    LoggedOut,
    /// A rotation's new handle was revoked while it ran: its old handle is now in the
    /// `revoking` set, and the caller ends that session too.
    Ended,
}

/// A [`SessionStore`] on Redis.
///
/// Keys: `<prefix>:sess:{<handle>}` per session (a hash: data fields `d:<name>`, and
/// `_c`, `_t`, `_x`, `_u`, `_ua`, `_ip`) and `<prefix>:sess:user:{<SHA-256 of the user
/// id>}` per user (a sorted set of handles). Neither holds a session id or a user id in
/// its name.
#[derive(Clone)]
pub struct RedisSessionStore {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    config: SessionConfig,
    ns: Keyspace,
    idle: String,
    touch: String,
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("prefix", &self.inner.ns.prefix())
            .field("config", &self.inner.config)
            .finish()
    }
}

fn unexpected(what: impl Into<String>) -> Error {
    Error::Store(redkit_core::Error::unexpected_reply(what))
}

fn text(v: &Value) -> Result<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone())
            .map_err(|_| Error::Codec("stored text is not UTF-8".into())),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(unexpected(format!("expected a string, got {other:?}"))),
    }
}

fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        other => text(other)?
            .parse()
            .map_err(|_| unexpected(format!("expected an integer, got {other:?}"))),
    }
}

/// This machine's time in UNIX ms.
fn client_now() -> i64 {
    let now = redkit_core::Clock::now(&redkit_core::SystemClock).as_millis();
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// A session from its hash fields.
pub(crate) fn from_fields(id: SessionId, pairs: Vec<(String, String)>) -> Result<Session> {
    let mut s = Session::new(id, 0, 0);
    let num = |v: &str| -> Result<i64> {
        v.parse()
            .map_err(|_| Error::Codec(format!("a session timestamp `{v}` is not a number")))
    };
    let mut data = BTreeMap::new();
    for (k, v) in pairs {
        match k.as_str() {
            "_c" => s.created_ms = num(&v)?,
            "_t" => s.touched_ms = num(&v)?,
            "_x" => s.deadline_ms = num(&v)?,
            "_u" => s.user = Some(v),
            "_ua" => s.client.user_agent = Some(v),
            "_ip" => s.client.ip = Some(v),
            "j" => {
                let object: BTreeMap<String, &serde_json::value::RawValue> =
                    serde_json::from_str(&v)
                        .map_err(|e| Error::Codec(format!("the session's data: {e}")))?;
                for (name, raw) in object {
                    data.insert(name, raw.get().to_string());
                }
            }
            _ => {
                if let Some(name) = k.strip_prefix("d:") {
                    data.insert(name.to_string(), v);
                }
            }
        }
    }
    s.fields = data;
    Ok(s)
}

impl RedisSessionStore {
    /// A store over `redis` with `config`; validates the config.
    pub fn new(redis: &Redis, config: SessionConfig) -> Result<RedisSessionStore> {
        config.validate()?;
        let ns = redis.keyspace(&config.prefix)?.child("sess")?;
        if !config.allow_eviction {
            redis.ensure_no_eviction(
                "session",
                "users are logged out at random and an evicted session index lets \
                 sessions outlive \"log out everywhere\"",
            )?;
        }
        Ok(RedisSessionStore {
            inner: Arc::new(Inner {
                redis: redis.clone(),
                idle: config.idle_ms().to_string(),
                touch: config.touch_ms().to_string(),
                config,
                ns,
            }),
        })
    }

    /// The store's configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    pub(crate) fn redis_handle(&self) -> &Redis {
        &self.inner.redis
    }

    /// Adds a session to its user's index (deadline: the absolute timeout from now).
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    /// Returns the user's logout epoch, for [`Self::index_commit`].
    pub(crate) async fn index_add(&self, user: &str, handle: &SessionHandle) -> Result<String> {
        let absolute = self.inner.config.absolute_ms().to_string();
        let added = self
            .add_to_index(user, handle, &absolute, None, &[])
            .await?;
        Ok(added.map(|(_, epoch, _)| epoch).unwrap_or_default())
    }

    /// Adds a handle to the user's index with deadline `deadline` (ms from now, or
    /// `@<unix ms>`), dropping `dead` handles (found without a session; with the entry
    /// value seen when listed, see [`Self::listed`]) that are stale (lua/index.lua) and
    /// applying `limit`: `None` when [`MaxSessions::Refuse`] refused it, else the
    /// deadline, the user's logout epoch (see [`Self::index_commit`]) and the handles
    /// evicted to make room (their sessions still to delete). Revocations that an
    /// earlier caller took out of the index and died before finishing are finished here.
    async fn add_to_index(
        &self,
        user: &str,
        handle: &SessionHandle,
        deadline: &str,
        limit: Option<MaxSessions>,
        dead: &[(SessionHandle, String)],
    ) -> Result<Option<(i64, String, Vec<SessionHandle>)>> {
        let (limit, code) = match limit {
            Some(MaxSessions::EvictOldest(n)) => (n, "e"),
            Some(MaxSessions::Refuse(n)) => (n, "r"),
            None => (0, "e"),
        };
        let limit = limit.to_string();
        let grace = self.grace();
        let mut args = vec!["add", handle.as_str(), deadline, &limit, code, &grace];
        for (h, seen) in dead {
            args.push(h.as_str());
            args.push(seen.as_str());
        }
        let Value::Array(reply) = self.index(user, &args).await? else {
            return Err(unexpected("index add"));
        };
        let deadline = reply.first().map(int).transpose()?.unwrap_or(-1);
        if deadline < 0 {
            return Ok(None);
        }
        let epoch = reply.get(1).map(text).transpose()?.unwrap_or_default();
        let n = reply.get(2).map(int).transpose()?.unwrap_or(0);
        let mut evicted = reply
            .get(3..)
            .unwrap_or_default()
            .iter()
            .map(|v| SessionHandle::parse(&text(v)?))
            .collect::<Result<Vec<_>>>()?;
        let unfinished = evicted.split_off(usize::try_from(n).unwrap_or(0).min(evicted.len()));
        // revocations a caller that died left unfinished: their sessions still live
        if !unfinished.is_empty() {
            self.delete_handles(&unfinished).await?;
            self.confirm_revoked(user, &unfinished).await?;
        }
        Ok(Some((deadline, epoch, evicted)))
    }

    /// Drops a session from its user's index.
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    pub(crate) async fn index_remove(&self, user: &str, handle: &SessionHandle) -> Result<()> {
        self.index(user, &["remove", handle.as_str()]).await?;
        Ok(())
    }

    /// A move's commit point (lua/index.lua 'commit'): whether both handles are still in
    /// the user's index; marks their entries so that a listing that found the new
    /// session missing before it was written cannot drop it (a login or a tower create
    /// passes its new handle as both). With `epoch` (from the first [`Self::add_to_index`]
    /// of a login), [`Commit::LoggedOut`] when a `logout_everywhere` ran since.
    pub(crate) async fn index_commit(
        &self,
        user: &str,
        old: &SessionHandle,
        new: &SessionHandle,
        epoch: Option<&str>,
    ) -> Result<Commit> {
        let mut args = vec!["commit", old.as_str(), new.as_str()];
        args.extend(epoch);
        Ok(match int(&self.index(user, &args).await?)? {
            1 => Commit::Done,
            -1 => Commit::LoggedOut,
            2 => Commit::Ended,
            _ => Commit::Revoked,
        })
    }

    /// The key of a session.
    pub fn session_key(&self, handle: &SessionHandle) -> Result<Key> {
        Ok(self.inner.ns.tagged(handle.as_str())?)
    }

    /// The key of a user's index.
    pub fn user_key(&self, user: &str) -> Result<Key> {
        check_user(user)?;
        let digest = Sha256::digest(user.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok(self.inner.ns.tagged_child(&hex, "user")?)
    }

    pub(crate) fn session_call(
        &self,
        script: &'static Script,
        handle: &SessionHandle,
    ) -> Result<Invocation<'static>> {
        Ok(script
            .call()
            .key(self.session_key(handle)?.as_str())
            .arg(self.inner.idle.as_str())
            .arg(self.inner.touch.as_str()))
    }

    /// The session's fields, or `None` when it is gone (Redis ends a session by its key's
    /// expiry, so this is a plain `HGETALL`); `touch` extends it when a touch is due,
    /// which is a second, rare call.
    pub(crate) async fn fetch(&self, id: &SessionId, touch: bool) -> Result<Option<Session>> {
        let key = self.session_key(&id.handle())?;
        let fields: Vec<(String, String)> = self
            .inner
            .redis
            .query(cmd("HGETALL").arg(key.as_str()))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let mut session = from_fields(id.clone(), fields)?;
        // the key's expiry ends sessions on the server; checked here as well (on this
        // machine's clock, whose skew can only end a session early, never keep it)
        let now = client_now();
        if now >= session.deadline_ms
            || now
                >= session
                    .touched_ms
                    .saturating_add(self.inner.config.idle_ms())
        {
            return Ok(None);
        }
        if touch && self.touch_due(&session) {
            let at: i64 = self
                .session_call(&TOUCH, &id.handle())?
                .invoke(&self.inner.redis)
                .await?;
            if at == 0 {
                return Ok(None);
            }
            session.touched_ms = at;
        }
        Ok(Some(session))
    }

    /// Whether the session's last touch is older than the touch interval. Decided on this
    /// machine's clock (skew only moves touches earlier or later); the touch itself runs
    /// on the server's.
    fn touch_due(&self, session: &Session) -> bool {
        client_now() - session.touched_ms >= self.inner.config.touch_ms()
    }

    /// Writes a new session under `id` (never over an existing one).
    /// `Ok(None)` when the key is taken or the deadline has passed.
    pub(crate) async fn put(
        &self,
        id: &SessionId,
        created_ms: Option<i64>,
        deadline_ms: Option<i64>,
        fields: &[(String, String)],
    ) -> Result<Option<(i64, i64, i64)>> {
        let mut call = self
            .session_call(&CREATE, &id.handle())?
            .arg(self.inner.config.absolute_ms())
            .arg(created_ms.map(|v| v.to_string()).unwrap_or_default())
            .arg(deadline_ms.map(|v| v.to_string()).unwrap_or_default());
        for (k, v) in fields {
            call = call.arg(k.as_str()).arg(v.as_str());
        }
        let reply: Value = call.invoke(&self.inner.redis).await?;
        match reply {
            Value::Int(_) => Ok(None),
            Value::Array(v) if v.len() == 3 => Ok(Some((int(&v[0])?, int(&v[1])?, int(&v[2])?))),
            other => Err(unexpected(format!("create replied {other:?}"))),
        }
    }

    async fn index(&self, user: &str, args: &[&str]) -> Result<Value> {
        let key = self.user_key(user)?;
        let mut call = INDEX
            .call()
            .key(key.as_str())
            .key(key.child("added")?.as_str())
            .key(key.child("revoking")?.as_str())
            .key(key.child("epoch")?.as_str());
        for a in args {
            call = call.arg(*a);
        }
        Ok(call.invoke(&self.inner.redis).await?)
    }

    /// Deletes session keys by handle (one pipeline, grouped by slot on a cluster).
    async fn delete_handles(&self, handles: &[SessionHandle]) -> Result<u64> {
        if handles.is_empty() {
            return Ok(0);
        }
        let mut pipe = Pipeline::new();
        for h in handles {
            pipe.cmd(cmd("DEL").arg(self.session_key(h)?.as_str()).to_owned());
        }
        let replies: Vec<i64> = pipe.query(&self.inner.redis).await?;
        Ok(replies.iter().filter(|n| **n > 0).count() as u64)
    }

    /// Ends what a login that did not happen leaves behind: the session it wrote, and
    /// the sessions it evicted from the index.
    async fn discard(&self, written: Option<&Session>, evicted: &[SessionHandle]) -> Result<()> {
        if let Some(w) = written {
            self.delete_session(&w.handle()).await?;
        }
        self.delete_handles(evicted).await?;
        Ok(())
    }

    /// How long an indexed handle without a session is taken for a login still writing
    /// its session, not a dead one: the idle timeout, at most 30 s. A session's key is
    /// written after its handle is indexed and lives at least the idle timeout, so a
    /// missing key younger than that is not an idle expiry.
    fn grace(&self) -> String {
        self.inner.config.idle_ms().min(30_000).to_string()
    }

    /// Listed handles (with their entry values) whose sessions have ended.
    async fn dead_handles(
        &self,
        listed: Vec<(SessionHandle, i64, String)>,
    ) -> Result<Vec<(SessionHandle, String)>> {
        if listed.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = Pipeline::new();
        for (h, _, _) in &listed {
            pipe.cmd(cmd("EXISTS").arg(self.session_key(h)?.as_str()).to_owned());
        }
        let exists: Vec<i64> = pipe.query(&self.inner.redis).await?;
        Ok(listed
            .into_iter()
            .zip(exists)
            .filter(|(_, e)| *e == 0)
            .map(|((h, _, seen), _)| (h, seen))
            .collect())
    }

    /// The user's index: handle, deadline, and the entry's value when listed (what a
    /// later prune of the handle must still find, see lua/index.lua).
    async fn listed(&self, user: &str) -> Result<Vec<(SessionHandle, i64, String)>> {
        let Value::Array(v) = self.index(user, &["list"]).await? else {
            return Err(unexpected("index list"));
        };
        v.chunks(3)
            .map(|p| match p {
                [h, d, seen] => Ok((SessionHandle::parse(&text(h)?)?, int(d)?, text(seen)?)),
                _ => Err(unexpected("an odd index list")),
            })
            .collect()
    }

    /// The whole session as fields to write: stored data with the session's changes on
    /// top, plus its user and client.
    fn fields_of(&self, session: &Session) -> Result<Vec<(String, String)>> {
        self.check_size(session)?;
        let mut out: Vec<(String, String)> = match self.inner.config.layout {
            Layout::Fields => session
                .keys()
                .into_iter()
                .filter_map(|k| Some((format!("d:{k}"), session.get_raw(k)?.to_string())))
                .collect(),
            Layout::Json => vec![("j".to_string(), session.merged_json())],
        };
        if let Some(u) = &session.user {
            out.push(("_u".into(), u.clone()));
        }
        if let Some(ua) = &session.client.user_agent {
            out.push(("_ua".into(), ua.clone()));
        }
        if let Some(ip) = &session.client.ip {
            out.push(("_ip".into(), ip.clone()));
        }
        Ok(out)
    }

    fn check_size(&self, session: &Session) -> Result<()> {
        let size = session.size();
        let limit = self.inner.config.max_size;
        if size > limit {
            return Err(Error::TooLarge { size, limit });
        }
        Ok(())
    }

    /// Reads a session about to move to a new id and marks it so that saves through the
    /// old id fail from now on (lua/freeze.lua); `None` when it is gone.
    /// `marks` counts the marks made, for [`Self::thaw_after`].
    async fn freeze(&self, id: &SessionId, marks: &AtomicUsize) -> Result<Option<Session>> {
        let fields: Option<Vec<(String, String)>> = self
            .session_call(&FREEZE, &id.handle())?
            .arg("freeze")
            .invoke(&self.inner.redis)
            .await?;
        if fields.is_some() {
            marks.fetch_add(1, Ordering::Relaxed);
        }
        fields.map(|f| from_fields(id.clone(), f)).transpose()
    }

    /// Takes the marks of [`Self::freeze`] off a session whose move failed (only those
    /// this move made: another move of it may still be copying it), so it can be
    /// saved again if it still lives (a move can fail with [`Error::Unknown`] while the
    /// old session lives on: a `logout_everywhere` that keeps it took the new handle).
    /// On a session that is gone this writes nothing.
    async fn thaw_after(
        &self,
        handle: &SessionHandle,
        failed: Option<&Error>,
        marks: &AtomicUsize,
    ) {
        let marks = marks.load(Ordering::Relaxed);
        if failed.is_none() || marks == 0 {
            return;
        }
        let thawed = match self.session_call(&FREEZE, handle) {
            Ok(call) => {
                call.arg("thaw")
                    .arg(marks)
                    .invoke::<i64>(&self.inner.redis)
                    .await
            }
            Err(_) => return,
        };
        if let Err(e) = thawed {
            tracing::warn!(session = handle.short(), error = %e, "could not unmark a session after a failed move");
        }
    }

    /// Writes `session` under `new_id`: its current stored data with its changes on top,
    /// with its user and client, starting afresh with `deadline` or keeping its start and
    /// deadline. The old id still works for reads, but saves through it fail from the
    /// read on (see [`Self::freeze`]); the caller deletes it.
    async fn copy_to(
        &self,
        session: &Session,
        new_id: SessionId,
        deadline: Option<i64>,
        marks: &AtomicUsize,
    ) -> Result<Session> {
        let mut merged = self
            .freeze(&session.id, marks)
            .await?
            .ok_or(Error::Unknown)?;
        crate::hooks::point("copy:read", session.handle().as_str()).await;
        merged.changes = session.changes.clone();
        merged.user = session.user.clone();
        merged.client = session.client.clone();
        let fields = self.fields_of(&merged)?;
        let (created, deadline) = match deadline {
            Some(d) => (None, Some(d)),
            None => (Some(merged.created_ms), Some(merged.deadline_ms)),
        };
        // a 256-bit id that is taken, or a deadline already passed, ends the session
        let (c, t, x) = self
            .put(&new_id, created, deadline, &fields)
            .await?
            .ok_or(Error::Unknown)?;
        merged.commit();
        merged.id = new_id;
        merged.created_ms = c;
        merged.touched_ms = t;
        merged.deadline_ms = x;
        Ok(merged)
    }

    /// Deletes a session's key; `false` when it was already gone.
    async fn delete_session(&self, handle: &SessionHandle) -> Result<bool> {
        let reply: Vec<Value> = self
            .session_call(&DELETE, handle)?
            .invoke(&self.inner.redis)
            .await?;
        Ok(reply.first().map(int).transpose()?.unwrap_or(0) == 1)
    }

    /// Drops handles whose sessions are deleted from the user's `revoking` set (until
    /// then, the next `logout_everywhere` takes them again).
    async fn confirm_revoked(&self, user: &str, handles: &[SessionHandle]) -> Result<()> {
        if handles.is_empty() {
            return Ok(());
        }
        let mut args = vec!["revoked"];
        args.extend(handles.iter().map(SessionHandle::as_str));
        self.index(user, &args).await?;
        Ok(())
    }

    /// Ends a rotation or login that must not happen after all: deletes the new session
    /// and its index entry.
    async fn undo_new(&self, user: Option<&str>, new: &SessionHandle) -> Result<()> {
        self.delete_session(new).await?;
        if let Some(user) = user {
            self.index(user, &["remove", new.as_str()]).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create(&self) -> Result<Session> {
        for _ in 0..4 {
            let id = SessionId::generate()?;
            if let Some((created, touched, deadline)) = self.put(&id, None, None, &[]).await? {
                let mut s = Session::new(id, created, deadline);
                s.touched_ms = touched;
                tracing::debug!(session = s.handle().short(), "session created");
                return Ok(s);
            }
        }
        Err(Error::Store(redkit_core::Error::unexpected_reply(
            "four fresh 256-bit ids in a row were taken",
        )))
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Session>> {
        self.fetch(id, true).await
    }

    async fn save(&self, session: &mut Session) -> Result<()> {
        if !session.is_modified() {
            return if self.touch(&session.id).await? {
                Ok(())
            } else {
                Err(Error::Unknown)
            };
        }
        self.check_size(session)?;
        let touch = if self.touch_due(session) { "1" } else { "0" };
        let call = self.session_call(&SAVE, &session.handle())?.arg(touch);
        let call = match self.inner.config.layout {
            Layout::Json => call.arg(1).arg("j").arg(session.merged_json()),
            Layout::Fields => {
                let sets: Vec<(&String, &String)> = session
                    .changes
                    .iter()
                    .filter_map(|(k, v)| Some((k, v.as_ref()?)))
                    .collect();
                let mut call = call.arg(sets.len());
                for (k, v) in &sets {
                    check_field(k)?;
                    call = call.arg(format!("d:{k}")).arg(v.as_str());
                }
                for (k, v) in &session.changes {
                    if v.is_none() {
                        call = call.arg(format!("d:{k}"));
                    }
                }
                call
            }
        };
        let saved: i64 = call.invoke(&self.inner.redis).await?;
        if saved == 0 {
            return Err(Error::Unknown);
        }
        session.commit();
        Ok(())
    }

    async fn touch(&self, id: &SessionId) -> Result<bool> {
        let at: i64 = self
            .session_call(&TOUCH, &id.handle())?
            .invoke(&self.inner.redis)
            .await?;
        Ok(at > 0)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let handle = id.handle();
        let reply: Vec<Value> = self
            .session_call(&DELETE, &handle)?
            .invoke(&self.inner.redis)
            .await?;
        let deleted = reply.first().map(int).transpose()?.unwrap_or(0) == 1;
        if let Some(user) = reply.get(1).filter(|v| !matches!(v, Value::Nil)) {
            let user = text(user)?;
            self.index(&user, &["remove", handle.as_str()]).await?;
        }
        if deleted {
            tracing::debug!(session = handle.short(), "session deleted");
        }
        Ok(deleted)
    }

    /// A rotation in steps on a cluster, where the session keys (tagged by handle) and
    /// the user index (tagged by user) sit in different slots:
    ///
    /// 1. the new handle is indexed (a crash leaves a dangling entry, pruned later);
    /// 2. the old session is read and written under the new id (`SET`-if-absent);
    /// 3. commit point, one script on the index: both handles are still indexed.
    ///    `logout_everywhere` and `revoke` take handles out of the index before they
    ///    delete any key, so one that began before this point makes the commit fail, and
    ///    one after it sees the new handle and ends it;
    /// 4. the old session is deleted, and must still have existed: a delete of the old
    ///    id (which deletes the key first) that overlapped the rotation ends the new
    ///    session too;
    /// 5. the old handle leaves the index (after its key is gone, so a crash between
    ///    leaves a dangling entry, never an unlisted live session), and must still have
    ///    been there: a `revoke` of the old handle after the commit whose delete step 4
    ///    beat ends the new session too.
    ///
    /// A rotation that loses to a revocation fails with [`Error::Unknown`] and deletes
    /// what it wrote. Test: `tests/rotate_race.rs` stops rotate between every two steps.
    async fn rotate(&self, session: &mut Session) -> Result<()> {
        let moving = session.handle();
        let marks = AtomicUsize::new(0);
        let result: Result<()> = async {
            let old = session.handle();
            let new_id = SessionId::generate()?;
            let new = new_id.handle();
            let user = session.user.clone();
            let mut epoch = None;
            if let Some(user) = &user {
                let deadline = format!("@{}", session.deadline_ms);
                let added = self.add_to_index(user, &new, &deadline, None, &[]).await?;
                epoch = added.map(|(_, e, _)| e);
            }
            crate::hooks::point("rotate:indexed", old.as_str()).await;
            let next = match self.copy_to(session, new_id, None, &marks).await {
                Ok(next) => next,
                Err(e) => {
                    if let Some(user) = &user {
                        self.index(user, &["remove", new.as_str()]).await?;
                    }
                    return Err(e);
                }
            };
            crate::hooks::point("rotate:written", old.as_str()).await;
            if let Some(user) = &user {
                let commit = self
                    .index_commit(user, &old, &new, epoch.as_deref())
                    .await?;
                if commit != Commit::Done {
                    // the commit already dropped the new handle from the index
                    self.delete_session(&new).await?;
                    if commit == Commit::Ended {
                        // the new handle was revoked: the revocation ends the session
                        self.delete_session(&old).await?;
                        self.confirm_revoked(user, std::slice::from_ref(&old))
                            .await?;
                    }
                    tracing::debug!(session = old.short(), "rotation lost to a revocation");
                    return Err(Error::Unknown);
                }
            }
            crate::hooks::point("rotate:committed", old.as_str()).await;
            if !self.delete_session(&old).await? {
                self.undo_new(user.as_deref(), &new).await?;
                tracing::debug!(session = old.short(), "rotation lost to a delete");
                return Err(Error::Unknown);
            }
            // a revoke of the old handle that took it after the commit deletes the old
            // key too, and may have lost that race to step 4: the old handle must still
            // be indexed, else the revocation ends the new session as well
            if let Some(user) = &user {
                let finished = self.index(user, &["finish", old.as_str()]).await?;
                if int(&finished)? != 1 {
                    self.undo_new(Some(user), &new).await?;
                    tracing::debug!(session = old.short(), "rotation lost to a revoke");
                    return Err(Error::Unknown);
                }
            }
            *session = next;
            tracing::debug!(from = old.short(), to = new.short(), "session rotated");
            Ok(())
        }
        .await;
        self.thaw_after(&moving, result.as_ref().err(), &marks)
            .await;
        result
    }

    async fn login(
        &self,
        session: &mut Session,
        user: &str,
        client: ClientInfo,
    ) -> Result<Vec<SessionHandle>> {
        let moving = session.handle();
        let marks = AtomicUsize::new(0);
        let old_handle = moving.clone();
        let result: Result<Vec<SessionHandle>> = async {
            check_user(user)?;
            let previous_user = session.user.clone();
            let policy = self.inner.config.max_sessions;
            // sessions that ended without a logout do not count against the limit
            let dead = if policy.is_some() {
                let listed = self.listed(user).await?;
                self.dead_handles(listed).await?
            } else {
                Vec::new()
            };
            let absolute = self.inner.config.absolute_ms().to_string();
            let refused = || Error::TooManySessions {
                limit: policy.map_or(0, MaxSessions::limit),
            };
            let mut next = session.clone();
            next.user = Some(user.to_string());
            next.client = client;
            // the session written by an attempt that a parallel login displaced
            let mut written: Option<Session> = None;
            let mut evicted = Vec::new();
            let mut done = None;
            // the logout epoch when the first attempt was indexed: a logout everywhere
            // after it ends this login rather than letting it start over
            let mut epoch: Option<String> = None;
            for attempt in 0..LOGIN_ATTEMPTS {
                // the new id is indexed before its session exists: a crash leaves a dangling
                // entry (pruned after the grace), never a session the index misses
                let new_id = SessionId::generate()?;
                let new = new_id.handle();
                let dead = if attempt == 0 { &dead[..] } else { &[] };
                let Some((deadline, now_epoch, more)) = self
                    .add_to_index(user, &new, &absolute, policy, dead)
                    .await?
                else {
                    self.discard(written.as_ref(), &evicted).await?;
                    self.confirm_revoked(user, &evicted).await?;
                    return Err(refused());
                };
                let epoch = epoch.get_or_insert(now_epoch).clone();
                // handles out of the index always have their sessions deleted below
                evicted.extend(more);
                // always from the session being logged in: a displaced attempt's copy may be
                // deleted at any time by the login that evicted it
                let copied = match self.copy_to(&next, new_id, Some(deadline), &marks).await {
                    Ok(copied) => copied,
                    Err(e) => {
                        self.index(user, &["remove", new.as_str()]).await?;
                        self.discard(written.as_ref(), &evicted).await?;
                        self.confirm_revoked(user, &evicted).await?;
                        return Err(e);
                    }
                };
                if let Some(w) = written.replace(copied) {
                    self.delete_session(&w.handle()).await?;
                }
                // a parallel login may have evicted the entry before the session existed (its
                // delete found nothing, or will delete it later): then try again under a
                // fresh id, which a late delete of this one cannot touch
                match self.index_commit(user, &new, &new, Some(&epoch)).await? {
                    Commit::Done => {
                        done = written.take();
                        break;
                    }
                    Commit::LoggedOut => {
                        self.discard(written.as_ref(), &evicted).await?;
                        self.confirm_revoked(user, &evicted).await?;
                        tracing::debug!(
                            session = old_handle.short(),
                            "login lost to a logout everywhere"
                        );
                        return Err(Error::Unknown);
                    }
                    Commit::Revoked | Commit::Ended => {}
                }
            }
            let Some(next) = done else {
                self.discard(written.as_ref(), &evicted).await?;
                self.confirm_revoked(user, &evicted).await?;
                return Err(Error::LoginDisplaced { evicted });
            };
            let old = session.handle();
            let new = next.handle();
            crate::hooks::point("login:written", old.as_str()).await;
            // the session logged in must still exist: a delete or revocation of it that
            // overlapped the login ends the new session too, as for a rotation
            if !self.delete_session(&old).await? {
                self.undo_new(Some(user), &new).await?;
                self.delete_handles(&evicted).await?;
                self.confirm_revoked(user, &evicted).await?;
                tracing::debug!(session = old.short(), "login lost to a delete");
                return Err(Error::Unknown);
            }
            *session = next;
            if let Some(prev) = previous_user {
                self.index(&prev, &["remove", old.as_str()]).await?;
            }
            self.delete_handles(&evicted).await?;
            self.confirm_revoked(user, &evicted).await?;
            tracing::debug!(
                session = new.short(),
                evicted = evicted.len(),
                "session logged in"
            );
            Ok(evicted)
        }
        .await;
        self.thaw_after(&moving, result.as_ref().err(), &marks)
            .await;
        result
    }

    async fn sessions_of(&self, user: &str) -> Result<Vec<SessionInfo>> {
        let listed = self.listed(user).await?;
        if listed.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = Pipeline::new();
        for (h, _, _) in &listed {
            pipe.cmd(
                cmd("HMGET")
                    .arg(self.session_key(h)?.as_str())
                    .arg("_c")
                    .arg("_t")
                    .arg("_ua")
                    .arg("_ip")
                    .to_owned(),
            );
        }
        let rows: Vec<Vec<Option<String>>> = pipe.query(&self.inner.redis).await?;
        let mut out = Vec::new();
        let grace = self.grace();
        let mut ended: Vec<&str> = vec!["prune", &grace];
        for ((handle, deadline, seen), row) in listed.iter().zip(rows) {
            let [Some(c), Some(t), ua, ip] = <[Option<String>; 4]>::try_from(row)
                .map_err(|_| unexpected("HMGET of four fields"))?
            else {
                ended.push(handle.as_str());
                ended.push(seen.as_str());
                continue;
            };
            let num = |v: &str| v.parse::<i64>().unwrap_or(0);
            out.push(SessionInfo {
                handle: handle.clone(),
                created_at: time_of(num(&c)),
                last_seen: time_of(num(&t)),
                deadline: time_of(*deadline),
                client: ClientInfo::new(ua, ip),
            });
        }
        crate::hooks::point("sessions_of:read", user).await;
        if ended.len() > 2 {
            self.index(user, &ended).await?;
        }
        Ok(out)
    }

    async fn revoke(&self, user: &str, handle: &SessionHandle) -> Result<bool> {
        let removed = self.index(user, &["revoke", handle.as_str()]).await?;
        if int(&removed)? == 0 {
            return Ok(false);
        }
        crate::hooks::point("revoke:taken", handle.as_str()).await;
        let deleted = self.delete_handles(std::slice::from_ref(handle)).await? == 1;
        self.confirm_revoked(user, std::slice::from_ref(handle))
            .await?;
        Ok(deleted)
    }

    async fn logout_everywhere(&self, user: &str, keep: Option<&SessionId>) -> Result<u64> {
        let keep = keep.map(SessionId::handle);
        let Value::Array(taken) = self
            .index(user, &["take", keep.as_ref().map_or("", |h| h.as_str())])
            .await?
        else {
            return Err(unexpected("index take"));
        };
        let handles = taken
            .iter()
            .map(|v| SessionHandle::parse(&text(v)?))
            .collect::<Result<Vec<_>>>()?;
        crate::hooks::point("logout:taken", user).await;
        let n = self.delete_handles(&handles).await?;
        // only now: until their keys are gone, a retry after a crash takes them again
        self.confirm_revoked(user, &handles).await?;
        tracing::debug!(sessions = n, "logged out everywhere");
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_touch_only_declared_keys_of_one_slot() {
        for script in [&*TOUCH, &*SAVE, &*CREATE, &*DELETE, &*FREEZE] {
            assert!(script.code().starts_with("-- KEYS[1]"), "{}", script.name());
            assert!(!script.code().contains("KEYS[2]"), "{}", script.name());
        }
        // the index script's four keys: the index and its `added`, `revoking` and
        // `epoch` siblings, one hash tag
        assert!(INDEX.code().starts_with("-- KEYS[1]"));
        assert!(!INDEX.code().contains("KEYS[5]"));
        let index = Keyspace::new("app")
            .unwrap()
            .tagged_child("0123abcd", "user")
            .unwrap();
        let added = index.child("added").unwrap();
        let revoking = index.child("revoking").unwrap();
        let epoch = index.child("epoch").unwrap();
        assert!(redkit_core::same_slot(&[
            index.as_str(),
            added.as_str(),
            revoking.as_str(),
            epoch.as_str()
        ]));
    }

    /// No script makes a key name (rule: every key in KEYS): these scripts need no string
    /// concatenation at all, so any `..` outside a comment fails.
    #[test]
    fn no_script_builds_a_key_name() {
        redkit_testkit::assert_no_lua_concatenation(concat!(env!("CARGO_MANIFEST_DIR"), "/lua"), 2);
    }
}
