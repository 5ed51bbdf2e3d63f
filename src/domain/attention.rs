//! The attention inbox: everything that waits on a human, in one list,
//! ranked so the item holding up the most work comes first.

use super::budget;
use super::ids::{AgentId, TaskId};
use super::overseer::WaitingProposals;
use super::run_state::{RunPhase, RunState};
use super::task::TaskState;

/// What kind of decision an item waits for; each has one default action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttentionKind {
    /// The plan reviewer never approved the plan: build it or plan again?
    PlanDispute,
    /// The run spent its budget and is paused.
    RunOverBudget,
    /// An agent asked a question and waits for the answer.
    Question,
    /// A change passed review and tests but the policy wants a human.
    Gate,
    /// A merge conflict outlived its rework bound.
    Conflict,
    /// A task's agent spent the task's budget and waits.
    TaskOverBudget,
    /// A task gave up; its dependents cannot start.
    Failed,
    /// An agent is parked by a provider's rate or usage limit; it resumes by
    /// itself, or sooner if the human says so.
    QuotaPause,
    /// The user's repository changed in a way memofab did not make; the run
    /// is stopped until a human has looked.
    RepositoryChanged,
    /// A merge waits to land: the user's checkout of mainline has changes.
    DirtyCheckout,
    /// The shepherd found the task's agents stuck, through a nudge and a
    /// fresh agent, and stopped it for a human to look.
    Stuck,
    /// The overseer's newest report has proposals no human decided yet;
    /// they are reviewed outside the run, with `memofab overseer review`.
    Proposals,
}

impl AttentionKind {
    /// What the item's one key does.
    pub fn action(self) -> &'static str {
        match self {
            AttentionKind::RunOverBudget | AttentionKind::TaskOverBudget => "grant more budget",
            AttentionKind::Gate => "approve the merge",
            AttentionKind::Conflict => "hand to the resolver agent",
            AttentionKind::Failed => "retry",
            AttentionKind::Stuck => "retry with a fresh agent",
            AttentionKind::QuotaPause => "ask the provider again now",
            AttentionKind::PlanDispute => "build it anyway (n: plan again)",
            AttentionKind::Question => "answer",
            AttentionKind::RepositoryChanged => "accept the change and resume",
            AttentionKind::DirtyCheckout => "land it now",
            AttentionKind::Proposals => "review in a shell, below",
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
            AttentionKind::PlanDispute => "plan",
            AttentionKind::Question => "question",
            AttentionKind::RepositoryChanged => "repository",
            AttentionKind::DirtyCheckout => "checkout",
            AttentionKind::Stuck => "stuck",
            AttentionKind::Proposals => "overseer",
        }
    }
}

/// What tells one inbox item from another: its kind, task and question.
pub type ItemKey = (AttentionKind, Option<TaskId>, Option<(AgentId, String)>);

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
    /// The agent and tool call a question item answers.
    pub question: Option<(AgentId, String)>,
    /// The provider a quota pause waits on.
    pub provider: Option<String>,
}

