//! The state machine. `RunState::apply` is the single place where run and
//! task state changes, and it changes only in response to an event; live
//! runs, resumed runs and replays all fold the same events through it, so they
//! cannot disagree about what happened.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::blueprint::{Blueprint, TaskSpec};
use super::event::{
    ConflictResolution, Event, EventKind, MergeCheck, MergeOutcome, RunSettings, TokenUsage,
};
use super::ids::{AgentId, RunId, TaskId};
use super::quota::{ParkedAgent, ProviderLimit};
use super::task::TaskState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    Planning,
    Building,
    Paused,
    Finished,
    Failed,
    Cancelled,
}

impl RunPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Planning => "planning",
            RunPhase::Building => "building",
            RunPhase::Paused => "paused",
            RunPhase::Finished => "finished",
            RunPhase::Failed => "failed",
            RunPhase::Cancelled => "cancelled",
        }
    }

    pub fn is_over(self) -> bool {
        matches!(
            self,
            RunPhase::Finished | RunPhase::Failed | RunPhase::Cancelled
        )
    }
}

impl fmt::Display for RunPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event that the state machine refuses: the events are inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("event #{seq} arrived before the run started")]
    NotStarted { seq: u64 },
    #[error("the run was started twice (event #{seq})")]
    StartedTwice { seq: u64 },
    #[error("a blueprint was accepted twice (event #{seq})")]
    BlueprintTwice { seq: u64 },
    #[error("event #{seq} names unknown task {task}")]
    UnknownTask { seq: u64, task: TaskId },
    #[error("event #{seq} moves task {task} from {claimed}, but it is {actual}")]
    StaleFrom {
        seq: u64,
        task: TaskId,
        claimed: TaskState,
        actual: TaskState,
    },
    #[error("event #{seq}: task {task} cannot go from {from} to {to}")]
    Illegal {
        seq: u64,
        task: TaskId,
        from: TaskState,
        to: TaskState,
    },
    #[error("event #{seq}: task {task} is {state}; only a running task can finish unchanged")]
    NotRunning {
        seq: u64,
        task: TaskId,
        state: TaskState,
    },
    #[error("event #{seq} is out of order (expected #{expected})")]
    OutOfOrder { seq: u64, expected: u64 },
}

/// Everything the orchestrator and the UI need to know about one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub spec: TaskSpec,
    pub state: TaskState,
    /// Coding attempt number, from 1: a new attempt starts on each rework.
    /// Resuming an interrupted attempt does not start a new one.
    pub attempt: u32,
    /// Rework rounds caused by review or test rejections.
    pub reworks: u32,
    /// Rework rounds caused by merge conflicts.
    pub conflict_reworks: u32,
    pub branch: Option<String>,
    pub worktree: Option<String>,
    /// Latest commit on the task branch made by the factory.
    pub head_commit: Option<String>,
    /// Feedback for the next attempt (review, test failure or conflict).
    pub feedback: Option<String>,
    pub merged_commit: Option<String>,
    pub conflict_files: Vec<String>,
    /// How a human chose to resolve an escalated conflict; consumed by the
    /// next coding step.
    pub resolution: Option<ConflictResolution>,
    /// A check of the merge queue failed and the task has not been reopened
    /// yet: a resumed run reopens it rather than merge it again.
    pub queue_failure: Option<MergeCheck>,
    pub tokens: TokenUsage,
    /// Paths the task was seen changing: written by its agents' tools or
    /// in its committed diff. Joined with `spec.paths`, the write-set the
    /// scheduler keeps apart from other tasks'.
    pub observed_writes: BTreeSet<String>,
    /// USD the task's agents spent, where their models have a price.
    pub cost_usd: f64,
    /// Extra budgets a human granted after the task ran out.
    pub budget_raises: u32,
    /// The state the task left when it ran out of budget, to go back to.
    pub over_budget_from: Option<TaskState>,
    /// `at_ms` of the event that last changed the state.
    pub since_ms: u64,
    /// Why the task entered its state, when the event said (a failure's cause).
    pub reason: Option<String>,
    /// Where the task is on the shepherd's ladder, and why it is stuck.
    pub shepherd: super::shepherd::TaskShepherd,
    /// The tester's step, before the coder's first attempt.
    pub tester: super::testers::TesterStep,
}

