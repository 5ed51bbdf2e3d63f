//! The mainline merge queue: queued → merging (the merge onto mainline is
//! computed, mainline untouched) → verifying (the test command runs on the
//! merge result in a scratch worktree) → merged. Mainline moves only to a
//! merge that passed, and only if it is still where the merge was computed
//! on; a failing post-merge check gets the merge reverted at once. So
//! memofab never leaves mainline red.
//!
//! One task holds the queue's turn at a time (a tokio mutex: fair, so the
//! queue is first come, first served). Every step reads the task's state and
//! carries on from it, so a process killed anywhere resumes: a candidate not
//! landed is computed again, and a branch mainline already contains is
//! recognised as merged rather than merged twice.

use std::path::PathBuf;
use std::sync::Arc;

use super::remote_mainline::{self, Round};
use super::steps::{
    branch_name, ensure_worktree, merge_mainline_in, rework_or_fail, run_check_command,
    worktree_dir,
};
use crate::domain::event::{
    CheckoutDirty, Escalated, MergeResult, MergeReverted, MergeVerified, RunPhaseChanged,
};
use crate::domain::ids::short_commit;
use crate::domain::{EventKind, MergeCheck, MergeOutcome, RunPhase, TaskId, TaskRecord, TaskState};
use crate::effects::git::{Advance, DirtyCheckout, MergeCandidate, Revert};
use crate::engine::context::{RunContext, SpareWorktree};
use crate::engine::error::{EngineError, EngineResult};

/// A merge result computed in this turn and not landed yet.
struct Candidate {
    onto: String,
    commit: String,
}

/// Carries a queued, merging or verifying task through the queue, until it
/// is merged or reopened.
pub async fn land(ctx: &Arc<RunContext>, task: &TaskId) -> EngineResult<()> {
    ctx.slot_freed.notify_one();
    landings_cut_short_first(ctx, task).await;
    let _turn = ctx.merge_lock.lock().await;
    repository_accepted(ctx).await?;
    let mut candidate: Option<Candidate> = None;
    let mut round = Round::default();
    loop {
        // Nothing lands while the user's checkout of mainline is in the
        // way; the orchestrator carries the queue on once the run resumes.
        if ctx.recorder.with_state(|s| s.held_landing.is_some()) {
            return Ok(());
        }
        let Some(record) = ctx.recorder.with_state(|s| s.task(task).cloned()) else {
            return Err(EngineError::UnknownTask(task.clone()));
        };
        match record.state {
            TaskState::Queued => {
                ctx.recorder
                    .transition(
                        task,
                        TaskState::Merging,
                        "its turn in the merge queue".to_owned(),
                    )
                    .await?;
            }
            // With a remote, every landing is a candidate and a push.
            TaskState::Merging
                if !needs_checks(ctx) && remote_mainline::remote_name(ctx).is_none() =>
            {
                return merge_unverified(ctx, &record).await;
            }
            TaskState::Merging => {
                // Computed again after mainline raced the last candidate:
                // if not by a landing, a human looks first.
                repository_accepted(ctx).await?;
                candidate = compute(ctx, &record).await?
            }
            TaskState::Verifying => {
                match (
                    &record.merged_commit,
                    record.queue_failure,
                    candidate.take(),
                ) {
                    (Some(landed), _, _) => {
                        let landed = landed.clone();
                        return post_merge(ctx, &record, &landed).await;
                    }
                    // A check failed before a restart could reopen the task.
                    (None, Some(MergeCheck::Verify), _) => {
                        return reopen_unlanded(ctx, &record).await;
                    }
                    (None, Some(MergeCheck::PostMerge), _) => {
                        return rework_or_fail(ctx, &record, REVERTED).await;
                    }
                    (None, None, Some(candidate)) => {
                        verify_and_land(ctx, &record, candidate, &mut round).await?
                    }
                    (None, None, None) => {
                        // A restart lost the candidate; nothing landed, so it
                        // is simply computed again.
                        ctx.recorder
                            .transition(
                                task,
                                TaskState::Merging,
                                "the merge is computed again (after a restart, or a landing held for the checkout)".to_owned(),
                            )
                            .await?;
                    }
                }
            }
            _ => return Ok(()),
        }
    }
}

