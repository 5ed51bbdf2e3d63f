//! The state machine. `RunState::apply` is the single place where run and
//! task state changes, and it changes only in response to an event; live
//! runs, resumed runs and replays all fold the same events through it, so they
//! cannot disagree about what happened.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::blueprint::Blueprint;
use super::event::{Event, EventKind, RunSettings, TokenUsage};
use super::ids::{AgentId, RunId, TaskId};
use super::quota::{ParkedAgent, ProviderLimit};
use super::task::TaskState;
use crate::domain::event::{AgentFinished, AgentUnparked, RunStarted};
mod agent_events;
mod merge_events;
mod records;
mod run_events;
mod task_events;

pub use super::phase::RunPhase;
pub use records::{HeldLanding, NOTHING_CHANGED_FEEDBACK, Question, TaskRecord, TransitionError};

#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub run: RunId,
    pub requirement: String,
    pub repo: String,
    pub mainline: String,
    pub base_commit: String,
    pub settings: RunSettings,
    pub phase: RunPhase,
    /// Why the run entered its phase, when the event said (a failure's cause).
    pub phase_reason: Option<String>,
    /// Whether the requirement is final (always, unless the run waits for a
    /// human to submit it from the cockpit).
    pub spec_submitted: bool,
    pub plan_round: u32,
    /// The planner's latest proposal, accepted or not.
    pub proposal: Option<Blueprint>,
    /// The latest plan review: (round, approved, feedback).
    pub plan_review: Option<(u32, bool, String)>,
    pub blueprint: Option<Blueprint>,
    /// An open plan dispute: (round, the reviewer's last feedback).
    pub plan_dispute: Option<(u32, String)>,
    /// Planning rounds a human added beyond `max_plan_rounds`.
    pub extra_plan_rounds: u32,
    /// Questions agents asked the human, answered or not, in order.
    pub questions: Vec<Question>,
    tasks: Vec<TaskRecord>,
    index: HashMap<TaskId, usize>,
    /// The task each task agent works for, to credit its writes.
    agent_tasks: HashMap<AgentId, TaskId>,
    pub tokens: TokenUsage,
    /// USD spent by the run, where models have a price.
    pub cost_usd: f64,
    /// Extra run budgets a human granted.
    pub run_budget_raises: u32,
    pub mainline_commit: String,
    pub started_ms: u64,
    pub last_seq: u64,
    pub last_at_ms: u64,
    /// Agents waiting for a provider's limit to pass, until they resume or
    /// finish.
    pub parked: BTreeMap<AgentId, ParkedAgent>,
    /// Each provider's adaptive concurrency limit, once it has moved.
    pub provider_limits: BTreeMap<String, ProviderLimit>,
    /// Changes to the user's repository that memofab did not make, not yet
    /// seen by a human; the run is paused while there are any.
    pub repository_changes: Vec<String>,
    /// A landing waiting for the user to clean their checkout of mainline;
    /// the run is paused meanwhile.
    pub held_landing: Option<HeldLanding>,
}

impl RunState {
    /// Folds a whole event log. The first event must be `RunStarted`.
    pub fn fold<'a>(
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Option<Self>, TransitionError> {
        let mut state: Option<RunState> = None;
        for event in events {
            match state.as_mut() {
                Some(s) => s.apply(event)?,
                None => state = Some(Self::start(event)?),
            }
        }
        Ok(state)
    }

    /// Builds the initial state from the run's first event.
    pub fn start(event: &Event) -> Result<Self, TransitionError> {
        let EventKind::RunStarted(RunStarted {
            requirement,
            repo,
            mainline,
            base_commit,
            settings,
        }) = &event.kind
        else {
            return Err(TransitionError::NotStarted { seq: event.seq });
        };
        Ok(Self {
            run: event.run.clone(),
            requirement: requirement.clone(),
            repo: repo.clone(),
            mainline: mainline.clone(),
            base_commit: base_commit.clone(),
            settings: settings.clone(),
            phase: RunPhase::Planning,
            phase_reason: None,
            spec_submitted: !settings.await_spec,
            plan_round: 0,
            proposal: None,
            plan_review: None,
            blueprint: None,
            plan_dispute: None,
            extra_plan_rounds: 0,
            questions: Vec::new(),
            tasks: Vec::new(),
            index: HashMap::new(),
            agent_tasks: HashMap::new(),
            tokens: TokenUsage::default(),
            cost_usd: 0.0,
            run_budget_raises: 0,
            mainline_commit: base_commit.clone(),
            started_ms: event.at_ms,
            last_seq: event.seq,
            last_at_ms: event.at_ms,
            parked: BTreeMap::new(),
            provider_limits: BTreeMap::new(),
            repository_changes: Vec::new(),
            held_landing: None,
        })
    }

