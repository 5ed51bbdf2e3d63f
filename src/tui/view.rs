//! Draws the cockpit from the model. Rendering reads the model only; it does
//! no IO and renders just the visible window of long transcripts and diffs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Tabs, Wrap};

use super::app::{App, Modal, Tab};
use super::theme::{Role, Theme};
use super::transcript::LineKind;
use crate::domain::attention::AttentionKind;
use crate::domain::{RunPhase, TaskState};
use diff::{diff_line, render_conflicts, render_diff};

/// Below this the cockpit says so instead of drawing a broken layout.
const MIN_WIDTH: u16 = 40;
const MIN_HEIGHT: u16 = 10;
/// From this width the DAG sits left of the detail pane.
const WIDE: u16 = 120;

pub fn glyph(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "○",
        TaskState::Ready => "◌",
        TaskState::Running => "●",
        TaskState::Reviewing => "◐",
        TaskState::Testing => "◑",
        TaskState::AwaitingGate => "⏸",
        TaskState::Queued => "⋯",
        TaskState::Merging => "⇢",
        TaskState::Verifying => "⧗",
        TaskState::Merged => "✔",
        TaskState::Failed => "✖",
        TaskState::Conflict => "≠",
        TaskState::Blocked => "⊘",
        TaskState::Cancelled => "–",
        TaskState::OverBudget => "$",
    }
}

pub fn render(frame: &mut Frame, app: &App, theme: &Theme) {
    render_in(frame, frame.area(), app, theme);
}

/// Draws the cockpit into `area` (the replay keeps a line for its timeline).
pub fn render_in(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = Paragraph::new(format!(
            "terminal too small ({}x{}); memofab needs {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        ))
        .wrap(Wrap { trim: true })
        .style(theme.style(Role::Warning));
        frame.render_widget(msg, area);
        return;
    }
    let status = status::status_lines(app, theme, area.width);
    let status_height = (status.len() as u16).clamp(1, (area.height / 3).max(1));
    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(status_height),
    ])
    .split(area);
    render_header(frame, app, theme, rows[0]);
    frame.render_widget(
        Paragraph::new(status).style(theme.style(Role::StatusBar)),
        rows[2],
    );

    let body = rows[1];
    let (dag, detail) = if area.width >= WIDE {
        let cols = Layout::horizontal([Constraint::Percentage(38), Constraint::Percentage(62)])
            .split(body);
        (cols[0], cols[1])
    } else {
        let wanted = (app.order.len() as u16 + 2).clamp(3, body.height / 2);
        let parts = Layout::vertical([Constraint::Length(wanted), Constraint::Min(3)]).split(body);
        (parts[0], parts[1])
    };
    render_dag(frame, app, theme, dag);
    render_detail(frame, app, theme, detail);

    match &app.modal {
        Some(Modal::Help) => help::render(frame, theme, area),
        Some(Modal::ConfirmDetach) => {
            let via_store = app.attached.as_ref().is_some_and(|a| a.via_store);
            let (text, title) = if via_store {
                (
                    "This cockpit follows the run through the shared store: the run goes on without it, and `memofab attach RUN` follows it again.",
                    " Detach from the store? ",
                )
            } else {
                (
                    "This cockpit is attached to the daemon: the run goes on without it, and `memofab` here attaches again.",
                    " Detach from the daemon? ",
                )
            };
            let mut lines = crate::text::wrap(text, "", "", 54);
            lines.extend([
                String::new(),
                "q or y  detach   ·   n or Esc  stay".to_owned(),
            ]);
            let rect = centered(area, 58, lines.len() as u16 + 2);
            frame.render_widget(Clear, rect);
            frame.render_widget(
                Paragraph::new(lines.into_iter().map(Line::from).collect::<Vec<_>>())
                    .style(theme.style(Role::Text))
                    .block(bordered(theme, title, true)),
                rect,
            );
        }
        Some(Modal::ConfirmCancel(confirm)) => {
            let question = format!(
                "Cancel {}? Its agents stop and its work is dropped.",
                confirm.task
            );
            let mut lines = crate::text::wrap(&question, "", "", 54);
            lines.extend([
                String::new(),
                "y  cancel it   ·   n or Esc  keep it".to_owned(),
            ]);
            let rect = centered(area, 58, lines.len() as u16 + 2);
            frame.render_widget(Clear, rect);
            frame.render_widget(
                Paragraph::new(lines.into_iter().map(Line::from).collect::<Vec<_>>())
                    .style(theme.style(Role::Text))
                    .block(bordered(theme, " Cancel the task? ", true)),
                rect,
            );
        }
        Some(Modal::Reject { task, input }) => {
            let rect = centered(area, 70, 7);
            frame.render_widget(Clear, rect);
            let mut input = input.clone();
            input.set_block(bordered(
                theme,
                &format!(" Reject {task} at the gate: feedback for the coder "),
                true,
            ));
            frame.render_widget(&input, rect);
        }
        Some(Modal::Answer {
            agent,
            question,
            input,
            ..
        }) => {
            let rect = centered(area, 80, 9);
            frame.render_widget(Clear, rect);
            let mut input = input.clone();
            input.set_block(bordered(
                theme,
                &format!(" {agent} asks: {question} "),
                true,
            ));
            frame.render_widget(&input, rect);
        }
        Some(Modal::EditTask { task, input }) => {
            let rect = centered(area, 80, 12);
            frame.render_widget(Clear, rect);
            let mut input = input.clone();
            input.set_block(bordered(
                theme,
                &format!(" Edit {task}: description, then '---', then acceptance criteria (Ctrl-S saves) "),
                true,
            ));
            frame.render_widget(&input, rect);
        }
        Some(Modal::Search { query }) => {
            let rect = Rect::new(
                detail.x,
                detail.y + detail.height.saturating_sub(1),
                detail.width,
                1,
            );
            frame.render_widget(Clear, rect);
            frame.render_widget(
                Paragraph::new(format!("/{query}")).style(theme.style(Role::Accent)),
                rect,
            );
        }
        None => {}
    }
}