/// A task only queued waits for every other task left merging or
/// verifying: outside a restart none is (the one that is holds the merge
/// lock); after one, such a task was in the middle of its landing, its
/// files maybe in the user's checkout already, and must finish it first.
/// Measured (`crash_resume`, killed while `stats` landed): `slug` took the
/// lock first on resume, found `stats`'s files in the checkout, and the
/// headless run waited for a human for good.
async fn landings_cut_short_first(ctx: &RunContext, task: &TaskId) {
    let queued =
        ctx.recorder.with_state(|s| s.task(task).map(|r| r.state)) == Some(TaskState::Queued);
    if !queued {
        return;
    }
    ctx.recorder
        .wait_until(|s| {
            let landing = s.tasks().iter().any(|t| {
                t.id() != task && matches!(t.state, TaskState::Merging | TaskState::Verifying)
            });
            (!landing || s.held_landing.is_some()).then_some(())
        })
        .await;
}

/// Landing is the only writer of mainline: nothing lands onto a repository
/// someone else changed (mainline included) until a human has looked.
async fn repository_accepted(ctx: &Arc<RunContext>) -> EngineResult<()> {
    if ctx.check_repository().await? {
        ctx.recorder
            .wait_until(|s| s.repository_changes.is_empty().then_some(()))
            .await;
    }
    Ok(())
}

/// Whether anything is checked around a merge.
fn needs_checks(ctx: &RunContext) -> bool {
    let settings = ctx.settings();
    settings.verify_merges || settings.post_merge_command.is_some()
}

/// Computes the merge onto mainline; moves the task to verifying, or to
/// conflict handling. Returns the candidate to verify, if there is one.
async fn compute(ctx: &Arc<RunContext>, record: &TaskRecord) -> EngineResult<Option<Candidate>> {
    let task = record.id().clone();
    let branch = branch_name(ctx.recorder.run().as_str(), &task);
    let m = match remote_mainline::merge_base(ctx).await? {
        Ok(base) => base,
        Err(reason) => {
            let remote = remote_mainline::remote_name(ctx).unwrap_or_default();
            remote_mainline::hold(ctx, &task, &remote, reason).await?;
            return Ok(None);
        }
    };
    let message = merge_message(ctx, record);
    let computed = ctx
        .git(move |g| g.merge_candidate(&m, &branch, &message))
        .await?;
    match computed {
        MergeCandidate::Ready { onto, commit } => {
            ctx.recorder
                .transition(
                    &task,
                    TaskState::Verifying,
                    format!(
                        "merge {} onto mainline at {}",
                        short_commit(&commit),
                        short_commit(&onto)
                    ),
                )
                .await?;
            Ok(Some(Candidate { onto, commit }))
        }
        MergeCandidate::Landed { commit } => {
            // Landed by a process that died before recording it: record it
            // now, once, and let the post-merge check (if any) run.
            if record.merged_commit.is_none() {
                ctx.recorder
                    .record(EventKind::MergeResult(MergeResult {
                        task: task.clone(),
                        result: MergeOutcome::FastForward {
                            commit: commit.clone(),
                        },
                    }))
                    .await?;
            }
            ctx.recorder
                .transition(
                    &task,
                    TaskState::Verifying,
                    format!("already on mainline at {}", short_commit(&commit)),
                )
                .await?;
            Ok(None)
        }
        MergeCandidate::Conflict { files } => {
            ctx.recorder
                .record(EventKind::MergeResult(MergeResult {
                    task: task.clone(),
                    result: MergeOutcome::Conflict {
                        files: files.clone(),
                    },
                }))
                .await?;
            conflicted(ctx, record, &files).await?;
            Ok(None)
        }
    }
}

