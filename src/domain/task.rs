//! The life cycle of one blueprint task and the transitions allowed between
//! its states. `RunState::apply` is the only caller that changes a state; this
//! module only says which moves are legal.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a task is in the pipeline.
///
/// ```text
/// pending ─▶ ready ─▶ running ─▶ reviewing ─▶ testing ─▶ merging ─▶ merged
///    │         ▲         ▲  ▲         │           │     ▲   │  │
///    ▼         │         │  └─────────┴─rework────┘     │   │  └─▶ conflict
/// blocked ─────┘         └──────── conflict rework ─────┼───┘
///                                     awaiting_gate ────┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for dependencies to merge.
    Pending,
    /// Every dependency merged; waiting for a free agent slot.
    Ready,
    /// A coding agent is working in the task's worktree.
    Running,
    /// The code reviewer agent is reading the diff.
    Reviewing,
    /// The project's test command runs in the worktree.
    Testing,
    /// Review and tests passed, but the policy wants a human to approve.
    AwaitingGate,
    /// The change is being merged onto mainline.
    Merging,
    /// On mainline. Terminal.
    Merged,
    /// Gave up after the rework bound, or the agent failed.
    Failed,
    /// Merge conflicts outlived the rework bound; a human must decide.
    Conflict,
    /// A dependency failed, so this task cannot start.
    Blocked,
    /// A human cancelled it. Terminal unless retried.
    Cancelled,
    /// Its agents used up the task's (or the run's) budget; it waits for a
    /// human to grant more instead of burning on.
    OverBudget,
}

impl TaskState {
    pub const ALL: [TaskState; 13] = [
        TaskState::Pending,
        TaskState::Ready,
        TaskState::Running,
        TaskState::Reviewing,
        TaskState::Testing,
        TaskState::AwaitingGate,
        TaskState::Merging,
        TaskState::Merged,
        TaskState::Failed,
        TaskState::Conflict,
        TaskState::Blocked,
        TaskState::Cancelled,
        TaskState::OverBudget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Ready => "ready",
            TaskState::Running => "running",
            TaskState::Reviewing => "reviewing",
            TaskState::Testing => "testing",
            TaskState::AwaitingGate => "awaiting_gate",
            TaskState::Merging => "merging",
            TaskState::Merged => "merged",
            TaskState::Failed => "failed",
            TaskState::Conflict => "conflict",
            TaskState::Blocked => "blocked",
            TaskState::Cancelled => "cancelled",
            TaskState::OverBudget => "over_budget",
        }
    }

    /// An agent or a step of ours is working on the task right now.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TaskState::Running | TaskState::Reviewing | TaskState::Testing | TaskState::Merging
        )
    }

    /// Nothing more happens to the task without a human.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            TaskState::Merged
                | TaskState::Failed
                | TaskState::Conflict
                | TaskState::Blocked
                | TaskState::Cancelled
                | TaskState::OverBudget
        )
    }

    /// Whether the state machine allows `self -> to`.
    pub fn can_become(self, to: TaskState) -> bool {
        use TaskState::*;
        match (self, to) {
            // Anything not finished can be cancelled by a human.
            (from, Cancelled) => !matches!(from, Merged | Cancelled),
            (Pending, Ready | Blocked) => true,
            (Ready, Running | Blocked) => true,
            // An interrupted run puts in-flight work back in the queue on resume.
            (Running | Reviewing | Testing | Merging, Ready) => true,
            // Conflict: a human's resolution still has conflict markers.
            (Running, Reviewing | Failed | Conflict) => true,
            (Reviewing, Testing | Running | Failed) => true,
            (Testing, Merging | AwaitingGate | Running | Failed) => true,
            (AwaitingGate, Merging | Running | Failed) => true,
            (Merging, Merged | Running | Conflict | Failed) => true,
            // A human resolves conflicts: rework, mark merged by hand, or give up.
            (Conflict, Running | Merged | Failed) => true,
            // Out of budget while an agent worked; more budget carries it on.
            (Running | Reviewing, OverBudget) => true,
            (OverBudget, Running | Reviewing | Failed) => true,
            // Retry.
            (Failed | Cancelled | Blocked, Ready | Pending) => true,
            (Blocked, Blocked) => false,
            _ => false,
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::*;
    use super::*;

    #[test]
    fn happy_path_is_legal() {
        let path = [Pending, Ready, Running, Reviewing, Testing, Merging, Merged];
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn merged_is_terminal() {
        for to in TaskState::ALL {
            assert!(!Merged.can_become(to), "merged -> {to}");
        }
    }

    #[test]
    fn cannot_skip_review_or_tests() {
        assert!(!Running.can_become(Merging));
        assert!(!Running.can_become(Testing));
        assert!(!Reviewing.can_become(Merging));
        assert!(!Pending.can_become(Running));
    }

    #[test]
    fn settled_and_active_are_disjoint() {
        for s in TaskState::ALL {
            assert!(!(s.is_active() && s.is_settled()), "{s}");
        }
    }
}
