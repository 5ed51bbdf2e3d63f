//! Where a task's agent waits when its budget (or the run's) is spent: the
//! task moves to `over_budget` and the agent holds its conversation until a
//! human grants more, instead of burning on or losing its context.

use std::time::Duration;

use super::error::EngineResult;
use super::recorder::Recorder;
use crate::domain::budget;
use crate::domain::{TaskId, TaskState};

/// How often a paused agent looks whether it may go on. A human answers in
/// seconds, so this costs nothing noticeable and needs no extra channel.
const POLL: Duration = Duration::from_millis(100);

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
    loop {
        tokio::time::sleep(POLL).await;
        match recorder.with_state(|s| s.task(task).map(|t| t.state)) {
            Some(TaskState::OverBudget) => {}
            Some(TaskState::Running | TaskState::Reviewing) => return Ok(true),
            _ => return Ok(false),
        }
    }
}
