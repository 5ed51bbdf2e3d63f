//! A task's tester step, before its coder's first attempt. A tester agent
//! with a fresh context sees the task and the code as it is on mainline —
//! never the coder's change — and adds acceptance tests to the task's
//! worktree, which is still at the base commit. The project's test command
//! runs there: the tests must fail, since the task is not done yet. Tests
//! that pass are sent back to the tester, up to `max_rework` times, then
//! kept with a warning. They are committed on the task branch before the
//! coder starts, and are read-only for the coder (its sandbox refuses them,
//! and what a command changed in them is put back before its commit).
//!
//! A tester that fails or writes nothing costs the task nothing but a
//! warning: the task goes on without a tester's tests.

use std::path::Path;
use std::sync::Arc;

use super::steps::{run_check_command, task_brief};
use crate::domain::event::{TesterDone, TestsOnBase, Warning};
use crate::domain::policy::Risk;
use crate::domain::testers::passed_on_base_feedback;
use crate::domain::{AgentRole, EventKind, TaskId, TaskRecord, TaskState, TesterTests};
use crate::effects::file_fence::Sandbox;
use crate::effects::git::GitError;
use crate::engine::agent::AgentJob;
use crate::engine::context::RunContext;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::tools::{ToolBox, ToolSet};
use crate::llm::ScriptKey;

/// Whether `record`'s task gets a tester: the run's `test_agents` picks it,
/// and the tester's model can hold the conversation (a scenario without a
/// tester script for the task leaves it out).
pub(super) fn wanted(ctx: &RunContext, record: &TaskRecord) -> EngineResult<bool> {
    if ctx.test_command.is_none() || record.tester.is_done() {
        return Ok(false);
    }
    let paths = record.spec.paths.iter().map(String::as_str);
    let gated = ctx.policy.assess(paths).risk >= Risk::Approve;
    if !ctx.settings().test_agents.wants(gated) {
        return Ok(false);
    }
    let (provider, _) = ctx.providers.get(AgentRole::Tester)?;
    Ok(provider.scripts(&ScriptKey {
        role: AgentRole::Tester,
        task: Some(record.id().clone()),
        attempt: 1,
    }))
}

/// Runs the tester's rounds in the worktree at `dir` until its tests are
/// committed or given up. Returns early, recording nothing more, if the task
/// stopped running meanwhile (a human cancelled it).
pub(super) async fn write_tests(
    ctx: &Arc<RunContext>,
    record: &TaskRecord,
    dir: &Path,
) -> EngineResult<()> {
    let task = record.id().clone();
    let Some(command) = ctx.test_command.clone() else {
        return Ok(());
    };
    let bound = ctx.settings().max_rework;
    // Files of the round before, still in the worktree: the tester's own.
    let mut own: Vec<String> = Vec::new();
    let mut feedback: Option<String> = None;
    loop {
        let Some(now) = ctx.recorder.with_state(|s| s.task(&task).cloned()) else {
            return Ok(());
        };
        let Some(round) = now.tester.round() else {
            return Ok(());
        };
        let toolbox = Arc::new(
            ToolBox::new(Sandbox::new(dir, ctx.policy.clone())?, ctx.tool_limits())
                .new_files_only(&own),
        );
        let job = AgentJob {
            role: AgentRole::Tester,
            task: Some(task.clone()),
            attempt: round,
            prompt: ctx.prompts.load(AgentRole::Tester),
            first_message: tester_message(&now, &command, &own, feedback.as_deref()),
            toolbox: Some((toolbox, ToolBox::specs(ToolSet::Coder))),
            submit: None,
        };
        if let Err(failed) = ctx.run_agent(AgentRole::Tester, job).await? {
            if !running(ctx, &task) {
                return Ok(());
            }
            return give_up(ctx, &task, format!("the tester failed: {failed}")).await;
        }
        let base = now.head_commit.clone().unwrap_or_default();
        let files = keep_new_files(ctx, &task, dir, &base).await?;
        if files.is_empty() {
            return give_up(ctx, &task, "the tester wrote no tests".to_owned()).await;
        }
        let run = run_check_command(ctx, &command, dir.to_owned()).await?;
        ctx.recorder
            .record(EventKind::TestsOnBase(TestsOnBase {
                task: task.clone(),
                round,
                files: files.clone(),
                command: command.clone(),
                exit_code: run.exit_code,
                failed: !run.passed,
                duration_ms: run.duration_ms,
                output: run.output.clone(),
            }))
            .await?;
        if !run.passed {
            return commit(ctx, &task, dir, true).await;
        }
        if round > bound {
            ctx.recorder
                .record(EventKind::Warning(Warning {
                    task: Some(task.clone()),
                    message: format!(
                        "the tester's tests of {task} still pass on the base commit after {round} rounds; kept, though they prove nothing"
                    ),
                }))
                .await?;
            return commit(ctx, &task, dir, false).await;
        }
        feedback = Some(passed_on_base_feedback(
            &command,
            crate::domain::run_state::tail(&run.output, 4000),
        ));
        own = files;
    }
}

