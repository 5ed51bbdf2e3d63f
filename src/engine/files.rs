//! Where a repository keeps the factory's files (`.memofab/`: the store, the
//! log, the policy, the worktrees), and reading a stored run.

use std::path::{Path, PathBuf};

use super::error::{EngineError, EngineResult};
use crate::domain::{RunId, RunState};
use crate::effects::store::Store;

/// The factory's own directory inside a project.
pub const FACTORY_DIR: &str = ".memofab";

pub fn factory_dir(repo: &Path) -> PathBuf {
    repo.join(FACTORY_DIR)
}

pub fn store_path(repo: &Path) -> PathBuf {
    factory_dir(repo).join("memofab.db")
}

/// Reads a stored run's state without touching it.
pub fn stored_state(repo: &Path, run: &RunId) -> EngineResult<RunState> {
    let store = Store::open(&store_path(repo))?;
    let events = store.events(run)?;
    RunState::fold(&events)?.ok_or_else(|| EngineError::UnknownRun(run.to_string()))
}
