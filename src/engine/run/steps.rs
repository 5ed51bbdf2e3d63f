//! The steps a task's pipeline shares with the merge queue and the tester:
//! where its worktree and branch are, making the worktree, merging mainline
//! in, running a check command the way the test step does, sending a task
//! back for rework, and the task's brief. Kept apart so the pipeline, the
//! queue and the tester each depend on these, not on one another.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::event::{ConflictMarkers, WorktreeCreated};
use crate::domain::{ConflictFile, EventKind, TaskId, TaskRecord, TaskState};
use crate::effects::process::{CommandSpec, run_command};
use crate::engine::context::RunContext;
use crate::engine::error::EngineResult;

/// Where a task's branch is (named in the domain, where the merge queue's
/// remote half finds it too).
pub use crate::domain::ids::branch_name;

/// Where a task's worktree is.
pub fn worktree_dir(ctx: &RunContext, task: &TaskId) -> PathBuf {
    ctx.worktrees
        .join(ctx.recorder.run().as_str())
        .join(task.as_str())
}

/// Makes sure the task has a worktree on its branch; returns its directory.
pub(crate) async fn ensure_worktree(
    ctx: &RunContext,
    record: &TaskRecord,
    resumed: bool,
) -> EngineResult<PathBuf> {
    let task = record.id().clone();
    let dir = worktree_dir(ctx, &task);
    let branch = branch_name(ctx.recorder.run().as_str(), &task);
    match &record.head_commit {
        None => {
            let mainline = ctx.mainline.clone();
            let base = ctx.git(move |g| g.branch_head(&mainline)).await?;
            let recycled = match ctx.take_spare_worktree() {
                Some(spare) => {
                    let (d, b, c) = (dir.clone(), branch.clone(), base.clone());
                    let from = spare.dir.clone();
                    let moved = ctx
                        .git(move |g| g.recycle_worktree(&spare.dir, &spare.branch, &d, &b, &c))
                        .await;
                    if let Err(e) = &moved {
                        tracing::warn!(task = %task, from = %from.display(), error = %e,
                            "could not reuse a worktree; making a new one");
                    }
                    moved.is_ok()
                }
                None => false,
            };
            if !recycled {
                let (d, b, c) = (dir.clone(), branch.clone(), base.clone());
                ctx.worktree_git(&task, move |g| g.fresh_worktree(&d, &b, &c))
                    .await?;
            }
            ctx.recorder
                .record(EventKind::WorktreeCreated(WorktreeCreated {
                    task,
                    branch,
                    path: dir.display().to_string(),
                    base_commit: base,
                }))
                .await?;
        }
        Some(head) => {
            // Reuse the branch as stored; recreate the directory if a crash or
            // a human removed it.
            let (d, b, c) = (dir.clone(), branch.clone(), head.clone());
            ctx.worktree_git(&task, move |g| g.add_worktree(&d, &b, &c))
                .await?;
            if resumed {
                // Work of the interrupted attempt was never committed: start
                // the attempt again from its last commit.
                let (d, c) = (dir.clone(), head.clone());
                ctx.worktree_git(&task, move |g| g.reset_worktree(&d, &c))
                    .await?;
            }
        }
    }
    Ok(dir)
}

/// Merges mainline into the worktree and records the conflict markers left.
pub(crate) async fn merge_mainline_in(
    ctx: &RunContext,
    task: &TaskId,
    dir: &Path,
) -> EngineResult<Vec<ConflictFile>> {
    let (d, m) = (dir.to_owned(), super::remote_mainline::mainline_rev(ctx));
    let paths = ctx
        .worktree_git(task, move |g| g.merge_mainline_into_worktree(&d, &m))
        .await?;
    let conflicts: Vec<ConflictFile> = paths
        .into_iter()
        .map(|path| ConflictFile {
            content: read_lossy(dir, &path),
            path,
        })
        .collect();
    if !conflicts.is_empty() {
        ctx.recorder
            .record(EventKind::ConflictMarkers(ConflictMarkers {
                task: task.clone(),
                files: conflicts.clone(),
            }))
            .await?;
    }
    Ok(conflicts)
}

/// How a test (or check) command went.
pub(crate) struct CheckRun {
    pub exit_code: Option<i32>,
    pub passed: bool,
    pub duration_ms: u64,
    pub output: String,
}

/// Runs `command` in `cwd` the way the test step does: same isolation,
/// timeout and output cap.
pub(crate) async fn run_check_command(
    ctx: &RunContext,
    command: &str,
    cwd: PathBuf,
) -> EngineResult<CheckRun> {
    let spec = CommandSpec {
        command: command.to_owned(),
        cwd,
        timeout: Duration::from_secs(ctx.config.run.command_timeout_secs),
        output_cap: ctx.config.run.output_cap_bytes,
        extra_env: Vec::new(),
        isolation: ctx.isolation.clone(),
    };
    let out = run_command(&spec).await?;
    let passed = out.success();
    let mut output = out.output;
    if out.timed_out {
        output.push_str(&format!("\n[timed out after {}s]", spec.timeout.as_secs()));
    }
    Ok(CheckRun {
        exit_code: out.exit_code,
        passed,
        duration_ms: out.duration.as_millis() as u64,
        output,
    })
}

/// Back to the coder with the feedback already recorded, or fail past the bound.
pub(crate) async fn rework_or_fail(
    ctx: &RunContext,
    record: &TaskRecord,
    why: &str,
) -> EngineResult<()> {
    let bound = ctx.settings().max_rework;
    let task = record.id();
    if record.reworks < bound {
        ctx.recorder
            .transition(
                task,
                TaskState::Running,
                format!("{why}; rework {} of {bound}", record.reworks + 1),
            )
            .await?;
    } else {
        ctx.recorder
            .transition(
                task,
                TaskState::Failed,
                format!("{why}, and the {bound} reworks allowed are used up"),
            )
            .await?;
    }
    Ok(())
}

pub(crate) fn task_brief(record: &TaskRecord) -> String {
    let spec = &record.spec;
    let list = |items: &[String]| {
        if items.is_empty() {
            "- (none given)".to_owned()
        } else {
            items
                .iter()
                .map(|i| format!("- {i}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    format!(
        "## Task {}: {}\n{}\n\n### Acceptance criteria\n{}\n\n### Paths it expects to touch\n{}\n",
        spec.id,
        spec.title,
        spec.description,
        list(&spec.acceptance),
        list(&spec.paths)
    )
}

/// Reads a conflicted file of the worktree at `dir` for the UI; empty if
/// unreadable. Reached beneath the worktree: a link the coder left at the
/// path (to a key in the user's home, say) is not followed into the record.
/// A regular file only (a FIFO would block), and at most its first 8 MiB:
/// an agent may have put anything in a conflicted file's place.
pub fn read_lossy(dir: &Path, rel: &str) -> String {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read = crate::effects::beneath::Beneath::open(dir)
        .and_then(|worktree| worktree.open_file(Path::new(rel)))
        .map(|file| file.take(MAX_LOSSY_READ).read_to_end(&mut bytes));
    match read {
        Ok(Ok(_)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

/// The most of a worktree file `read_lossy` reads.
const MAX_LOSSY_READ: u64 = 8 * 1024 * 1024;
