//! The cockpit's model: everything the screen shows, folded from engine
//! updates, plus selection, tabs, scrolling and modals. Pure: no terminal, no
//! IO. Keys become [`Action`]s; the event loop carries them out.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;
use tui_textarea::TextArea;

mod attached;
mod fold;
mod modal;

#[cfg(test)]
pub(crate) use attached::attached_app;
pub use attached::{Attached, Feed};
pub use modal::{ConfirmCancel, Modal};

use super::transcript::Transcript;
use crate::config::Price;
use crate::domain::attention::{self, AttentionItem, AttentionKind};
use crate::domain::event::TaskStateChanged;
use crate::domain::overseer::WaitingProposals;
use crate::domain::{
    AgentId, ConflictFile, Event, EventKind, RunPhase, RunState, TaskId, TaskState,
};
use crate::llm::pricing::Costs;
use crate::protocol::{Command, ConflictResolution, EngineUpdate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Transcript,
    Diff,
    Conflicts,
    Gates,
    Spec,
    Log,
    Inbox,
}

impl Tab {
    pub const ALL: [Tab; 7] = [
        Tab::Transcript,
        Tab::Diff,
        Tab::Conflicts,
        Tab::Gates,
        Tab::Spec,
        Tab::Log,
        Tab::Inbox,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Transcript => "Transcript",
            Tab::Diff => "Diff",
            Tab::Conflicts => "Conflicts",
            Tab::Gates => "Gates",
            Tab::Spec => "Spec",
            Tab::Log => "Log",
            Tab::Inbox => "Inbox",
        }
    }
}

/// The event-derived part of the model, comparable between a live run and a
/// replay (see [`App::digest`]).
#[derive(Debug, PartialEq)]
pub struct Digest<'a> {
    pub state: Option<&'a RunState>,
    pub order: &'a [(TaskId, usize)],
    pub run_agents: &'a [AgentId],
    pub views: Vec<(&'a TaskId, &'a TaskView)>,
    #[allow(clippy::type_complexity)]
    pub transcripts: Vec<(&'a AgentId, (&'a [super::transcript::TLine], &'a [usize]))>,
    pub log: &'a [LogLine],
}

/// What a key asks the event loop to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(Command),
    /// Suspend the cockpit and edit this file in $EDITOR.
    Edit(PathBuf),
    Quit,
}

/// What the view knows of one task beyond its state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskView {
    pub agents: Vec<AgentId>,
    pub diff: String,
    pub files: Vec<String>,
    pub conflicts: Vec<ConflictFile>,
    pub conflict_files: Vec<String>,
    pub gate_reason: Option<String>,
    pub worktree: Option<String>,
    pub escalation: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scroll {
    /// First visible line.
    pub offset: usize,
    /// Stick to the end as lines arrive.
    pub follow: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    pub query: String,
    pub hits: Vec<usize>,
    pub current: usize,
}

/// A notable event for the Log tab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at_ms: u64,
    pub warn: bool,
    pub text: String,
}

