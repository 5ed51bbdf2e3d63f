//! The merge queue's steps when mainline lives on a git remote
//! (`[mainline] remote`): the merge is computed on the remote's head as
//! just fetched, and lands by a compare-and-swap push of it (expected value:
//! that head). Someone else pushing first sends the task back to merge on
//! the new head (verified again if the tree changed), a bounded number of
//! times; any other refusal, or too many lost races, holds the task at the
//! gate with the server's reason until a human approves another push. The
//! user's local mainline follows the remote after each landing when it is
//! behind it and its checkout is clean.
//!
//! Without a remote none of this runs: landings move the local branch.

use std::time::Duration;

use crate::domain::event::{GateHeld, Warning};
use crate::domain::gate_reason::GateReason;
use crate::domain::ids::{branch_name, short_commit};
use crate::domain::{EventKind, TaskId, TaskState};
use crate::effects::git::{GitError, GitRepo, Push, Remote};
use crate::engine::context::RunContext;
use crate::engine::error::{EngineError, EngineResult};

/// The remote mainline lives on, if it lives on one.
pub fn remote_name(ctx: &RunContext) -> Option<String> {
    ctx.config.mainline.remote.clone()
}

fn open(git: &GitRepo, name: &str, secs: u64) -> Result<Remote, GitError> {
    git.remote(name, Duration::from_secs(secs))
}

/// What a merge is computed on: mainline itself without a remote, else the
/// remote's head of it, fetched now. `Err` with git's reason if the remote
/// cannot be read or has no such branch.
pub async fn merge_base(ctx: &RunContext) -> EngineResult<Result<String, String>> {
    let Some(name) = remote_name(ctx) else {
        return Ok(Ok(ctx.mainline.clone()));
    };
    let (mainline, secs) = (ctx.mainline.clone(), ctx.config.mainline.timeout_secs);
    let fetched = ctx
        .git(move |g| open(g, &name, secs)?.fetch(&mainline))
        .await?;
    Ok(match fetched {
        Ok(Some(head)) => Ok(head),
        Ok(None) => Err(format!(
            "it has no branch {0}; push it once (`git push {1} {0}`)",
            ctx.mainline,
            remote_name(ctx).unwrap_or_default()
        )),
        Err(unreachable) => Err(unreachable.reason),
    })
}

/// Where a rework merges mainline from: the remote's head as last fetched
/// (the merge queue fetches it before every merge), or local mainline.
pub fn mainline_rev(ctx: &RunContext) -> String {
    match remote_name(ctx) {
        Some(name) => format!("refs/remotes/{name}/{}", ctx.mainline),
        None => ctx.mainline.clone(),
    }
}

/// Pushes lost to someone else's push during one turn of the queue.
#[derive(Debug, Default)]
pub struct Round {
    pub races: u32,
    /// The tree of the last merge that passed verification: a merge on a
    /// new head with the same tree is not verified again.
    pub verified_tree: Option<String>,
}

/// Pushes the verified merge `commit`, computed on the remote's `onto`.
/// Records the landing, or sends the task back to merge, or holds it.
/// Returns whether it landed.
pub async fn push(
    ctx: &RunContext,
    task: &TaskId,
    onto: &str,
    commit: &str,
    round: &mut Round,
) -> EngineResult<bool> {
    let name = remote_name(ctx).unwrap_or_default();
    let (n, m, o, c) = (
        name.clone(),
        ctx.mainline.clone(),
        onto.to_owned(),
        commit.to_owned(),
    );
    let secs = ctx.config.mainline.timeout_secs;
    let pushed = ctx
        .git(move |g| open(g, &n, secs)?.push_mainline(&m, Some(&o), &c))
        .await?;
    match pushed {
        Push::Pushed => Ok(true),
        Push::Stale => {
            round.races += 1;
            let attempts = ctx.config.mainline.push_attempts.max(1);
            if round.races >= attempts {
                let reason = format!(
                    "its {} moved under {attempts} pushes in a row; someone else keeps landing",
                    ctx.mainline
                );
                hold(ctx, task, &name, reason).await?;
            } else {
                ctx.recorder
                    .transition(
                        task,
                        TaskState::Merging,
                        format!(
                            "{name}'s {} moved from {} while the merge was verified; merging again on its new head (push {} of {attempts})",
                            ctx.mainline,
                            short_commit(onto),
                            round.races + 1
                        ),
                    )
                    .await?;
            }
            Ok(false)
        }
        Push::Refused { reason } => {
            hold(ctx, task, &name, reason).await?;
            Ok(false)
        }
    }
}

/// What became of reverting a landed merge on the remote's mainline.
pub enum Reverted {
    /// The remote's mainline is at this revert commit.
    At(String),
    /// Undoing the merge conflicts with what landed after it.
    Conflict,
    /// The task waits at the gate: the remote refused, or kept moving.
    Held,
}