fn running(ctx: &RunContext, task: &TaskId) -> bool {
    ctx.recorder.with_state(|s| s.task(task).map(|t| t.state)) == Some(TaskState::Running)
}

/// The tester only adds files: what it changed of the project's (through a
/// command), or wrote where the policy forbids, is put back. Returns the new
/// files it wrote.
async fn keep_new_files(
    ctx: &RunContext,
    task: &TaskId,
    dir: &Path,
    base: &str,
) -> EngineResult<Vec<String>> {
    let (d, b) = (dir.to_owned(), base.to_owned());
    let policy = ctx.policy.clone();
    let (new, undone) = ctx
        .worktree_git(task, move |g| {
            let mut new = Vec::new();
            let mut undo = Vec::new();
            for path in g.worktree_changes(&d)? {
                let existing = g.read_file_at(&b, &path)?.is_some();
                if existing || policy.risk_of(&path).risk == Risk::Deny {
                    undo.push(path);
                } else {
                    new.push(path);
                }
            }
            let undone = g.restore_files(&d, &b, &undo)?;
            Ok((new, undone))
        })
        .await?;
    if !undone.is_empty() {
        ctx.recorder
            .record(EventKind::Warning(Warning {
                task: Some(task.clone()),
                message: format!(
                    "the tester may only add test files; its changes to {} were undone",
                    undone.join(", ")
                ),
            }))
            .await?;
    }
    Ok(new)
}

/// Commits the tester's files on the task branch; from now on they are the
/// coder's contract.
async fn commit(
    ctx: &RunContext,
    task: &TaskId,
    dir: &Path,
    failed_on_base: bool,
) -> EngineResult<()> {
    let d = dir.to_owned();
    let message = format!(
        "{task}: acceptance tests by the tester\n\nmemofab run {}",
        ctx.recorder.run()
    );
    let committed = match ctx
        .worktree_git(task, move |g| g.commit_all(&d, &message))
        .await
    {
        Err(EngineError::TaskWorktree {
            source: refused @ GitError::Unstageable(_),
            ..
        }) => {
            return give_up(
                ctx,
                task,
                format!("the tester's work was refused: {refused}"),
            )
            .await;
        }
        other => other?,
    };
    let Some(info) = committed else {
        return give_up(
            ctx,
            task,
            "the tester's tests could not be committed".into(),
        )
        .await;
    };
    super::remote_mainline::push_task_branch(ctx, task).await?;
    let mut files = info.files;
    files.sort();
    ctx.recorder
        .record(EventKind::TesterDone(TesterDone {
            task: task.clone(),
            tests: Some(TesterTests {
                commit: info.commit,
                files,
                failed_on_base,
            }),
        }))
        .await?;
    Ok(())
}

/// The task goes on without a tester's tests; the worktree is left as the
/// base commit had it.
async fn give_up(ctx: &RunContext, task: &TaskId, why: String) -> EngineResult<()> {
    ctx.recorder
        .record(EventKind::Warning(Warning {
            task: Some(task.clone()),
            message: format!("{why}; {task} goes on without a tester's tests"),
        }))
        .await?;
    ctx.recorder
        .record(EventKind::TesterDone(TesterDone {
            task: task.clone(),
            tests: None,
        }))
        .await?;
    Ok(())
}

