//! The Diff and Conflicts tabs: the selected task's change, highlighted,
//! and the files a merge left with conflict markers.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::bordered;
use crate::tui::app::App;
use crate::tui::highlight::highlight_line;
use crate::tui::theme::{Role, Theme};

pub(super) fn render_diff(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let task = app.selected_task();
    let view = task.and_then(|t| app.task_views.get(t));
    let title = match (task, view) {
        (Some(t), Some(v)) if !v.files.is_empty() => format!(" {t}: {} ", v.files.join(", ")),
        (Some(t), _) => format!(" {t}: no change yet "),
        _ => " no task selected ".to_owned(),
    };
    let block = bordered(theme, &title, true);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(view) = view else { return };
    let lines: Vec<&str> = view.diff.lines().collect();
    let hunks: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("@@"))
        .map(|(i, _)| i)
        .collect();
    // Hunk 0 is the top of the diff; `]` steps to the first hunk and on.
    let start = match app.hunk {
        0 => 0,
        _ if hunks.is_empty() => 0,
        n => hunks[(n - 1).min(hunks.len() - 1)],
    };
    let mut file = String::new();
    for line in &lines[..start] {
        if let Some(path) = line.strip_prefix("+++ b/") {
            file = path.to_owned();
        }
    }
    let mut out = Vec::new();
    for line in lines.iter().skip(start).take(usize::from(inner.height)) {
        if let Some(path) = line.strip_prefix("+++ b/") {
            file = path.to_owned();
        }
        out.push(diff_line(line, &file, theme));
    }
    frame.render_widget(Paragraph::new(out), inner);
}

pub(super) fn diff_line(line: &str, file: &str, theme: &Theme) -> Line<'static> {
    let role = if line.starts_with("+++") || line.starts_with("---") || line.starts_with("diff ") {
        Some(Role::DiffFile)
    } else if line.starts_with("@@") {
        Some(Role::DiffHunk)
    } else {
        None
    };
    if let Some(role) = role {
        return Line::from(Span::styled(line.to_owned(), theme.style(role)));
    }
    let (mark, code, role) = match line.chars().next() {
        Some('+') => ("+", &line[1..], Role::DiffAdd),
        Some('-') => ("-", &line[1..], Role::DiffDel),
        Some(' ') => (" ", &line[1..], Role::Text),
        _ => ("", line, Role::Text),
    };
    let mut spans = vec![Span::styled(mark.to_owned(), theme.style(role))];
    match highlight_line(file, code, &theme.syntax_theme) {
        Some(hl) if role == Role::Text => spans.extend(hl),
        Some(hl) => {
            // Keep the add/remove colour as background cue via the marker,
            // syntax colours for the code.
            spans.extend(hl.into_iter().map(|s| s.patch_style(Style::default())));
        }
        None => spans.push(Span::styled(code.to_owned(), theme.style(role))),
    }
    Line::from(spans)
}

pub(super) fn render_conflicts(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let task = app.selected_task();
    let view = task.and_then(|t| app.task_views.get(t));
    let block = bordered(
        theme,
        " Conflicts · w rework  v resolver  e edit  m mark resolved ",
        true,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(view) = view else {
        frame.render_widget(
            Paragraph::new("No conflicts.").style(theme.style(Role::Muted)),
            inner,
        );
        return;
    };
    let mut lines = Vec::new();
    if let Some(reason) = &view.escalation {
        lines.push(Line::from(Span::styled(
            format!("Escalated: {reason}"),
            theme.style(Role::Error),
        )));
    }
    if !view.conflict_files.is_empty() {
        lines.push(Line::from(Span::styled(
            format!(
                "Conflicted on the last merge: {}",
                view.conflict_files.join(", ")
            ),
            theme.style(Role::Warning),
        )));
    }
    for file in &view.conflicts {
        lines.push(Line::from(Span::styled(
            format!("── {} ──", file.path),
            theme.style(Role::DiffFile),
        )));
        for l in file.content.lines() {
            let role = if ["<<<<<<<", "|||||||", "=======", ">>>>>>>"]
                .iter()
                .any(|m| l.starts_with(m))
            {
                Role::ConflictMarker
            } else {
                Role::Text
            };
            lines.push(Line::from(Span::styled(l.to_owned(), theme.style(role))));
        }
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled(
            "No conflicts for this task.",
            theme.style(Role::Muted),
        )));
    }
    let skip = app.scroll.offset.min(lines.len().saturating_sub(1));
    frame.render_widget(
        Paragraph::new(
            lines
                .into_iter()
                .skip(if app.scroll.follow { 0 } else { skip })
                .collect::<Vec<_>>(),
        ),
        inner,
    );
}
