//! What a run leaves in the repository: task worktrees under
//! `.memofab/worktrees/<run>/`, task branches `memofab/<run>/<task>` and the
//! merge queue's `memofab-verify/<run>`. Agents of later runs see all of it,
//! so a finished run keeps only what a human must look at (its tasks that
//! did not merge), and `memofab clean` removes even that, for finished runs
//! only: a run that can still go on keeps everything.

use std::path::{Path, PathBuf};

use super::context::RunContext;
use super::engine_lock::EngineLock;
use super::error::{EngineError, EngineResult};
use super::files::{factory_dir, store_path, stored_state};
use super::run::steps::branch_name;
use crate::domain::{RunId, RunState, TaskState};
use crate::effects::git::{GitError, GitRepo};
use crate::effects::store::Store;

/// The directory holding a run's worktrees.
pub fn run_dir(repo: &Path, run: &RunId) -> PathBuf {
    factory_dir(repo).join("worktrees").join(run.as_str())
}

/// The branch of the merge queue's scratch worktree.
pub fn verify_branch(run: &RunId) -> String {
    format!("memofab-verify/{run}")
}

/// A task of a finished run whose worktree or branch is kept for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub task: String,
    pub state: TaskState,
    pub worktree: Option<PathBuf>,
    pub branch: Option<String>,
}

/// Removes what a run that just finished no longer needs: the merged tasks'
/// worktrees and branches, the verify branch, and the run's worktree
/// directory if nothing is left in it. The caller has removed the worktrees
/// kept for reuse and the scratch worktree. Failures only cost disk space:
/// logged, not fatal.
pub async fn tidy_finished(ctx: &RunContext) {
    let state = ctx.recorder.snapshot();
    let repo = ctx.git.root().to_owned();
    let merged: Vec<(PathBuf, String)> = state
        .tasks()
        .iter()
        .filter(|t| t.state == TaskState::Merged)
        .map(|t| {
            (
                run_dir(&repo, &state.run).join(t.id().as_str()),
                branch_name(state.run.as_str(), t.id()),
            )
        })
        .collect();
    let run = state.run.clone();
    let tidied = ctx
        .git(move |git| {
            for (dir, branch) in &merged {
                if dir.exists() {
                    git.remove_worktree(dir)?;
                }
                git.delete_branch(branch)?;
            }
            git.delete_branch(&verify_branch(&run))?;
            // Only succeeds when empty, which is the point.
            let _ = std::fs::remove_dir(run_dir(git.root(), &run));
            Ok(())
        })
        .await;
    if let Err(e) = tidied {
        tracing::warn!(error = %e, "could not remove a finished run's worktrees and branches");
    }
}

/// What a finished run still keeps: tasks that did not merge, with their
/// worktree and branch where they exist.
pub fn kept(git: &GitRepo, state: &RunState) -> Vec<Kept> {
    state
        .tasks()
        .iter()
        .filter(|t| t.state != TaskState::Merged)
        .filter_map(|t| {
            let dir = run_dir(git.root(), &state.run).join(t.id().as_str());
            let branch = branch_name(state.run.as_str(), t.id());
            let kept = Kept {
                task: t.id().to_string(),
                state: t.state,
                worktree: dir.exists().then_some(dir),
                branch: git
                    .branch_exists(&branch)
                    .unwrap_or(false)
                    .then_some(branch),
            };
            (kept.worktree.is_some() || kept.branch.is_some()).then_some(kept)
        })
        .collect()
}

/// What `memofab clean` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// One line per worktree or branch removed.
    pub removed: Vec<String>,
    /// Runs left alone because they can still go on.
    pub skipped: Vec<(RunId, String)>,
}

/// Removes the worktrees and branches of `run`, or of every finished run.
/// Refuses while a memofab engine works in the repository, and never
/// touches a run that is not over.
pub fn clean(repo: &Path, run: Option<&RunId>) -> EngineResult<Cleaned> {
    let git = GitRepo::open(repo)?;
    let _engine = EngineLock::acquire(&git)?;
    let mut cleaned = Cleaned::default();
    let runs: Vec<RunId> = match run {
        Some(run) => {
            let state = stored_state(git.root(), run)?;
            if !state.phase.is_over() {
                return Err(EngineError::Invalid(format!(
                    "run {run} is {}, not over; it keeps its worktrees until it finishes",
                    state.phase
                )));
            }
            vec![run.clone()]
        }
        None => {
            let store = Store::open(&store_path(git.root()))?;
            let mut over = Vec::new();
            for summary in store.runs()? {
                match summary.phase {
                    Some(phase) if phase.is_over() => over.push(summary.run),
                    phase => {
                        let phase = phase.map_or("not started".to_owned(), |p| p.to_string());
                        cleaned.skipped.push((summary.run, phase));
                    }
                }
            }
            over
        }
    };
    for run in &runs {
        clean_run(&git, run, &mut cleaned.removed)?;
    }
    Ok(cleaned)
}

fn clean_run(git: &GitRepo, run: &RunId, removed: &mut Vec<String>) -> Result<(), GitError> {
    let dir = run_dir(git.root(), run);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut worktrees: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        worktrees.sort();
        // A directory itself, not a link to one.
        for worktree in worktrees
            .iter()
            .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_dir()))
        {
            git.remove_worktree(worktree)?;
            removed.push(format!("worktree {}", worktree.display()));
        }
    }
    crate::effects::beneath::remove_all(git.root(), &dir)?;
    let mut branches = git.branches_under(&format!("memofab/{run}/"))?;
    branches.push(verify_branch(run));
    for branch in branches {
        if git.delete_branch(&branch)? {
            removed.push(format!("branch {branch}"));
        }
    }
    Ok(())
}
