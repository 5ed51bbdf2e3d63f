//! One task's way through the factory: code → review → test → gate → the
//! merge queue (`merge_queue`), with bounded rework. `drive` looks at the
//! task's current state and carries it on from there, so the same code
//! starts a task, continues a rework and resumes after a crash. It stops when
//! the task is settled or waits for a human (the gate).

use std::path::Path;
use std::sync::Arc;

use super::steps::{
    branch_name, ensure_worktree, merge_mainline_in, read_lossy, rework_or_fail, run_check_command,
    task_brief,
};
use crate::domain::event::{
    ChangeCommitted, GateDecision, GateHeld, NothingChanged, ReviewVerdict, TestRun, Warning,
};
use crate::domain::instructions::{InstructionScope, with_instructions};
use crate::domain::policy::Risk;
use crate::domain::risk::auto_approvable;
use crate::domain::{
    AgentRole, ConflictFile, ConflictResolution, Decider, EventKind, RunPhase, TaskId, TaskRecord,
    TaskState,
};
use crate::effects::file_fence::Sandbox;
use crate::effects::git::GitError;
use crate::engine::agent::{AgentJob, AgentOutcome, Review, code_review_tool};
use crate::engine::context::RunContext;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::tools::{ToolBox, ToolSet};

/// Diff text shown to the reviewer at most; the rest is summarised.
const MAX_REVIEW_DIFF: usize = 60_000;

/// Carries `task` on until it settles or waits at the gate. `resumed` is set
/// when a previous process was interrupted while the task was in flight.
pub async fn drive(ctx: Arc<RunContext>, task: TaskId, mut resumed: bool) -> EngineResult<()> {
    loop {
        let Some(record) = ctx.recorder.with_state(|s| s.task(&task).cloned()) else {
            return Err(crate::engine::error::EngineError::UnknownTask(task));
        };
        match record.state {
            TaskState::Ready => {
                // A pause pressed after the orchestrator picked this task
                // still wins: it stays ready until the run resumes.
                let started = ctx
                    .recorder
                    .transition_when(
                        &task,
                        TaskState::Running,
                        format!("attempt {}", record.attempt),
                        |s| s.phase != RunPhase::Paused,
                    )
                    .await?;
                if started.is_none() {
                    return Ok(());
                }
            }
            TaskState::Running => code(&ctx, &record, std::mem::take(&mut resumed)).await?,
            TaskState::Reviewing => review(&ctx, &record).await?,
            TaskState::Testing => test(&ctx, &record).await?,
            TaskState::Queued | TaskState::Merging | TaskState::Verifying => {
                super::merge_queue::land(&ctx, &task).await?;
                // Held for the user's checkout: the orchestrator starts the
                // queue again once the human released it.
                if ctx.recorder.with_state(|s| s.held_landing.is_some()) {
                    return Ok(());
                }
            }
            // Waiting for a human, or done.
            _ => return Ok(()),
        }
    }
}