impl TaskRecord {
    fn new(spec: TaskSpec, at_ms: u64) -> Self {
        Self {
            spec,
            state: TaskState::Pending,
            attempt: 1,
            reworks: 0,
            conflict_reworks: 0,
            branch: None,
            worktree: None,
            head_commit: None,
            feedback: None,
            merged_commit: None,
            conflict_files: Vec::new(),
            resolution: None,
            queue_failure: None,
            tokens: TokenUsage::default(),
            observed_writes: BTreeSet::new(),
            cost_usd: 0.0,
            budget_raises: 0,
            over_budget_from: None,
            since_ms: at_ms,
            reason: None,
            shepherd: Default::default(),
            tester: super::testers::TesterStep::default(),
        }
    }

    pub fn id(&self) -> &TaskId {
        &self.spec.id
    }

    /// What the task is expected to change, as far as is known now.
    pub fn write_set(&self) -> super::write_set::WriteSet<'_> {
        super::write_set::WriteSet {
            declared: &self.spec.paths,
            observed: &self.observed_writes,
        }
    }
}

/// A landing held back because the user's checkout of mainline has changes.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldLanding {
    pub task: TaskId,
    /// The user's files in the way.
    pub files: Vec<String>,
    pub since_ms: u64,
}

/// What the coder is told when it finished without changing anything.
pub const NOTHING_CHANGED_FEEDBACK: &str = "You finished without changing any file; the task \
    is not done. Make the changes the task asks for in the worktree (write_file or edit_file), \
    then call finish.";

