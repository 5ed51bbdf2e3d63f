//! Events of the run as a whole: its start and settings, phases,
//! interruptions, the requirement, and its end.

use serde::{Deserialize, Serialize};

use crate::domain::ids::TaskId;
use crate::domain::phase::RunPhase;
use crate::domain::testers::TestAgents;

/// Run-level settings recorded at start so a resumed or replayed run uses the
/// bounds it was started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub concurrency: usize,
    pub max_tasks: usize,
    pub max_rework: u32,
    pub max_conflict_rework: u32,
    pub max_plan_rounds: u32,
    pub test_command: Option<String>,
    /// The provider of the default role, e.g. `scripted` or `openai`.
    pub provider: String,
    /// Scenario file of a scripted run; `None` for the embedded demo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// Gated merges are approved without a human (CI).
    #[serde(default)]
    pub auto_approve: bool,
    /// Planning waits until a human submits the requirement from the cockpit.
    #[serde(default)]
    pub await_spec: bool,
    /// Tasks whose write-sets overlap never run at the same time. Runs
    /// stored before this setting existed were scheduled without it.
    #[serde(default)]
    pub write_sets: bool,
    /// Token and cost limits; none for runs stored before budgets existed.
    #[serde(default)]
    pub budget: Budget,
    /// The merge queue runs the test command on each merge result before
    /// mainline moves. Off in runs stored before the queue existed.
    #[serde(default)]
    pub verify_merges: bool,
    /// Runs on mainline after each landing; a failure reverts the merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_merge_command: Option<String>,
    /// How agents' commands were fenced (`landlock (...)`, `bwrap (...)`,
    /// `none (...)`); empty in runs stored before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub isolation: String,
    /// Which tasks get a tester before their coder; none in runs stored
    /// before testers existed, and none without a test command.
    #[serde(default = "TestAgents::stored_default")]
    pub test_agents: TestAgents,
}

/// Spending limits of a run and of each of its tasks. Cost limits only bite
/// where the model has a price in config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Tokens (input + output) one task's agents may use.
    pub task_tokens: Option<u64>,
    /// USD one task's agents may spend.
    pub task_usd: Option<f64>,
    /// Tokens the whole run may use, planning included.
    pub run_tokens: Option<u64>,
    pub run_usd: Option<f64>,
}

impl Default for RunSettings {
    /// The defaults of `[run]` in the config, on the scripted provider.
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_tasks: crate::domain::blueprint::DEFAULT_MAX_TASKS,
            max_rework: 2,
            max_conflict_rework: 2,
            max_plan_rounds: 3,
            test_command: None,
            provider: "scripted".into(),
            scenario: None,
            auto_approve: false,
            await_spec: false,
            write_sets: true,
            budget: Budget::default(),
            verify_merges: false,
            post_merge_command: None,
            isolation: String::new(),
            test_agents: TestAgents::All,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStarted {
    pub requirement: String,
    pub repo: String,
    pub mainline: String,
    pub base_commit: String,
    pub settings: RunSettings,
}

/// The run as a whole moved to another phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPhaseChanged {
    pub to: RunPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The process was told to stop (a signal, the cockpit quit) while the
/// run was not over; `memofab resume` carries it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInterrupted {}

/// The process was restarted and the run picked up from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResumed {
    #[serde(default)]
    pub interrupted: Vec<TaskId>,
}

/// The user's repository changed in a way memofab did not make (a ref,
/// a hook, the config): the run stops until a human has looked and
/// resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryChanged {
    pub changes: Vec<String>,
}

/// The human finished editing the requirement; planning may start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecSubmitted {
    pub requirement: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFinished {
    pub merged: usize,
    pub failed: usize,
    pub mainline_commit: String,
}
