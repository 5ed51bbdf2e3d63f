//! The recorder is the single writer of a run: it stamps each event with the
//! next sequence number, applies it to the state machine (which may refuse
//! it), appends it to the store and only then publishes it. So the store, the
//! in-memory state and every front end see the same events in the same order.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::UnboundedSender;

use super::error::{EngineError, EngineResult};
use crate::domain::{Event, EventKind, RunId, RunState, TaskId, TaskState};
use crate::effects::store::Store;
use crate::protocol::EngineUpdate;

/// A test hook: exit the process right after this many events are stored, to
/// simulate a crash at a precise point.
#[derive(Debug, Clone, Copy)]
pub struct CrashAfter(pub u64);

struct Inner {
    store: Store,
    state: RunState,
    crash_after: Option<CrashAfter>,
}

#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
    run: RunId,
    updates: UnboundedSender<EngineUpdate>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Recorder {
    /// Starts recording a new run: `started` must be a `RunStarted` kind.
    pub fn start(
        mut store: Store,
        run: RunId,
        started: EventKind,
        updates: UnboundedSender<EngineUpdate>,
    ) -> EngineResult<Self> {
        let event = Event {
            run: run.clone(),
            seq: 1,
            at_ms: now_ms(),
            kind: started,
        };
        let state = RunState::start(&event)?;
        store.append(&event)?;
        let _ = updates.send(EngineUpdate::Event(event));
        Ok(Self::from_parts(store, state, updates))
    }

    /// Continues a stored run; replays its events to the front end first so
    /// it shows the run as it was.
    pub fn resume(
        store: Store,
        run: &RunId,
        updates: UnboundedSender<EngineUpdate>,
    ) -> EngineResult<Self> {
        let events = store.events(run)?;
        let state =
            RunState::fold(&events)?.ok_or_else(|| EngineError::UnknownRun(run.to_string()))?;
        for event in events {
            let _ = updates.send(EngineUpdate::Event(event));
        }
        Ok(Self::from_parts(store, state, updates))
    }

    fn from_parts(store: Store, state: RunState, updates: UnboundedSender<EngineUpdate>) -> Self {
        Self {
            run: state.run.clone(),
            inner: Arc::new(Mutex::new(Inner {
                store,
                state,
                crash_after: None,
            })),
            updates,
        }
    }

    pub fn with_crash_after(self, crash: Option<CrashAfter>) -> Self {
        self.lock().crash_after = crash;
        self
    }

    pub fn run(&self) -> &RunId {
        &self.run
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-changed:
        // `apply` is all-or-nothing, so the poisoned data is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a front-end-only update (streaming text).
    pub fn publish(&self, update: EngineUpdate) {
        let _ = self.updates.send(update);
    }

    /// Records one event. Runs the SQLite append on the blocking pool.
    pub async fn record(&self, kind: EventKind) -> EngineResult<Event> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.record_blocking(kind))
            .await
            .map_err(|e| EngineError::Join(e.to_string()))?
    }

    pub fn record_blocking(&self, kind: EventKind) -> EngineResult<Event> {
        let mut inner = self.lock();
        self.append_locked(&mut inner, kind)
    }

    fn append_locked(&self, inner: &mut Inner, kind: EventKind) -> EngineResult<Event> {
        let event = Event {
            run: self.run.clone(),
            seq: inner.state.last_seq + 1,
            at_ms: now_ms().max(inner.state.last_at_ms),
            kind,
        };
        inner.state.apply(&event)?;
        if let Err(e) = inner.store.append(&event) {
            // The state is now ahead of the store; nothing may be recorded on
            // top of it. Callers stop the run on this error.
            tracing::error!(error = %e, seq = event.seq, "event store append failed");
            return Err(e.into());
        }
        if let Some(CrashAfter(n)) = inner.crash_after
            && event.seq >= n
        {
            tracing::warn!(seq = event.seq, "crash hook: exiting abruptly");
            std::process::exit(CRASH_EXIT_CODE);
        }
        let _ = self.updates.send(EngineUpdate::Event(event.clone()));
        Ok(event)
    }

    /// Moves a task to `to` from whatever state it is in now, atomically.
    pub async fn transition(
        &self,
        task: &TaskId,
        to: TaskState,
        reason: impl Into<Option<String>>,
    ) -> EngineResult<Event> {
        let (task, reason, this) = (task.clone(), reason.into(), self.clone());
        tokio::task::spawn_blocking(move || {
            let mut inner = this.lock();
            this.transition_locked(&mut inner, task, to, reason)
        })
        .await
        .map_err(|e| EngineError::Join(e.to_string()))?
    }

    /// Like [`Self::transition`], but only if `allowed` holds for the state at
    /// that instant (under the same lock), so no other event can slip between
    /// the check and the transition. `None` when it did not hold.
    pub async fn transition_when(
        &self,
        task: &TaskId,
        to: TaskState,
        reason: impl Into<Option<String>>,
        allowed: impl FnOnce(&RunState) -> bool + Send + 'static,
    ) -> EngineResult<Option<Event>> {
        let (task, reason, this) = (task.clone(), reason.into(), self.clone());
        tokio::task::spawn_blocking(move || {
            let mut inner = this.lock();
            if !allowed(&inner.state) {
                return Ok(None);
            }
            this.transition_locked(&mut inner, task, to, reason)
                .map(Some)
        })
        .await
        .map_err(|e| EngineError::Join(e.to_string()))?
    }

    fn transition_locked(
        &self,
        inner: &mut Inner,
        task: TaskId,
        to: TaskState,
        reason: Option<String>,
    ) -> EngineResult<Event> {
        let from = inner
            .state
            .task(&task)
            .map(|t| t.state)
            .ok_or_else(|| EngineError::UnknownTask(task.clone()))?;
        self.append_locked(
            inner,
            EventKind::TaskStateChanged {
                task,
                from,
                to,
                reason,
            },
        )
    }

    /// Reads the current state under the lock. Keep `f` quick: no IO.
    pub fn with_state<T>(&self, f: impl FnOnce(&RunState) -> T) -> T {
        f(&self.lock().state)
    }

    pub fn snapshot(&self) -> RunState {
        self.with_state(RunState::clone)
    }

    /// Runs `f` with the store (e.g. to poll the command inbox). Blocking.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.lock().store)
    }
}

/// Exit code of the crash hook, so tests can tell it from a real failure.
pub const CRASH_EXIT_CODE: i32 = 86;
