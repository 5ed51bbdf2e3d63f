//! Events of running the factory: warnings, the shepherd, provider limits,
//! budgets and the overseer.

use serde::{Deserialize, Serialize};

use crate::domain::ids::{AgentId, RunId, TaskId};
use crate::domain::proposal::Proposal;
use crate::domain::stuck::{Action, Pattern};

/// The provider's adaptive concurrency limit moved (halved on a limit,
/// grown back after successes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderLimitChanged {
    pub provider: String,
    pub limit: u32,
    pub ceiling: u32,
}

/// Something went wrong that the run survived (an agent error, a refused
/// write to a protected path); shown to the human, never silently dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    pub message: String,
}

/// The shepherd found work stuck and acted: a nudge to the agent, a
/// fresh agent in its place, or a human asked to look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShepherdIntervened {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// The agent it acted on; none for a rework echo between rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentId>,
    pub pattern: Pattern,
    pub action: Action,
}

/// A human had a parked provider tried again before its wait was over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkLifted {
    pub provider: String,
    pub by: String,
}

/// A human gave a task (or, without a task, the run) one more budget's
/// worth of tokens and cost, after it ran out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRaised {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    pub by: String,
}

/// The overseer's report on past runs, with its proposals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverseerReport {
    pub runs: Vec<RunId>,
    pub markdown: String,
    pub proposals: Vec<Proposal>,
}

/// A human applied (or rejected) one of the overseer's proposals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalDecision {
    /// 1-based number of the proposal in the report.
    pub proposal: u32,
    pub approved: bool,
    pub by: String,
}
