//! The in-memory backend: the same rules on a [`Clock`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use redkit_core::{Clock, SystemClock};

use crate::session::time_of;
use crate::{
    ClientInfo, Error, Layout, MaxSessions, Result, Session, SessionConfig, SessionHandle,
    SessionId, SessionInfo, SessionStore, check_user,
};

/// A [`SessionStore`] in process memory, for tests and single-process apps.
///
/// It passes the same conformance suite as [`RedisSessionStore`](crate::RedisSessionStore)
/// and keeps only handles (SHA-256 of ids), like it. Time comes from its [`Clock`].
/// Clones share the sessions.
#[derive(Clone)]
pub struct MemorySessionStore {
    config: Arc<SessionConfig>,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySessionStore")
            .field("config", &self.config)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Stored {
    fields: BTreeMap<String, String>,
    user: Option<String>,
    client: ClientInfo,
    created_ms: i64,
    touched_ms: i64,
    deadline_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<SessionHandle, Stored>,
    users: HashMap<String, BTreeMap<SessionHandle, i64>>,
}

impl State {
    /// The live session of a handle; an ended one is dropped.
    fn alive(&mut self, h: &SessionHandle, now: i64, idle: i64) -> Option<&mut Stored> {
        let ended = match self.sessions.get(h) {
            None => return None,
            Some(s) => now >= s.touched_ms + idle || now >= s.deadline_ms,
        };
        if ended {
            self.sessions.remove(h);
            return None;
        }
        self.sessions.get_mut(h)
    }

    /// A user's index with ended entries pruned.
    fn index(&mut self, user: &str, now: i64) -> &mut BTreeMap<SessionHandle, i64> {
        let index = self.users.entry(user.to_string()).or_default();
        index.retain(|_, deadline| *deadline > now);
        index
    }
}

/// Builds a [`MemorySessionStore`].
#[derive(Debug)]
pub struct MemorySessionStoreBuilder {
    config: SessionConfig,
    clock: Arc<dyn Clock>,
}

impl MemorySessionStoreBuilder {
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Validates the config.
    pub fn build(self) -> Result<MemorySessionStore> {
        self.config.validate()?;
        Ok(MemorySessionStore {
            config: Arc::new(self.config),
            clock: self.clock,
            state: Arc::default(),
        })
    }
}

impl MemorySessionStore {
    /// A store on the system clock; validates the config.
    pub fn new(config: SessionConfig) -> Result<MemorySessionStore> {
        MemorySessionStore::builder(config).build()
    }

    /// A builder, to set the clock.
    pub fn builder(config: SessionConfig) -> MemorySessionStoreBuilder {
        MemorySessionStoreBuilder {
            config,
            clock: Arc::new(SystemClock),
        }
    }

