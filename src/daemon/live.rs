//! The runs the daemon has under way, one per repository, shared by the
//! workers that drive them and the connections that attach to them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, mpsc, watch};

use crate::domain::RunId;
use crate::domain::queue::RequirementId;
use crate::protocol::{Command, EngineUpdate};

/// How many updates an attached cockpit may fall behind before it is
/// caught up again from the store.
pub const FANOUT_CAPACITY: usize = 4096;

/// One run under way.
#[derive(Debug, Clone)]
pub struct LiveRun {
    /// The repository's registered name.
    pub repo: String,
    pub path: PathBuf,
    pub run: RunId,
    pub requirement: RequirementId,
    /// Every update of the run, for each attached cockpit.
    pub updates: broadcast::Sender<EngineUpdate>,
    /// Commands for the run's engine.
    pub commands: mpsc::UnboundedSender<Command>,
}

#[derive(Debug, Clone)]
pub struct LiveRuns {
    inner: Arc<Mutex<HashMap<String, LiveRun>>>,
    /// Bumped whenever a run starts or ends, so that an attached cockpit
    /// waiting for a repository's next run learns of it (a watch, unlike a
    /// `Notify`, cannot miss a change made between a look and the wait).
    changed: Arc<watch::Sender<u64>>,
}

impl Default for LiveRuns {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changed: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl LiveRuns {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, LiveRun>> {
        // Inserts and removals are single operations: never half done.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, run: LiveRun) {
        self.lock().insert(run.repo.clone(), run);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn remove(&self, repo: &str) -> Option<LiveRun> {
        let removed = self.lock().remove(repo);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        removed
    }

    /// Changes whenever a run starts or ends: mark it seen, look with
    /// [`Self::get`], then wait on `changed()` for the next start or end.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The run under way in the repository with this name.
    pub fn get(&self, repo: &str) -> Option<LiveRun> {
        self.lock().get(repo).cloned()
    }

    pub fn all(&self) -> Vec<LiveRun> {
        let mut runs: Vec<_> = self.lock().values().cloned().collect();
        runs.sort_by(|a, b| a.repo.cmp(&b.repo));
        runs
    }
}