async fn code(ctx: &Arc<RunContext>, record: &TaskRecord, resumed: bool) -> EngineResult<()> {
    let task = record.id().clone();
    let dir = ensure_worktree(ctx, record, resumed).await?;

    // After a merge conflict, bring mainline in so the coder resolves the
    // markers in place; the next commit becomes a merge commit.
    let conflicts = if record.conflict_files.is_empty() {
        Vec::new()
    } else {
        merge_mainline_in(ctx, &task, &dir).await?
    };
    if record.resolution == Some(ConflictResolution::MarkResolved) {
        return commit_human_resolution(ctx, record, &dir).await;
    }
    let role = match record.resolution {
        Some(ConflictResolution::Resolver) => AgentRole::Resolver,
        _ => AgentRole::Coder,
    };
    // The tester goes first; `drive` comes back here for the coder.
    if role == AgentRole::Coder && conflicts.is_empty() && super::tester::wanted(ctx, record)? {
        return super::tester::write_tests(ctx, record, &dir).await;
    }

    let sandbox = Sandbox::new(&dir, ctx.policy.clone())?.with_locked(record.tester.locked_files());
    // Only agents that may change the worktree get MCP tools: what a server
    // does there is theirs, committed and checked like their own edits.
    let toolbox = Arc::new(
        ToolBox::new(sandbox, ctx.tool_limits()).with_mcp_servers(ctx.config.mcp.servers.clone()),
    );
    let job = AgentJob {
        role,
        task: Some(task.clone()),
        attempt: record.attempt,
        prompt: ctx.prompts.load(role),
        first_message: with_instructions(
            &ctx.instructions,
            InstructionScope::Paths(&task_paths(record)),
            coder_message(record, &conflicts, ctx.test_command.as_deref()),
        ),
        toolbox: Some((toolbox.clone(), coder_tools(ctx))),
        submit: None,
    };
    let summary = match ctx.run_agent(role, job).await? {
        Ok(AgentOutcome::Finished { summary }) => summary,
        Ok(AgentOutcome::Submitted { .. }) => String::new(),
        Err(failed) => {
            ctx.recorder
                .transition(
                    &task,
                    TaskState::Failed,
                    format!("the coder failed: {failed}"),
                )
                .await?;
            return Ok(());
        }
    };
    super::tester::restore_tests(ctx, record, &dir).await?;

    let message = format!(
        "{task}: {}\n\n{}\n\nmemofab run {}, attempt {}",
        record.spec.title,
        summary.trim(),
        ctx.recorder.run(),
        record.attempt
    );
    commit_and_check(ctx, record, &dir, message).await
}

/// The coder's tools; `ask_human` only when a human is there to answer.
fn coder_tools(ctx: &RunContext) -> Vec<crate::llm::ToolSpec> {
    let mut specs = ToolBox::specs(ToolSet::Coder);
    if ctx.humans {
        specs.push(crate::engine::tools::AskHuman::spec());
    }
    specs
}

/// A human resolved the conflict in the worktree: commit it as it is, unless
/// markers remain.
async fn commit_human_resolution(
    ctx: &Arc<RunContext>,
    record: &TaskRecord,
    dir: &Path,
) -> EngineResult<()> {
    let task = record.id();
    let unresolved: Vec<&str> = record
        .conflict_files
        .iter()
        .filter(|f| has_markers(&read_lossy(dir, f)))
        .map(String::as_str)
        .collect();
    if !unresolved.is_empty() {
        let reason = format!("conflict markers remain in {}", unresolved.join(", "));
        ctx.recorder
            .transition(task, TaskState::Conflict, reason)
            .await?;
        return Ok(());
    }
    let message = format!(
        "{task}: resolve the merge conflict by hand\n\nmemofab run {}",
        ctx.recorder.run()
    );
    commit_and_check(ctx, record, dir, message).await
}

fn has_markers(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("<<<<<<<") || l.starts_with(">>>>>>>"))
}