fn tester_message(
    record: &TaskRecord,
    command: &str,
    own: &[String],
    feedback: Option<&str>,
) -> String {
    let mut text = task_brief(record);
    text.push_str(&format!(
        "\nThe project's tests run with `{command}`. The repository is as mainline has it: the task is not done yet.\n"
    ));
    if let Some(feedback) = feedback {
        text.push_str(&format!(
            "\n## Your tests so far: {}\n{feedback}\n",
            own.join(", ")
        ));
    }
    text.push_str("\nWrite the task's acceptance tests in new files, then call finish.\n");
    text
}

/// Puts the tester's files in the coder's worktree back if a command of
/// the coder's changed them (its file tools cannot), with a warning.
pub(super) async fn restore_tests(
    ctx: &RunContext,
    record: &TaskRecord,
    dir: &Path,
) -> EngineResult<()> {
    let Some(tests) = record.tester.tests().cloned() else {
        return Ok(());
    };
    let d = dir.to_owned();
    let restored = ctx
        .worktree_git(record.id(), move |g| {
            g.restore_files(&d, &tests.commit, &tests.files)
        })
        .await?;
    if !restored.is_empty() {
        ctx.recorder
            .record(EventKind::Warning(Warning {
                task: Some(record.id().clone()),
                message: format!(
                    "the coder changed the tester's tests ({}); they were put back",
                    restored.join(", ")
                ),
            }))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::policy::Policy;
    use crate::effects::process::Isolation;
    use crate::engine::tools::{ToolLimits, ToolOutcome};

    fn limits() -> ToolLimits {
        ToolLimits {
            command_timeout: Duration::from_secs(5),
            output_cap: 4096,
            deny_commands: Vec::new(),
            isolation: Isolation::none(),
            max_file_bytes: crate::effects::git::DEFAULT_MAX_FILE_BYTES,
        }
    }

    fn ok(outcome: ToolOutcome) -> bool {
        matches!(outcome, ToolOutcome::Output { ok: true, .. })
    }

    #[tokio::test]
    async fn the_tester_adds_files_and_never_changes_the_projects() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lib.sh"), "base").unwrap();
        let sandbox = Sandbox::new(dir.path(), Policy::protected_only()).unwrap();
        let tester = ToolBox::new(sandbox, limits()).new_files_only(&["old_test.sh".to_owned()]);
        std::fs::write(dir.path().join("old_test.sh"), "round 1").unwrap();

        let write = |path: &str, content: &str| {
            serde_json::json!({"path": path, "content": content}).to_string()
        };
        assert!(!ok(tester
            .call("write_file", &write("lib.sh", "hacked"))
            .await));
        let edit = serde_json::json!({"path": "lib.sh", "old": "base", "new": "x"}).to_string();
        assert!(!ok(tester.call("edit_file", &edit).await));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("lib.sh")).unwrap(),
            "base"
        );
        // New files, its own from the round before, and its own once written.
        assert!(ok(tester.call("write_file", &write("t.sh", "a")).await));
        assert!(ok(tester.call("write_file", &write("t.sh", "b")).await));
        assert!(ok(tester
            .call("write_file", &write("old_test.sh", "round 2"))
            .await));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("t.sh")).unwrap(),
            "b"
        );
    }

    #[tokio::test]
    async fn the_coder_cannot_write_the_testers_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tests")).unwrap();
        std::fs::write(dir.path().join("tests/accept.sh"), "contract").unwrap();
        let sandbox = Sandbox::new(dir.path(), Policy::protected_only())
            .unwrap()
            .with_locked(&["tests/accept.sh".to_owned()]);
        let coder = ToolBox::new(sandbox, limits());
        let write = serde_json::json!({"path": "tests/accept.sh", "content": "weaker"}).to_string();
        assert!(!ok(coder.call("write_file", &write).await));
        let edit = serde_json::json!({"path": "tests/accept.sh", "old": "contract", "new": "x"})
            .to_string();
        assert!(!ok(coder.call("edit_file", &edit).await));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tests/accept.sh")).unwrap(),
            "contract"
        );
        let other = serde_json::json!({"path": "lib.sh", "content": "code"}).to_string();
        assert!(ok(coder.call("write_file", &other).await));
    }
}