/// Runs the test command on the candidate; lands it if it passed.
async fn verify_and_land(
    ctx: &Arc<RunContext>,
    record: &TaskRecord,
    candidate: Candidate,
    round: &mut Round,
) -> EngineResult<()> {
    let task = record.id().clone();
    let settings = ctx.settings();
    let remote = remote_mainline::remote_name(ctx).is_some();
    if settings.verify_merges
        && let Some(command) = &settings.test_command
    {
        // After a lost push race, the merge on the remote's new head is
        // verified again only if its tree differs from the one that passed.
        let tree = if remote {
            let c = candidate.commit.clone();
            Some(ctx.git(move |g| g.tree_id(&c)).await?)
        } else {
            None
        };
        if tree.is_none() || tree != round.verified_tree {
            let (passed, _) = check(ctx, &task, MergeCheck::Verify, command, &candidate).await?;
            if !passed {
                return reopen_unlanded(ctx, record).await;
            }
            round.verified_tree = tree;
        }
    }
    if remote {
        let landed =
            remote_mainline::push(ctx, &task, &candidate.onto, &candidate.commit, round).await?;
        if landed {
            ctx.recorder
                .record(EventKind::MergeResult(MergeResult {
                    task,
                    result: MergeOutcome::MergeCommit {
                        commit: candidate.commit,
                    },
                }))
                .await?;
        }
        return Ok(());
    }
    let (m, onto, commit) = (
        ctx.mainline.clone(),
        candidate.onto.clone(),
        candidate.commit.clone(),
    );
    let landed = candidate.commit.clone();
    match ctx
        .move_mainline(
            move |g| g.advance_mainline(&m, &onto, &commit),
            |advance| (*advance == Advance::Moved).then_some(landed),
        )
        .await?
    {
        Advance::Moved => {}
        Advance::Raced => {
            ctx.recorder
                .transition(
                    &task,
                    TaskState::Merging,
                    "mainline moved while the merge was verified; merging again".to_owned(),
                )
                .await?;
            return Ok(());
        }
        Advance::Blocked(dirty) => return hold(ctx, &task, dirty).await,
    }
    ctx.recorder
        .record(EventKind::MergeResult(MergeResult {
            task,
            result: MergeOutcome::MergeCommit {
                commit: candidate.commit,
            },
        }))
        .await?;
    Ok(())
}

/// Runs one check on a commit in the scratch worktree and records it.
/// Returns whether it passed, and its output.
async fn check(
    ctx: &RunContext,
    task: &TaskId,
    check: MergeCheck,
    command: &str,
    candidate: &Candidate,
) -> EngineResult<(bool, String)> {
    let dir = scratch_dir(ctx);
    let (d, b, c) = (dir.clone(), scratch_branch(ctx), candidate.commit.clone());
    ctx.worktree_git(task, move |g| g.check_out_scratch(&d, &b, &c))
        .await?;
    let run = run_check_command(ctx, command, dir).await?;
    ctx.recorder
        .record(EventKind::MergeVerified(MergeVerified {
            task: task.clone(),
            check,
            candidate: candidate.commit.clone(),
            onto: candidate.onto.clone(),
            command: command.to_owned(),
            exit_code: run.exit_code,
            passed: run.passed,
            duration_ms: run.duration_ms,
            output: run.output.clone(),
        }))
        .await?;
    Ok((run.passed, run.output))
}

/// The merge result failed its tests; mainline never saw it. The coder gets
/// mainline merged into the worktree (that merge is clean: the candidate
/// was) so the combination that failed is what it fixes.
async fn reopen_unlanded(ctx: &Arc<RunContext>, record: &TaskRecord) -> EngineResult<()> {
    if record.reworks < ctx.settings().max_rework {
        let dir = ensure_worktree(ctx, record, false).await?;
        merge_mainline_in(ctx, record.id(), &dir).await?;
    }
    rework_or_fail(
        ctx,
        record,
        "the tests failed on the change merged with mainline",
    )
    .await
}

