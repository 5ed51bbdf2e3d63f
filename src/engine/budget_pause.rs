//! Where a task's agent waits when its budget (or the run's) is spent: the
//! task moves to `over_budget` and the agent holds its conversation until a
//! human grants more, instead of burning on or losing its context.

use super::error::EngineResult;
use super::recorder::Recorder;
use crate::domain::budget;
use crate::domain::{TaskId, TaskState};

/// Returns `true` at once if `task` is within budget; otherwise pauses it and
/// waits until a human raises the budget (`true`) or stops the task some
/// other way, such as cancelling it (`false`).
pub async fn wait_for_budget(recorder: &Recorder, task: &TaskId) -> EngineResult<bool> {
    let Some(reason) = recorder.with_state(|s| budget::overrun(s, task)) else {
        return Ok(true);
    };
    let id = task.clone();
    let paused = recorder
        .transition_when(task, TaskState::OverBudget, reason, move |s| {
            s.task(&id)
                .is_some_and(|t| t.state.can_become(TaskState::OverBudget))
        })
        .await?;
    if paused.is_none() {
        return Ok(false);
    }
    let now = recorder
        .wait_until(|s| match s.task(task).map(|t| t.state) {
            Some(TaskState::OverBudget) => None,
            other => Some(other),
        })
        .await;
    Ok(matches!(
        now,
        Some(TaskState::Running | TaskState::Reviewing)
    ))
}
