//! Folding one stored event into the cockpit's model: the run state, the
//! transcripts, each task's view, and the Log tab's notable lines (worded
//! by `domain::narrate`, as the export and the summary word them).

use tui_textarea::TextArea;

use super::{App, LogLine, first_line};
use crate::domain::event::{
    AgentMessage, AgentStarted, ChangeCommitted, ConflictMarkers, Escalated, McpToolsListed,
    MergeResult, TaskStateChanged, ToolCalled, ToolResult, WorktreeCreated,
};
use crate::domain::{Event, EventKind, MergeOutcome, MessageAuthor, RunState, TaskState, narrate};

impl App {
    pub(super) fn apply(&mut self, event: &Event) {
        self.now_ms = self.now_ms.max(event.at_ms);
        self.costs.add(&self.prices, event);
        self.apply_to_state(event);
        self.fold_task_view(event);
        self.fold_transcript(event);
        if let Some(line) = narrate::line(event) {
            self.log_line(event.at_ms, line.warn, line.text);
        }
    }

    /// Folds in only what `events` write into transcripts: how a replay
    /// builds the transcript on screen from its agent's own events, apart
    /// from the model it folds without their text.
    pub fn fold_transcripts<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for event in events {
            if let EventKind::AgentStarted(AgentStarted { agent, .. }) = &event.kind {
                self.transcripts.entry(agent.clone()).or_default();
            }
            self.fold_transcript(event);
        }
    }

    fn apply_to_state(&mut self, event: &Event) {
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
    }

    /// What the task pane shows of a task: its agents, diff, worktree,
    /// conflicts, gate and escalation.
    fn fold_task_view(&mut self, event: &Event) {
        match &event.kind {
            EventKind::BlueprintAccepted(_) => self.relayout(),
            EventKind::AgentStarted(AgentStarted { agent, task, .. }) => {
                match task {
                    Some(task) => self.view(task).agents.push(agent.clone()),
                    None => self.run_agents.push(agent.clone()),
                }
                self.transcripts.entry(agent.clone()).or_default();
                self.agent_back = 0;
                self.follow_working(agent, task.as_ref());
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
                self.view(task).conflict_files = match result {
                    MergeOutcome::Conflict { files } => files.clone(),
                    _ => Vec::new(),
                };
            }
            EventKind::TaskStateChanged(TaskStateChanged {
                task, to, reason, ..
            }) if *to == TaskState::AwaitingGate => {
                self.view(task).gate_reason = reason.clone();
            }
            EventKind::Escalated(Escalated { task, reason }) => {
                self.view(task).escalation = Some(reason.clone());
            }
            _ => {}
        }
    }

    /// What an agent's transcript shows: its conversation and calls, and
    /// the factory's notes on it.
    fn fold_transcript(&mut self, event: &Event) {
        let (agent, note) = match &event.kind {
            EventKind::AgentMessage(AgentMessage { agent, from, text }) => {
                self.transcript(agent).message(*from, text);
                return;
            }
            EventKind::ToolCalled(ToolCalled {
                agent,
                tool,
                arguments,
                ..
            }) => {
                self.transcript(agent).tool_call(tool, arguments);
                return;
            }
            EventKind::ToolResult(ToolResult {
                agent, ok, output, ..
            }) => {
                self.transcript(agent).tool_result(*ok, output);
                return;
            }
            EventKind::McpToolsListed(McpToolsListed { agent, servers }) => {
                let transcript = self.transcript(agent);
                for server in servers {
                    transcript.message(MessageAuthor::System, &server.line());
                }
                return;
            }
            EventKind::ShepherdIntervened(e) => match &e.agent {
                Some(agent) => (
                    agent,
                    format!("shepherd: {}", first_line(&narrate::intervention(e))),
                ),
                None => return,
            },
            EventKind::ReplyBrokenOff(e) => (&e.agent, narrate::broken_off(e)),
            EventKind::ContextCompacted(e) => {
                let mut text = narrate::compaction(e);
                if let Some(note) = &e.note {
                    text.push('\n');
                    text.push_str(note);
                }
                (&e.agent, text)
            }
            _ => return,
        };
        self.transcript(agent).message(MessageAuthor::System, &note);
    }

    fn transcript(
        &mut self,
        agent: &crate::domain::AgentId,
    ) -> &mut crate::tui::transcript::Transcript {
        self.transcripts.entry(agent.clone()).or_default()
    }
}
