//! The factory's pure domain: blueprints, task states, events and the state
//! machine that folds events into run state. Nothing here performs IO, so every
//! rule can be unit-tested without git, SQLite, an LLM or a terminal.

pub mod blueprint;
pub mod event;
pub mod ids;
pub mod metrics;
pub mod policy;
pub mod run_state;
pub mod schedule;
pub mod task;

pub use blueprint::{Blueprint, BlueprintIssue, TaskSpec};
pub use event::{
    ConflictFile, ConflictResolution, Event, EventKind, MergeCheck, MergeOutcome, MessageAuthor,
    RunSettings, TokenUsage,
};
pub use ids::{AgentId, AgentRole, RunId, TaskId};
pub use run_state::{RunPhase, RunState, TaskRecord, TransitionError};
pub use task::TaskState;