/// The merge landed on mainline; runs the post-merge check, if any, and
/// reverts the merge if it fails.
async fn post_merge(ctx: &Arc<RunContext>, record: &TaskRecord, landed: &str) -> EngineResult<()> {
    let task = record.id().clone();
    let Some(command) = ctx.settings().post_merge_command else {
        return merged(ctx, &task, landed).await;
    };
    // Checked at the landed merge itself: after a restart, mainline may
    // already hold the revert of it.
    let at = Candidate {
        onto: landed.to_owned(),
        commit: landed.to_owned(),
    };
    let (passed, output) = check(ctx, &task, MergeCheck::PostMerge, &command, &at).await?;
    if passed {
        return merged(ctx, &task, landed).await;
    }
    // The check took a while: a revert lands on top of mainline as it is,
    // so mainline must still be where memofab's landings left it.
    repository_accepted(ctx).await?;
    let (m, l) = (ctx.mainline.clone(), landed.to_owned());
    let message = format!(
        "Revert {task}: {}: post-merge check failed\n\n`{command}` failed on {landed}.\n\nmemofab run {}",
        record.spec.title,
        ctx.recorder.run()
    );
    let reverted = match remote_mainline::remote_name(ctx) {
        Some(_) => match remote_mainline::revert(ctx, &task, landed, &message).await? {
            remote_mainline::Reverted::At(commit) => Revert::Reverted(commit),
            remote_mainline::Reverted::Conflict => Revert::Conflict,
            remote_mainline::Reverted::Held => return Ok(()),
        },
        None => {
            ctx.move_mainline(
                move |g| g.revert_on_mainline(&m, &l, &message),
                |revert| match revert {
                    Revert::Reverted(commit) => Some(commit.clone()),
                    _ => None,
                },
            )
            .await?
        }
    };
    let revert_commit = match reverted {
        Revert::Reverted(commit) => commit,
        Revert::Conflict => {
            let reason = format!(
                "the post-merge check failed on {} and the merge could not be reverted automatically; a human must revert it",
                short_commit(landed)
            );
            return escalate(ctx, &task, reason, TaskState::Failed).await;
        }
        // Checked again, and reverted, once the checkout is clean.
        Revert::Blocked(dirty) => return hold(ctx, &task, dirty).await,
    };
    let branch = branch_name(ctx.recorder.run().as_str(), &task);
    let (l, r) = (landed.to_owned(), revert_commit.clone());
    let message = format!(
        "{task}: reapply the change reverted from mainline\n\nmemofab run {}",
        ctx.recorder.run()
    );
    let reapplied = ctx
        .git(move |g| g.reapply_on_branch(&branch, &l, &r, &message))
        .await?;
    let dir = worktree_dir(ctx, &task);
    if dir.exists() {
        let (d, c) = (dir, reapplied.clone());
        ctx.worktree_git(&task, move |g| g.reset_worktree(&d, &c))
            .await?;
    }
    ctx.recorder
        .record(EventKind::MergeReverted(MergeReverted {
            task: task.clone(),
            merge_commit: landed.to_owned(),
            revert_commit,
            reapplied,
            output,
        }))
        .await?;
    let Some(record) = ctx.recorder.with_state(|s| s.task(&task).cloned()) else {
        return Err(EngineError::UnknownTask(task));
    };
    rework_or_fail(ctx, &record, REVERTED).await
}

const REVERTED: &str = "the post-merge check failed on mainline; the merge was reverted";

/// Merges straight onto mainline, with nothing to verify (no test command,
/// or `[merge] verify = false` and no post-merge check). The caller holds
/// the merge queue's turn.
async fn merge_unverified(ctx: &Arc<RunContext>, record: &TaskRecord) -> EngineResult<()> {
    let task = record.id().clone();
    let branch = branch_name(ctx.recorder.run().as_str(), &task);
    let message = merge_message(ctx, record);
    let (m, b) = (ctx.mainline.clone(), branch.clone());
    let outcome = match ctx
        .move_mainline(
            move |g| g.merge_into_mainline(&m, &b, &message),
            |merged| match merged {
                Ok(MergeOutcome::FastForward { commit } | MergeOutcome::MergeCommit { commit }) => {
                    Some(commit.clone())
                }
                _ => None,
            },
        )
        .await?
    {
        Ok(outcome) => outcome,
        Err(dirty) => return hold(ctx, &task, dirty).await,
    };
    ctx.recorder
        .record(EventKind::MergeResult(MergeResult {
            task: task.clone(),
            result: outcome.clone(),
        }))
        .await?;
    match outcome {
        MergeOutcome::FastForward { commit } | MergeOutcome::MergeCommit { commit } => {
            merged(ctx, &task, &commit).await
        }
        MergeOutcome::Conflict { files } => conflicted(ctx, record, &files).await,
    }
}

