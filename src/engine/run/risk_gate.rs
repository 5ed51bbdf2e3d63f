//! Gathers what the gate judges a change by: its files from the blobs of
//! the task's branch (sizes, renames, deletions); from mainline, the files
//! the test command runs and where `core.hooksPath` points; and, when the
//! policy has a history rule, the incidents of the recent runs from the
//! store. Nothing is read from a task's worktree. The judgement itself is
//! `domain::risk`.

use crate::domain::governance::hooks_dir_in_repo;
use crate::domain::path_history::{self, PathHistory};
use crate::domain::risk::{GateFacts, GateVerdict, assess_change};
use crate::domain::test_runner::runner_files;
use crate::domain::{Event, RunKind};
use crate::effects::store::StoreError;
use crate::engine::context::RunContext;
use crate::engine::error::{EngineError, EngineResult};

/// The gate's verdict on `branch`'s change against mainline.
pub async fn assess(ctx: &RunContext, branch: String) -> EngineResult<GateVerdict> {
    let m = ctx.mainline.clone();
    let sniff_over = ctx.policy.max_binary_bytes();
    let commands: Vec<String> = ctx
        .test_command
        .iter()
        .chain(&ctx.config.merge.post_merge_command)
        .cloned()
        .collect();
    let (change, runner, hooks_path) = ctx
        .git(move |g| {
            let base = g.merge_base(&m, &branch)?;
            let change = g.diff_stat(&base, &branch, sniff_over)?;
            // The runner as mainline has it: the branch's copy is the one
            // an agent may have rewritten.
            let runner = runner_files(commands.iter().map(String::as_str), |path| {
                g.read_file_at(&base, path).ok().flatten()
            });
            Ok((change, runner, g.hooks_path()?))
        })
        .await?;
    let history = match ctx.policy.history() {
        Some(rule) => recent_history(ctx, rule.runs).await?,
        None => PathHistory::default(),
    };
    let facts = GateFacts {
        history,
        runner_files: runner,
        hooks_dir: hooks_path.as_deref().and_then(hooks_dir_in_repo),
    };
    Ok(assess_change(&ctx.policy, &change, &facts))
}

/// Incidents per path over the `runs` factory runs before this one. The
/// current run is left out: its own reworks are the review's business, and
/// the history should not change under a run as it goes.
async fn recent_history(ctx: &RunContext, runs: usize) -> EngineResult<PathHistory> {
    if runs == 0 {
        return Ok(PathHistory::default());
    }
    let recorder = ctx.recorder.clone();
    let current = recorder.run().clone();
    let events = tokio::task::spawn_blocking(move || {
        recorder.with_store(|store| -> Result<Vec<Vec<Event>>, StoreError> {
            store
                .runs()?
                .into_iter()
                .filter(|r| r.run.kind() == RunKind::Factory && r.run != current)
                .take(runs)
                .map(|r| store.events_of_types(&r.run, &path_history::EVENT_TYPES))
                .collect()
        })
    })
    .await
    .map_err(|e| EngineError::Join(e.to_string()))??;
    Ok(PathHistory::compute(&events))
}
