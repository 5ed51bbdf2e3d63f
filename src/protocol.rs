//! The protocol between the engine and its front ends (TUI, headless JSON
//! lines). The engine emits [`EngineUpdate`]s and obeys [`Command`]s; neither
//! side sees the other's internals.

use serde::{Deserialize, Serialize};

use crate::domain::{AgentId, Event, TaskId};

/// Engine → front end.
// Nearly every update is an event, so boxing it would cost an allocation on
// the common path to save bytes on the rare one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum EngineUpdate {
    /// A stored event; the same value went to the store.
    Event(Event),
    /// Streaming text of an agent's reply as it arrives. Not stored: the whole
    /// message is, as an `AgentMessage` event, once complete.
    Delta { agent: AgentId, text: String },
    /// Streaming reasoning ("thinking") of an agent's reply, shown apart
    /// from the answer. Stored whole as an `AgentMessage` from `thinking`.
    ThinkingDelta { agent: AgentId, text: String },
    /// The engine stopped: the run is over or paused for good, or it failed.
    Stopped { error: Option<String> },
    /// The overseer's newest report has proposals no human decided yet:
    /// sent when a cockpit starts and when the scheduled overseer review writes one.
    ProposalsWaiting(crate::domain::overseer::WaitingProposals),
}

pub use crate::domain::ConflictResolution;

/// Front end → engine. Key handlers send these; they never do IO themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    ApproveGate {
        task: TaskId,
    },
    RejectGate {
        task: TaskId,
        feedback: String,
    },
    Pause,
    Resume,
    CancelTask {
        task: TaskId,
    },
    RetryTask {
        task: TaskId,
    },
    /// Change a task's description and acceptance criteria before it starts.
    EditTask {
        task: TaskId,
        description: String,
        acceptance: Vec<String>,
    },
    /// The human finished editing the requirement; planning may go on.
    SubmitSpec {
        requirement: String,
    },
    /// Before planning: ask the planner about the requirement.
    Brainstorm {
        message: String,
    },
    ResolveConflict {
        task: TaskId,
        resolution: ConflictResolution,
    },
    /// Grant one more budget's worth to a task that ran out (carrying it on),
    /// or, without a task, to the run (resuming it).
    RaiseBudget {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
    },
    /// Settle a plan dispute: build the last blueprint, or plan once more.
    SettlePlanDispute {
        build: bool,
    },
    /// Answer the question an agent is waiting on.
    AnswerQuestion {
        agent: AgentId,
        call_id: String,
        answer: String,
    },
    /// Try a parked provider again now rather than wait out its limit.
    LiftPark {
        provider: String,
    },
    /// Stop the engine cleanly (the run can be resumed later).
    Shutdown,
}
