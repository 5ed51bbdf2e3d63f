//! The orchestrator schedules a run: it promotes tasks whose dependencies
//! merged, starts up to `concurrency` task pipelines, and obeys commands from
//! the front end (gates, pause, cancel, retry). Task state itself only ever
//! changes through the recorder's state machine.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::{AbortHandle, JoinSet};

use super::brainstorm::Brainstorm;
use super::pipeline;
use super::planning::{self, PlanResult};
use crate::domain::event::{
    BudgetRaised, ConflictDecision, ParkLifted, PlanDisputeSettled, PlanDisputed, QuestionAnswered,
    RunFinished, RunInterrupted, RunPhaseChanged, RunResumed, SpecSubmitted, TaskEdited, Warning,
};
use crate::domain::schedule;
use crate::domain::{Decider, EventKind, RunPhase, RunState, TaskId, TaskState};
use crate::engine::context::RunContext;
use crate::engine::error::{EngineError, EngineResult};
use crate::protocol::{Command, ConflictResolution};

/// How a pause for the run's budget is introduced in its reason.
pub const RUN_BUDGET_PAUSE: &str = "the run is over budget";

/// How often a headless run looks for commands left in the store's inbox
/// by `memofab approve` and friends.
const INBOX_POLL: Duration = Duration::from_millis(300);

/// How a run is steered while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steering {
    /// A front end stays attached: when nothing is left to do, wait for its
    /// commands (retry, resolve) until it shuts the engine down.
    Interactive,
    /// Finish when nothing can move without a human, except gates, which
    /// wait for `memofab approve`/`reject` through the store's inbox.
    Headless,
    /// Driven by `memofab serve`: cockpits come and go, so questions,
    /// disputes and conflicts wait for one as in `Interactive`, and the
    /// store's inbox is read as in `Headless`; the run returns once its
    /// phase is over, freeing the repository for its next requirement.
    Daemon,
}

impl Steering {
    /// Whether commands left in the store's inbox are obeyed.
    fn reads_inbox(self) -> bool {
        matches!(self, Steering::Headless | Steering::Daemon)
    }
}

pub struct Orchestrator {
    ctx: Arc<RunContext>,
    commands: UnboundedReceiver<Command>,
    steering: Steering,
    pipelines: JoinSet<(TaskId, EngineResult<()>)>,
    active: HashMap<TaskId, AbortHandle>,
    /// Commands that came before the build could obey them (a pause pressed
    /// while the planner works): carried out once the build starts.
    deferred: Vec<Command>,
    /// How long each task has been in its state, for the shepherd.
    time_watch: crate::engine::shepherd::TimeWatch,
}

impl Orchestrator {
    pub fn new(
        ctx: Arc<RunContext>,
        commands: UnboundedReceiver<Command>,
        steering: Steering,
    ) -> Self {
        Self {
            ctx,
            commands,
            steering,
            pipelines: JoinSet::new(),
            active: HashMap::new(),
            deferred: Vec::new(),
            time_watch: Default::default(),
        }
    }

