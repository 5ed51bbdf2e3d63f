//! The factory's pure domain: blueprints, task states, events and the state
//! machine that folds events into run state. Nothing here performs IO, so every
//! rule can be unit-tested without git, SQLite, an LLM or a terminal.

pub mod attention;
pub mod blueprint;
pub mod budget;
pub mod change;
pub mod change_rules;
pub mod decider;
pub mod event;
// A fixed six-task run for the tests of every layer above (cockpit, daemon, summaries).
#[cfg(test)]
pub(crate) mod fixture;
pub mod gate_reason;
pub mod governance;
pub mod ids;
pub mod instructions;
pub mod made_up;
pub mod mcp;
pub mod metrics;
pub mod narrate;
pub mod overseer;
pub mod path_history;
pub mod path_incidents;
pub mod phase;
pub mod policy;
pub mod proposal;
pub mod queue;
pub mod quota;
pub mod redact;
pub mod report;
pub mod risk;
pub mod run_state;
pub mod schedule;
pub mod shepherd;
pub mod stuck;
pub mod synthetic;
pub mod task;
pub mod test_runner;
pub mod testers;
pub mod tool_names;
pub mod write_set;

pub use blueprint::{Blueprint, BlueprintIssue, TaskSpec};
pub use decider::Decider;
pub use event::{
    Budget, ConflictFile, ConflictResolution, Event, EventKind, MergeCheck, MergeOutcome,
    MessageAuthor, RunSettings, TokenUsage,
};
pub use ids::{AgentId, AgentRole, RunId, RunKind, TaskId};
pub use quota::{ParkedAgent, ProviderLimit};
pub use run_state::{Question, RunPhase, RunState, TaskRecord, TransitionError};
pub use task::TaskState;
pub use testers::{TestAgents, TesterStep, TesterTests};
