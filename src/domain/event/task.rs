//! Events of one task's pipeline: state transitions, its worktree, the
//! coder's change, the tester's tests, review and test runs.

use serde::{Deserialize, Serialize};

use crate::domain::ids::TaskId;
use crate::domain::task::TaskState;
use crate::domain::testers::TesterTests;

/// The state machine's one transition event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStateChanged {
    pub task: TaskId,
    pub from: TaskState,
    pub to: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorktreeCreated {
    pub task: TaskId,
    pub branch: String,
    pub path: String,
    pub base_commit: String,
}

/// The coder's work, committed on the task branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeCommitted {
    pub task: TaskId,
    pub commit: String,
    pub files: Vec<String>,
    pub diff: String,
}

/// The tester's acceptance tests ran on the task's base commit, before
/// any change of the coder's: tests of new behaviour fail there. Tests
/// that passed send the tester back, within `max_rework` rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestsOnBase {
    pub task: TaskId,
    /// The tester's round, from 1.
    pub round: u32,
    pub files: Vec<String>,
    pub command: String,
    pub exit_code: Option<i32>,
    /// The wanted outcome.
    pub failed: bool,
    pub duration_ms: u64,
    pub output: String,
}

/// The tester's step is over and the coder's begins. With `tests`, they
/// are committed on the task branch and read-only for the coder; without,
/// the task goes on without a tester's tests (a warning says why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TesterDone {
    pub task: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TesterTests>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewVerdict {
    pub task: TaskId,
    pub approved: bool,
    pub feedback: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRun {
    pub task: TaskId,
    pub command: String,
    pub exit_code: Option<i32>,
    pub passed: bool,
    pub duration_ms: u64,
    pub output: String,
}

/// The coder finished without changing any file. Within the rework
/// bound it gets another attempt, told so; the task stays running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NothingChanged {
    pub task: TaskId,
}

/// A human changed a task before it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEdited {
    pub task: TaskId,
    pub description: String,
    pub acceptance: Vec<String>,
}
