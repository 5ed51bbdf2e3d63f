//! The state machine. `RunState::apply` is the single place where run and
//! task state changes, and it changes only in response to an event; live
//! runs, resumed runs and replays all fold the same events through it, so they
//! cannot disagree about what happened.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::blueprint::Blueprint;
use super::event::{Event, EventKind, MergeOutcome, RunSettings, TokenUsage};
use super::ids::{AgentId, RunId, TaskId};
use super::quota::{ParkedAgent, ProviderLimit};
use super::task::TaskState;
use crate::domain::event::{
    AgentFinished, AgentParked, AgentStarted, AgentUnparked, BlueprintAccepted, BlueprintProposed,
    BudgetRaised, ChangeCommitted, CheckoutDirty, ConflictDecision, GateDecision, GateHeld,
    MergeResult, MergeReverted, MergeVerified, NothingChanged, PlanDisputeSettled, PlanDisputed,
    PlanReviewed, ProviderLimitChanged, QuestionAnswered, QuestionAsked, RepositoryChanged,
    ReviewVerdict, RunFinished, RunInterrupted, RunPhaseChanged, RunStarted, ShepherdIntervened,
    SpecSubmitted, TaskEdited, TaskStateChanged, TestRun, TesterDone, TestsOnBase, TokensUsed,
    ToolCalled, WorktreeCreated,
};
mod records;

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

    /// Applies one event. On error the state is unchanged.
    pub fn apply(&mut self, event: &Event) -> Result<(), TransitionError> {
        let seq = event.seq;
        if seq != self.last_seq + 1 {
            return Err(TransitionError::OutOfOrder {
                seq,
                expected: self.last_seq + 1,
            });
        }
        match &event.kind {
            EventKind::RunStarted(_) => return Err(TransitionError::StartedTwice { seq }),
            EventKind::RunPhaseChanged(RunPhaseChanged { to, reason }) => {
                self.phase = *to;
                self.phase_reason = reason.clone();
                if to.is_over() {
                    self.parked.clear();
                }
                // Resuming is how a human says they have seen the change to
                // the repository, and dealt with their checkout; if not, the
                // landing is held again.
                if *to == RunPhase::Building {
                    self.repository_changes.clear();
                }
                if *to != RunPhase::Paused {
                    self.held_landing = None;
                }
            }
            EventKind::RepositoryChanged(RepositoryChanged { changes }) => {
                self.repository_changes = changes.clone();
                if !self.phase.is_over() {
                    self.phase = RunPhase::Paused;
                    self.phase_reason = Some(format!(
                        "the repository changed outside memofab: {}",
                        changes.join("; ")
                    ));
                }
            }
            EventKind::CheckoutDirty(CheckoutDirty { task, files }) => {
                self.task_mut(task, seq)?;
                self.held_landing = Some(HeldLanding {
                    task: task.clone(),
                    files: files.clone(),
                    since_ms: event.at_ms,
                });
            }
            EventKind::NothingChanged(NothingChanged { task }) => {
                let record = self.task_mut(task, seq)?;
                if record.state != TaskState::Running {
                    return Err(TransitionError::NotRunning {
                        seq,
                        task: task.clone(),
                        state: record.state,
                    });
                }
                // A rework round in place: the same step, a new attempt.
                record.reworks += 1;
                record.attempt += 1;
                record.feedback = Some(NOTHING_CHANGED_FEEDBACK.to_owned());
            }
            // No agent outlives the process: a resumed run starts unparked.
            // The process that parked agents or waited for answers is gone;
            // a resumed agent parks, or asks, again.
            // Its agents stopped with the process.
            EventKind::RunInterrupted(RunInterrupted {}) => self.parked.clear(),
            EventKind::RunResumed(_) => {
                self.parked.clear();
                // `memofab resume` after the stop is the human's go-ahead.
                if !self.repository_changes.is_empty() {
                    self.repository_changes.clear();
                    if self.phase == RunPhase::Paused {
                        self.phase = RunPhase::Building;
                    }
                }
                self.questions.retain(|q| q.answer.is_some());
            }
            EventKind::SpecSubmitted(SpecSubmitted { requirement }) => {
                self.requirement = requirement.clone();
                self.spec_submitted = true;
            }
            EventKind::BlueprintProposed(BlueprintProposed { round, blueprint }) => {
                self.plan_round = *round;
                self.proposal = Some(blueprint.clone());
            }
            EventKind::PlanReviewed(PlanReviewed {
                round,
                approved,
                feedback,
            }) => self.plan_review = Some((*round, *approved, feedback.clone())),
            EventKind::BlueprintAccepted(BlueprintAccepted { blueprint }) => {
                if self.blueprint.is_some() {
                    return Err(TransitionError::BlueprintTwice { seq });
                }
                self.tasks = blueprint
                    .tasks
                    .iter()
                    .map(|spec| TaskRecord::new(spec.clone(), event.at_ms))
                    .collect();
                self.index = self
                    .tasks
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.spec.id.clone(), i))
                    .collect();
                self.blueprint = Some(blueprint.clone());
                // Whoever settled it, a dispute is over once a plan is built.
                self.plan_dispute = None;
            }
            EventKind::TaskStateChanged(TaskStateChanged {
                task,
                from,
                to,
                reason,
            }) => {
                let record = self.task_mut(task, seq)?;
                if record.state != *from {
                    return Err(TransitionError::StaleFrom {
                        seq,
                        task: task.clone(),
                        claimed: *from,
                        actual: record.state,
                    });
                }
                if !from.can_become(*to) {
                    return Err(TransitionError::Illegal {
                        seq,
                        task: task.clone(),
                        from: *from,
                        to: *to,
                    });
                }
                if *to == TaskState::OverBudget {
                    // Its agent waits with its conversation and comes back
                    // to this step: not a new attempt.
                    record.over_budget_from = Some(*from);
                }
                if *to == TaskState::Running {
                    match from {
                        TaskState::Reviewing
                        | TaskState::Testing
                        | TaskState::AwaitingGate
                        | TaskState::Verifying => {
                            record.reworks += 1;
                            record.attempt += 1;
                        }
                        TaskState::Merging | TaskState::Conflict => {
                            record.conflict_reworks += 1;
                            record.attempt += 1;
                        }
                        _ => {}
                    }
                }
                if matches!(to, TaskState::Ready | TaskState::Pending)
                    && matches!(
                        from,
                        TaskState::Failed | TaskState::Cancelled | TaskState::Blocked
                    )
                {
                    // A retry by a human starts the bounds afresh, and as a
                    // new attempt if the task ever ran, so that its agents
                    // and transcripts are not mixed up with the last ones.
                    record.reworks = 0;
                    record.conflict_reworks = 0;
                    if record.branch.is_some() {
                        record.attempt += 1;
                    }
                }
                if *to == TaskState::Reviewing {
                    record.resolution = None;
                }
                record.shepherd.transitioned(*to);
                record.state = *to;
                record.since_ms = event.at_ms;
                record.reason = reason.clone();
                record.queue_failure = None;
                if *to != TaskState::AwaitingGate {
                    record.gate_reasons.clear();
                }
                // A cancelled task's agents are dropped mid-park, with no
                // event of their own.
                if matches!(
                    to,
                    TaskState::Cancelled | TaskState::Failed | TaskState::Blocked
                ) {
                    self.parked.retain(|_, p| p.task.as_ref() != Some(task));
                }
            }
            EventKind::WorktreeCreated(WorktreeCreated {
                task,
                branch,
                path,
                base_commit,
            }) => {
                let record = self.task_mut(task, seq)?;
                record.branch = Some(branch.clone());
                record.worktree = Some(path.clone());
                record.head_commit = Some(base_commit.clone());
            }
            EventKind::TokensUsed(TokensUsed {
                task,
                usage,
                cost_usd,
                ..
            }) => {
                let cost = cost_usd.unwrap_or(0.0);
                if let Some(task) = task {
                    let record = self.task_mut(task, seq)?;
                    record.tokens.add(*usage);
                    record.cost_usd += cost;
                }
                self.tokens.add(*usage);
                self.cost_usd += cost;
            }
            EventKind::PlanDisputed(PlanDisputed { round, feedback }) => {
                self.plan_dispute = Some((*round, feedback.clone()));
            }
            EventKind::PlanDisputeSettled(PlanDisputeSettled { build, .. }) => {
                self.plan_dispute = None;
                if !build {
                    self.extra_plan_rounds += 1;
                }
            }
            EventKind::QuestionAsked(QuestionAsked {
                agent,
                call_id,
                task,
                question,
            }) => self.questions.push(Question {
                agent: agent.clone(),
                call_id: call_id.clone(),
                task: task.clone(),
                question: question.clone(),
                asked_ms: event.at_ms,
                answer: None,
            }),
            EventKind::QuestionAnswered(QuestionAnswered {
                agent,
                call_id,
                answer,
                ..
            }) => {
                if let Some(q) = self
                    .questions
                    .iter_mut()
                    .find(|q| q.agent == *agent && q.call_id == *call_id)
                {
                    q.answer = Some(answer.clone());
                }
            }
            EventKind::BudgetRaised(BudgetRaised { task, .. }) => match task {
                Some(task) => self.task_mut(task, seq)?.budget_raises += 1,
                None => self.run_budget_raises += 1,
            },
            EventKind::ChangeCommitted(ChangeCommitted {
                task,
                commit,
                files,
                ..
            }) => {
                let record = self.task_mut(task, seq)?;
                record.head_commit = Some(commit.clone());
                record.observed_writes.extend(files.iter().cloned());
            }
            EventKind::AgentStarted(AgentStarted {
                agent,
                task: Some(task),
                ..
            }) => {
                self.agent_tasks.insert(agent.clone(), task.clone());
                // Its first message carried the shepherd's note.
                if let Some(&i) = self.index.get(task) {
                    self.tasks[i].shepherd.note = None;
                }
            }
            EventKind::ShepherdIntervened(ShepherdIntervened {
                task: Some(task),
                pattern,
                action,
                ..
            }) => {
                let record = self.task_mut(task, seq)?;
                record.shepherd.intervened(pattern, *action);
                // The fresh agent is a new attempt, so its transcript is its own.
                if *action == super::shepherd::Action::FreshAgent {
                    record.attempt += 1;
                }
            }
            EventKind::ToolCalled(ToolCalled {
                agent,
                tool,
                arguments,
                ..
            }) => {
                if let Some(path) = written_path(tool, arguments)
                    && let Some(&i) = self
                        .agent_tasks
                        .get(agent)
                        .and_then(|task| self.index.get(task))
                {
                    self.tasks[i].observed_writes.insert(path);
                }
            }
            EventKind::ReviewVerdict(ReviewVerdict {
                task,
                approved,
                feedback,
            }) => {
                let record = self.task_mut(task, seq)?;
                record.shepherd.reviewed(*approved, feedback);
                if !approved {
                    record.feedback =
                        Some(format!("The code reviewer asked for changes:\n{feedback}"));
                }
            }
            EventKind::TestsOnBase(TestsOnBase {
                task,
                round,
                failed,
                ..
            }) => {
                self.task_mut(task, seq)?.tester.checked(*round, *failed);
            }
            EventKind::TesterDone(TesterDone { task, tests }) => {
                let record = self.task_mut(task, seq)?;
                if let Some(tests) = tests {
                    record.head_commit = Some(tests.commit.clone());
                    record.observed_writes.extend(tests.files.iter().cloned());
                }
                record.tester = super::testers::TesterStep::Done {
                    tests: tests.clone(),
                };
            }
            EventKind::TestRun(TestRun {
                task,
                command,
                passed,
                output,
                ..
            }) => {
                if !passed {
                    self.task_mut(task, seq)?.feedback = Some(format!(
                        "The test command `{command}` failed:\n{}",
                        tail(output, 4000)
                    ));
                }
            }
            EventKind::MergeResult(MergeResult { task, result }) => {
                let mainline = &mut self.mainline_commit;
                let record = match self.index.get(task) {
                    Some(&i) => &mut self.tasks[i],
                    None => {
                        return Err(TransitionError::UnknownTask {
                            seq,
                            task: task.clone(),
                        });
                    }
                };
                match result {
                    MergeOutcome::FastForward { commit } | MergeOutcome::MergeCommit { commit } => {
                        if self.held_landing.as_ref().is_some_and(|h| h.task == *task) {
                            self.held_landing = None;
                        }
                        record.merged_commit = Some(commit.clone());
                        record.conflict_files.clear();
                        *mainline = commit.clone();
                    }
                    MergeOutcome::Conflict { files } => {
                        record.conflict_files = files.clone();
                        record.feedback = Some(format!(
                            "Merging onto mainline conflicted in: {}. Mainline has moved; \
                             resolve the conflict markers in those files keeping both intents.",
                            files.join(", ")
                        ));
                    }
                }
            }
            EventKind::MergeVerified(MergeVerified {
                task,
                check,
                command,
                passed,
                output,
                ..
            }) => {
                if !passed {
                    let record = self.task_mut(task, seq)?;
                    record.queue_failure = Some(*check);
                    record.feedback = Some(format!(
                        "Your change passed its own tests, but the {} failed: `{command}` \
                         on your change merged with the current mainline:\n{}",
                        check.label(),
                        tail(output, 4000)
                    ));
                }
            }
            EventKind::MergeReverted(MergeReverted {
                task,
                revert_commit,
                reapplied,
                output,
                ..
            }) => {
                let record = self.task_mut(task, seq)?;
                record.merged_commit = None;
                record.head_commit = Some(reapplied.clone());
                record.feedback = Some(format!(
                    "Your change was merged, but the post-merge check failed on mainline, \
                     so the merge was reverted. Your change is back on your branch; fix it:\n{}",
                    tail(output, 4000)
                ));
                self.mainline_commit = revert_commit.clone();
            }
            EventKind::ConflictDecision(ConflictDecision {
                task, resolution, ..
            }) => self.task_mut(task, seq)?.resolution = Some(*resolution),
            EventKind::TaskEdited(TaskEdited {
                task,
                description,
                acceptance,
            }) => {
                let record = self.task_mut(task, seq)?;
                record.spec.description = description.clone();
                record.spec.acceptance = acceptance.clone();
            }
            EventKind::RunFinished(RunFinished {
                mainline_commit, ..
            }) => {
                self.mainline_commit = mainline_commit.clone();
            }
            EventKind::AgentParked(AgentParked {
                agent,
                task,
                provider,
                until_ms,
                reason,
            }) => {
                self.parked.insert(
                    agent.clone(),
                    ParkedAgent {
                        task: task.clone(),
                        provider: provider.clone(),
                        until_ms: *until_ms,
                        reason: reason.clone(),
                    },
                );
            }
            EventKind::AgentUnparked(AgentUnparked { agent })
            | EventKind::AgentFinished(AgentFinished { agent, .. }) => {
                self.parked.remove(agent);
            }
            EventKind::ProviderLimitChanged(ProviderLimitChanged {
                provider,
                limit,
                ceiling,
            }) => {
                self.provider_limits.insert(
                    provider.clone(),
                    ProviderLimit {
                        limit: *limit,
                        ceiling: *ceiling,
                    },
                );
            }
            EventKind::BlueprintRejected(_)
            | EventKind::AgentStarted(_)
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
            | EventKind::ShepherdIntervened(ShepherdIntervened { task: None, .. })
            | EventKind::Warning(_) => {}
            EventKind::GateHeld(GateHeld { task, reasons }) => {
                self.task_mut(task, seq)?.gate_reasons = reasons.clone();
            }
            EventKind::GateDecision(GateDecision {
                task,
                approved,
                feedback,
                by,
            }) => {
                if !approved {
                    self.task_mut(task, seq)?.feedback = Some(format!(
                        "{by} rejected the change at the merge gate:\n{feedback}"
                    ));
                }
            }
        }
        self.last_seq = seq;
        self.last_at_ms = event.at_ms;
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
    if !matches!(tool, "write_file" | "edit_file") {
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