pub struct App {
    pub title: String,
    pub state: Option<RunState>,
    pub transcripts: HashMap<AgentId, Transcript>,
    pub task_views: HashMap<TaskId, TaskView>,
    /// Agents not bound to a task (planner, plan reviewer), in order.
    pub run_agents: Vec<AgentId>,
    /// Tasks in display order (dependencies first) with their depth.
    pub order: Vec<(TaskId, usize)>,
    pub log: Vec<LogLine>,
    pub selected: usize,
    /// Which of the selected task's agents the transcript shows, from the latest.
    pub agent_back: usize,
    /// Whether the human picked a task or an agent to look at. Until they
    /// do, the transcript follows the agent that started last: the one at
    /// work, not the first task's.
    pub chosen: bool,
    /// A run's own agent (not a task's) that started after the tasks did,
    /// shown while nothing is chosen; a task's agent is followed by
    /// selecting its task.
    pub working: Option<AgentId>,
    /// Feedback for the last key that did nothing (a search without a match,
    /// an empty requirement), shown under the status bar until the next key.
    pub notice: Option<String>,
    /// The task whose conflict the human marked resolved, until the engine
    /// answers: if it finds markers left, its reason becomes the notice.
    pub marked_resolved: Option<TaskId>,
    /// A replay: keys that decide nothing are not offered.
    pub read_only: bool,
    pub tab: Tab,
    pub scroll: Scroll,
    pub expanded: bool,
    pub search: Search,
    pub hunk: usize,
    pub modal: Option<Modal>,
    pub spec: TextArea<'static>,
    pub spec_loaded: bool,
    pub stopped: Option<Option<String>>,
    pub now_ms: u64,
    /// Set by the view each frame: where the DAG rows are and how tall the
    /// detail pane is, for mouse hits and scrolling.
    pub dag_area: Cell<Rect>,
    pub detail_height: Cell<u16>,
    /// Model prices from config, and what the run has cost so far.
    pub prices: BTreeMap<String, Price>,
    pub costs: Costs,
    /// Which attention item the Inbox tab has selected.
    pub inbox_cursor: usize,
    /// Set when the cockpit follows the daemon's run over its socket.
    pub attached: Option<Attached>,
    /// The overseer's proposals waiting for a decision, as last told.
    pub proposals: Option<WaitingProposals>,
}