    pub fn tasks(&self) -> &[TaskRecord] {
        &self.tasks
    }

    pub fn task(&self, id: &TaskId) -> Option<&TaskRecord> {
        self.index.get(id).map(|&i| &self.tasks[i])
    }

    fn task_mut(&mut self, id: &TaskId, seq: u64) -> Result<&mut TaskRecord, TransitionError> {
        match self.index.get(id) {
            Some(&i) => Ok(&mut self.tasks[i]),
            None => Err(TransitionError::UnknownTask {
                seq,
                task: id.clone(),
            }),
        }
    }

    /// Applies one event. On error the state is unchanged. Each kind is
    /// handed to its area: `run_events`, `task_events`, `merge_events` and
    /// `agent_events`.
    pub fn apply(&mut self, event: &Event) -> Result<(), TransitionError> {
        let seq = event.seq;
        if seq != self.last_seq + 1 {
            return Err(TransitionError::OutOfOrder {
                seq,
                expected: self.last_seq + 1,
            });
        }
        let at_ms = event.at_ms;
        match &event.kind {
            EventKind::RunStarted(_) => return Err(TransitionError::StartedTwice { seq }),
            // The run and its plan.
            EventKind::RunPhaseChanged(e) => self.phase_changed(e),
            EventKind::RepositoryChanged(e) => self.repository_changed(e),
            // Its agents stopped with the process.
            EventKind::RunInterrupted(_) => self.parked.clear(),
            EventKind::RunResumed(_) => self.resumed(),
            EventKind::SpecSubmitted(e) => {
                self.requirement = e.requirement.clone();
                self.spec_submitted = true;
            }
            EventKind::BlueprintProposed(e) => self.blueprint_proposed(e),
            EventKind::PlanReviewed(e) => self.plan_reviewed(e),
            EventKind::BlueprintAccepted(e) => self.blueprint_accepted(e, seq, at_ms)?,
            EventKind::PlanDisputed(e) => self.plan_disputed(e),
            EventKind::PlanDisputeSettled(e) => self.plan_dispute_settled(e),
            EventKind::RunFinished(e) => self.mainline_commit = e.mainline_commit.clone(),
            // A task's pipeline.
            EventKind::TaskStateChanged(e) => self.task_state_changed(e, seq, at_ms)?,
            EventKind::WorktreeCreated(e) => self.worktree_created(e, seq)?,
            EventKind::NothingChanged(e) => self.nothing_changed(e, seq)?,
            EventKind::ChangeCommitted(e) => self.change_committed(e, seq)?,
            EventKind::ShepherdIntervened(e) => self.shepherd_intervened(e, seq)?,
            EventKind::ReviewVerdict(e) => self.review_verdict(e, seq)?,
            EventKind::TestsOnBase(e) => self
                .task_mut(&e.task, seq)?
                .tester
                .checked(e.round, e.failed),
            EventKind::TesterDone(e) => self.tester_done(e, seq)?,
            EventKind::TestRun(e) => self.test_run(e, seq)?,
            EventKind::TaskEdited(e) => self.task_edited(e, seq)?,
            EventKind::BudgetRaised(e) => match &e.task {
                Some(task) => self.task_mut(task, seq)?.budget_raises += 1,
                None => self.run_budget_raises += 1,
            },
            // Landing.
            EventKind::CheckoutDirty(e) => self.checkout_dirty(e, seq, at_ms)?,
            EventKind::MergeResult(e) => self.merge_result(e, seq)?,
            EventKind::MergeVerified(e) => self.merge_verified(e, seq)?,
            EventKind::MergeReverted(e) => self.merge_reverted(e, seq)?,
            EventKind::ConflictDecision(e) => {
                self.task_mut(&e.task, seq)?.resolution = Some(e.resolution);
            }
            EventKind::GateHeld(e) => self.task_mut(&e.task, seq)?.gate_reasons = e.reasons.clone(),
            EventKind::GateDecision(e) => self.gate_decision(e, seq)?,
            // Agents.
            EventKind::AgentStarted(e) => self.agent_started(e),
            EventKind::ToolCalled(e) => self.tool_called(e),
            EventKind::TokensUsed(e) => self.tokens_used(e, seq)?,
            EventKind::QuestionAsked(e) => self.question_asked(e, at_ms),
            EventKind::QuestionAnswered(e) => self.question_answered(e),
            EventKind::AgentParked(e) => self.agent_parked(e),
            EventKind::AgentUnparked(AgentUnparked { agent })
            | EventKind::AgentFinished(AgentFinished { agent, .. }) => {
                self.parked.remove(agent);
            }
            EventKind::ProviderLimitChanged(e) => self.provider_limit_changed(e),
            EventKind::BlueprintRejected(_)
            | EventKind::AgentMessage(_)
            | EventKind::McpToolsListed(_)
            | EventKind::ContextCompacted(_)
            | EventKind::ReplyBrokenOff(_)
            | EventKind::ToolResult(_)
            | EventKind::ConflictMarkers(_)
            | EventKind::OverseerReport(_)
            | EventKind::ProposalDecision(_)
            | EventKind::Escalated(_)
            | EventKind::ParkLifted(_)
            | EventKind::Warning(_) => {}
        }
        self.last_seq = seq;
        self.last_at_ms = at_ms;
        Ok(())
    }

