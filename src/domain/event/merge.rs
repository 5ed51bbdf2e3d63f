//! Events of landing a change: merges, the merge queue's checks, reverts,
//! conflicts, the gate and the humans' decisions on them.

use serde::{Deserialize, Serialize};

use crate::domain::decider::Decider;
use crate::domain::gate_reason::GateReason;
use crate::domain::ids::TaskId;

/// Which check of the merge queue ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeCheck {
    /// The test command on the merge result, before mainline moves.
    Verify,
    /// The post-merge command on mainline, after it moved.
    PostMerge,
}

impl MergeCheck {
    pub fn label(self) -> &'static str {
        match self {
            MergeCheck::Verify => "merge verification",
            MergeCheck::PostMerge => "post-merge check",
        }
    }
}

/// How a merge onto mainline went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MergeOutcome {
    FastForward { commit: String },
    MergeCommit { commit: String },
    Conflict { files: Vec<String> },
}

/// What a human decided for a task whose merge conflict was escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictResolution {
    /// Send the task back to its coder against the new mainline.
    Rework,
    /// Hand the conflict to the resolver agent.
    Resolver,
    /// The human fixed the files in the worktree; commit and merge them.
    MarkResolved,
}

/// A file left with conflict markers, as the coder sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictFile {
    pub path: String,
    /// The file's content with `<<<<<<<`/`=======`/`>>>>>>>` markers.
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeResult {
    pub task: TaskId,
    pub result: MergeOutcome,
}

/// A check of the merge queue ran on `candidate`, the merge of the task
/// onto mainline at `onto`. For the post-merge check both name the
/// landed merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeVerified {
    pub task: TaskId,
    pub check: MergeCheck,
    pub candidate: String,
    pub onto: String,
    pub command: String,
    pub exit_code: Option<i32>,
    pub passed: bool,
    pub duration_ms: u64,
    pub output: String,
}

/// The post-merge check failed on mainline, so memofab reverted the merge
/// (`revert_commit` on mainline) and put the change back on the task
/// branch (`reapplied`) for rework.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeReverted {
    pub task: TaskId,
    pub merge_commit: String,
    pub revert_commit: String,
    pub reapplied: String,
    pub output: String,
}

/// Mainline could not move: the main work tree has it checked out and
/// holds changes of the user's (`files`). The task waits to land and the
/// run pauses until a human commits or stashes them and resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutDirty {
    pub task: TaskId,
    pub files: Vec<String>,
}

/// Mainline was merged into the task worktree and left conflict markers
/// for the coder (or a human) to resolve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictMarkers {
    pub task: TaskId,
    pub files: Vec<ConflictFile>,
}

/// The gate held a change for a human, for these reasons (recorded
/// just before the task moves to `awaiting_gate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateHeld {
    pub task: TaskId,
    pub reasons: Vec<GateReason>,
}

/// A human (or `--auto-approve`) decided a gated merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    pub task: TaskId,
    pub approved: bool,
    /// The channel it came through (`cockpit`, `cli`, `mcp:<client>`,
    /// `auto`); a user name in stores written before that was recorded.
    pub by: Decider,
    #[serde(default)]
    pub feedback: String,
}

/// A human decided how an escalated conflict is resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictDecision {
    pub task: TaskId,
    pub resolution: ConflictResolution,
    pub by: String,
}

/// A conflict outlived its rework bound, or needs a human for another reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalated {
    pub task: TaskId,
    pub reason: String,
}