impl AttentionItem {
    /// Identifies the item across updates, to tell new ones from old.
    pub fn key(&self) -> ItemKey {
        (self.kind, self.task.clone(), self.question.clone())
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
    if !state.repository_changes.is_empty() {
        items.push(AttentionItem {
            kind: AttentionKind::RepositoryChanged,
            task: None,
            blocks: unfinished,
            since_ms: state.last_at_ms,
            detail: format!(
                "changed outside memofab: {}",
                state.repository_changes.join("; ")
            ),
            question: None,
            provider: None,
        });
    }
    if state.phase == RunPhase::Paused
        && let Some(reason) = budget::run_overrun(state)
    {
        items.push(AttentionItem {
            kind: AttentionKind::RunOverBudget,
            task: None,
            blocks: unfinished,
            since_ms: state.last_at_ms,
            detail: reason,
            question: None,
            provider: None,
        });
    }
    if let Some(held) = &state.held_landing {
        items.push(AttentionItem {
            kind: AttentionKind::DirtyCheckout,
            task: Some(held.task.clone()),
            // Nothing lands until it is dealt with.
            blocks: unfinished,
            since_ms: held.since_ms,
            detail: format!(
                "your checkout of {} has changes in {}; commit or stash them",
                state.mainline,
                held.files.join(", ")
            ),
            question: None,
            provider: None,
        });
    }
    for task in state.tasks() {
        let kind = match task.state {
            TaskState::AwaitingGate => AttentionKind::Gate,
            TaskState::Conflict => AttentionKind::Conflict,
            TaskState::OverBudget => AttentionKind::TaskOverBudget,
            TaskState::Failed if task.shepherd.stuck.is_some() => AttentionKind::Stuck,
            TaskState::Failed => AttentionKind::Failed,
            _ => continue,
        };
        let detail = match kind {
            AttentionKind::TaskOverBudget => {
                budget::overrun(state, task.id()).unwrap_or_else(|| "over budget".to_owned())
            }
            AttentionKind::Conflict => format!("conflicts in {}", task.conflict_files.join(", ")),
            AttentionKind::Stuck => format!(
                "{}: {}",
                task.spec.title,
                task.shepherd.stuck.as_deref().unwrap_or("stuck")
            ),
            AttentionKind::Gate if !task.gate_reasons.is_empty() => format!(
                "{}: {}",
                task.spec.title,
                super::gate_reason::joined(&task.gate_reasons)
            ),
            _ => task.spec.title.clone(),
        };
        items.push(AttentionItem {
            kind,
            task: Some(task.id().clone()),
            // The task itself, and everything downstream of it.
            blocks: 1 + downstream(state, task.id()),
            since_ms: task.since_ms,
            detail,
            question: None,
            provider: None,
        });
    }
    if let Some((round, feedback)) = &state.plan_dispute {
        let planned = state.proposal.as_ref().map_or(0, |b| b.tasks.len());
        items.push(AttentionItem {
            kind: AttentionKind::PlanDispute,
            task: None,
            blocks: planned.max(1),
            since_ms: state.last_at_ms,
            detail: format!(
                "round {round}: {}",
                feedback.lines().next().unwrap_or_default()
            ),
            question: None,
            provider: None,
        });
    }
    for q in state.open_questions() {
        items.push(AttentionItem {
            kind: AttentionKind::Question,
            task: q.task.clone(),
            blocks: q.task.as_ref().map_or(1, |t| 1 + downstream(state, t)),
            since_ms: q.asked_ms,
            detail: format!("{}: {}", q.agent, q.question),
            question: Some((q.agent.clone(), q.call_id.clone())),
            provider: None,
        });
    }
    items.extend(quota_pauses(state));
    items.sort_by(|a, b| b.blocks.cmp(&a.blocks).then(a.since_ms.cmp(&b.since_ms)));
    items
}

/// The overseer's undecided proposals: nothing waits on them, so the item
/// blocks no task and sorts last.
pub fn proposals_item(waiting: &WaitingProposals) -> AttentionItem {
    AttentionItem {
        kind: AttentionKind::Proposals,
        task: None,
        blocks: 0,
        since_ms: waiting.reported_ms,
        detail: format!("{} · {}", waiting.command(), waiting.summary()),
        question: None,
        provider: None,
    }
}

/// Agents parked by a provider's limits; they hold their task meanwhile.
/// They resume by themselves; a human who knows better can lift the park.
fn quota_pauses(state: &RunState) -> Vec<AttentionItem> {
    state
        .parked
        .iter()
        .map(|(agent, parked)| AttentionItem {
            kind: AttentionKind::QuotaPause,
            task: parked.task.clone(),
            blocks: parked.task.as_ref().map_or(0, |t| 1 + downstream(state, t)),
            // Ranked by when it resumes: the longest wait sorts last.
            since_ms: parked.until_ms,
            detail: format!(
                "{agent} {}; resumes by itself at {}",
                parked.short_reason(),
                clock(parked.until_ms)
            ),
            question: None,
            provider: Some(parked.provider.clone()),
        })
        .collect()
}

/// `HH:MM:SS` (UTC) of a unix-ms instant.
fn clock(ms: u64) -> String {
    let (_, _, _, h, m, s) = super::ids::civil_from_unix(ms / 1000);
    format!("{h:02}:{m:02}:{s:02} UTC")
}

/// How many unfinished tasks depend on `task`, directly or not.
pub fn downstream(state: &RunState, task: &TaskId) -> usize {
    state
        .tasks()
        .iter()
        .filter(|t| t.state != TaskState::Merged && state.depends_on(t, task))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{
        AgentParked, AgentUnparked, CheckoutDirty, GateHeld, RunPhaseChanged, ShepherdIntervened,
    };
    use crate::domain::made_up::{self, advance, push, task};
    use crate::domain::{AgentRole, EventKind, RunSettings, TaskSpec};

    fn spec(id: &str, deps: &[&str]) -> TaskSpec {
        task(id, deps, &[])
    }

    struct Run(RunState);

    impl Run {
        fn new(tasks: Vec<TaskSpec>) -> Self {
            Run(made_up::started(RunSettings::default(), tasks).unwrap())
        }

        fn push(&mut self, at_ms: u64, kind: EventKind) {
            push(&mut self.0, at_ms, kind).unwrap();
        }

        /// `path` starts with the state the task is in, for readability.
        fn walk(&mut self, at_ms: u64, task: &str, path: &[TaskState]) {
            advance(&mut self.0, at_ms, &task.into(), &path[1..]).unwrap();
        }
    }

    use TaskState::*;

    #[test]
    fn the_item_blocking_most_work_comes_first_then_the_oldest() {
        // gate → a → b → c ; lone is on its own; old waits longer than gate.
        let mut run = Run::new(vec![
            spec("gate", &[]),
            spec("a", &["gate"]),
            spec("b", &["a"]),
            spec("c", &["b"]),
            spec("lone", &[]),
            spec("old", &[]),
        ]);
        run.walk(5, "old", &[Pending, Ready, Running, Failed]);
        run.walk(
            9,
            "gate",
            &[Pending, Ready, Running, Reviewing, Testing, AwaitingGate],
        );
        run.walk(7, "lone", &[Pending, Ready, Running, Failed]);
        let items = inbox(&run.0);
        let order: Vec<(&str, usize)> = items
            .iter()
            .map(|i| (i.task.as_ref().unwrap().as_str(), i.blocks))
            .collect();
        assert_eq!(order, [("gate", 4), ("old", 1), ("lone", 1)]);
        assert_eq!(items[0].kind, AttentionKind::Gate);
        assert_eq!(items[0].kind.action(), "approve the merge");
    }

    #[test]
    fn a_gate_says_why_until_the_task_leaves_it() {
        use crate::domain::gate_reason::{GateReason, GovernanceClass};
        let mut run = Run::new(vec![spec("a", &[])]);
        run.walk(1, "a", &[Pending, Ready, Running, Reviewing, Testing]);
        let reasons = vec![
            GateReason::Governance {
                path: "AGENTS.md".into(),
                class: GovernanceClass::Instructions,
            },
            GateReason::TestDeleted {
                path: "tests/a_test.sh".into(),
            },
        ];
        run.push(
            2,
            EventKind::GateHeld(GateHeld {
                task: "a".into(),
                reasons: reasons.clone(),
            }),
        );
        run.walk(2, "a", &[Testing, AwaitingGate]);
        assert_eq!(run.0.task(&"a".into()).unwrap().gate_reasons, reasons);
        let items = inbox(&run.0);
        assert_eq!(
            items[0].detail,
            "a title: changes AGENTS.md, the agents' project instructions; deletes tests/a_test.sh"
        );
        run.walk(3, "a", &[AwaitingGate, Queued]);
        assert!(run.0.task(&"a".into()).unwrap().gate_reasons.is_empty());
    }

    #[test]
    fn a_held_landing_names_the_users_files_until_the_run_resumes() {
        let mut run = Run::new(vec![spec("a", &[]), spec("b", &["a"])]);
        run.walk(
            1,
            "a",
            &[Pending, Ready, Running, Reviewing, Testing, Queued, Merging],
        );
        run.push(
            2,
            EventKind::CheckoutDirty(CheckoutDirty {
                task: "a".into(),
                files: vec!["notes.md".into()],
            }),
        );
        run.push(
            3,
            EventKind::RunPhaseChanged(RunPhaseChanged {
                to: RunPhase::Paused,
                reason: None,
            }),
        );
        let items = inbox(&run.0);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].kind, AttentionKind::DirtyCheckout);
        assert_eq!(items[0].task.as_ref().map(TaskId::as_str), Some("a"));
        assert_eq!(items[0].blocks, 2);
        assert!(items[0].detail.contains("notes.md"), "{}", items[0].detail);
        run.push(
            4,
            EventKind::RunPhaseChanged(RunPhaseChanged {
                to: RunPhase::Building,
                reason: None,
            }),
        );
        assert!(inbox(&run.0).is_empty());
    }

    #[test]
    fn a_task_the_shepherd_gave_up_on_is_stuck_until_retried() {
        use crate::domain::shepherd::{Action, Pattern};
        let mut run = Run::new(vec![spec("a", &[]), spec("b", &["a"])]);
        run.walk(1, "a", &[Pending, Ready, Running]);
        run.push(
            2,
            EventKind::ShepherdIntervened(ShepherdIntervened {
                task: Some("a".into()),
                agent: None,
                pattern: Pattern::NoChange { turns: 20 },
                action: Action::Escalate,
            }),
        );
        run.walk(3, "a", &[Running, Failed]);
        let items = inbox(&run.0);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].kind, AttentionKind::Stuck);
        assert_eq!(items[0].blocks, 2);
        assert!(
            items[0]
                .detail
                .contains("20 turns without changing any file")
        );
        run.walk(4, "a", &[Failed, Pending]);
        run.walk(5, "a", &[Pending, Ready, Running, Failed]);
        assert_eq!(
            inbox(&run.0)[0].kind,
            AttentionKind::Failed,
            "a retry forgets"
        );
    }

    #[test]
    fn parked_agents_are_listed_until_they_resume() {
        let mut run = Run::new(vec![spec("a", &[]), spec("b", &["a"])]);
        run.walk(1, "a", &[Pending, Ready, Running]);
        let agent = AgentId::for_task(AgentRole::Coder, &"a".into(), 1);
        run.push(
            2,
            EventKind::AgentParked(AgentParked {
                agent: agent.clone(),
                task: Some("a".into()),
                provider: "openai".into(),
                until_ms: 62_000,
                reason: "rate limited by openai: slow down".into(),
            }),
        );
        let items = inbox(&run.0);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].kind, AttentionKind::QuotaPause);
        assert_eq!(items[0].blocks, 2);
        assert!(items[0].detail.contains("rate limited by openai"));
        assert_eq!(items[0].provider.as_deref(), Some("openai"));
        assert!(
            items[0].detail.contains("00:01:02 UTC"),
            "{}",
            items[0].detail
        );
        run.push(3, EventKind::AgentUnparked(AgentUnparked { agent }));
        assert!(inbox(&run.0).is_empty());
    }
}