    /// Runs (or resumes) the run to its end; returns the final state.
    pub async fn run(mut self, resumed: bool) -> EngineResult<RunState> {
        // A run that is over stays as it was: resuming it records nothing.
        if resumed && self.ctx.recorder.with_state(|s| s.phase.is_over()) {
            return Ok(self.ctx.recorder.snapshot());
        }
        if resumed {
            let interrupted: Vec<TaskId> = self
                .ctx
                .recorder
                .with_state(|s| s.task_ids(TaskState::is_active));
            self.ctx
                .recorder
                .record(EventKind::RunResumed(RunResumed {
                    interrupted: interrupted.clone(),
                }))
                .await?;
        }
        match self.plan_phase().await? {
            Some(PlanResult::Accepted(_)) => {}
            // `plan_phase` settles disputes before it returns.
            Some(PlanResult::Disputed { .. }) => return Ok(self.ctx.recorder.snapshot()),
            Some(PlanResult::Failed(reason)) => {
                self.ctx
                    .recorder
                    .record(EventKind::RunPhaseChanged(RunPhaseChanged {
                        to: RunPhase::Failed,
                        reason: Some(reason),
                    }))
                    .await?;
                return Ok(self.ctx.recorder.snapshot());
            }
            None => return self.interrupted().await,
        }

        if resumed {
            self.remove_merged_worktrees().await;
            // Carry on every task that was in flight when the process died.
            let in_flight: Vec<TaskId> = self
                .ctx
                .recorder
                .with_state(|s| s.task_ids(TaskState::is_active));
            for task in in_flight {
                self.spawn(task, true);
            }
            // A run that approves its gates itself may have died between
            // reaching the gate and approving it. A gate a governance path
            // holds is not among them: it waits for a human.
            if self.ctx.auto_approve {
                let policy = &self.ctx.policy;
                let gated: Vec<TaskId> = self.ctx.recorder.with_state(|s| {
                    s.tasks()
                        .iter()
                        .filter(|t| {
                            t.state == TaskState::AwaitingGate
                                && crate::domain::risk::auto_approvable(policy, &t.gate_reasons)
                        })
                        .map(|t| t.id().clone())
                        .collect()
                });
                for task in gated {
                    pipeline::approve(&self.ctx, &task, &Decider::Auto).await?;
                    self.spawn(task, false);
                }
            }
        }
        self.build_phase().await
    }

    /// Plans unless a blueprint exists. `None` if shut down meanwhile.
    async fn plan_phase(&mut self) -> EngineResult<Option<PlanResult>> {
        // The cockpit's spec editor: planning waits for the human's submit.
        let mut brainstorm = Brainstorm::default();
        while !self.ctx.recorder.with_state(|s| s.spec_submitted) {
            match self.commands.recv().await {
                Some(Command::Brainstorm { message }) if !message.trim().is_empty() => {
                    brainstorm.ask(&self.ctx, &message).await?;
                }
                Some(Command::SubmitSpec { requirement }) if !requirement.trim().is_empty() => {
                    let checked = crate::engine::context::check_requirement_with(
                        &self.ctx.config,
                        &self.ctx.providers,
                        &requirement,
                    )
                    .await;
                    let kind = match checked {
                        Ok(()) => EventKind::SpecSubmitted(SpecSubmitted { requirement }),
                        // The editor stays open for a shorter one.
                        Err(refused) => EventKind::Warning(Warning {
                            task: None,
                            message: refused.to_string(),
                        }),
                    };
                    self.ctx.recorder.record(kind).await?;
                }
                Some(Command::Shutdown) | None => return Ok(None),
                Some(other) => self.deferred.push(other),
            }
        }
        loop {
            let ctx = self.ctx.clone();
            let planning = planning::plan(&ctx);
            tokio::pin!(planning);
            let result = loop {
                tokio::select! {
                    result = &mut planning => break result?,
                    command = self.commands.recv() => match command {
                        Some(Command::Shutdown) | None => return Ok(None),
                        Some(other) => self.deferred.push(other),
                    },
                }
            };
            let PlanResult::Disputed {
                blueprint,
                round,
                feedback,
            } = result
            else {
                return Ok(Some(result));
            };
            match self.settle_dispute(round, feedback).await? {
                Some(true) => return planning::accept(&self.ctx, blueprint).await.map(Some),
                // Another round: plan again, with the round the human added.
                Some(false) => {}
                None => return Ok(None),
            }
        }
    }

    /// Records the dispute (unless a crash left it open) and waits for the
    /// human's decision: `Some(true)` builds the last blueprint,
    /// `Some(false)` plans once more, `None` is a shutdown.
    async fn settle_dispute(&mut self, round: u32, feedback: String) -> EngineResult<Option<bool>> {
        if self.ctx.recorder.with_state(|s| s.plan_dispute.is_none()) {
            self.ctx
                .recorder
                .record(EventKind::PlanDisputed(PlanDisputed { round, feedback }))
                .await?;
        }
        loop {
            match self.commands.recv().await {
                Some(Command::SettlePlanDispute { build }) => {
                    self.ctx
                        .recorder
                        .record(EventKind::PlanDisputeSettled(PlanDisputeSettled {
                            build,
                            by: human(),
                        }))
                        .await?;
                    return Ok(Some(build));
                }
                Some(Command::Shutdown) | None => return Ok(None),
                Some(other) => self.deferred.push(other),
            }
        }
    }