/// Mainline did not move: the user's checkout of it has changes that moving
/// it would turn into a stale index. The task stays in the queue and the run
/// pauses until a human commits or stashes them and resumes (or approves).
async fn hold(ctx: &RunContext, task: &TaskId, dirty: DirtyCheckout) -> EngineResult<()> {
    let reason = format!(
        "your checkout of {} has uncommitted changes ({}); {task} waits to land: commit or stash them, then resume",
        ctx.mainline,
        dirty.files.join(", ")
    );
    ctx.recorder
        .record(EventKind::CheckoutDirty(CheckoutDirty {
            task: task.clone(),
            files: dirty.files,
        }))
        .await?;
    if ctx.recorder.with_state(|s| s.phase) != RunPhase::Paused {
        ctx.recorder
            .record(EventKind::RunPhaseChanged(RunPhaseChanged {
                to: RunPhase::Paused,
                reason: Some(reason),
            }))
            .await?;
    }
    Ok(())
}

/// The message of the merge commit of `record` onto mainline.
fn merge_message(ctx: &RunContext, record: &TaskRecord) -> String {
    format!(
        "Merge {}: {}\n\nmemofab run {}",
        record.id(),
        record.spec.title,
        ctx.recorder.run()
    )
}

/// The task is on mainline: record it and keep its worktree for the next task.
async fn merged(ctx: &RunContext, task: &TaskId, commit: &str) -> EngineResult<()> {
    remote_mainline::follow(ctx, task, commit).await?;
    ctx.recorder
        .transition(
            task,
            TaskState::Merged,
            format!("mainline at {}", short_commit(commit)),
        )
        .await?;
    let spare = SpareWorktree {
        dir: worktree_dir(ctx, task),
        branch: branch_name(ctx.recorder.run().as_str(), task),
    };
    if let Some(unwanted) = ctx.park_worktree(spare) {
        ctx.discard_worktree(unwanted.dir).await;
    }
    Ok(())
}

/// Merging onto mainline conflicted (already recorded): bounded conflict
/// rework, then a human.
async fn conflicted(
    ctx: &Arc<RunContext>,
    record: &TaskRecord,
    files: &[String],
) -> EngineResult<()> {
    let task = record.id().clone();
    let bound = ctx.settings().max_conflict_rework;
    if record.conflict_reworks < bound {
        ctx.recorder
            .transition(
                &task,
                TaskState::Running,
                format!(
                    "merge conflict in {}; conflict rework {} of {bound}",
                    files.join(", "),
                    record.conflict_reworks + 1
                ),
            )
            .await?;
    } else {
        let reason = format!(
            "merge conflicts in {} remain after {bound} rework attempts; a human must decide",
            files.join(", ")
        );
        // Leave the markers in the worktree for the human to resolve.
        let dir = ensure_worktree(ctx, record, false).await?;
        merge_mainline_in(ctx, &task, &dir).await?;
        escalate(ctx, &task, reason, TaskState::Conflict).await?;
    }
    Ok(())
}

/// Hands `task` to a human: the escalation is recorded with its reason, and
/// the task settles in `to` until someone decides.
async fn escalate(
    ctx: &RunContext,
    task: &TaskId,
    reason: String,
    to: TaskState,
) -> EngineResult<()> {
    ctx.recorder
        .record(EventKind::Escalated(Escalated {
            task: task.clone(),
            reason: reason.clone(),
        }))
        .await?;
    ctx.recorder.transition(task, to, reason).await?;
    Ok(())
}

/// The worktree checks run in, reused for the whole run.
pub fn scratch_dir(ctx: &RunContext) -> PathBuf {
    ctx.worktrees
        .join(ctx.recorder.run().as_str())
        .join(".verify")
}

fn scratch_branch(ctx: &RunContext) -> String {
    crate::engine::cleanup::verify_branch(ctx.recorder.run())
}