/// Commits the worktree, records the change, and sends it to review unless it
/// is empty or touches a protected path.
async fn commit_and_check(
    ctx: &Arc<RunContext>,
    record: &TaskRecord,
    dir: &Path,
    message: String,
) -> EngineResult<()> {
    let task = record.id().clone();
    let d = dir.to_owned();
    let committed = match ctx
        .worktree_git(&task, move |g| g.commit_all(&d, &message))
        .await
    {
        // `finish` refuses such files; one written after it is refused here,
        // unread, and the coder is sent back to remove it.
        Err(EngineError::TaskWorktree {
            source: refused @ GitError::Unstageable(_),
            ..
        }) => {
            return rework_or_fail(ctx, record, &format!("nothing was committed: {refused}")).await;
        }
        other => other?,
    };
    let branch = branch_name(ctx.recorder.run().as_str(), &task);
    let (m, b) = (ctx.mainline.clone(), branch.clone());
    let (diff, files) = ctx
        .git(move |g| {
            let base = g.merge_base(&m, &b)?;
            g.diff(&base, &b)
        })
        .await?;
    if let Some(commit) = committed {
        ctx.recorder
            .record(EventKind::ChangeCommitted(ChangeCommitted {
                task: task.clone(),
                commit: commit.commit,
                files: files.clone(),
                diff: diff.clone(),
            }))
            .await?;
        super::remote_mainline::push_task_branch(ctx, &task).await?;
    }
    if files.is_empty() {
        return nothing_changed(ctx, record).await;
    }
    // Tools refuse protected paths, but a `run` command could still write
    // them: check what was actually committed.
    let verdict = ctx.policy.assess(files.iter().map(String::as_str));
    if verdict.risk == Risk::Deny {
        ctx.recorder
            .record(EventKind::Warning(Warning {
                task: Some(task.clone()),
                message: format!(
                    "security: the change touches a protected path ({})",
                    verdict.reason
                ),
            }))
            .await?;
        ctx.recorder
            .transition(
                &task,
                TaskState::Failed,
                format!("touches a protected path: {}", verdict.reason),
            )
            .await?;
        return Ok(());
    }
    ctx.recorder
        .transition(&task, TaskState::Reviewing, None)
        .await?;
    Ok(())
}

/// The coder finished without changing any file: one more attempt, told
/// so, within the rework bound (the task stays running); then it fails.
async fn nothing_changed(ctx: &RunContext, record: &TaskRecord) -> EngineResult<()> {
    let bound = ctx.settings().max_rework;
    let task = record.id().clone();
    if record.reworks < bound {
        ctx.recorder
            .record(EventKind::NothingChanged(NothingChanged { task }))
            .await?;
    } else {
        ctx.recorder
            .transition(
                &task,
                TaskState::Failed,
                format!(
                    "the coder finished without changing anything, and the {bound} reworks allowed are used up"
                ),
            )
            .await?;
    }
    Ok(())
}

async fn review(ctx: &Arc<RunContext>, record: &TaskRecord) -> EngineResult<()> {
    let task = record.id().clone();
    let dir = ensure_worktree(ctx, record, false).await?;
    let branch = branch_name(ctx.recorder.run().as_str(), &task);
    let m = ctx.mainline.clone();
    let (diff, _) = ctx
        .git(move |g| {
            let base = g.merge_base(&m, &branch)?;
            g.diff(&base, &branch)
        })
        .await?;
    let toolbox = Arc::new(ToolBox::new(
        Sandbox::new(&dir, ctx.policy.clone())?,
        ctx.tool_limits(),
    ));
    let job = AgentJob {
        role: AgentRole::Reviewer,
        task: Some(task.clone()),
        attempt: record.attempt,
        prompt: ctx.prompts.load(AgentRole::Reviewer),
        first_message: with_instructions(
            &ctx.instructions,
            InstructionScope::Paths(&task_paths(record)),
            reviewer_message(record, &diff),
        ),
        toolbox: Some((toolbox, ToolBox::specs(ToolSet::ReadOnly))),
        submit: Some(code_review_tool(&diff, &task_brief(record))),
    };
    let verdict = match ctx.run_agent(AgentRole::Reviewer, job).await? {
        Ok(outcome) => Review::from_outcome(&outcome),
        Err(failed) if crate::engine::shepherd::is_stuck(&ctx.recorder, &task) => {
            let why = format!("the reviewer failed: {failed}");
            ctx.recorder
                .transition(&task, TaskState::Failed, why)
                .await?;
            return Ok(());
        }
        Err(failed) => Review {
            approved: false,
            feedback: format!("The review could not be completed: {failed}"),
        },
    };
    ctx.recorder
        .record(EventKind::ReviewVerdict(ReviewVerdict {
            task: task.clone(),
            approved: verdict.approved,
            feedback: verdict.feedback.clone(),
        }))
        .await?;
    if verdict.approved {
        ctx.recorder
            .transition(&task, TaskState::Testing, None)
            .await?;
        Ok(())
    } else if let Some(stuck) =
        crate::engine::shepherd::rework_echo(&ctx.recorder, &ctx.shepherd.limits, &task).await?
    {
        let why = format!("stuck: {stuck}; the shepherd handed it to a human");
        ctx.recorder
            .transition(&task, TaskState::Failed, why)
            .await?;
        Ok(())
    } else {
        rework_or_fail(ctx, record, "the reviewer asked for changes").await
    }
}