/// A question an agent asked the human through its `ask_human` tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub agent: AgentId,
    pub call_id: String,
    pub task: Option<TaskId>,
    pub question: String,
    pub asked_ms: u64,
    pub answer: Option<String>,
}

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
        let EventKind::RunStarted {
            requirement,
            repo,
            mainline,
            base_commit,
            settings,
        } = &event.kind
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
            EventKind::RunStarted { .. } => return Err(TransitionError::StartedTwice { seq }),
            EventKind::RunPhaseChanged { to, reason } => {
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
            EventKind::RepositoryChanged { changes } => {
                self.repository_changes = changes.clone();
                if !self.phase.is_over() {
                    self.phase = RunPhase::Paused;
                    self.phase_reason = Some(format!(
                        "the repository changed outside memofab: {}",
                        changes.join("; ")
                    ));
                }
            }
            EventKind::CheckoutDirty { task, files } => {
                self.task_mut(task, seq)?;
                self.held_landing = Some(HeldLanding {
                    task: task.clone(),
                    files: files.clone(),
                    since_ms: event.at_ms,
                });
            }
            EventKind::NothingChanged { task } => {
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
            EventKind::RunInterrupted {} => self.parked.clear(),
            EventKind::RunResumed { .. } => {
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
            EventKind::SpecSubmitted { requirement } => {
                self.requirement = requirement.clone();
                self.spec_submitted = true;
            }
            EventKind::BlueprintProposed { round, blueprint } => {
                self.plan_round = *round;
                self.proposal = Some(blueprint.clone());
            }
            EventKind::PlanReviewed {
                round,
                approved,
                feedback,
            } => self.plan_review = Some((*round, *approved, feedback.clone())),
            EventKind::BlueprintAccepted { blueprint } => {
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
            EventKind::TaskStateChanged {
                task,
                from,
                to,
                reason,
            } => {
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
                // A cancelled task's agents are dropped mid-park, with no
                // event of their own.
                if matches!(
                    to,
                    TaskState::Cancelled | TaskState::Failed | TaskState::Blocked
                ) {
                    self.parked.retain(|_, p| p.task.as_ref() != Some(task));
                }
            }
            EventKind::WorktreeCreated {
                task,
                branch,
                path,
                base_commit,
            } => {
                let record = self.task_mut(task, seq)?;
                record.branch = Some(branch.clone());
                record.worktree = Some(path.clone());
                record.head_commit = Some(base_commit.clone());
            }
            EventKind::TokensUsed {
                task,
                usage,
                cost_usd,
                ..
            } => {
                let cost = cost_usd.unwrap_or(0.0);
                if let Some(task) = task {
                    let record = self.task_mut(task, seq)?;
                    record.tokens.add(*usage);
                    record.cost_usd += cost;
                }
                self.tokens.add(*usage);
                self.cost_usd += cost;
            }
            EventKind::PlanDisputed { round, feedback } => {
                self.plan_dispute = Some((*round, feedback.clone()));
            }
            EventKind::PlanDisputeSettled { build, .. } => {
                self.plan_dispute = None;
                if !build {
                    self.extra_plan_rounds += 1;
                }
            }
            EventKind::QuestionAsked {
                agent,
                call_id,
                task,
                question,
            } => self.questions.push(Question {
                agent: agent.clone(),
                call_id: call_id.clone(),
                task: task.clone(),
                question: question.clone(),
                asked_ms: event.at_ms,
                answer: None,
            }),
            EventKind::QuestionAnswered {
                agent,
                call_id,
                answer,
                ..
            } => {
                if let Some(q) = self
                    .questions
                    .iter_mut()
                    .find(|q| q.agent == *agent && q.call_id == *call_id)
                {
                    q.answer = Some(answer.clone());
                }
            }
            EventKind::BudgetRaised { task, .. } => match task {
                Some(task) => self.task_mut(task, seq)?.budget_raises += 1,
                None => self.run_budget_raises += 1,
            },
            EventKind::ChangeCommitted {
                task,
                commit,
                files,
                ..
            } => {
                let record = self.task_mut(task, seq)?;
                record.head_commit = Some(commit.clone());
                record.observed_writes.extend(files.iter().cloned());
            }
            EventKind::AgentStarted {
                agent,
                task: Some(task),
                ..
            } => {
                self.agent_tasks.insert(agent.clone(), task.clone());
                // Its first message carried the shepherd's note.
                if let Some(&i) = self.index.get(task) {
                    self.tasks[i].shepherd.note = None;
                }
            }
            EventKind::ShepherdIntervened {
                task: Some(task),
                pattern,
                action,
                ..
            } => {
                let record = self.task_mut(task, seq)?;
                record.shepherd.intervened(pattern, *action);
                // The fresh agent is a new attempt, so its transcript is its own.
                if *action == super::shepherd::Action::FreshAgent {
                    record.attempt += 1;
                }
            }
            EventKind::ToolCalled {
                agent,
                tool,
                arguments,
                ..
            } => {
                if let Some(path) = written_path(tool, arguments)
                    && let Some(&i) = self
                        .agent_tasks
                        .get(agent)
                        .and_then(|task| self.index.get(task))
                {
                    self.tasks[i].observed_writes.insert(path);
                }
            }
            EventKind::ReviewVerdict {
                task,
                approved,
                feedback,
            } => {
                let record = self.task_mut(task, seq)?;
                record.shepherd.reviewed(*approved, feedback);
                if !approved {
                    record.feedback =
                        Some(format!("The code reviewer asked for changes:\n{feedback}"));
                }
            }
            EventKind::TestsOnBase {
                task,
                round,
                failed,
                ..
            } => {
                self.task_mut(task, seq)?.tester.checked(*round, *failed);
            }
            EventKind::TesterDone { task, tests } => {
                let record = self.task_mut(task, seq)?;
                if let Some(tests) = tests {
                    record.head_commit = Some(tests.commit.clone());
                    record.observed_writes.extend(tests.files.iter().cloned());
                }
                record.tester = super::testers::TesterStep::Done {
                    tests: tests.clone(),
                };
            }
            EventKind::TestRun {
                task,
                command,
                passed,
                output,
                ..
            } => {
                if !passed {
                    self.task_mut(task, seq)?.feedback = Some(format!(
                        "The test command `{command}` failed:\n{}",
                        tail(output, 4000)
                    ));
                }
            }
            EventKind::MergeResult { task, result } => {
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
            EventKind::MergeVerified {
                task,
                check,
                command,
                passed,
                output,
                ..
            } => {
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
            EventKind::MergeReverted {
                task,
                revert_commit,
                reapplied,
                output,
                ..
            } => {
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
            EventKind::ConflictDecision {
                task, resolution, ..
            } => self.task_mut(task, seq)?.resolution = Some(*resolution),
            EventKind::TaskEdited {
                task,
                description,
                acceptance,
            } => {
                let record = self.task_mut(task, seq)?;
                record.spec.description = description.clone();
                record.spec.acceptance = acceptance.clone();
            }
            EventKind::RunFinished {
                mainline_commit, ..
            } => {
                self.mainline_commit = mainline_commit.clone();
            }
            EventKind::AgentParked {
                agent,
                task,
                provider,
                until_ms,
                reason,
            } => {
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
            EventKind::AgentUnparked { agent } | EventKind::AgentFinished { agent, .. } => {
                self.parked.remove(agent);
            }
            EventKind::ProviderLimitChanged {
                provider,
                limit,
                ceiling,
            } => {
                self.provider_limits.insert(
                    provider.clone(),
                    ProviderLimit {
                        limit: *limit,
                        ceiling: *ceiling,
                    },
                );
            }
            EventKind::BlueprintRejected { .. }
            | EventKind::AgentStarted { .. }
            | EventKind::AgentMessage { .. }
            | EventKind::ContextCompacted { .. }
            | EventKind::ToolResult { .. }
            | EventKind::ConflictMarkers { .. }
            | EventKind::OverseerReport { .. }
            | EventKind::ProposalDecision { .. }
            | EventKind::Escalated { .. }
            | EventKind::ParkLifted { .. }
            | EventKind::ShepherdIntervened { task: None, .. }
            | EventKind::Warning { .. } => {}
            EventKind::GateDecision {
                task,
                approved,
                feedback,
                by,
            } => {
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
mod tests {
    use super::*;
    use crate::domain::blueprint::TaskSpec;

    fn settings() -> RunSettings {
        RunSettings {
            concurrency: 2,
            ..RunSettings::default()
        }
    }

    struct Log {
        events: Vec<Event>,
    }

    impl Log {
        fn new() -> Self {
            let mut log = Log { events: vec![] };
            log.push(EventKind::RunStarted {
                requirement: "req".into(),
                repo: "/repo".into(),
                mainline: "main".into(),
                base_commit: "base".into(),
                settings: settings(),
            });
            log
        }

        fn push(&mut self, kind: EventKind) -> &Event {
            let seq = self.events.len() as u64 + 1;
            self.events.push(Event {
                run: RunId::from("r"),
                seq,
                at_ms: seq * 10,
                kind,
            });
            self.events.last().unwrap()
        }

        fn move_task(&mut self, task: &str, from: TaskState, to: TaskState) {
            self.push(EventKind::TaskStateChanged {
                task: task.into(),
                from,
                to,
                reason: None,
            });
        }
    }

    fn spec(id: &str, deps: &[&str]) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            title: id.into(),
            description: String::new(),
            acceptance: vec![],
            paths: vec![],
            depends_on: deps.iter().map(|d| TaskId::from(*d)).collect(),
        }
    }

    fn accepted() -> Log {
        let mut log = Log::new();
        log.push(EventKind::BlueprintAccepted {
            blueprint: Blueprint {
                title: "b".into(),
                tasks: vec![spec("a", &[]), spec("b", &["a"])],
            },
        });
        log
    }

    #[test]
    fn fold_tracks_parked_agents_and_provider_limits() {
        use crate::domain::AgentRole;
        let mut log = accepted();
        let coder = AgentId::for_task(AgentRole::Coder, &"a".into(), 1);
        let planner = AgentId::for_run(AgentRole::Planner, 1);
        for (agent, task) in [(&coder, Some("a")), (&planner, None)] {
            log.push(EventKind::AgentParked {
                agent: agent.clone(),
                task: task.map(TaskId::from),
                provider: "openai".into(),
                until_ms: 5_000,
                reason: "rate limited by openai: slow down".into(),
            });
        }
        log.push(EventKind::ProviderLimitChanged {
            provider: "openai".into(),
            limit: 2,
            ceiling: 4,
        });
        let state = RunState::fold(&log.events).unwrap().unwrap();
        assert_eq!(state.parked.len(), 2);
        let parked = &state.parked[&coder];
        assert_eq!(parked.task, Some(TaskId::from("a")));
        assert_eq!(parked.short_reason(), "rate limited by openai");
        assert_eq!(parked.resumes_in_secs(3_500), 2);
        assert_eq!(
            state.provider_limits["openai"],
            ProviderLimit {
                limit: 2,
                ceiling: 4
            }
        );

        // Unparked, or finished while parked: gone either way.
        log.push(EventKind::AgentUnparked {
            agent: coder.clone(),
        });
        log.push(EventKind::AgentFinished {
            agent: planner.clone(),
            ok: false,
            summary: "gave up".into(),
        });
        let state = RunState::fold(&log.events).unwrap().unwrap();
        assert!(state.parked.is_empty());

        // A task cancelled while its coder is parked, and a restart.
        log.push(EventKind::AgentParked {
            agent: coder.clone(),
            task: Some("a".into()),
            provider: "openai".into(),
            until_ms: 9_000,
            reason: "rate limited by openai".into(),
        });
        log.push(EventKind::AgentParked {
            agent: planner.clone(),
            task: None,
            provider: "openai".into(),
            until_ms: 9_000,
            reason: "rate limited by openai".into(),
        });
        log.move_task("a", TaskState::Pending, TaskState::Cancelled);
        let state = RunState::fold(&log.events).unwrap().unwrap();
        assert_eq!(state.parked.keys().collect::<Vec<_>>(), [&planner]);
        log.push(EventKind::RunResumed {
            interrupted: vec![],
        });
        let state = RunState::fold(&log.events).unwrap().unwrap();
        assert!(state.parked.is_empty());
    }

    #[test]
    fn fold_tracks_questions_disputes_and_observed_writes() {
        use crate::domain::AgentRole;
        let mut log = accepted();
        let coder = AgentId::for_task(AgentRole::Coder, &"a".into(), 1);
        log.push(EventKind::AgentStarted {
            agent: coder.clone(),
            role: AgentRole::Coder,
            task: Some("a".into()),
            model: "m".into(),
        });
        for (call, tool, path) in [
            ("c1", "write_file", "./src//x.rs"),
            ("c2", "read_file", "y"),
        ] {
            log.push(EventKind::ToolCalled {
                agent: coder.clone(),
                call_id: call.into(),
                tool: tool.into(),
                arguments: serde_json::json!({ "path": path }),
            });
        }
        for call in ["q1", "q2"] {
            log.push(EventKind::QuestionAsked {
                agent: coder.clone(),
                call_id: call.into(),
                task: Some("a".into()),
                question: "which?".into(),
            });
        }
        log.push(EventKind::QuestionAnswered {
            agent: coder.clone(),
            call_id: "q1".into(),
            answer: "this".into(),
            by: "me".into(),
        });
        let state = RunState::fold(&log.events).unwrap().unwrap();
        let a = state.task(&"a".into()).unwrap();
        assert_eq!(a.observed_writes.iter().collect::<Vec<_>>(), ["src/x.rs"]);
        let open: Vec<&str> = state.open_questions().map(|q| q.call_id.as_str()).collect();
        assert_eq!(open, ["q2"]);
        // Nobody waits for an answer after a restart.
        log.push(EventKind::RunResumed {
            interrupted: vec![],
        });
        let state = RunState::fold(&log.events).unwrap().unwrap();
        assert_eq!(state.open_questions().count(), 0);
        assert_eq!(
            state.questions.len(),
            1,
            "answered questions stay on record"
        );
    }

    #[test]
    fn a_plan_dispute_is_open_until_settled_and_replanning_adds_a_round() {
        let mut log = Log::new();
        log.push(EventKind::PlanDisputed {
            round: 3,
            feedback: "no".into(),
        });
        let state = RunState::fold(&log.events).unwrap().unwrap();
        assert_eq!(state.plan_dispute, Some((3, "no".into())));
        log.push(EventKind::PlanDisputeSettled {
            build: false,
            by: "me".into(),
        });
        let state = RunState::fold(&log.events).unwrap().unwrap();
        assert_eq!(state.plan_dispute, None);
        assert_eq!(state.extra_plan_rounds, 1);
    }

    #[test]
    fn fold_tracks_states_reworks_and_mainline() {
        use TaskState::*;
        let mut log = accepted();
        log.move_task("a", Pending, Ready);
        log.move_task("a", Ready, Running);
        log.move_task("a", Running, Reviewing);
        log.push(EventKind::ReviewVerdict {
            task: "a".into(),
            approved: false,
            feedback: "add tests".into(),
        });
        log.move_task("a", Reviewing, Running);
        log.move_task("a", Running, Reviewing);
        log.move_task("a", Reviewing, Testing);
        log.move_task("a", Testing, Merging);
        log.push(EventKind::MergeResult {
            task: "a".into(),
            result: MergeOutcome::FastForward {
                commit: "c1".into(),
            },
        });
        log.move_task("a", Merging, Merged);

        let state = RunState::fold(&log.events).unwrap().unwrap();
        let a = state.task(&"a".into()).unwrap();
        assert_eq!(a.state, Merged);
        assert_eq!(a.reworks, 1);
        assert_eq!(a.attempt, 2);
        assert!(a.feedback.as_deref().unwrap().contains("add tests"));
        assert_eq!(state.mainline_commit, "c1");
        let b = state.task(&"b".into()).unwrap();
        assert!(state.dependencies_merged(b));
    }

    #[test]
    fn illegal_and_stale_transitions_are_refused_without_change() {
        use TaskState::*;
        let mut log = accepted();
        let mut state = RunState::fold(&log.events).unwrap().unwrap();
        let before = state.clone();
        let skip = log
            .push(EventKind::TaskStateChanged {
                task: "a".into(),
                from: Pending,
                to: Merged,
                reason: None,
            })
            .clone();
        assert!(matches!(
            state.apply(&skip),
            Err(TransitionError::Illegal { .. })
        ));
        assert_eq!(state, before);

        let stale = Event {
            kind: EventKind::TaskStateChanged {
                task: "a".into(),
                from: Running,
                to: Reviewing,
                reason: None,
            },
            ..skip.clone()
        };
        assert!(matches!(
            state.apply(&stale),
            Err(TransitionError::StaleFrom { .. })
        ));
        let unknown = Event {
            kind: EventKind::TaskStateChanged {
                task: "zz".into(),
                from: Pending,
                to: Ready,
                reason: None,
            },
            ..skip
        };
        assert!(matches!(
            state.apply(&unknown),
            Err(TransitionError::UnknownTask { .. })
        ));
        assert_eq!(state, before);
    }

    #[test]
    fn finishing_unchanged_is_a_rework_round_with_feedback_only_while_running() {
        use TaskState::*;
        let mut log = accepted();
        log.move_task("a", Pending, Ready);
        let early = log
            .push(EventKind::NothingChanged { task: "a".into() })
            .clone();
        log.events.pop();
        let mut state = RunState::fold(&log.events).unwrap().unwrap();
        let before = state.clone();
        assert!(matches!(
            state.apply(&early),
            Err(TransitionError::NotRunning { .. })
        ));
        assert_eq!(state, before);

        log.move_task("a", Ready, Running);
        log.push(EventKind::NothingChanged { task: "a".into() });
        let state = RunState::fold(&log.events).unwrap().unwrap();
        let a = state.task(&"a".into()).unwrap();
        assert_eq!(a.state, Running);
        assert_eq!((a.attempt, a.reworks), (2, 1));
        assert_eq!(a.feedback.as_deref(), Some(NOTHING_CHANGED_FEEDBACK));
    }

    #[test]
    fn interrupted_attempt_resumes_without_counting_a_rework() {
        use TaskState::*;
        let mut log = accepted();
        log.move_task("a", Pending, Ready);
        log.move_task("a", Ready, Running);
        log.move_task("a", Running, Ready);
        log.move_task("a", Ready, Running);
        let state = RunState::fold(&log.events).unwrap().unwrap();
        let a = state.task(&"a".into()).unwrap();
        assert_eq!((a.attempt, a.reworks), (1, 0));
    }

    #[test]
    fn a_retry_is_a_new_attempt_only_for_a_task_that_ran() {
        use TaskState::*;
        let mut log = accepted();
        log.move_task("a", Pending, Ready);
        log.move_task("a", Ready, Running);
        log.push(EventKind::WorktreeCreated {
            task: "a".into(),
            branch: "memofab/r/a".into(),
            path: "/wt/a".into(),
            base_commit: "c0".into(),
        });
        log.move_task("a", Running, Reviewing);
        log.move_task("a", Reviewing, Running);
        log.move_task("a", Running, Failed);
        log.move_task("b", Pending, Blocked);
        log.move_task("a", Failed, Pending);
        log.move_task("b", Blocked, Pending);
        let state = RunState::fold(&log.events).unwrap().unwrap();
        let a = state.task(&"a".into()).unwrap();
        assert_eq!((a.attempt, a.reworks), (3, 0), "two attempts ran before");
        assert_eq!(state.task(&"b".into()).unwrap().attempt, 1);
    }

    #[test]
    fn conflict_rework_counts_separately() {
        use TaskState::*;
        let mut log = accepted();
        for (f, t) in [
            (Pending, Ready),
            (Ready, Running),
            (Running, Reviewing),
            (Reviewing, Testing),
            (Testing, Merging),
        ] {
            log.move_task("a", f, t);
        }
        log.push(EventKind::MergeResult {
            task: "a".into(),
            result: MergeOutcome::Conflict {
                files: vec!["x.rs".into()],
            },
        });
        log.move_task("a", Merging, Running);
        let state = RunState::fold(&log.events).unwrap().unwrap();
        let a = state.task(&"a".into()).unwrap();
        assert_eq!((a.attempt, a.reworks, a.conflict_reworks), (2, 0, 1));
        assert_eq!(a.conflict_files, vec!["x.rs".to_string()]);
    }

    /// Moves `a` through the queue up to verifying.
    fn queued_and_verifying() -> Log {
        use TaskState::*;
        let mut log = accepted();
        for (f, t) in [
            (Pending, Ready),
            (Ready, Running),
            (Running, Reviewing),
            (Reviewing, Testing),
            (Testing, Queued),
            (Queued, Merging),
            (Merging, Verifying),
        ] {
            log.move_task("a", f, t);
        }
        log
    }

    fn verified(passed: bool, check: MergeCheck) -> EventKind {
        EventKind::MergeVerified {
            task: "a".into(),
            check,
            candidate: "m1".into(),
            onto: "c0".into(),
            command: "sh tests/run.sh".into(),
            exit_code: Some(if passed { 0 } else { 1 }),
            passed,
            duration_ms: 5,
            output: "left and right clash".into(),
        }
    }

    #[test]
    fn a_failed_verification_reopens_the_task_with_the_failure() {
        use TaskState::*;
        let mut log = queued_and_verifying();
        log.push(verified(false, MergeCheck::Verify));
        let failed = RunState::fold(&log.events).unwrap().unwrap();
        assert_eq!(
            failed.task(&"a".into()).unwrap().queue_failure,
            Some(MergeCheck::Verify),
            "a resumed run knows to reopen it"
        );
        log.move_task("a", Verifying, Running);
        let state = RunState::fold(&log.events).unwrap().unwrap();
        assert_eq!(state.task(&"a".into()).unwrap().queue_failure, None);
        let a = state.task(&"a".into()).unwrap();
        assert_eq!((a.state, a.attempt, a.reworks), (Running, 2, 1));
        let feedback = a.feedback.as_deref().unwrap();
        assert!(feedback.contains("merge verification failed"), "{feedback}");
        assert!(feedback.contains("clash"), "{feedback}");
        assert_eq!(a.merged_commit, None);
        assert_eq!(state.mainline_commit, "base", "mainline never moved");
    }

    #[test]
    fn a_verified_merge_lands_and_a_revert_takes_it_back() {
        use TaskState::*;
        let mut log = queued_and_verifying();
        log.push(verified(true, MergeCheck::Verify));
        log.push(EventKind::MergeResult {
            task: "a".into(),
            result: MergeOutcome::MergeCommit {
                commit: "m1".into(),
            },
        });
        let landed = RunState::fold(&log.events).unwrap().unwrap();
        assert_eq!(landed.mainline_commit, "m1");
        assert_eq!(
            landed.task(&"a".into()).unwrap().merged_commit.as_deref(),
            Some("m1")
        );

        log.push(verified(false, MergeCheck::PostMerge));
        log.push(EventKind::MergeReverted {
            task: "a".into(),
            merge_commit: "m1".into(),
            revert_commit: "r1".into(),
            reapplied: "h2".into(),
            output: "post check says no".into(),
        });
        log.move_task("a", Verifying, Running);
        let state = RunState::fold(&log.events).unwrap().unwrap();
        let a = state.task(&"a".into()).unwrap();
        assert_eq!(state.mainline_commit, "r1");
        assert_eq!(a.merged_commit, None);
        assert_eq!(a.head_commit.as_deref(), Some("h2"));
        assert_eq!((a.state, a.reworks), (Running, 1));
        assert!(a.feedback.as_deref().unwrap().contains("reverted"));
    }

    #[test]
    fn queue_positions_follow_arrival() {
        use TaskState::*;
        let mut log = accepted();
        // b was queued first (earlier event), then a.
        for t in ["a", "b"] {
            log.move_task(t, Pending, Ready);
            log.move_task(t, Ready, Running);
            log.move_task(t, Running, Reviewing);
            log.move_task(t, Reviewing, Testing);
        }
        log.move_task("b", Testing, Queued);
        log.move_task("a", Testing, Queued);
        let state = RunState::fold(&log.events).unwrap().unwrap();
        assert_eq!(state.queue_position(&"b".into()), Some(1));
        assert_eq!(state.queue_position(&"a".into()), Some(2));
        log.move_task("b", Queued, Merging);
        let state = RunState::fold(&log.events).unwrap().unwrap();
        assert_eq!(state.queue_position(&"b".into()), None);
        assert_eq!(state.queue_position(&"a".into()), Some(1));
    }

    #[test]
    fn old_runs_without_the_queue_still_fold() {
        let settings: RunSettings = serde_json::from_str(
            r#"{"concurrency":1,"max_tasks":5,"max_rework":1,"max_conflict_rework":1,
                "max_plan_rounds":1,"test_command":"true","provider":"scripted"}"#,
        )
        .unwrap();
        assert!(!settings.verify_merges);
        assert_eq!(settings.post_merge_command, None);
    }

    #[test]
    fn out_of_order_events_are_refused() {
        let log = accepted();
        let mut state = RunState::fold(&log.events[..1]).unwrap().unwrap();
        let mut skipped = log.events[1].clone();
        skipped.seq = 5;
        assert!(matches!(
            state.apply(&skipped),
            Err(TransitionError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn tail_cuts_on_char_boundary() {
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
    }
}