    fn now(&self) -> i64 {
        i64::try_from(self.clock.now().as_millis()).unwrap_or(i64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn session(id: SessionId, s: &Stored) -> Session {
        let mut out = Session::new(id, s.created_ms, s.deadline_ms);
        out.touched_ms = s.touched_ms;
        out.fields = s.fields.clone();
        out.user = s.user.clone();
        out.client = s.client.clone();
        out
    }

    fn extend(&self, s: &mut Stored, now: i64, force: bool) {
        if force || now - s.touched_ms >= self.config.touch_ms() {
            s.touched_ms = now;
        }
    }

    fn check_size(&self, session: &Session) -> Result<()> {
        let size = session.size();
        if size > self.config.max_size {
            return Err(Error::TooLarge {
                size,
                limit: self.config.max_size,
            });
        }
        Ok(())
    }

    /// Moves a session to `new_id` (see the Redis backend): stored data, the session's
    /// changes, its user and client; a fresh start with `deadline`, or its own.
    fn move_to(
        &self,
        state: &mut State,
        session: &mut Session,
        new_id: SessionId,
        deadline: Option<i64>,
    ) -> Result<()> {
        let now = self.now();
        let idle = self.config.idle_ms();
        let old = session.handle();
        let stored = state.alive(&old, now, idle).ok_or(Error::Unknown)?.clone();
        let mut merged = Self::session(session.id.clone(), &stored);
        merged.changes = session.changes.clone();
        merged.user = session.user.clone();
        merged.client = session.client.clone();
        self.check_size(&merged)?;
        merged.commit();
        let (created, deadline) = match deadline {
            Some(d) => (now, d),
            None => (stored.created_ms, stored.deadline_ms),
        };
        if deadline <= now || state.sessions.contains_key(&new_id.handle()) {
            return Err(Error::Unknown);
        }
        state.sessions.insert(
            new_id.handle(),
            Stored {
                fields: merged.fields.clone(),
                user: merged.user.clone(),
                client: merged.client.clone(),
                created_ms: created,
                touched_ms: now,
                deadline_ms: deadline,
            },
        );
        state.sessions.remove(&old);
        merged.id = new_id;
        merged.created_ms = created;
        merged.touched_ms = now;
        merged.deadline_ms = deadline;
        *session = merged;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn create(&self) -> Result<Session> {
        let now = self.now();
        let id = SessionId::generate()?;
        let stored = Stored {
            fields: BTreeMap::new(),
            user: None,
            client: ClientInfo::default(),
            created_ms: now,
            touched_ms: now,
            deadline_ms: now + self.config.absolute_ms(),
        };
        let session = Self::session(id.clone(), &stored);
        self.lock().sessions.insert(id.handle(), stored);
        Ok(session)
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Session>> {
        let now = self.now();
        let mut state = self.lock();
        let Some(s) = state.alive(&id.handle(), now, self.config.idle_ms()) else {
            return Ok(None);
        };
        self.extend(s, now, false);
        Ok(Some(Self::session(id.clone(), s)))
    }

    async fn save(&self, session: &mut Session) -> Result<()> {
        self.check_size(session)?;
        let now = self.now();
        let mut state = self.lock();
        let s = state
            .alive(&session.handle(), now, self.config.idle_ms())
            .ok_or(Error::Unknown)?;
        if self.config.layout == Layout::Json {
            // the whole object is rewritten: the session's view replaces the stored one
            let mut view = session.clone();
            view.commit();
            s.fields = view.fields;
        } else {
            for (k, v) in &session.changes {
                match v {
                    Some(v) => s.fields.insert(k.clone(), v.clone()),
                    None => s.fields.remove(k),
                };
            }
        }
        self.extend(s, now, !session.is_modified());
        session.commit();
        Ok(())
    }

    async fn touch(&self, id: &SessionId) -> Result<bool> {
        let now = self.now();
        let mut state = self.lock();
        match state.alive(&id.handle(), now, self.config.idle_ms()) {
            Some(s) => {
                self.extend(s, now, true);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let now = self.now();
        let h = id.handle();
        let mut state = self.lock();
        let alive = state.alive(&h, now, self.config.idle_ms()).is_some();
        let removed = state.sessions.remove(&h);
        if let Some(user) = removed.as_ref().and_then(|s| s.user.clone()) {
            state.index(&user, now).remove(&h);
        }
        Ok(alive)
    }

    async fn rotate(&self, session: &mut Session) -> Result<()> {
        let now = self.now();
        let old = session.handle();
        let mut state = self.lock();
        self.move_to(&mut state, session, SessionId::generate()?, None)?;
        if let Some(user) = session.user.clone() {
            let index = state.index(&user, now);
            index.remove(&old);
            index.insert(session.handle(), session.deadline_ms);
        }
        Ok(())
    }

    async fn login(
        &self,
        session: &mut Session,
        user: &str,
        client: ClientInfo,
    ) -> Result<Vec<SessionHandle>> {
        check_user(user)?;
        let now = self.now();
        let idle = self.config.idle_ms();
        let deadline = now + self.config.absolute_ms();
        let mut state = self.lock();
        if state.alive(&session.handle(), now, idle).is_none() {
            return Err(Error::Unknown);
        }
        let listed: Vec<SessionHandle> = state.index(user, now).keys().cloned().collect();
        let dead: Vec<SessionHandle> = listed
            .into_iter()
            .filter(|h| state.alive(h, now, idle).is_none())
            .collect();
        let index = state.index(user, now);
        for h in &dead {
            index.remove(h);
        }
        if let Some(MaxSessions::Refuse(n)) = self.config.max_sessions
            && index.len() >= n as usize
        {
            return Err(Error::TooManySessions { limit: n });
        }
        let old = session.handle();
        let previous_user = session.user.clone();
        let mut next = session.clone();
        next.user = Some(user.to_string());
        next.client = client;
        self.move_to(
            &mut state,
            &mut next,
            SessionId::generate()?,
            Some(deadline),
        )?;
        *session = next;
        if let Some(prev) = previous_user {
            state.index(&prev, now).remove(&old);
        }
        let index = state.index(user, now);
        index.insert(session.handle(), deadline);
        let mut evicted = Vec::new();
        if let Some(MaxSessions::EvictOldest(n)) = self.config.max_sessions {
            while index.len() > n as usize {
                let new = session.handle();
                let Some(oldest) = index
                    .iter()
                    .filter(|(h, _)| **h != new)
                    .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                    .map(|(h, _)| h.clone())
                else {
                    break;
                };
                index.remove(&oldest);
                evicted.push(oldest);
            }
        }
        for h in &evicted {
            state.sessions.remove(h);
        }
        Ok(evicted)
    }

    async fn sessions_of(&self, user: &str) -> Result<Vec<SessionInfo>> {
        check_user(user)?;
        let now = self.now();
        let idle = self.config.idle_ms();
        let mut state = self.lock();
        let mut listed: Vec<(SessionHandle, i64)> = state
            .index(user, now)
            .iter()
            .map(|(h, d)| (h.clone(), *d))
            .collect();
        listed.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let mut out = Vec::new();
        for (h, deadline) in listed {
            match state.alive(&h, now, idle) {
                Some(s) => out.push(SessionInfo {
                    handle: h.clone(),
                    created_at: time_of(s.created_ms),
                    last_seen: time_of(s.touched_ms),
                    deadline: time_of(deadline),
                    client: s.client.clone(),
                }),
                None => {
                    state.index(user, now).remove(&h);
                }
            }
        }
        Ok(out)
    }

    async fn revoke(&self, user: &str, handle: &SessionHandle) -> Result<bool> {
        check_user(user)?;
        let now = self.now();
        let mut state = self.lock();
        if state.index(user, now).remove(handle).is_none() {
            return Ok(false);
        }
        let alive = state.alive(handle, now, self.config.idle_ms()).is_some();
        state.sessions.remove(handle);
        Ok(alive)
    }

    async fn logout_everywhere(&self, user: &str, keep: Option<&SessionId>) -> Result<u64> {
        check_user(user)?;
        let now = self.now();
        let keep = keep.map(SessionId::handle);
        let mut state = self.lock();
        let index = state.index(user, now);
        let taken: Vec<SessionHandle> = index
            .keys()
            .filter(|h| Some(*h) != keep.as_ref())
            .cloned()
            .collect();
        for h in &taken {
            index.remove(h);
        }
        let mut n = 0;
        for h in &taken {
            if state.alive(h, now, self.config.idle_ms()).is_some() {
                n += 1;
            }
            state.sessions.remove(h);
        }
        Ok(n)
    }
}