async fn test(ctx: &Arc<RunContext>, record: &TaskRecord) -> EngineResult<()> {
    let task = record.id().clone();
    let dir = ensure_worktree(ctx, record, false).await?;
    match &ctx.test_command {
        Some(command) => {
            let run = run_check_command(ctx, command, dir).await?;
            ctx.recorder
                .record(EventKind::TestRun(TestRun {
                    task: task.clone(),
                    command: command.clone(),
                    exit_code: run.exit_code,
                    passed: run.passed,
                    duration_ms: run.duration_ms,
                    output: run.output,
                }))
                .await?;
            if !run.passed {
                return rework_or_fail(ctx, record, "the tests failed").await;
            }
        }
        None => {
            ctx.recorder
                .record(EventKind::Warning(Warning {
                    task: Some(task.clone()),
                    message: "no test command is configured (project.test_command); tests skipped"
                        .into(),
                }))
                .await?;
        }
    }
    gate(ctx, record).await
}

/// Sends a passed change to merge, or holds it for a human if the policy says
/// so (its paths, size, the paths' history, deleted tests), saying why.
async fn gate(ctx: &Arc<RunContext>, record: &TaskRecord) -> EngineResult<()> {
    let task = record.id().clone();
    let branch = branch_name(ctx.recorder.run().as_str(), &task);
    let verdict = super::risk_gate::assess(ctx, branch).await?;
    if verdict.risk < Risk::Approve {
        ctx.recorder
            .transition(&task, TaskState::Queued, None)
            .await?;
        return Ok(());
    }
    ctx.recorder
        .record(EventKind::GateHeld(GateHeld {
            task: task.clone(),
            reasons: verdict.reasons.clone(),
        }))
        .await?;
    ctx.recorder
        .transition(
            &task,
            TaskState::AwaitingGate,
            format!("needs approval: {}", verdict.reason()),
        )
        .await?;
    if ctx.auto_approve {
        if auto_approvable(&ctx.policy, &verdict.reasons) {
            approve(ctx, &task, &Decider::Auto).await?;
        } else {
            ctx.recorder
                .record(EventKind::Warning(Warning {
                    task: Some(task.clone()),
                    message: format!(
                        "--auto-approve leaves this gate to a human: the change touches governance paths ({})",
                        governance_paths(&verdict.reasons)
                    ),
                }))
                .await?;
        }
    }
    Ok(())
}

