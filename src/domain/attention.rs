//! The attention inbox: everything that waits on a human, in one list,
//! ranked so the item holding up the most work comes first.

use std::collections::HashSet;

use super::budget;
use super::ids::TaskId;
use super::run_state::{RunPhase, RunState};
use super::task::TaskState;

/// What kind of decision an item waits for; each has one default action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttentionKind {
    /// The run spent its budget and is paused.
    RunOverBudget,
    /// A change passed review and tests but the policy wants a human.
    Gate,
    /// A merge conflict outlived its rework bound.
    Conflict,
    /// A task's agent spent the task's budget and waits.
    TaskOverBudget,
    /// A task gave up; its dependents cannot start.
    Failed,
    /// An agent is parked by a provider's rate or usage limit; it resumes by
    /// itself.
    QuotaPause,
}

impl AttentionKind {
    /// What the item's one key does.
    pub fn action(self) -> &'static str {
        match self {
            AttentionKind::RunOverBudget | AttentionKind::TaskOverBudget => "grant more budget",
            AttentionKind::Gate => "approve the merge",
            AttentionKind::Conflict => "hand to the resolver agent",
            AttentionKind::Failed => "retry",
            AttentionKind::QuotaPause => "resumes by itself",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AttentionKind::RunOverBudget => "run budget",
            AttentionKind::Gate => "gate",
            AttentionKind::Conflict => "conflict",
            AttentionKind::TaskOverBudget => "budget",
            AttentionKind::Failed => "failed",
            AttentionKind::QuotaPause => "quota",
        }
    }
}

/// One thing waiting on a human.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionItem {
    pub kind: AttentionKind,
    pub task: Option<TaskId>,
    /// Unfinished tasks that cannot merge until this is dealt with.
    pub blocks: usize,
    /// When it started waiting (unix ms).
    pub since_ms: u64,
    pub detail: String,
}

impl AttentionItem {
    /// Identifies the item across updates, to tell new ones from old.
    pub fn key(&self) -> (AttentionKind, Option<TaskId>) {
        (self.kind, self.task.clone())
    }
}

/// Every item, most blocking first, then oldest first.
pub fn inbox(state: &RunState) -> Vec<AttentionItem> {
    let unfinished = state
        .tasks()
        .iter()
        .filter(|t| t.state != TaskState::Merged)
        .count();
    let mut items = Vec::new();
    if state.phase == RunPhase::Paused
        && let Some(reason) = budget::run_overrun(state)
    {
        items.push(AttentionItem {
            kind: AttentionKind::RunOverBudget,
            task: None,
            blocks: unfinished,
            since_ms: state.last_at_ms,
            detail: reason,
        });
    }
    for task in state.tasks() {
        let kind = match task.state {
            TaskState::AwaitingGate => AttentionKind::Gate,
            TaskState::Conflict => AttentionKind::Conflict,
            TaskState::OverBudget => AttentionKind::TaskOverBudget,
            TaskState::Failed => AttentionKind::Failed,
            _ => continue,
        };
        let detail = match kind {
            AttentionKind::TaskOverBudget => {
                budget::overrun(state, task.id()).unwrap_or_else(|| "over budget".to_owned())
            }
            AttentionKind::Conflict => format!("conflicts in {}", task.conflict_files.join(", ")),
            _ => task.spec.title.clone(),
        };
        items.push(AttentionItem {
            kind,
            task: Some(task.id().clone()),
            // The task itself, and everything downstream of it.
            blocks: 1 + downstream(state, task.id()),
            since_ms: task.since_ms,
            detail,
        });
    }
    items.extend(quota_pauses(state));
    items.sort_by(|a, b| b.blocks.cmp(&a.blocks).then(a.since_ms.cmp(&b.since_ms)));
    items
}

/// Agents parked by a provider's limits; they hold their task meanwhile.
fn quota_pauses(state: &RunState) -> Vec<AttentionItem> {
    let _ = state;
    Vec::new()
}

/// How many unfinished tasks depend on `task`, directly or not.
pub fn downstream(state: &RunState, task: &TaskId) -> usize {
    let mut reached: HashSet<&TaskId> = HashSet::new();
    let mut frontier = vec![task];
    while let Some(current) = frontier.pop() {
        for t in state.tasks() {
            if t.spec.depends_on.contains(current) && reached.insert(t.id()) {
                frontier.push(t.id());
            }
        }
    }
    reached
        .iter()
        .filter(|id| state.task(id).is_some_and(|t| t.state != TaskState::Merged))
        .count()
}