    async fn build_phase(&mut self) -> EngineResult<RunState> {
        let mut inbox = tokio::time::interval(INBOX_POLL);
        inbox.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Held back while planning; they came from the cockpit.
        for command in std::mem::take(&mut self.deferred) {
            self.obey(command, Decider::Cockpit).await?;
        }
        loop {
            self.promote().await?;
            self.check_run_budget().await?;
            self.fill_slots();
            self.revive_landings();
            // Looked at in place: a copy of the whole state on every turn
            // of the loop grew with the run.
            let changed = self
                .ctx
                .recorder
                .with_state(|s| !s.repository_changes.is_empty());
            if changed && self.steering == Steering::Headless {
                // Nobody here to look: stop; `memofab resume` carries on.
                self.pipelines.shutdown().await;
                return Ok(self.ctx.recorder.snapshot());
            }
            if self.pipelines.is_empty() {
                let state = self.ctx.recorder.snapshot();
                let idle = state.count(TaskState::Ready) == 0 && state.phase != RunPhase::Paused;
                if idle
                    && state.all_settled()
                    && !state.phase.is_over()
                    && !self.keeps_waiting(&state)
                {
                    self.finish(&state).await?;
                }
                if self.steering == Steering::Headless
                    && idle
                    && state.count(TaskState::AwaitingGate) == 0
                {
                    self.drop_spare_worktrees().await;
                    return Ok(self.ctx.recorder.snapshot());
                }
            }
            if self.steering == Steering::Daemon
                && self.pipelines.is_empty()
                && self.ctx.recorder.with_state(|s| s.phase.is_over())
            {
                return Ok(self.ctx.recorder.snapshot());
            }
            tokio::select! {
                Some(joined) = self.pipelines.join_next_with_id() => self.reap(joined).await?,
                // A task entered the merge queue: its slot is free for the next.
                _ = self.ctx.slot_freed.notified() => {}
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => {
                        self.pipelines.shutdown().await;
                        self.drop_spare_worktrees().await;
                        return self.interrupted().await;
                    }
                    // Only a cockpit (here or attached to the daemon)
                    // sends on this channel.
                    Some(command) => self.obey(command, Decider::Cockpit).await?,
                },
                // Also wakes the loop to notice what agents did meanwhile,
                // such as spending the run's budget.
                _ = inbox.tick() => {
                    let (clock, desk) = (&mut self.time_watch, &self.ctx.shepherd);
                    self.ctx.recorder.with_state(|s| clock.check(s, desk));
                    if self.steering.reads_inbox() {
                        for left in self.poll_inbox().await? {
                            self.obey(left.command, left.by).await?;
                        }
                    }
                }
            }
        }
    }

    /// Under the daemon, a run whose tasks wait on a human (an escalated
    /// conflict, a task over budget) is not over: finishing it would free
    /// the repository for the next requirement and drop the decision.
    fn keeps_waiting(&self, state: &RunState) -> bool {
        self.steering == Steering::Daemon
            && state
                .tasks()
                .iter()
                .any(|t| matches!(t.state, TaskState::Conflict | TaskState::OverBudget))
    }

    /// The front end stopped the engine (a signal, the cockpit quit): a run
    /// that is not over records that it was interrupted, so its record ends
    /// when the work did and `memofab resume` knows to carry it on; one
    /// whose requirement never came is forgotten.
    async fn interrupted(&self) -> EngineResult<RunState> {
        // A run exists only once it has a requirement: a cockpit closed in
        // its spec editor leaves nothing to list or resume.
        if !self.ctx.recorder.with_state(|s| s.spec_submitted) {
            let run = self.ctx.recorder.run().clone();
            self.ctx
                .recorder
                .with_store(|store| store.forget_run(&run))?;
            return Ok(self.ctx.recorder.snapshot());
        }
        if !self.ctx.recorder.with_state(|s| s.phase.is_over()) {
            self.ctx
                .recorder
                .record(EventKind::RunInterrupted(RunInterrupted {}))
                .await?;
        }
        Ok(self.ctx.recorder.snapshot())
    }

    /// A process killed while it kept merged tasks' worktrees for reuse left
    /// them behind; the pool starts empty, so they go.
    async fn remove_merged_worktrees(&self) {
        let merged: Vec<TaskId> = self
            .ctx
            .recorder
            .with_state(|s| s.task_ids(|state| state == TaskState::Merged));
        for task in merged {
            let dir = super::steps::worktree_dir(&self.ctx, &task);
            if dir.exists() {
                self.ctx.discard_worktree(dir).await;
            }
        }
    }

    /// Removes the worktrees kept for reuse, and the merge queue's scratch
    /// worktree: nothing is left to reuse them.
    async fn drop_spare_worktrees(&self) {
        for spare in self.ctx.drain_spare_worktrees() {
            self.ctx.discard_worktree(spare.dir).await;
        }
        let scratch = super::merge_queue::scratch_dir(&self.ctx);
        if scratch.exists() {
            self.ctx.discard_worktree(scratch).await;
        }
    }

    async fn finish(&self, state: &RunState) -> EngineResult<()> {
        self.drop_spare_worktrees().await;
        crate::engine::cleanup::tidy_finished(&self.ctx).await;
        let mainline = self.ctx.mainline.clone();
        let head = self.ctx.git(move |g| g.branch_head(&mainline)).await?;
        self.ctx
            .recorder
            .record(EventKind::RunFinished(RunFinished {
                merged: state.count(TaskState::Merged),
                failed: state.tasks().len() - state.count(TaskState::Merged),
                mainline_commit: head,
            }))
            .await?;
        self.ctx
            .recorder
            .record(EventKind::RunPhaseChanged(RunPhaseChanged {
                to: RunPhase::Finished,
                reason: None,
            }))
            .await?;
        Ok(())
    }

    /// A run that spent its budget pauses: nothing new starts, and agents at
    /// work stop at their next reply (their tasks wait over budget).
    async fn check_run_budget(&self) -> EngineResult<()> {
        let over = self.ctx.recorder.with_state(|s| {
            (s.phase == RunPhase::Building)
                .then(|| crate::domain::budget::run_overrun(s))
                .flatten()
        });
        if let Some(reason) = over {
            self.set_phase(RunPhase::Paused, &format!("{RUN_BUDGET_PAUSE}: {reason}"))
                .await?;
        }
        Ok(())
    }

    /// Records what the schedule says, until it says nothing more: a task
    /// blocked by a failure blocks its own dependents in turn, so one pass
    /// would leave tasks two levels below a failure pending, and a run that
    /// stops when it is idle (headless) would stop before it is settled.
    async fn promote(&self) -> EngineResult<()> {
        // Each pass settles one more level of the graph; the bound only
        // guards against a schedule that never comes to rest.
        let levels = self.ctx.recorder.with_state(|s| s.tasks().len()) + 1;
        for _ in 0..levels {
            let moves = self.ctx.recorder.with_state(schedule::promotions);
            if moves.is_empty() {
                break;
            }
            for m in moves {
                self.ctx
                    .recorder
                    .transition(&m.task, m.to, m.reason)
                    .await?;
            }
        }
        Ok(())
    }

    /// Starts the ready tasks the schedule picks, while agent slots are free.
    /// Pipelines waiting in the merge queue hold no slot: a verification
    /// that takes minutes must not stop coding. (A task the queue reopens
    /// can so briefly make one more coder than `concurrency`.)
    fn fill_slots(&mut self) {
        let pipelines = &self.active;
        let start = self.ctx.recorder.with_state(|s| {
            // Tasks in the merge queue, or paused over budget, have no
            // agent at work: their slots go to others.
            let holding: HashSet<TaskId> = pipelines
                .keys()
                .filter(|t| {
                    !s.task(t).is_some_and(|r| {
                        r.state.in_merge_queue() || r.state == TaskState::OverBudget
                    })
                })
                .cloned()
                .collect();
            schedule::to_start(s, &holding)
        });
        for task in start {
            self.spawn(task, false);
        }
    }

    /// Tasks left in the merge queue while a landing was held for the
    /// user's checkout go on once it is released.
    fn revive_landings(&mut self) {
        let waiting = self.ctx.recorder.with_state(|s| {
            if s.held_landing.is_some() || s.phase.is_over() {
                return Vec::new();
            }
            s.task_ids(TaskState::in_merge_queue)
        });
        for task in waiting {
            if !self.active.contains_key(&task) {
                self.spawn(task, false);
            }
        }
    }

    fn spawn(&mut self, task: TaskId, resumed: bool) {
        let ctx = self.ctx.clone();
        let id = task.clone();
        let handle = self
            .pipelines
            .spawn(async move { (id.clone(), pipeline::drive(ctx, id, resumed).await) });
        self.active.insert(task, handle);
    }

    /// Forgets a finished pipeline, unless a newer one already drives the task.
    fn forget(&mut self, task: &TaskId, id: tokio::task::Id) {
        if self.active.get(task).is_some_and(|h| h.id() == id) {
            self.active.remove(task);
        }
    }

    /// Waits until no pipeline drives `task`, so that a human decision never
    /// races a pipeline still on its way out: one pipeline per task, always.
    async fn settle(&self, task: &TaskId) {
        if let Some(handle) = self.active.get(task) {
            while !handle.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    }

    /// Git work on the task's own worktree failed (what its commands left
    /// there, a test that leaves files in the way of a merge): the task
    /// fails with the reason, the others go on. A task that cannot fail from
    /// where it is still stops the run, as any effect's failure does.
    async fn fail_over_worktree(
        &mut self,
        task: &TaskId,
        source: crate::effects::git::GitError,
    ) -> EngineResult<()> {
        let state = self
            .ctx
            .recorder
            .with_state(|s| s.task(task).map(|t| t.state));
        if !state.is_some_and(|s| s.can_become(TaskState::Failed)) {
            self.pipelines.shutdown().await;
            return Err(EngineError::TaskWorktree {
                task: task.clone(),
                source,
            });
        }
        tracing::warn!(task = %task, error = %source, "git failed in a task's worktree");
        self.ctx
            .recorder
            .transition(
                task,
                TaskState::Failed,
                format!("git failed in its worktree: {source}"),
            )
            .await?;
        Ok(())
    }

    async fn reap(
        &mut self,
        joined: Result<(tokio::task::Id, (TaskId, EngineResult<()>)), tokio::task::JoinError>,
    ) -> EngineResult<()> {
        match joined {
            Ok((id, (task, Ok(())))) => {
                self.forget(&task, id);
                self.ctx.check_repository().await?;
                Ok(())
            }
            Ok((
                id,
                (
                    task,
                    Err(EngineError::TaskWorktree {
                        task: failed,
                        source,
                    }),
                ),
            )) => {
                self.forget(&task, id);
                self.fail_over_worktree(&failed, source).await?;
                self.ctx.check_repository().await?;
                Ok(())
            }
            Ok((id, (task, Err(e)))) => {
                self.forget(&task, id);
                // An effect failed underneath the task (git, the store): stop
                // everything rather than build on an unknown state.
                self.pipelines.shutdown().await;
                Err(e)
            }
            Err(e) if e.is_cancelled() => {
                self.active.retain(|_, h| !h.is_finished());
                Ok(())
            }
            Err(e) => {
                self.pipelines.shutdown().await;
                Err(EngineError::Join(e.to_string()))
            }
        }
    }

    /// Carries out a human's command; `by` is who sent it, recorded with a
    /// gate decision.
    async fn obey(&mut self, command: Command, by: Decider) -> EngineResult<()> {
        // A task a human acts on must not have a pipeline still running.
        match &command {
            Command::ApproveGate { task }
            | Command::RejectGate { task, .. }
            | Command::RetryTask { task }
            | Command::EditTask { task, .. }
            | Command::ResolveConflict { task, .. } => self.settle(task).await,
            _ => {}
        }
        let state = self.ctx.recorder.snapshot();
        let task_state = |t: &TaskId| state.task(t).map(|r| r.state);
        match command {
            Command::ApproveGate { task } if task_state(&task) == Some(TaskState::AwaitingGate) => {
                pipeline::approve(&self.ctx, &task, &by).await?;
                self.spawn(task, false);
            }
            // The human dealt with their checkout: the held landing goes on
            // (`revive_landings`), or is held again if it is still dirty.
            Command::ApproveGate { task }
                if state.held_landing.as_ref().is_some_and(|h| h.task == task) =>
            {
                // They were asked to commit their changes: that commit on
                // mainline is theirs, not a change behind the run's back.
                self.ctx.accept_mainline().await?;
                self.set_phase(
                    RunPhase::Building,
                    &format!("landing {task} approved by {by}"),
                )
                .await?;
            }
            Command::RejectGate { task, feedback }
                if task_state(&task) == Some(TaskState::AwaitingGate) =>
            {
                pipeline::reject(&self.ctx, &task, &by, &feedback).await?;
                // Rework starts when a slot frees; `fill_slots` only starts
                // Ready tasks, so start it here.
                if self
                    .ctx
                    .recorder
                    .with_state(|s| s.task(&task).map(|t| t.state))
                    == Some(TaskState::Running)
                {
                    self.spawn(task, false);
                }
            }
            Command::Pause if state.phase == RunPhase::Building => {
                self.set_phase(RunPhase::Paused, "paused by a human")
                    .await?;
            }
            Command::Resume if state.phase == RunPhase::Paused => {
                if !state.repository_changes.is_empty() {
                    // The human has seen the change; it is the new normal.
                    self.ctx.rebaseline_repository().await?;
                } else if state.held_landing.is_some() {
                    // Released by resuming, as by approving the landing.
                    self.ctx.accept_mainline().await?;
                }
                self.set_phase(RunPhase::Building, "resumed by a human")
                    .await?;
            }
            Command::CancelTask { task } => {
                if let Some(handle) = self.active.remove(&task) {
                    // Dropping the pipeline drops its LLM stream and aborts the request.
                    handle.abort();
                }
                if task_state(&task).is_some_and(|s| s.can_become(TaskState::Cancelled)) {
                    self.ctx
                        .recorder
                        .transition(
                            &task,
                            TaskState::Cancelled,
                            format!("cancelled by {}", human()),
                        )
                        .await?;
                }
            }
            Command::RetryTask { task }
                if task_state(&task).is_some_and(|s| {
                    matches!(
                        s,
                        TaskState::Failed | TaskState::Cancelled | TaskState::Blocked
                    )
                }) =>
            {
                self.ctx
                    .recorder
                    .transition(&task, TaskState::Pending, format!("retried by {}", human()))
                    .await?;
                if state.phase.is_over() {
                    self.set_phase(RunPhase::Building, "a task was retried")
                        .await?;
                }
            }
            Command::EditTask {
                task,
                description,
                acceptance,
            } if task_state(&task).is_some_and(|s| {
                matches!(
                    s,
                    TaskState::Pending | TaskState::Ready | TaskState::Blocked
                )
            }) =>
            {
                self.ctx
                    .recorder
                    .record(EventKind::TaskEdited(TaskEdited {
                        task,
                        description,
                        acceptance,
                    }))
                    .await?;
            }
            Command::RaiseBudget { task: Some(task) }
                if task_state(&task) == Some(TaskState::OverBudget) =>
            {
                self.raise_budget(Some(task.clone())).await?;
                if state.phase.is_over() {
                    self.set_phase(RunPhase::Building, "a task got more budget")
                        .await?;
                }
                self.release_over_budget().await?;
            }
            Command::AnswerQuestion {
                agent,
                call_id,
                answer,
            } if state
                .open_questions()
                .any(|q| q.agent == agent && q.call_id == call_id) =>
            {
                self.ctx
                    .recorder
                    .record(EventKind::QuestionAnswered(QuestionAnswered {
                        agent,
                        call_id,
                        answer,
                        by: human(),
                    }))
                    .await?;
            }
            Command::LiftPark { provider }
                if state.parked.values().any(|p| p.provider == provider) =>
            {
                let governors = self.ctx.providers.governors();
                if let Some(governor) = governors.iter().find(|g| g.name() == provider) {
                    self.ctx
                        .recorder
                        .record(EventKind::ParkLifted(ParkLifted {
                            provider,
                            by: human(),
                        }))
                        .await?;
                    governor.lift_park();
                }
            }
            Command::RaiseBudget { task: None }
                if crate::domain::budget::run_overrun(&state).is_some() =>
            {
                self.raise_budget(None).await?;
                let within = self
                    .ctx
                    .recorder
                    .with_state(|s| crate::domain::budget::run_overrun(s).is_none());
                if within && state.phase == RunPhase::Paused {
                    self.set_phase(RunPhase::Building, "run budget raised by a human")
                        .await?;
                }
                self.release_over_budget().await?;
            }
            Command::ResolveConflict { task, resolution }
                if task_state(&task) == Some(TaskState::Conflict) =>
            {
                let reason = match resolution {
                    ConflictResolution::Rework => "sent back for rework by a human",
                    ConflictResolution::Resolver => "handed to the resolver by a human",
                    ConflictResolution::MarkResolved => "resolved by a human",
                };
                if state.phase.is_over() {
                    self.set_phase(RunPhase::Building, "a conflict was resolved")
                        .await?;
                }
                self.ctx
                    .recorder
                    .record(EventKind::ConflictDecision(ConflictDecision {
                        task: task.clone(),
                        resolution,
                        by: human(),
                    }))
                    .await?;
                self.ctx
                    .recorder
                    .transition(&task, TaskState::Running, reason.to_owned())
                    .await?;
                self.spawn(task, false);
            }
            other => {
                self.ctx
                    .recorder
                    .record(EventKind::Warning(Warning {
                        task: None,
                        message: format!(
                            "command ignored, it does not apply now: {}",
                            describe(&other)
                        ),
                    }))
                    .await?;
            }
        }
        Ok(())
    }

    /// Tasks over budget that are within budget again go back to the step
    /// they paused in; their agents, still waiting, carry on. A task whose
    /// agent was lost to a restart starts that step again.
    async fn release_over_budget(&mut self) -> EngineResult<()> {
        let released: Vec<(TaskId, TaskState)> = self.ctx.recorder.with_state(|s| {
            s.tasks()
                .iter()
                .filter(|t| {
                    t.state == TaskState::OverBudget
                        && crate::domain::budget::overrun(s, t.id()).is_none()
                })
                .map(|t| {
                    let back = t.over_budget_from.unwrap_or(TaskState::Running);
                    (t.id().clone(), back)
                })
                .collect()
        });
        for (task, back) in released {
            self.ctx
                .recorder
                .transition(&task, back, format!("budget raised by {}", human()))
                .await?;
            if self.active.get(&task).is_none_or(|h| h.is_finished()) {
                self.spawn(task, true);
            }
        }
        Ok(())
    }

    async fn raise_budget(&self, task: Option<TaskId>) -> EngineResult<()> {
        self.ctx
            .recorder
            .record(EventKind::BudgetRaised(BudgetRaised { task, by: human() }))
            .await?;
        Ok(())
    }

    async fn set_phase(&self, to: RunPhase, reason: &str) -> EngineResult<()> {
        self.ctx
            .recorder
            .record(EventKind::RunPhaseChanged(RunPhaseChanged {
                to,
                reason: Some(reason.to_owned()),
            }))
            .await?;
        Ok(())
    }

    async fn poll_inbox(&self) -> EngineResult<Vec<crate::effects::store::Inboxed>> {
        let recorder = self.ctx.recorder.clone();
        let run = recorder.run().clone();
        tokio::task::spawn_blocking(move || recorder.with_store(|store| store.take_commands(&run)))
            .await
            .map_err(|e| EngineError::Join(e.to_string()))?
            .map_err(EngineError::from)
    }
}

/// Who a human decision is attributed to.
fn human() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "human".to_owned())
}

fn describe(command: &Command) -> String {
    serde_json::to_string(command).unwrap_or_else(|_| format!("{command:?}"))
}
