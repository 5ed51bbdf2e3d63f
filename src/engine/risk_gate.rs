//! Gathers what the gate judges a change by: its size per file from git, and,
//! when the policy has a history rule, the incidents of the recent runs from
//! the store. The judgement itself is `domain::risk`.

use super::context::RunContext;
use super::error::{EngineError, EngineResult};
use crate::domain::path_history::{self, PathHistory};
use crate::domain::risk::{GateVerdict, assess_change};
use crate::domain::{Event, RunKind};
use crate::effects::store::StoreError;

/// The gate's verdict on `branch`'s change against mainline.
pub async fn assess(ctx: &RunContext, branch: String) -> EngineResult<GateVerdict> {
    let m = ctx.mainline.clone();
    let change = ctx
        .git(move |g| {
            let base = g.merge_base(&m, &branch)?;
            g.diff_stat(&base, &branch)
        })
        .await?;
    let history = match ctx.policy.history() {
        Some(rule) => recent_history(ctx, rule.runs).await?,
        None => PathHistory::default(),
    };
    Ok(assess_change(&ctx.policy, &change, &history))
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