impl App {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            state: None,
            transcripts: HashMap::new(),
            task_views: HashMap::new(),
            run_agents: Vec::new(),
            order: Vec::new(),
            log: Vec::new(),
            selected: 0,
            agent_back: 0,
            chosen: false,
            working: None,
            notice: None,
            marked_resolved: None,
            read_only: false,
            tab: Tab::Transcript,
            scroll: Scroll {
                offset: 0,
                follow: true,
            },
            expanded: false,
            search: Search::default(),
            hunk: 0,
            modal: None,
            spec: TextArea::default(),
            spec_loaded: false,
            stopped: None,
            now_ms: 0,
            dag_area: Cell::new(Rect::default()),
            detail_height: Cell::new(20),
            prices: BTreeMap::new(),
            costs: Costs::default(),
            inbox_cursor: 0,
            attached: None,
            proposals: None,
        }
    }

    /// Builds the model from stored events, as a replay or a test would.
    pub fn from_events<'a>(title: &str, events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut app = App::new(title);
        app.fold(events);
        app
    }

    /// Folds stored events in, as `update` would one by one, without copying
    /// them: a replay jumping over a million events does this.
    pub fn fold<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for event in events {
            self.apply(event);
        }
        self.follow_tail();
    }

    pub fn selected_task(&self) -> Option<&TaskId> {
        self.order.get(self.selected).map(|(id, _)| id)
    }

    pub fn task_state(&self, task: &TaskId) -> Option<TaskState> {
        self.state
            .as_ref()
            .and_then(|s| s.task(task))
            .map(|t| t.state)
    }

    /// The agent whose transcript is on screen.
    pub fn shown_agent(&self) -> Option<&AgentId> {
        if !self.chosen
            && let Some(working) = &self.working
        {
            return Some(working);
        }
        let agents = self.selectable_agents();
        let n = agents.len();
        if n == 0 {
            return None;
        }
        agents.get(n - 1 - self.agent_back.min(n - 1))
    }

    /// The agents `<` and `>` step through: the selected task's, or the
    /// run's own (planner, reviewers of the plan) before there are tasks.
    fn selectable_agents(&self) -> &[AgentId] {
        match self.selected_task().and_then(|t| self.task_views.get(t)) {
            Some(view) if !view.agents.is_empty() => &view.agents,
            _ => &self.run_agents,
        }
    }

    /// Follows `agent`, just started, unless the human chose what to see:
    /// its task becomes the selected one (its latest agent is the one
    /// shown), so the other tabs show that task too. A run's own agent
    /// starting once there are tasks (the overseer, say) is shown as is.
    fn follow_working(&mut self, agent: &AgentId, task: Option<&TaskId>) {
        if self.chosen {
            return;
        }
        self.working = None;
        match task {
            Some(task) => {
                if let Some(i) = self.order.iter().position(|(id, _)| id == task)
                    && i != self.selected
                {
                    self.selected = i;
                    self.hunk = 0;
                    self.search = Search::default();
                }
            }
            None if !self.order.is_empty() => self.working = Some(agent.clone()),
            None => {}
        }
        self.scroll.follow = true;
    }

    /// The human picked what to look at: the transcript stops following.
    fn choose(&mut self) {
        if !self.chosen {
            self.chosen = true;
            self.working = None;
        }
    }

    pub fn shown_transcript(&self) -> Option<&Transcript> {
        self.shown_agent().and_then(|a| self.transcripts.get(a))
    }

    /// Folds one engine update in. Returns whether anything visible changed.
    pub fn update(&mut self, update: EngineUpdate) -> bool {
        match update {
            EngineUpdate::Event(event) => {
                let first = self.state.is_none();
                self.apply(&event);
                self.answer_mark_resolved(&event);
                // A run waiting for its requirement opens on the editor, so
                // the first thing typed goes into it. Live only: a replay
                // keeps the tab its viewer chose.
                if first && self.spec_editable() {
                    self.tab = Tab::Spec;
                }
            }
            EngineUpdate::Delta { agent, text } => {
                self.transcripts.entry(agent).or_default().delta(&text);
            }
            EngineUpdate::ThinkingDelta { agent, text } => {
                self.transcripts
                    .entry(agent)
                    .or_default()
                    .thinking_delta(&text);
            }
            EngineUpdate::Stopped { error } => {
                if let Some(e) = &error {
                    self.log_line(self.now_ms, true, format!("engine stopped: {e}"));
                }
                self.stopped = Some(error);
            }
            EngineUpdate::ProposalsWaiting(waiting) => self.proposals = Some(waiting),
        }
        self.follow_tail();
        true
    }

    /// The engine's answer to `m`: back in conflict means markers remain,
    /// and the human is told where; any other move ends the wait.
    fn answer_mark_resolved(&mut self, event: &Event) {
        let Some(marked) = &self.marked_resolved else {
            return;
        };
        if let EventKind::TaskStateChanged(TaskStateChanged {
            task, to, reason, ..
        }) = &event.kind
            && task == marked
        {
            match to {
                TaskState::Conflict => {
                    let why = reason.as_deref().unwrap_or("the conflict is not resolved");
                    self.notice = Some(format!("{task} is still in conflict: {why}"));
                    self.marked_resolved = None;
                }
                // On its way: the engine is checking the worktree.
                TaskState::Running => {}
                _ => self.marked_resolved = None,
            }
        }
    }

    fn log_line(&mut self, at_ms: u64, warn: bool, text: String) {
        self.log.push(LogLine { at_ms, warn, text });
    }

    fn view(&mut self, task: &TaskId) -> &mut TaskView {
        self.task_views.entry(task.clone()).or_default()
    }

    /// Orders tasks so each comes after its dependencies, indented by depth.
    fn relayout(&mut self) {
        let Some(blueprint) = self.state.as_ref().and_then(|s| s.blueprint.clone()) else {
            return;
        };
        let order = blueprint
            .topo_order()
            .unwrap_or_else(|| blueprint.tasks.iter().map(|t| t.id.clone()).collect());
        let mut depth: HashMap<TaskId, usize> = HashMap::new();
        for id in &order {
            let d = blueprint
                .task(id)
                .map(|t| {
                    t.depends_on
                        .iter()
                        .filter_map(|dep| depth.get(dep))
                        .map(|d| d + 1)
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0);
            depth.insert(id.clone(), d);
        }
        self.order = order
            .into_iter()
            .map(|id| {
                let d = depth.get(&id).copied().unwrap_or(0);
                (id, d)
            })
            .collect();
        self.selected = self.selected.min(self.order.len().saturating_sub(1));
    }

    fn transcript_len(&self) -> usize {
        self.shown_transcript()
            .map(|t| t.len(self.expanded))
            .unwrap_or(0)
    }

    fn follow_tail(&mut self) {
        if self.scroll.follow {
            let height = usize::from(self.detail_height.get().max(1));
            self.scroll.offset = self.transcript_len().saturating_sub(height);
        }
    }

    fn scroll_by(&mut self, delta: isize) {
        let height = usize::from(self.detail_height.get().max(1));
        let max = self.transcript_len().saturating_sub(height);
        let offset = self.scroll.offset as isize + delta;
        self.scroll.offset = offset.clamp(0, max as isize) as usize;
        // Scrolling back pauses follow; reaching the end resumes it.
        self.scroll.follow = self.scroll.offset >= max;
    }

    fn select(&mut self, index: usize) {
        if index < self.order.len() {
            self.choose();
        }
        if index < self.order.len() && index != self.selected {
            self.selected = index;
            self.agent_back = 0;
            self.hunk = 0;
            self.scroll.follow = true;
            self.search = Search::default();
            self.follow_tail();
        }
    }

    /// The task the gate keys act on: the selected one if it waits at the
    /// gate, else the first that does.
    pub fn gate_target(&self) -> Option<TaskId> {
        if let Some(task) = self.selected_task()
            && self.task_state(task) == Some(TaskState::AwaitingGate)
        {
            return Some(task.clone());
        }
        self.gated_tasks().into_iter().next()
    }

    /// Everything waiting on a human, most blocking first; the overseer's
    /// proposals, which block nothing, last.
    pub fn inbox(&self) -> Vec<AttentionItem> {
        let mut items = self
            .state
            .as_ref()
            .map(attention::inbox)
            .unwrap_or_default();
        items.extend(self.proposals.as_ref().map(attention::proposals_item));
        items
    }

    /// Which of `len` inbox items is selected: the cursor, kept on the list
    /// when items leave it.
    pub fn inbox_selected(&self, len: usize) -> usize {
        self.inbox_cursor.min(len.saturating_sub(1))
    }

    /// What Enter does to the selected inbox item: send its command, or
    /// open the answer box for a question.
    fn resolve_inbox_item(&mut self) -> Option<Command> {
        let items = self.inbox();
        let at = self.inbox_selected(items.len());
        let item = items.into_iter().nth(at)?;
        let task = item.task.clone();
        Some(match item.kind {
            AttentionKind::PlanDispute => Command::SettlePlanDispute { build: true },
            AttentionKind::Question => {
                let (agent, call_id) = item.question?;
                let question = self
                    .state
                    .as_ref()?
                    .questions
                    .iter()
                    .find(|q| q.agent == agent && q.call_id == call_id)?
                    .question
                    .clone();
                let mut input = TextArea::default();
                input.set_placeholder_text("Your answer. Enter sends, Esc cancels.");
                self.modal = Some(Modal::Answer {
                    agent,
                    call_id,
                    question,
                    input,
                });
                return None;
            }
            AttentionKind::Gate | AttentionKind::DirtyCheckout => {
                Command::ApproveGate { task: task? }
            }
            AttentionKind::Conflict => Command::ResolveConflict {
                task: task?,
                resolution: ConflictResolution::Resolver,
            },
            AttentionKind::TaskOverBudget | AttentionKind::RunOverBudget => {
                Command::RaiseBudget { task }
            }
            AttentionKind::Failed | AttentionKind::Stuck => Command::RetryTask { task: task? },
            AttentionKind::QuotaPause => Command::LiftPark {
                provider: item.provider?,
            },
            AttentionKind::RepositoryChanged => Command::Resume,
            // Reviewed in their own screen, outside the run.
            AttentionKind::Proposals => return None,
        })
    }

    /// Moves the inbox cursor and shows the item's task in the other panes.
    fn move_inbox_cursor(&mut self, by: isize) {
        let items = self.inbox();
        if items.is_empty() {
            return;
        }
        self.inbox_cursor = self
            .inbox_selected(items.len())
            .saturating_add_signed(by)
            .min(items.len() - 1);
        if let Some(task) = &items[self.inbox_cursor].task
            && let Some(i) = self.order.iter().position(|(id, _)| id == task)
        {
            self.select(i);
        }
    }

    pub fn gated_tasks(&self) -> Vec<TaskId> {
        self.order
            .iter()
            .filter(|(id, _)| self.task_state(id) == Some(TaskState::AwaitingGate))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether the spec editor takes keys: a run waiting for its
    /// requirement, or an attached cockpit with no run that may queue one.
    pub fn spec_editable(&self) -> bool {
        match &self.state {
            Some(s) => !s.spec_submitted,
            None => self.attached.as_ref().is_some_and(Attached::can_queue),
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Action> {
        self.notice = None;
        if let Some(modal) = self.modal.take() {
            return self.modal_key(modal, key);
        }
        if self.tab == Tab::Spec && self.spec_editable() {
            match (key.code, key.modifiers) {
                (KeyCode::Char('s'), KeyModifiers::CONTROL) => {
                    let requirement = self.spec.lines().join("\n");
                    if requirement.trim().is_empty() {
                        self.notice = Some(
                            "the requirement is empty: write what to build, then Ctrl-S".into(),
                        );
                        return Vec::new();
                    }
                    return vec![Action::Send(Command::SubmitSpec { requirement })];
                }
                // No planner to ask before the daemon starts the run.
                (KeyCode::Char('b'), KeyModifiers::CONTROL) if self.attached.is_some() => {
                    return Vec::new();
                }
                (KeyCode::Char('b'), KeyModifiers::CONTROL) => {
                    let message = self.spec.lines().join("\n");
                    return vec![Action::Send(Command::Brainstorm { message })];
                }
                (KeyCode::Tab, _) | (KeyCode::BackTab, _) => {}
                // Leaves the editor; the draft stays as it is.
                (KeyCode::Esc, _) => {
                    self.tab = Tab::Transcript;
                    return Vec::new();
                }
                (KeyCode::Char('c'), KeyModifiers::CONTROL) => return vec![Action::Quit],
                _ => {
                    self.spec.input(key);
                    return Vec::new();
                }
            }
        }
        if let Some(actions) = self.attached_key(key) {
            return actions;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('q') => return vec![Action::Send(Command::Shutdown), Action::Quit],
            KeyCode::Char('c') if ctrl => {
                return vec![Action::Send(Command::Shutdown), Action::Quit];
            }
            KeyCode::Char('?') => self.modal = Some(Modal::Help),
            KeyCode::Down | KeyCode::Char('j') if self.tab == Tab::Inbox => {
                self.move_inbox_cursor(1)
            }
            KeyCode::Up | KeyCode::Char('k') if self.tab == Tab::Inbox => {
                self.move_inbox_cursor(-1)
            }
            KeyCode::Enter if self.tab == Tab::Inbox => {
                if let Some(command) = self.resolve_inbox_item() {
                    return vec![Action::Send(command)];
                }
            }
            KeyCode::Char('n')
                if self.tab == Tab::Inbox
                    && self
                        .state
                        .as_ref()
                        .is_some_and(|s| s.plan_dispute.is_some()) =>
            {
                return vec![Action::Send(Command::SettlePlanDispute { build: false })];
            }
            KeyCode::Char('i') => {
                self.tab = Tab::Inbox;
                self.move_inbox_cursor(0);
            }
            KeyCode::Down | KeyCode::Char('j') => self.select(self.selected + 1),
            KeyCode::Up | KeyCode::Char('k') => self.select(self.selected.saturating_sub(1)),
            KeyCode::Tab => self.tab = next_tab(self.tab, 1),
            KeyCode::BackTab => self.tab = next_tab(self.tab, -1),
            KeyCode::Char(c @ '1'..='7') => {
                let i = c as usize - '1' as usize;
                self.tab = Tab::ALL[i];
            }
            KeyCode::PageDown | KeyCode::Char('d') if key.code == KeyCode::PageDown || ctrl => {
                self.scroll_by(self.detail_height.get() as isize / 2)
            }
            KeyCode::PageUp | KeyCode::Char('u') if key.code == KeyCode::PageUp || ctrl => {
                self.scroll_by(-(self.detail_height.get() as isize / 2))
            }
            KeyCode::Char('J') => self.scroll_by(1),
            KeyCode::Char('K') => self.scroll_by(-1),
            KeyCode::End | KeyCode::Char('G') => {
                self.scroll.follow = true;
                self.follow_tail();
            }
            KeyCode::Home | KeyCode::Char('g') => {
                self.scroll = Scroll {
                    offset: 0,
                    follow: false,
                };
            }
            KeyCode::Char('x') => {
                self.expanded = !self.expanded;
                self.follow_tail();
            }
            KeyCode::Char('<') | KeyCode::Char('>') => self.step_agent(key.code),
            KeyCode::Char('/') => {
                self.modal = Some(Modal::Search {
                    query: String::new(),
                })
            }
            KeyCode::Char('n') => self.jump_hit(1),
            KeyCode::Char('N') => self.jump_hit(-1),
            KeyCode::Char(']') => self.hunk += 1,
            KeyCode::Char('[') => self.hunk = self.hunk.saturating_sub(1),
            KeyCode::Char('a') => {
                if let Some(task) = self.gate_target() {
                    return vec![Action::Send(Command::ApproveGate { task })];
                }
            }
            KeyCode::Char('r') => {
                if let Some(task) = self.gate_target() {
                    let mut input = TextArea::default();
                    input.set_placeholder_text(
                        "What should the coder change? Enter sends, Esc cancels.",
                    );
                    self.modal = Some(Modal::Reject { task, input });
                }
            }
            KeyCode::Char('p') => {
                let phase = self.state.as_ref().map(|s| s.phase);
                match phase {
                    Some(RunPhase::Paused) => return vec![Action::Send(Command::Resume)],
                    Some(RunPhase::Building) => return vec![Action::Send(Command::Pause)],
                    _ => {}
                }
            }
            KeyCode::Char('c') => {
                if let Some(task) = self.selected_task().cloned()
                    && let Some(state) = self.task_state(&task)
                {
                    if state.can_become(TaskState::Cancelled) {
                        self.modal = Some(Modal::ConfirmCancel(ConfirmCancel { task }));
                    } else {
                        self.notice = Some(format!("{task} is {state}: nothing to cancel"));
                    }
                }
            }
            KeyCode::Char('R') => {
                if let Some(task) = self.selected_task().cloned() {
                    return vec![Action::Send(Command::RetryTask { task })];
                }
            }
            KeyCode::Char('E') => {
                if let Some(task) = self.selected_task().cloned() {
                    let spec = self
                        .state
                        .as_ref()
                        .and_then(|s| s.task(&task))
                        .map(|t| t.spec.clone());
                    if let Some(spec) = spec {
                        let mut lines = vec![spec.description.clone(), "---".to_owned()];
                        lines.extend(spec.acceptance.iter().cloned());
                        let input = TextArea::from(lines);
                        self.modal = Some(Modal::EditTask { task, input });
                    }
                }
            }
            KeyCode::Char(c @ ('w' | 'v' | 'm')) if self.tab == Tab::Conflicts => {
                if let Some(task) = self.selected_task().cloned()
                    && self.task_state(&task) == Some(TaskState::Conflict)
                {
                    let resolution = match c {
                        'w' => ConflictResolution::Rework,
                        'v' => ConflictResolution::Resolver,
                        _ => ConflictResolution::MarkResolved,
                    };
                    self.marked_resolved =
                        (resolution == ConflictResolution::MarkResolved).then(|| task.clone());
                    return vec![Action::Send(Command::ResolveConflict { task, resolution })];
                }
            }
            KeyCode::Char('e') if self.tab == Tab::Conflicts => {
                if let Some(task) = self.selected_task()
                    && let Some(view) = self.task_views.get(task)
                    && let (Some(dir), Some(file)) = (&view.worktree, view.conflict_files.first())
                {
                    return vec![Action::Edit(PathBuf::from(dir).join(file))];
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// `<` goes to the agent before the shown one, `>` to the one after,
    /// each stopping at the ends (the oldest, the latest).
    fn step_agent(&mut self, key: KeyCode) {
        let n = self.selectable_agents().len();
        // Leaving the followed agent starts from the agent it is.
        if !self.chosen {
            let shown = self.shown_agent().cloned();
            self.choose();
            self.agent_back = shown
                .and_then(|a| self.selectable_agents().iter().rev().position(|x| *x == a))
                .unwrap_or(0);
        }
        let last = n.saturating_sub(1);
        self.agent_back = match key {
            KeyCode::Char('<') => (self.agent_back + 1).min(last),
            _ => self.agent_back.min(last).saturating_sub(1),
        };
        self.scroll.follow = true;
        self.follow_tail();
    }

    fn run_search(&mut self, query: &str) {
        let hits = self
            .shown_transcript()
            .map(|t| t.find(query, self.expanded))
            .unwrap_or_default();
        if hits.is_empty() && !query.is_empty() {
            self.notice = Some(format!("no match for {query:?} in this transcript"));
        }
        self.search = Search {
            query: query.to_owned(),
            hits,
            current: 0,
        };
        self.jump_hit(0);
    }

    fn jump_hit(&mut self, step: isize) {
        let n = self.search.hits.len();
        if n == 0 {
            return;
        }
        let current = (self.search.current as isize + step).rem_euclid(n as isize) as usize;
        self.search.current = current;
        let line = self.search.hits[current];
        let height = usize::from(self.detail_height.get().max(1));
        self.scroll = Scroll {
            offset: line.saturating_sub(height / 2),
            follow: false,
        };
    }

    pub fn handle_mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                let area = self.dag_area.get();
                let inside = mouse.column >= area.x
                    && mouse.column < area.x + area.width
                    && mouse.row >= area.y
                    && mouse.row < area.y + area.height;
                if inside {
                    self.select(usize::from(mouse.row - area.y));
                }
            }
            MouseEventKind::ScrollDown => self.scroll_by(3),
            MouseEventKind::ScrollUp => self.scroll_by(-3),
            _ => {}
        }
    }

    /// Everything the model derived from events, in a comparable form:
    /// replays and live runs must agree on it. Streaming text still in
    /// flight is left out, since it is not stored.
    pub fn digest(&self) -> Digest<'_> {
        let mut transcripts: Vec<_> = self
            .transcripts
            .iter()
            .map(|(agent, t)| (agent, t.settled()))
            .collect();
        transcripts.sort_by(|a, b| a.0.cmp(b.0));
        let mut views: Vec<_> = self.task_views.iter().collect();
        views.sort_by(|a, b| a.0.cmp(b.0));
        Digest {
            state: self.state.as_ref(),
            order: &self.order,
            run_agents: &self.run_agents,
            views,
            transcripts,
            log: &self.log,
        }
    }

    /// Keeps what the human chose to look at from another model (replay
    /// rebuilds the model when it steps back).
    pub fn keep_view_of(&mut self, old: &App) {
        // Not chosen: the rebuilt model followed the agent at work there.
        if old.chosen {
            self.selected = old.selected.min(self.order.len().saturating_sub(1));
        }
        self.tab = old.tab;
        self.scroll = old.scroll;
        self.expanded = old.expanded;
        self.agent_back = old.agent_back;
        self.chosen = old.chosen;
        self.read_only = old.read_only;
        self.hunk = old.hunk;
        self.detail_height.set(old.detail_height.get());
    }

    /// Closes the help overlay on any key (handled before other keys).
    pub fn help_open(&self) -> bool {
        matches!(self.modal, Some(Modal::Help))
    }
}

fn next_tab(tab: Tab, step: isize) -> Tab {
    let i = Tab::ALL.iter().position(|t| *t == tab).unwrap_or(0) as isize;
    Tab::ALL[(i + step).rem_euclid(Tab::ALL.len() as isize) as usize]
}

fn first_line(text: &str) -> &str {
    text.trim().lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests;
