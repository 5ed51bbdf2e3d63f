//! Folding one stored event into the cockpit's model: the run state, the
//! transcripts, each task's view, and the Log tab's notable lines.

use tui_textarea::TextArea;

use super::{App, LogLine, first_line};
use crate::domain::event::{
    AgentMessage, AgentParked, AgentStarted, AgentUnparked, BudgetRaised, ChangeCommitted,
    CheckoutDirty, ConflictMarkers, ContextCompacted, Escalated, GateDecision, GateHeld,
    McpToolsListed, MergeResult, MergeReverted, MergeVerified, NothingChanged, ParkLifted,
    PlanDisputeSettled, PlanDisputed, PlanReviewed, ProviderLimitChanged, QuestionAnswered,
    QuestionAsked, ReplyBrokenOff, RepositoryChanged, ReviewVerdict, RunFinished, RunPhaseChanged,
    ShepherdIntervened, TaskStateChanged, TestRun, TesterDone, TestsOnBase, ToolCalled, ToolResult,
    Warning, WorktreeCreated,
};
use crate::domain::ids::short_commit;
use crate::domain::{Event, EventKind, RunPhase, RunState, TaskState};

impl App {
    pub(super) fn apply(&mut self, event: &Event) {
        self.now_ms = self.now_ms.max(event.at_ms);
        self.costs.add(&self.prices, event);
        match &mut self.state {
            None => match RunState::start(event) {
                Ok(state) => {
                    if !self.spec_loaded {
                        self.spec = TextArea::from(state.requirement.lines());
                        self.spec_loaded = true;
                    }
                    self.state = Some(state);
                }
                Err(e) => self.log_line(event.at_ms, true, format!("ignored event: {e}")),
            },
            Some(state) => {
                if let Err(e) = state.apply(event) {
                    self.log.push(LogLine {
                        at_ms: event.at_ms,
                        warn: true,
                        text: format!("ignored event: {e}"),
                    });
                }
            }
        }
        let at = event.at_ms;
        match &event.kind {
            EventKind::BlueprintAccepted(_) => self.relayout(),
            EventKind::TaskEdited(_) => {}
            EventKind::AgentStarted(AgentStarted { agent, task, .. }) => {
                match task {
                    Some(task) => self.view(task).agents.push(agent.clone()),
                    None => self.run_agents.push(agent.clone()),
                }
                self.transcripts.entry(agent.clone()).or_default();
                self.agent_back = 0;
                self.follow_working(agent, task.as_ref());
            }
            EventKind::AgentMessage(AgentMessage { agent, from, text }) => {
                self.transcripts
                    .entry(agent.clone())
                    .or_default()
                    .message(*from, text);
            }
            EventKind::McpToolsListed(McpToolsListed { agent, servers }) => {
                let transcript = self.transcripts.entry(agent.clone()).or_default();
                for server in servers {
                    transcript.message(crate::domain::MessageAuthor::System, &server.line());
                }
            }
            EventKind::ToolCalled(ToolCalled {
                agent,
                tool,
                arguments,
                ..
            }) => self
                .transcripts
                .entry(agent.clone())
                .or_default()
                .tool_call(tool, arguments),
            EventKind::ToolResult(ToolResult {
                agent, ok, output, ..
            }) => {
                self.transcripts
                    .entry(agent.clone())
                    .or_default()
                    .tool_result(*ok, output);
            }
            EventKind::ChangeCommitted(ChangeCommitted {
                task, diff, files, ..
            }) => {
                let v = self.view(task);
                v.diff = diff.clone();
                v.files = files.clone();
            }
            EventKind::WorktreeCreated(WorktreeCreated { task, path, .. }) => {
                self.view(task).worktree = Some(path.clone())
            }
            EventKind::ConflictMarkers(ConflictMarkers { task, files }) => {
                self.view(task).conflicts = files.clone();
            }
            EventKind::MergeResult(MergeResult { task, result }) => {
                let files = match result {
                    crate::domain::MergeOutcome::Conflict { files } => files.clone(),
                    _ => Vec::new(),
                };
                let text = match result {
                    crate::domain::MergeOutcome::Conflict { files } => {
                        format!("{task}: merge conflict in {}", files.join(", "))
                    }
                    _ => format!("{task}: merged onto mainline"),
                };
                let warn = !files.is_empty();
                self.view(task).conflict_files = files;
                self.log_line(at, warn, text);
            }
            EventKind::TaskStateChanged(TaskStateChanged {
                task, to, reason, ..
            }) if *to == TaskState::AwaitingGate => {
                self.view(task).gate_reason = reason.clone();
            }
            // Failures and blocks are what a human must notice: log them with why.
            EventKind::TaskStateChanged(TaskStateChanged {
                task, to, reason, ..
            }) if matches!(
                to,
                TaskState::Failed | TaskState::Blocked | TaskState::Cancelled
            ) =>
            {
                let why = reason.as_deref().unwrap_or("no reason given");
                self.log_line(at, true, format!("{task}: {to}: {why}"));
            }
            EventKind::TaskStateChanged(TaskStateChanged {
                task, to, reason, ..
            }) if *to == TaskState::OverBudget => {
                let why = reason.as_deref().unwrap_or("over budget");
                self.log_line(at, true, format!("{task}: paused, {why}"));
            }
            EventKind::BudgetRaised(BudgetRaised { task, by }) => {
                let what = task
                    .as_ref()
                    .map_or_else(|| "the run".to_owned(), |t| t.to_string());
                self.log_line(at, false, format!("{by} granted {what} more budget"));
            }
            EventKind::PlanDisputed(PlanDisputed { round, feedback }) => self.log_line(
                at,
                true,
                format!(
                    "the plan reviewer still disagrees after round {round}: {}",
                    feedback.lines().next().unwrap_or_default()
                ),
            ),
            EventKind::PlanDisputeSettled(PlanDisputeSettled { build, by }) => self.log_line(
                at,
                false,
                if *build {
                    format!("{by} settled the plan dispute: build it")
                } else {
                    format!("{by} settled the plan dispute: plan once more")
                },
            ),
            EventKind::QuestionAsked(QuestionAsked {
                agent, question, ..
            }) => self.log_line(at, true, format!("{agent} asks: {question}")),
            EventKind::ParkLifted(ParkLifted { provider, by }) => {
                self.log_line(at, false, format!("{by} had {provider} tried again now"))
            }
            EventKind::QuestionAnswered(QuestionAnswered {
                agent, answer, by, ..
            }) => self.log_line(at, false, format!("{by} answered {agent}: {answer}")),
            EventKind::RunPhaseChanged(RunPhaseChanged {
                to: RunPhase::Failed,
                reason,
            }) => {
                let why = reason.as_deref().unwrap_or("no reason given");
                self.log_line(at, true, format!("the run failed: {why}"));
            }
            EventKind::Escalated(Escalated { task, reason }) => {
                self.view(task).escalation = Some(reason.clone());
                self.log_line(at, true, format!("{task}: escalated: {reason}"));
            }
            EventKind::ReviewVerdict(ReviewVerdict {
                task,
                approved,
                feedback,
            }) => {
                let text = if *approved {
                    format!("{task}: review approved")
                } else {
                    format!("{task}: review asked for changes: {}", first_line(feedback))
                };
                self.log_line(at, !approved, text);
            }
            EventKind::TestsOnBase(TestsOnBase {
                task,
                round,
                failed,
                ..
            }) => {
                let text = if *failed {
                    format!("{task}: the tester's tests fail on the base commit, as they must")
                } else {
                    format!(
                        "{task}: the tester's tests PASS on the base commit (round {round}); they prove nothing"
                    )
                };
                self.log_line(at, !failed, text);
            }
            EventKind::TesterDone(TesterDone {
                task,
                tests: Some(tests),
            }) => self.log_line(
                at,
                false,
                format!(
                    "{task}: the tester's tests are in, read-only for the coder: {}",
                    tests.files.join(", ")
                ),
            ),
            EventKind::TestRun(TestRun {
                task,
                passed,
                command,
                ..
            }) => {
                let verdict = if *passed { "passed" } else { "FAILED" };
                self.log_line(at, !passed, format!("{task}: `{command}` {verdict}"));
            }
            EventKind::MergeVerified(MergeVerified {
                task,
                check,
                candidate,
                command,
                passed,
                output,
                ..
            }) => {
                let at_commit = short_commit(candidate);
                let text = if *passed {
                    format!(
                        "{task}: {} `{command}` passed on {at_commit}",
                        check.label()
                    )
                } else {
                    let last = output.lines().rev().find(|l| !l.trim().is_empty());
                    format!(
                        "{task}: {} `{command}` FAILED on {at_commit}: {}",
                        check.label(),
                        last.unwrap_or("no output")
                    )
                };
                self.log_line(at, !passed, text);
            }
            EventKind::MergeReverted(MergeReverted {
                task,
                merge_commit,
                revert_commit,
                ..
            }) => {
                self.log_line(
                    at,
                    true,
                    format!(
                        "{task}: merge {} reverted on mainline by {}",
                        short_commit(merge_commit),
                        short_commit(revert_commit)
                    ),
                );
            }
            EventKind::GateHeld(GateHeld { task, reasons }) => {
                let why = crate::domain::gate_reason::joined(reasons);
                self.log_line(at, false, format!("{task}: held at the gate: {why}"));
            }
            EventKind::GateDecision(GateDecision {
                task, approved, by, ..
            }) => {
                let verdict = if *approved { "approved" } else { "rejected" };
                self.log_line(at, false, format!("{task}: gate {verdict} by {by}"));
            }
            EventKind::PlanReviewed(PlanReviewed {
                round,
                approved,
                feedback,
            }) => {
                let text = if *approved {
                    format!("plan round {round} approved")
                } else {
                    format!("plan round {round} sent back: {}", first_line(feedback))
                };
                self.log_line(at, false, text);
            }
            EventKind::Warning(Warning { message, .. }) => self.log_line(at, true, message.clone()),
            EventKind::CheckoutDirty(CheckoutDirty { task, files }) => self.log_line(
                at,
                true,
                format!(
                    "{task}: waits to land: your checkout has changes in {}",
                    files.join(", ")
                ),
            ),
            EventKind::ShepherdIntervened(ShepherdIntervened {
                task,
                agent,
                pattern,
                action,
            }) => {
                let line = crate::domain::shepherd::intervention_line(
                    task.as_ref(),
                    agent.as_ref(),
                    pattern,
                    *action,
                );
                if let Some(agent) = agent {
                    let note = format!("shepherd: {}", first_line(&line));
                    self.transcripts
                        .entry(agent.clone())
                        .or_default()
                        .message(crate::domain::MessageAuthor::System, &note);
                }
                let escalated = *action == crate::domain::shepherd::Action::Escalate;
                self.log_line(at, escalated, line);
            }
            EventKind::NothingChanged(NothingChanged { task }) => self.log_line(
                at,
                true,
                format!("{task}: the coder finished without changing anything; trying again"),
            ),
            EventKind::RepositoryChanged(RepositoryChanged { changes }) => self.log_line(
                at,
                true,
                format!(
                    "the repository changed outside memofab, the run is paused: {}",
                    changes.join("; ")
                ),
            ),
            EventKind::AgentParked(AgentParked {
                agent,
                until_ms,
                reason,
                ..
            }) => {
                let secs = until_ms.saturating_sub(at).div_ceil(1000);
                self.log_line(at, true, format!("{agent}: parked for {secs}s: {reason}"));
            }
            EventKind::ReplyBrokenOff(ReplyBrokenOff { agent, .. }) => {
                let line = event.kind.broken_off_line().unwrap_or_default();
                self.log_line(at, true, format!("{agent}: {line}"));
                self.transcripts
                    .entry(agent.clone())
                    .or_default()
                    .message(crate::domain::MessageAuthor::System, &line);
            }
            EventKind::ContextCompacted(ContextCompacted { agent, note, .. }) => {
                let mut text = event.kind.compaction_line().unwrap_or_default();
                if let Some(note) = note {
                    text.push('\n');
                    text.push_str(note);
                }
                self.transcripts
                    .entry(agent.clone())
                    .or_default()
                    .message(crate::domain::MessageAuthor::System, &text);
            }
            EventKind::AgentUnparked(AgentUnparked { agent }) => {
                self.log_line(at, false, format!("{agent}: resumed"))
            }
            EventKind::ProviderLimitChanged(ProviderLimitChanged {
                provider,
                limit,
                ceiling,
            }) => self.log_line(
                at,
                false,
                format!("{provider}: {limit} of {ceiling} request slots"),
            ),
            EventKind::RunFinished(RunFinished { merged, failed, .. }) => {
                self.log_line(
                    at,
                    *failed > 0,
                    format!("run finished: {merged} merged, {failed} not merged"),
                );
            }
            _ => {}
        }
    }
}