fn governance_paths(reasons: &[crate::domain::gate_reason::GateReason]) -> String {
    reasons
        .iter()
        .filter(|r| r.is_governance())
        .filter_map(|r| r.path())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records a human's approval at the gate and puts the change in the merge queue.
pub async fn approve(ctx: &RunContext, task: &TaskId, by: &Decider) -> EngineResult<()> {
    ctx.recorder
        .record(EventKind::GateDecision(GateDecision {
            task: task.clone(),
            approved: true,
            by: by.clone(),
            feedback: String::new(),
        }))
        .await?;
    ctx.recorder
        .transition(task, TaskState::Queued, format!("approved by {by}"))
        .await?;
    Ok(())
}

/// Records a rejection at the gate; the task goes back to its coder.
pub async fn reject(
    ctx: &RunContext,
    task: &TaskId,
    by: &Decider,
    feedback: &str,
) -> EngineResult<()> {
    ctx.recorder
        .record(EventKind::GateDecision(GateDecision {
            task: task.clone(),
            approved: false,
            by: by.clone(),
            feedback: feedback.to_owned(),
        }))
        .await?;
    let Some(record) = ctx.recorder.with_state(|s| s.task(task).cloned()) else {
        return Ok(());
    };
    rework_or_fail(ctx, &record, "rejected at the gate").await
}

/// Where a task works, for the instructions its agents get: the paths it
/// declared and those it was seen writing.
fn task_paths(record: &TaskRecord) -> Vec<String> {
    let mut paths = record.spec.paths.clone();
    paths.extend(record.observed_writes.iter().cloned());
    paths
}

fn coder_message(
    record: &TaskRecord,
    conflicts: &[ConflictFile],
    test_command: Option<&str>,
) -> String {
    let mut text = task_brief(record);
    if let Some(command) = test_command {
        text.push_str(&format!("\nThe project's tests run with `{command}`.\n"));
    }
    text.push_str(&tester_files_note(
        record,
        "They are read-only for you: make the code pass them.",
    ));
    if record.attempt > 1
        && let Some(feedback) = &record.feedback
    {
        text.push_str(&format!(
            "\n## This is attempt {}. Feedback on the previous one\n{feedback}\n",
            record.attempt
        ));
    }
    if !conflicts.is_empty() {
        let files: Vec<&str> = conflicts.iter().map(|c| c.path.as_str()).collect();
        text.push_str(&format!(
            "\n## Merge conflict\nMainline has been merged into your worktree. These files contain conflict markers you must resolve: {}\n",
            files.join(", ")
        ));
    }
    text.push_str("\nWhen the task is done, call finish.\n");
    text
}

fn reviewer_message(record: &TaskRecord, diff: &str) -> String {
    let mut shown = diff;
    let mut note = String::new();
    if diff.len() > MAX_REVIEW_DIFF {
        let mut cut = MAX_REVIEW_DIFF;
        while !diff.is_char_boundary(cut) {
            cut -= 1;
        }
        shown = &diff[..cut];
        note = format!(
            "\n[diff truncated: {} more bytes; read the files for the rest]\n",
            diff.len() - cut
        );
    }
    format!(
        "{}{}\n## Diff against mainline\n{}\n```diff\n{shown}\n```\n{note}\nReview it and call submit_review.\n",
        task_brief(record),
        tester_files_note(
            record,
            "They are in the diff; the rest of it is the coder's, who could not change them."
        ),
        diff_stat(diff)
    )
}

/// What the diff adds and deletes, said before it: a small reviewer reads
/// "3 lines deleted" where it skims past `-` lines (it approved a README
/// replaced by the one line it was to add).
fn diff_stat(diff: &str) -> String {
    let (mut added, mut deleted, mut files) = (0, 0, 0);
    for line in diff.lines() {
        if line.starts_with("diff --git ") {
            files += 1;
        } else if line.starts_with('+') && !line.starts_with("+++") {
            added += 1;
        } else if line.starts_with('-') && !line.starts_with("---") {
            deleted += 1;
        }
    }
    let lines = |n: usize| if n == 1 { "line" } else { "lines" };
    format!(
        "{files} {} changed: {added} {} added, {deleted} {} deleted.",
        if files == 1 { "file" } else { "files" },
        lines(added),
        lines(deleted)
    )
}

/// Names the tester's files, for the coder and the reviewer.
fn tester_files_note(record: &TaskRecord, then: &str) -> String {
    match record.tester.tests() {
        Some(tests) => format!(
            "\n## Acceptance tests by the task's tester\n{}\n{then}\n",
            tests
                .files
                .iter()
                .map(|f| format!("- {f}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod diff_stat_tests {
    use super::diff_stat;

    #[test]
    fn the_stat_counts_lines_added_and_deleted_not_the_file_headers() {
        let diff = "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n\
                    @@ -1,3 +1 @@\n-# Tiny repo\n-\n-A test repository.\n+Hello from memofab.\n";
        assert_eq!(
            diff_stat(diff),
            "1 file changed: 1 line added, 3 lines deleted."
        );
    }
}
