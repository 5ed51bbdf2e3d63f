//! What the state machine keeps per task and per question, and the errors
//! it refuses events with.

use std::collections::BTreeSet;

use crate::domain::blueprint::TaskSpec;
use crate::domain::event::{ConflictResolution, MergeCheck, TokenUsage};
use crate::domain::ids::{AgentId, TaskId};
use crate::domain::task::TaskState;
use crate::domain::{testers, write_set};

/// An event that the state machine refuses: the events are inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("event #{seq} arrived before the run started")]
    NotStarted { seq: u64 },
    #[error("the run was started twice (event #{seq})")]
    StartedTwice { seq: u64 },
    #[error("a blueprint was accepted twice (event #{seq})")]
    BlueprintTwice { seq: u64 },
    #[error("event #{seq} names unknown task {task}")]
    UnknownTask { seq: u64, task: TaskId },
    #[error("event #{seq} moves task {task} from {claimed}, but it is {actual}")]
    StaleFrom {
        seq: u64,
        task: TaskId,
        claimed: TaskState,
        actual: TaskState,
    },
    #[error("event #{seq}: task {task} cannot go from {from} to {to}")]
    Illegal {
        seq: u64,
        task: TaskId,
        from: TaskState,
        to: TaskState,
    },
    #[error("event #{seq}: task {task} is {state}; only a running task can finish unchanged")]
    NotRunning {
        seq: u64,
        task: TaskId,
        state: TaskState,
    },
    #[error("event #{seq} is out of order (expected #{expected})")]
    OutOfOrder { seq: u64, expected: u64 },
}

/// Everything the orchestrator and the UI need to know about one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub spec: TaskSpec,
    pub state: TaskState,
    /// Coding attempt number, from 1: a new attempt starts on each rework.
    /// Resuming an interrupted attempt does not start a new one.
    pub attempt: u32,
    /// Rework rounds caused by review or test rejections.
    pub reworks: u32,
    /// Rework rounds caused by merge conflicts.
    pub conflict_reworks: u32,
    pub branch: Option<String>,
    pub worktree: Option<String>,
    /// Latest commit on the task branch made by the factory.
    pub head_commit: Option<String>,
    /// Feedback for the next attempt (review, test failure or conflict).
    pub feedback: Option<String>,
    pub merged_commit: Option<String>,
    pub conflict_files: Vec<String>,
    /// How a human chose to resolve an escalated conflict; consumed by the
    /// next coding step.
    pub resolution: Option<ConflictResolution>,
    /// A check of the merge queue failed and the task has not been reopened
    /// yet: a resumed run reopens it rather than merge it again.
    pub queue_failure: Option<MergeCheck>,
    pub tokens: TokenUsage,
    /// Paths the task was seen changing: written by its agents' tools or
    /// in its committed diff. Joined with `spec.paths`, the write-set the
    /// scheduler keeps apart from other tasks'.
    pub observed_writes: BTreeSet<String>,
    /// USD the task's agents spent, where their models have a price.
    pub cost_usd: f64,
    /// Extra budgets a human granted after the task ran out.
    pub budget_raises: u32,
    /// The state the task left when it ran out of budget, to go back to.
    pub over_budget_from: Option<TaskState>,
    /// `at_ms` of the event that last changed the state.
    pub since_ms: u64,
    /// Why the task entered its state, when the event said (a failure's cause).
    pub reason: Option<String>,
    /// Why the gate holds the task, one typed reason per rule and path;
    /// empty once it has left the gate.
    pub gate_reasons: Vec<crate::domain::gate_reason::GateReason>,
    /// Where the task is on the shepherd's ladder, and why it is stuck.
    pub shepherd: crate::domain::shepherd::TaskShepherd,
    /// The tester's step, before the coder's first attempt.
    pub tester: testers::TesterStep,
}

impl TaskRecord {
    pub(super) fn new(spec: TaskSpec, at_ms: u64) -> Self {
        Self {
            spec,
            state: TaskState::Pending,
            attempt: 1,
            reworks: 0,
            conflict_reworks: 0,
            branch: None,
            worktree: None,
            head_commit: None,
            feedback: None,
            merged_commit: None,
            conflict_files: Vec::new(),
            resolution: None,
            queue_failure: None,
            tokens: TokenUsage::default(),
            observed_writes: BTreeSet::new(),
            cost_usd: 0.0,
            budget_raises: 0,
            over_budget_from: None,
            since_ms: at_ms,
            reason: None,
            gate_reasons: Vec::new(),
            shepherd: Default::default(),
            tester: testers::TesterStep::default(),
        }
    }

    pub fn id(&self) -> &TaskId {
        &self.spec.id
    }

    /// What the task is expected to change, as far as is known now.
    pub fn write_set(&self) -> write_set::WriteSet<'_> {
        write_set::WriteSet {
            declared: &self.spec.paths,
            observed: &self.observed_writes,
        }
    }
}

/// A landing held back because the user's checkout of mainline has changes.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldLanding {
    pub task: TaskId,
    /// The user's files in the way.
    pub files: Vec<String>,
    pub since_ms: u64,
}

/// What the coder is told when it finished without changing anything.
pub const NOTHING_CHANGED_FEEDBACK: &str = "You finished without changing any file; the task \
    is not done. Make the changes the task asks for in the worktree (write_file or edit_file), \
    then call finish.";

/// A question an agent asked the human through its `ask_human` tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub agent: AgentId,
    pub call_id: String,
    pub task: Option<TaskId>,
    pub question: String,
    pub asked_ms: u64,
    pub answer: Option<String>,
}
