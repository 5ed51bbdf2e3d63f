//! The life cycle of one blueprint task and the transitions allowed between
//! its states. `RunState::apply` is the only caller that changes a state; this
//! module only says which moves are legal.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a task is in the pipeline.
///
/// ```text
/// pending ─▶ ready ─▶ running ─▶ reviewing ─▶ testing ─▶ queued ─▶ merging ─▶ verifying ─▶ merged
///    │         ▲       ▲ ▲ ▲          │          │  │       ▲        │ │  ▲          │
///    ▼         │       │ │ └──rework──┴──────────┘  ▼       │        │ │  └──────────┤ mainline moved:
/// blocked ─────┘       │ │              awaiting_gate ──────┘        │ ▼             │ merge again
///                      │ └────────── conflict rework ────────────────┘ conflict      │
///                      └────────── rework: the merged tree failed a check ───────────┘
/// ```
///
/// `queued → merging → verifying` is the merge queue: one task at a time
/// computes its merge onto mainline, runs the tests on the merged tree and
/// only then moves mainline. Runs stored before the queue existed went
/// `testing → merging → merged`; those moves stay legal so they replay.
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
    /// Accepted; waiting its turn in the merge queue.
    Queued,
    /// Its turn in the queue: the merge onto mainline is being computed.
    Merging,
    /// The merge result is computed; the test command runs on the merged
    /// tree before mainline moves (and the post-merge check after).
    Verifying,
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
    pub const ALL: [TaskState; 15] = [
        TaskState::Pending,
        TaskState::Ready,
        TaskState::Running,
        TaskState::Reviewing,
        TaskState::Testing,
        TaskState::AwaitingGate,
        TaskState::Queued,
        TaskState::Merging,
        TaskState::Verifying,
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
            TaskState::Queued => "queued",
            TaskState::Merging => "merging",
            TaskState::Verifying => "verifying",
            TaskState::Merged => "merged",
            TaskState::Failed => "failed",
            TaskState::Conflict => "conflict",
            TaskState::Blocked => "blocked",
            TaskState::Cancelled => "cancelled",
            TaskState::OverBudget => "over_budget",
        }
    }

    /// An agent or a step of ours is working on the task right now. A
    /// queued task counts: its pipeline waits for its turn, and a resumed run
    /// must put it back in the queue.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TaskState::Running
                | TaskState::Reviewing
                | TaskState::Testing
                | TaskState::Queued
                | TaskState::Merging
                | TaskState::Verifying
        )
    }

    /// The task takes one of the run's `concurrency` slots: coding, review
    /// and its tests. A task in the merge queue waits on the queue, not on a
    /// slot, so a slow verification does not hold back coding.
    pub fn holds_slot(self) -> bool {
        matches!(
            self,
            TaskState::Running | TaskState::Reviewing | TaskState::Testing
        )
    }

    /// Waiting in, or going through, the merge queue.
    pub fn in_merge_queue(self) -> bool {
        matches!(
            self,
            TaskState::Queued | TaskState::Merging | TaskState::Verifying
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
            (Running | Reviewing | Testing | Queued | Merging | Verifying, Ready) => true,
            // Conflict: a human's resolution still has conflict markers.
            (Running, Reviewing | Failed | Conflict) => true,
            (Reviewing, Testing | Running | Failed) => true,
            // `-> merging` and `merging -> merged` skip the queue: runs stored
            // before it existed, or runs without anything to verify.
            (Testing, Queued | Merging | AwaitingGate | Running | Failed) => true,
            (AwaitingGate, Queued | Merging | Running | Failed) => true,
            (Queued, Merging) => true,
            (Merging, Verifying | Merged | Running | Conflict | Failed) => true,
            // Verification failed (or the post-merge check did and the merge
            // was reverted): rework or give up. Mainline moved underneath the
            // candidate: compute it again.
            (Verifying, Merged | Running | Failed | Merging) => true,
            // The remote refused to take the landing (`[mainline] remote`):
            // it waits for a human to approve another push.
            (Merging | Verifying, AwaitingGate) => true,
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
    fn queue_path_is_legal() {
        let path = [
            Pending, Ready, Running, Reviewing, Testing, Queued, Merging, Verifying, Merged,
        ];
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
        assert!(AwaitingGate.can_become(Queued));
        // A failed verification reopens the task; a moved mainline recomputes.
        assert!(Verifying.can_become(Running));
        assert!(Verifying.can_become(Failed));
        assert!(Verifying.can_become(Merging));
        // Interrupted queue work goes back to the queue on resume.
        for s in [Queued, Merging, Verifying] {
            assert!(s.is_active(), "{s}");
            assert!(!s.holds_slot(), "{s}");
            assert!(s.can_become(Ready), "{s}");
        }
    }

    #[test]
    fn the_queue_cannot_be_skipped_or_entered_early() {
        assert!(!Queued.can_become(Verifying));
        assert!(!Queued.can_become(Merged));
        assert!(!Running.can_become(Queued));
        assert!(!Reviewing.can_become(Queued));
        assert!(!Verifying.can_become(Queued));
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
