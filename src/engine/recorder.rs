//! The recorder is the single writer of a run: it stamps each event with the
//! next sequence number, applies it to the state machine (which may refuse
//! it), appends it to the store and only then publishes it. So the store, the
//! in-memory state and every front end see the same events in the same order.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;

use super::error::{EngineError, EngineResult};
use crate::domain::event::TaskStateChanged;
use crate::domain::{Event, EventKind, RunId, RunState, TaskId, TaskState};
use crate::effects::clock::now_ms;
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
    /// Values (API keys) that never reach the store or a front end.
    secrets: Vec<String>,
}

#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
    run: RunId,
    updates: UnboundedSender<EngineUpdate>,
    /// Woken after every event, for those waiting on the state to change.
    recorded: Arc<Notify>,
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
                secrets: Vec::new(),
            })),
            updates,
            recorded: Arc::new(Notify::new()),
        }
    }

    pub fn with_crash_after(self, crash: Option<CrashAfter>) -> Self {
        self.lock().crash_after = crash;
        self
    }

    /// Redacts these values from every event recorded from now on, wherever
    /// they appear (an agent printing a key, an error quoting a header).
    pub fn with_secrets(self, secrets: Vec<String>) -> Self {
        self.lock().secrets = secrets;
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
        let kind = crate::domain::redact::redact_value(kind, &inner.secrets);
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
        self.recorded.notify_waiters();
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
            EventKind::TaskStateChanged(TaskStateChanged {
                task,
                from,
                to,
                reason,
            }),
        )
    }

    /// Reads the current state under the lock. Keep `f` quick: no IO.
    pub fn with_state<T>(&self, f: impl FnOnce(&RunState) -> T) -> T {
        f(&self.lock().state)
    }

    /// Waits until `ready` finds what it looks for in the state, looking
    /// again after each event: how an agent waits for a human's answer or
    /// budget without a timer.
    pub async fn wait_until<T>(&self, mut ready: impl FnMut(&RunState) -> Option<T>) -> T {
        loop {
            let recorded = self.recorded.notified();
            tokio::pin!(recorded);
            // Registered before the look, so an event in between is not missed.
            recorded.as_mut().enable();
            if let Some(found) = self.with_state(&mut ready) {
                return found;
            }
            recorded.await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{RunPhaseChanged, RunStarted, Warning};
    use crate::domain::{RunPhase, RunSettings};

    fn recorder() -> Recorder {
        let (updates, _) = tokio::sync::mpsc::unbounded_channel();
        Recorder::start(
            Store::open_in_memory().unwrap(),
            RunId::from("r"),
            EventKind::RunStarted(RunStarted {
                requirement: String::new(),
                repo: String::new(),
                mainline: "main".into(),
                base_commit: String::new(),
                settings: RunSettings::default(),
            }),
            updates,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn wait_until_wakes_on_the_event_that_makes_it_true() {
        let recorder = recorder();
        // True already: no wait.
        assert_eq!(recorder.wait_until(|s| Some(s.last_seq)).await, 1);

        let waiter = tokio::spawn({
            let recorder = recorder.clone();
            async move {
                recorder
                    .wait_until(|s| (s.phase == RunPhase::Paused).then_some(s.last_seq))
                    .await
            }
        });
        tokio::task::yield_now().await;
        recorder
            .record(EventKind::Warning(Warning {
                task: None,
                message: "not yet".into(),
            }))
            .await
            .unwrap();
        assert!(!waiter.is_finished());
        recorder
            .record(EventKind::RunPhaseChanged(RunPhaseChanged {
                to: RunPhase::Paused,
                reason: None,
            }))
            .await
            .unwrap();
        let seq = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken by the event")
            .unwrap();
        assert_eq!(seq, 3);
    }
}
