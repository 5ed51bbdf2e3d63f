//! The `?` overlay: every key, its description wrapped to the screen so no
//! line is cut, whatever the terminal's width.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::{bordered, centered};
use crate::text::wrap;
use crate::tui::theme::{Role, Theme};

const HELP: &[(&str, &str)] = &[
    ("↑/↓ j/k", "select a task (mouse: click)"),
    (
        "Tab, 1-7",
        "switch tab: transcript, diff, conflicts, gates, spec, log, inbox",
    ),
    (
        "i  Enter",
        "inbox: what waits on you; Enter does the item's action",
    ),
    (
        "PgUp/PgDn J/K",
        "scroll (wheel too); scrolling up pauses follow",
    ),
    ("G / End", "follow the live tail again"),
    ("< >", "older / newer agent of the task"),
    ("x", "expand or fold tool results"),
    ("/ n N", "search the transcript, next, previous"),
    ("[ ]", "previous / next diff hunk"),
    ("a", "approve the merge waiting at the gate"),
    ("r", "reject it with feedback for the coder"),
    ("p", "pause / resume the run"),
    (
        "c  R  E",
        "cancel (asks first), retry, edit the selected task",
    ),
    (
        "w v e m",
        "conflicts: rework, resolver, $EDITOR, mark resolved",
    ),
    ("Ctrl-S", "submit the requirement (spec tab) or a task edit"),
    ("Ctrl-B", "spec tab: ask the planner about the draft"),
    ("Esc  Tab", "spec tab: leave the editor (the draft is kept)"),
    (
        "q",
        "quit (the run can be resumed); attached to the daemon: detach (the run goes on)",
    ),
];

/// Width of the key column.
const KEYS: usize = 16;
/// The overlay is no wider than this, however wide the screen.
const MAX_WIDTH: u16 = 90;

/// The overlay's lines for an inner width of `width` columns.
fn lines(theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let text_width = width.saturating_sub(KEYS).max(10);
    let mut lines = Vec::new();
    for (key, description) in HELP {
        for (i, part) in wrap(description, "", "", text_width)
            .into_iter()
            .enumerate()
        {
            let key = if i == 0 { *key } else { "" };
            lines.push(Line::from(vec![
                Span::styled(
                    format!(" {key:<w$}", w = KEYS - 1),
                    theme.style(Role::Accent),
                ),
                Span::styled(part, theme.style(Role::Text)),
            ]));
        }
    }
    lines
}

pub(super) fn render(frame: &mut Frame, theme: &Theme, area: Rect) {
    let width = area.width.min(MAX_WIDTH);
    let lines = lines(theme, usize::from(width.saturating_sub(2)));
    let rect = centered(area, width, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(bordered(theme, " Keys · any key closes ", true)),
        rect,
    );
}