fn bordered<'a>(theme: &Theme, title: &str, focus: bool) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style(if focus {
            Role::BorderFocus
        } else {
            Role::Border
        }))
        .title(Span::styled(title.to_owned(), theme.style(Role::Accent)))
}

fn render_header(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let mut spans = vec![Span::styled(
        format!(" {} ", app.title),
        theme.style(Role::Accent),
    )];
    if let Some(attached) = &app.attached {
        let (text, role) = match (&attached.lost, attached.via_store) {
            (Some(_), false) => ("✖ daemon connection lost ", Role::Error),
            (None, false) => ("⇄ attached to the daemon ", Role::Muted),
            (Some(_), true) => ("✖ store connection lost ", Role::Error),
            (None, true) => ("⇄ following through the store ", Role::Muted),
        };
        spans.push(Span::styled(text, theme.style(role)));
    }
    if let Some(state) = &app.state {
        spans.push(Span::styled(
            format!("run {} ", state.run),
            theme.style(Role::Muted),
        ));
        let title = state
            .blueprint
            .as_ref()
            .map(|b| b.title.clone())
            .unwrap_or_else(|| state.requirement.lines().next().unwrap_or("").to_owned());
        spans.push(Span::styled(title, theme.style(Role::Text)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[derive(Default)]
struct ConflictRisk {
    /// Tasks whose write-sets overlap the selected one's.
    tasks: Vec<crate::domain::TaskId>,
    lines: Vec<Line<'static>>,
}

fn conflict_risk(state: &crate::domain::RunState, task: &crate::domain::TaskId) -> ConflictRisk {
    use crate::domain::schedule;
    let overlaps = schedule::overlapping(state, task);
    let mut lines = Vec::new();
    for (other, places) in schedule::held_back_by(state, task) {
        lines.push(Line::from(format!(
            "waits for {other}: {}",
            places.first().map(|o| o.theirs.as_str()).unwrap_or("")
        )));
    }
    for (other, places) in &overlaps {
        let shared: Vec<&str> = places.iter().map(|o| o.ours.as_str()).take(2).collect();
        lines.push(Line::from(format!(
            "⚠ {task} overlaps {other}: {}",
            shared.join(", ")
        )));
    }
    ConflictRisk {
        tasks: overlaps.into_iter().map(|(t, _)| t).collect(),
        lines,
    }
}

fn render_dag(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let block = bordered(theme, " Blueprint ", false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    app.dag_area.set(inner);
    let Some(state) = &app.state else {
        if let Some(attached) = &app.attached {
            frame.render_widget(
                Paragraph::new(status::attached_waiting(attached))
                    .wrap(Wrap { trim: true })
                    .style(theme.style(Role::Muted)),
                inner,
            );
        }
        return;
    };
    if app.order.is_empty() {
        let msg = match state.phase {
            RunPhase::Planning if !state.spec_submitted => {
                "Edit the requirement in the Spec tab (5), then Ctrl-S.".to_owned()
            }
            RunPhase::Planning => match quota::parked_run_agent(state) {
                Some(p) => format!("Planning… {}", quota::parked_text(p, app.now_ms, true)),
                None => "Planning…".to_owned(),
            },
            _ => "No blueprint.".to_owned(),
        };
        frame.render_widget(
            Paragraph::new(msg)
                .wrap(Wrap { trim: true })
                .style(theme.style(Role::Muted)),
            inner,
        );
        return;
    }
    // The conflict-risk view: what the selected task's write-set overlaps.
    let risk = app
        .selected_task()
        .map(|t| conflict_risk(state, t))
        .unwrap_or_default();
    let inner = if risk.lines.is_empty() || inner.height < 8 {
        inner
    } else {
        let footer = (risk.lines.len() as u16).min(inner.height / 3);
        let parts = Layout::vertical([Constraint::Min(3), Constraint::Length(footer)]).split(inner);
        frame.render_widget(
            Paragraph::new(risk.lines.clone())
                .style(theme.style(Role::Warning))
                .wrap(Wrap { trim: true }),
            parts[1],
        );
        parts[0]
    };
    // Keep the selection visible.
    let height = usize::from(inner.height.max(1));
    let first = app.selected.saturating_sub(height - 1);
    let mut lines = Vec::new();
    for (i, (id, depth)) in app.order.iter().enumerate().skip(first).take(height) {
        let Some(task) = state.task(id) else { continue };
        let style = theme.task(task.state);
        let elapsed = if task.state.is_active() || task.state == TaskState::AwaitingGate {
            format_secs(app.now_ms.saturating_sub(task.since_ms) / 1000)
        } else {
            String::new()
        };
        let label = match state.queue_position(id) {
            Some(place) => format!("{} #{place}", task.state.as_str()),
            None => task.state.as_str().to_owned(),
        };
        // Fixed columns first, then the tree: indentation never shifts them.
        let mut spans = vec![
            Span::styled(format!("{} {label:<13}", glyph(task.state)), style),
            Span::styled(
                format!("{:>6} ", task_spend(app, id, task.tokens.total())),
                theme.style(Role::Muted),
            ),
            Span::styled(format!("{elapsed:>5} "), theme.style(Role::Muted)),
            Span::styled(
                if risk.tasks.contains(id) { "⚠" } else { " " },
                theme.style(Role::Warning),
            ),
            Span::raw("  ".repeat(*depth)),
            Span::styled(id.as_str().to_owned(), style),
        ];
        // Short here, before the title, so it shows; the transcript's title
        // says why.
        if let Some(parked) = quota::parked_on_task(state, id) {
            spans.push(Span::styled(
                format!("  {}", quota::parked_text(parked, app.now_ms, false)),
                theme.style(Role::Warning),
            ));
        }
        // Wherever there is room: the line is cut at the pane's edge.
        spans.push(Span::styled(
            format!("  {}", task.spec.title),
            theme.style(Role::Muted),
        ));
        let mut line = Line::from(spans);
        if i == app.selected {
            line = line.style(theme.style(Role::Selection));
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_detail(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let parts = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).split(area);
    let titles: Vec<Line> = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut title = format!("{} {}", i + 1, t.title());
            let n = match t {
                Tab::Gates => app.gated_tasks().len(),
                Tab::Inbox => app.inbox().len(),
                _ => 0,
            };
            if n > 0 {
                title.push_str(&format!(" ({n})"));
            }
            Line::from(title)
        })
        .collect();
    let selected = Tab::ALL.iter().position(|t| *t == app.tab).unwrap_or(0);
    frame.render_widget(
        Tabs::new(titles)
            .select(selected)
            .style(theme.style(Role::Muted))
            .highlight_style(theme.style(Role::Accent)),
        parts[0],
    );
    let body = parts[1];
    match app.tab {
        Tab::Transcript => render_transcript(frame, app, theme, body),
        Tab::Diff => render_diff(frame, app, theme, body),
        Tab::Conflicts => render_conflicts(frame, app, theme, body),
        Tab::Gates => render_gates(frame, app, theme, body),
        Tab::Spec => render_spec(frame, app, theme, body),
        Tab::Log => log::render(frame, app, theme, body),
        Tab::Inbox => render_inbox(frame, app, theme, body),
    }
}

fn render_transcript(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let parked = app.shown_agent().and_then(|a| {
        let state = app.state.as_ref()?;
        quota::parked_agent(state, a).map(|p| quota::parked_text(p, app.now_ms, true))
    });
    let agent = match (app.shown_agent(), parked) {
        (Some(a), Some(parked)) => format!("{a} · {parked}"),
        (Some(a), None) => a.to_string(),
        (None, _) => "no agent yet".into(),
    };
    let follow = if app.scroll.follow {
        "following"
    } else {
        "paused — G to follow"
    };
    let hits = app
        .selected_task()
        .and_then(|id| app.state.as_ref()?.task(id))
        .map(|task| cache_hits(&task.tokens))
        .unwrap_or_default();
    let block = bordered(theme, &format!(" {agent}{hits} · {follow} "), true);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Why the task stopped, in full, above its transcript.
    let why = ended_why(app, inner.width);
    let why_height = (why.len() as u16).min(inner.height / 2);
    let parts = Layout::vertical([Constraint::Length(why_height), Constraint::Min(0)]).split(inner);
    frame.render_widget(
        Paragraph::new(why).style(theme.style(Role::Error)),
        parts[0],
    );
    let inner = parts[1];
    app.detail_height.set(inner.height);
    let Some(transcript) = app.shown_transcript() else {
        return;
    };
    let height = usize::from(inner.height);
    let total = transcript.len(app.expanded);
    let offset = if app.scroll.follow {
        total.saturating_sub(height)
    } else {
        app.scroll.offset.min(total)
    };
    let hit = app.search.hits.get(app.search.current).copied();
    let lines: Vec<Line> = (offset..(offset + height).min(total))
        .filter_map(|i| {
            transcript.line(i, app.expanded).map(|(kind, text)| {
                let role = match kind {
                    LineKind::Agent => Role::AgentText,
                    LineKind::Thinking => Role::Muted,
                    LineKind::Factory => Role::AgentHuman,
                    LineKind::ToolCall => Role::ToolCall,
                    LineKind::ToolOk | LineKind::ResultBody => Role::ToolOk,
                    LineKind::ToolError => Role::ToolError,
                };
                let style = if Some(i) == hit {
                    theme.style(Role::SearchMatch)
                } else {
                    theme.style(role)
                };
                Line::from(Span::styled(text.to_owned(), style))
            })
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The selected task's failure (or block, or cancellation) and its reason,
/// wrapped to `width`.
fn ended_why(app: &App, width: u16) -> Vec<Line<'static>> {
    let Some(task) = app
        .selected_task()
        .and_then(|t| app.state.as_ref()?.task(t))
    else {
        return Vec::new();
    };
    let ended = matches!(
        task.state,
        TaskState::Failed | TaskState::Blocked | TaskState::Cancelled
    );
    match &task.reason {
        Some(reason) if ended => crate::text::wrap(
            &format!("{} {}: {reason}", glyph(task.state), task.state),
            "",
            "  ",
            usize::from(width),
        )
        .into_iter()
        .map(Line::from)
        .collect(),
        _ => Vec::new(),
    }
}

fn render_gates(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let block = bordered(theme, " Gate queue · a approve  r reject ", true);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let gated = app.gated_tasks();
    if gated.is_empty() {
        frame.render_widget(
            Paragraph::new("Nothing waits at the gate.").style(theme.style(Role::Muted)),
            inner,
        );
        return;
    }
    let target = app.gate_target();
    let mut lines = Vec::new();
    for task in &gated {
        let view = app.task_views.get(task);
        let marker = if Some(task) == target.as_ref() {
            "▶"
        } else {
            " "
        };
        // One line per typed reason when the gate recorded them; the
        // transition's one-line reason for runs stored before that.
        let reasons = app
            .state
            .as_ref()
            .and_then(|s| s.task(task))
            .map(|t| t.gate_reasons.as_slice())
            .unwrap_or_default();
        let reason = if reasons.is_empty() {
            view.and_then(|v| v.gate_reason.clone()).unwrap_or_default()
        } else {
            "needs approval:".to_owned()
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!("{marker} {} {task} ", glyph(TaskState::AwaitingGate)),
                theme.task(TaskState::AwaitingGate),
            ),
            Span::styled(reason, theme.style(Role::Text)),
        ]));
        for why in reasons {
            lines.push(Line::from(Span::styled(
                format!("    · {why}"),
                theme.style(Role::Text),
            )));
        }
        if let Some(v) = view {
            lines.push(Line::from(Span::styled(
                format!("    files: {}", v.files.join(", ")),
                theme.style(Role::Muted),
            )));
        }
    }
    if let Some(view) = target.as_ref().and_then(|t| app.task_views.get(t)) {
        lines.push(Line::from(""));
        let mut file = String::new();
        for line in view.diff.lines() {
            if let Some(path) = line.strip_prefix("+++ b/") {
                file = path.to_owned();
            }
            lines.push(diff_line(line, &file, theme));
        }
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_inbox(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let block = bordered(
        theme,
        " Waiting on you · most blocking first · Enter does the action ",
        true,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let items = app.inbox();
    if items.is_empty() {
        frame.render_widget(
            Paragraph::new("Nothing waits on you.").style(theme.style(Role::Muted)),
            inner,
        );
        return;
    }
    let cursor = app.inbox_selected(items.len());
    let mut lines = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let marker = if i == cursor { "▶" } else { " " };
        let what = item
            .task
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_else(|| match item.kind {
                AttentionKind::Proposals => "report".to_owned(),
                _ => "run".to_owned(),
            });
        let waited = format_secs(app.now_ms.saturating_sub(item.since_ms) / 1000);
        let mut line = Line::from(vec![
            Span::styled(
                format!("{marker} {:<10} {what:<12}", item.kind.label()),
                theme.style(Role::Accent),
            ),
            Span::styled(
                format!(" blocks {:<3} waiting {waited:>6}  ", item.blocks),
                theme.style(Role::Muted),
            ),
            Span::styled(format!("⏎ {}", item.kind.action()), theme.style(Role::Text)),
        ]);
        if i == cursor {
            line = line.style(theme.style(Role::Selection));
        }
        lines.push(line);
        lines.push(Line::from(Span::styled(
            format!("    {}", item.detail),
            theme.style(Role::Muted),
        )));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn render_spec(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let editable = app.spec_editable();
    let queued = app.attached.as_ref().and_then(|a| a.queued);
    let title = match queued {
        Some(id) => format!(" Requirement (queued as {id}) "),
        None if editable => " Requirement ".to_owned(),
        None => " Requirement (submitted) ".to_owned(),
    };
    let keys = if app.attached.is_some() {
        "Ctrl-S queue it for the daemon · Esc or Tab leave the editor (the draft is kept)"
    } else {
        "Ctrl-S start planning · Ctrl-B ask the planner · Esc or Tab leave the editor (the draft is kept)"
    };
    // The editor takes every key: say how to get out, wrapped, below it.
    let area = if editable {
        let keys = crate::text::wrap(keys, " ", " ", usize::from(area.width));
        let height = (keys.len() as u16).min(area.height / 3);
        let parts = Layout::vertical([Constraint::Min(3), Constraint::Length(height)]).split(area);
        frame.render_widget(
            Paragraph::new(keys.into_iter().map(Line::from).collect::<Vec<_>>())
                .style(theme.style(Role::Muted)),
            parts[1],
        );
        parts[0]
    } else {
        area
    };
    let brainstorm = app
        .transcripts
        .get(&crate::engine::run::brainstorm::Brainstorm::agent());
    let (editor, chat) = match brainstorm {
        Some(t) if !t.is_empty() => {
            let parts = Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)])
                .split(area);
            (parts[0], Some((parts[1], t)))
        }
        _ => (area, None),
    };
    let mut spec = app.spec.clone();
    spec.set_block(bordered(theme, &title, editable));
    if !editable {
        spec.set_cursor_style(Style::default());
    }
    frame.render_widget(&spec, editor);
    if let Some((rect, transcript)) = chat {
        let block = bordered(theme, " Planner ", false);
        let inner = block.inner(rect);
        frame.render_widget(block, rect);
        let height = usize::from(inner.height);
        let total = transcript.len(true);
        let lines: Vec<Line> = (total.saturating_sub(height)..total)
            .filter_map(|i| transcript.line(i, true))
            .map(|(kind, text)| {
                let role = match kind {
                    LineKind::Factory => Role::AgentHuman,
                    LineKind::Thinking => Role::Muted,
                    _ => Role::AgentText,
                };
                Line::from(Span::styled(text.to_owned(), theme.style(role)))
            })
            .collect();
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
    }
}

mod diff;
mod help;
mod log;
mod quota;
mod status;

#[cfg(test)]
mod tests;

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn format_secs(secs: u64) -> String {
    if secs >= 60 {
        format!("{}m{:02}", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// A task's cost when prices are configured, else its token count.
fn task_spend(app: &App, task: &crate::domain::TaskId, tokens: u64) -> String {
    match app.costs.per_task.get(task) {
        Some(cost) if app.costs.priced => format!("${cost:.2}"),
        _ => short_tokens(tokens),
    }
}

/// The share of prompt tokens read from the provider's cache, as
/// ` · cache 81%`; nothing before any cache read.
fn cache_hits(usage: &crate::domain::TokenUsage) -> String {
    if usage.cached == 0 {
        return String::new();
    }
    let rate = 100 * usage.cached / usage.input.max(1);
    format!(" · cache {rate}%")
}

fn short_tokens(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else if n >= 1_000 {
        format!("{:.1}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}