/// Reverts `landed` on the remote's mainline: the revert is committed on
/// its head as fetched and pushed by compare-and-swap, again on a new head
/// if someone pushed first (bounded, as a landing).
pub async fn revert(
    ctx: &RunContext,
    task: &TaskId,
    landed: &str,
    message: &str,
) -> EngineResult<Reverted> {
    let name = remote_name(ctx).unwrap_or_default();
    let attempts = ctx.config.mainline.push_attempts.max(1);
    for _ in 0..attempts {
        let head = match merge_base(ctx).await? {
            Ok(head) => head,
            Err(reason) => {
                hold(ctx, task, &name, reason).await?;
                return Ok(Reverted::Held);
            }
        };
        let (h, l, m) = (head.clone(), landed.to_owned(), message.to_owned());
        let Some(commit) = ctx.git(move |g| g.revert_commit_on(&h, &l, &m)).await? else {
            return Ok(Reverted::Conflict);
        };
        let (n, b, c) = (name.clone(), ctx.mainline.clone(), commit.clone());
        let secs = ctx.config.mainline.timeout_secs;
        match ctx
            .git(move |g| open(g, &n, secs)?.push_mainline(&b, Some(&head), &c))
            .await?
        {
            Push::Pushed => {
                follow(ctx, task, &commit).await?;
                return Ok(Reverted::At(commit));
            }
            Push::Stale => continue,
            Push::Refused { reason } => {
                hold(
                    ctx,
                    task,
                    &name,
                    format!("pushing the revert of {}: {reason}", short_commit(landed)),
                )
                .await?;
                return Ok(Reverted::Held);
            }
        }
    }
    let reason = format!(
        "pushing the revert of {}: its {} moved under {attempts} pushes in a row",
        short_commit(landed),
        ctx.mainline
    );
    hold(ctx, task, &name, reason).await?;
    Ok(Reverted::Held)
}

/// The task cannot land on the remote: it waits at the gate with the
/// server's reason (recorded), until a human approves another push.
pub async fn hold(
    ctx: &RunContext,
    task: &TaskId,
    remote: &str,
    reason: String,
) -> EngineResult<()> {
    let why = GateReason::RemoteRefused {
        remote: remote.to_owned(),
        reason,
    };
    let shown = why.to_string();
    ctx.recorder
        .record(EventKind::GateHeld(GateHeld {
            task: task.clone(),
            reasons: vec![why],
        }))
        .await?;
    ctx.recorder
        .transition(
            task,
            TaskState::AwaitingGate,
            format!("waits to land: {shown}; approve to push again"),
        )
        .await?;
    Ok(())
}

/// The user's local mainline follows the remote's to `commit` (a landing),
/// if it is behind it and its checkout is clean; otherwise it stays, and a
/// warning says why.
pub async fn follow(ctx: &RunContext, task: &TaskId, commit: &str) -> EngineResult<()> {
    if remote_name(ctx).is_none() {
        return Ok(());
    }
    let (m, c, landed) = (ctx.mainline.clone(), commit.to_owned(), commit.to_owned());
    // The landing is on the remote already: a local failure is told, not
    // the run's end.
    let stayed = match ctx
        .move_mainline(
            move |g| g.follow_remote(&m, &c),
            |stayed| stayed.is_none().then_some(landed),
        )
        .await
    {
        Ok(stayed) => stayed,
        Err(EngineError::Git(e)) => Some(format!(
            "your local {} could not follow it: {e}",
            ctx.mainline
        )),
        Err(other) => return Err(other),
    };
    if let Some(why) = stayed {
        ctx.recorder
            .record(EventKind::Warning(Warning {
                task: Some(task.clone()),
                message: format!(
                    "{} landed on the remote at {}, but {why}",
                    task,
                    short_commit(commit)
                ),
            }))
            .await?;
    }
    Ok(())
}

/// Pushes `task`'s branch to the remote as it was just committed, so another
/// machine can take the work over; a failure is a warning, not the task's.
pub async fn push_task_branch(ctx: &RunContext, task: &TaskId) -> EngineResult<()> {
    let Some(name) = remote_name(ctx) else {
        return Ok(());
    };
    if !ctx.config.mainline.push_task_branches {
        return Ok(());
    }
    let branch = branch_name(ctx.recorder.run().as_str(), task);
    let secs = ctx.config.mainline.timeout_secs;
    let pushed = ctx
        .git(move |g| open(g, &name, secs)?.push_task_branch(&branch))
        .await?;
    if let Err(failed) = pushed {
        ctx.recorder
            .record(EventKind::Warning(Warning {
                task: Some(task.clone()),
                message: format!(
                    "the task branch was not pushed to the remote: {}",
                    failed.reason
                ),
            }))
            .await?;
    }
    Ok(())
}