    /// Questions still waiting for the human.
    pub fn open_questions(&self) -> impl Iterator<Item = &Question> {
        self.questions.iter().filter(|q| q.answer.is_none())
    }

    /// Whether every dependency of `task` is merged.
    pub fn dependencies_merged(&self, task: &TaskRecord) -> bool {
        task.spec
            .depends_on
            .iter()
            .all(|d| self.task(d).is_some_and(|t| t.state == TaskState::Merged))
    }

    /// Whether `task` depends on `on`, directly or through other tasks.
    pub fn depends_on(&self, task: &TaskRecord, on: &TaskId) -> bool {
        let mut seen: HashSet<&TaskId> = HashSet::new();
        let mut stack: Vec<&TaskId> = task.spec.depends_on.iter().collect();
        while let Some(id) = stack.pop() {
            if id == on {
                return true;
            }
            if seen.insert(id)
                && let Some(dep) = self.task(id)
            {
                stack.extend(dep.spec.depends_on.iter());
            }
        }
        false
    }

    /// Whether some dependency of `task` can no longer merge without a human.
    pub fn dependency_stuck<'a>(&self, task: &'a TaskRecord) -> Option<&'a TaskId> {
        task.spec.depends_on.iter().find(|d| {
            self.task(d).is_some_and(|t| {
                matches!(
                    t.state,
                    TaskState::Failed
                        | TaskState::Blocked
                        | TaskState::Cancelled
                        | TaskState::Conflict
                )
            })
        })
    }

    /// Ids of the tasks whose state passes `keep`, in blueprint order.
    pub fn task_ids(&self, keep: impl Fn(TaskState) -> bool) -> Vec<TaskId> {
        self.tasks
            .iter()
            .filter(|t| keep(t.state))
            .map(|t| t.id().clone())
            .collect()
    }

    /// 1-based place of a queued task in the merge queue. The queue is
    /// first come, first served, so this is the order tasks were queued in
    /// (blueprint order among those queued in the same millisecond).
    pub fn queue_position(&self, id: &TaskId) -> Option<usize> {
        let mut queued: Vec<(u64, usize, &TaskId)> = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TaskState::Queued)
            .map(|(i, t)| (t.since_ms, i, t.id()))
            .collect();
        queued.sort();
        queued.iter().position(|(_, _, t)| *t == id).map(|p| p + 1)
    }

    pub fn count(&self, state: TaskState) -> usize {
        self.tasks.iter().filter(|t| t.state == state).count()
    }

    /// Nothing more can happen without a human: no task is waiting or active.
    pub fn all_settled(&self) -> bool {
        self.blueprint.is_some() && self.tasks.iter().all(|t| t.state.is_settled())
    }
}

/// The file a writing tool call changes, normalised like a diff's paths.
fn written_path(tool: &str, arguments: &serde_json::Value) -> Option<String> {
    if !super::tool_names::writes_files(tool) {
        return None;
    }
    let path = arguments.get("path")?.as_str()?;
    let clean: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    (!clean.is_empty()).then(|| clean.join("/"))
}

/// The last `max` bytes of `text`, cut on a character boundary.
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests;
