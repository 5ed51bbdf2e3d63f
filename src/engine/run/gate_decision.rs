//! A gate decided from outside the engine's process (`memofab approve` and
//! `reject`, MCP's `approve_gate` and `reject_gate`): checked against the
//! stored run, then left in the store's inbox, where the engine running the
//! run (or resuming it later) picks it up and records the decision, with
//! who left it ([`Decider`]).

use std::path::Path;

use crate::domain::{Decider, RunId, TaskId, TaskState};
use crate::effects::store::Store;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::files::{store_path, stored_state};
use crate::protocol::Command;

/// What a human decided about a change held at the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    Approve,
    /// Back to the coder, with what to change.
    Reject {
        reason: String,
    },
}

/// Checks the task waits at the gate (or, for an approval, waits to land on
/// the user's checkout), then leaves the decision for the engine. Nothing is
/// written when the check fails.
pub fn leave_gate_decision(
    repo: &Path,
    run: &RunId,
    task: &TaskId,
    decision: GateDecision,
    by: &Decider,
) -> EngineResult<()> {
    if let GateDecision::Reject { reason } = &decision
        && reason.trim().is_empty()
    {
        return Err(EngineError::RejectionWithoutReason);
    }
    let path = store_path(repo);
    // Reading a run must not create a store where there is none (a shared
    // PostgreSQL store is there whichever directory this runs in).
    if !path.exists() && crate::effects::store::postgres::selected().is_none() {
        return Err(EngineError::NoStore(path));
    }
    let state = stored_state(repo, run)?;
    let record = state
        .task(task)
        .ok_or_else(|| EngineError::UnknownTask(task.clone()))?;
    let held = state.held_landing.as_ref().is_some_and(|h| &h.task == task);
    let approving = decision == GateDecision::Approve;
    if record.state != TaskState::AwaitingGate && !(approving && held) {
        return Err(EngineError::NotAtGate {
            task: task.clone(),
            state: record.state,
        });
    }
    let command = match decision {
        GateDecision::Approve => Command::ApproveGate { task: task.clone() },
        GateDecision::Reject { reason } => Command::RejectGate {
            task: task.clone(),
            feedback: reason,
        },
    };
    Store::open(&path)?.push_command(run, &command, by)?;
    Ok(())
}
