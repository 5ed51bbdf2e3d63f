//! Resuming a run in a clone that never saw it (another machine's, after
//! its daemon died): the run's base commit and task branches are brought
//! here from the record and the remote before the orchestrator carries on.
//!
//! The record is the truth; the remote (`[mainline] remote`) only supplies
//! objects. Mainline is fetched so the run's base is here; each unfinished
//! task's branch is fetched under the remote's tracking refs (only the
//! run's own branch names, hooks off) and the local branch is made at the
//! commit the record names, never at what the remote's branch says. A task
//! whose recorded commit cannot be had, or is not of the run's history, is
//! done again from mainline, as its uncommitted work would be after a crash
//! here: a warning says so. Merged tasks stay merged, and a landing pushed
//! by the dead process but never recorded is recognised by the merge queue
//! (its branch is in the remote's mainline) rather than landed again.

use std::time::Duration;

use crate::domain::event::{Warning, WorktreeCreated};
use crate::domain::ids::{branch_name, short_commit};
use crate::domain::{EventKind, TaskId, TaskState};
use crate::effects::git::{Adopted, GitRepo, Remote};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::recorder::Recorder;

/// Where `[mainline] remote` is, if the run's mainline lives on one.
pub struct RemoteSetting {
    pub name: String,
    pub timeout: Duration,
}

impl RemoteSetting {
    fn open(&self, git: &GitRepo) -> EngineResult<Remote> {
        Ok(git.remote(&self.name, self.timeout)?)
    }
}

/// Whether the run's `base` is in this clone, after fetching the remote's
/// `mainline` if it is not yet. An unreachable remote is an error only when
/// the base is missing.
pub fn has_base(
    git: &GitRepo,
    remote: Option<&RemoteSetting>,
    mainline: &str,
    base: &str,
) -> EngineResult<bool> {
    let present = |g: &GitRepo| g.branch_head(&format!("{base}^{{commit}}")).is_ok();
    if present(git) {
        return Ok(true);
    }
    let Some(remote) = remote else {
        return Ok(false);
    };
    if let Err(unreachable) = remote.open(git)?.fetch(mainline)? {
        return Err(EngineError::Preflight(format!(
            "the run's base commit {} is not in this clone, and {} could not be fetched: {}",
            short_commit(base),
            remote.name,
            unreachable.reason
        )));
    }
    Ok(present(git))
}

/// A task whose branch this clone lacks, and the commit the record names.
struct Missing {
    task: TaskId,
    branch: String,
    recorded: String,
}

/// Brings every unfinished task's branch into this clone (see the module
/// docs); records what cannot be carried on and sends it back to work.
pub async fn adopt_task_branches(
    recorder: &Recorder,
    git: &GitRepo,
    remote: Option<&RemoteSetting>,
    worktrees: &std::path::Path,
    mainline: &str,
) -> EngineResult<()> {
    let run = recorder.run().as_str().to_owned();
    let (base, records) = recorder.with_state(|s| (s.base_commit.clone(), s.tasks().to_vec()));
    let mut missing = Vec::new();
    for record in &records {
        // Finished: nothing of theirs is built on again.
        if matches!(
            record.state,
            TaskState::Merged | TaskState::Cancelled | TaskState::Failed
        ) {
            continue;
        }
        let Some(recorded) = record.head_commit.clone() else {
            continue;
        };
        let branch = branch_name(&run, record.id());
        if git.branch_exists(&branch)? {
            continue;
        }
        missing.push(Missing {
            task: record.id().clone(),
            branch,
            recorded,
        });
    }
    if missing.is_empty() {
        return Ok(());
    }
    let remote = remote.map(|r| r.open(git)).transpose()?;
    let mut refused = Vec::new();
    for m in missing {
        if let Some(remote) = &remote
            && let Err(unreachable) = remote.fetch(&m.branch)?
        {
            // Nothing recorded yet: another try (here or elsewhere) may
            // reach it and keep the work.
            return Err(EngineError::Preflight(format!(
                "task {}'s branch could not be fetched from {}: {}",
                m.task,
                remote.name(),
                unreachable.reason
            )));
        }
        if let Adopted::Refused(why) = git.adopt_task_branch(&m.branch, &m.recorded, &base)? {
            refused.push((m, why));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    // Done again on the remote's mainline as it is now, if there is one.
    let fetched = match &remote {
        Some(remote) => remote.fetch(mainline)?.ok().flatten(),
        None => None,
    };
    let head = match fetched {
        Some(head) => head,
        None => git.branch_head(mainline)?,
    };
    for (m, why) in refused {
        redo(recorder, worktrees, &run, m, &why, &head).await?;
    }
    Ok(())
}

/// The task starts again from mainline's `head`: its worktree is recorded
/// as made there (so its branch is made there), and in-flight work goes
/// back to be done.
async fn redo(
    recorder: &Recorder,
    worktrees: &std::path::Path,
    run: &str,
    missing: Missing,
    why: &str,
    head: &str,
) -> EngineResult<()> {
    let Missing { task, branch, .. } = missing;
    recorder
        .record(EventKind::Warning(Warning {
            task: Some(task.clone()),
            message: format!(
                "{task}'s work cannot be taken over in this clone: {why}; it is done again from mainline at {}",
                short_commit(head)
            ),
        }))
        .await?;
    recorder
        .record(EventKind::WorktreeCreated(WorktreeCreated {
            task: task.clone(),
            branch,
            path: worktrees
                .join(run)
                .join(task.as_str())
                .display()
                .to_string(),
            base_commit: head.to_owned(),
        }))
        .await?;
    let state = recorder.with_state(|s| s.task(&task).map(|t| t.state));
    let again = match state {
        Some(s) if s.is_active() => Some(TaskState::Ready),
        Some(TaskState::AwaitingGate | TaskState::Conflict | TaskState::OverBudget) => {
            Some(TaskState::Running)
        }
        _ => None,
    };
    if let Some(to) = again {
        recorder
            .transition(
                &task,
                to,
                "taken over in another clone; its work is done again".to_owned(),
            )
            .await?;
    }
    Ok(())
}
