//! The runs browser: past runs of this repository, newest first; Enter
//! replays the selected one.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::theme::{Role, Theme};
use crate::domain::RunId;
use crate::domain::ids::civil_from_unix;
use crate::effects::store::RunSummary;

pub struct RunsView {
    pub runs: Vec<RunSummary>,
    pub selected: usize,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunsAction {
    Open(RunId),
    Quit,
}

/// `YYYY-MM-DD HH:MM` (UTC) of a unix-ms instant.
pub fn when(ms: u64) -> String {
    let (y, mo, d, h, mi, _) = civil_from_unix(ms / 1000);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
}

impl RunsView {
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<RunsAction> {
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Some(RunsAction::Quit),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.runs.len().saturating_sub(1));
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Enter => {
                return self
                    .runs
                    .get(self.selected)
                    .map(|r| RunsAction::Open(r.run.clone()));
            }
            _ => {}
        }
        None
    }

    pub fn render(&self, frame: &mut Frame, theme: &Theme) {
        let rows =
            Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).split(frame.area());
        let mut lines = vec![Line::from(Span::styled(
            format!(
                " {:<30} {:<16} {:<9} {:>5} {:>6} {:>6} {:>8}  requirement",
                "run", "started (UTC)", "phase", "tasks", "merged", "failed", "tokens"
            ),
            theme.style(Role::Muted),
        ))];
        for (i, r) in self.runs.iter().enumerate() {
            let title: String = r
                .requirement
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(50)
                .collect();
            let line = Line::from(Span::styled(
                format!(
                    " {:<30} {:<16} {:<9} {:>5} {:>6} {:>6} {:>8}  {title}",
                    r.run.as_str(),
                    when(r.started_ms),
                    r.phase.map(|p| p.as_str()).unwrap_or("-"),
                    r.tasks,
                    r.merged,
                    r.failed,
                    r.tokens
                ),
                theme.style(Role::Text),
            ));
            lines.push(if i == self.selected {
                line.style(theme.style(Role::Selection))
            } else {
                line
            });
        }
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.style(Role::Border))
            .title(Span::styled(" Runs ", theme.style(Role::Accent)));
        frame.render_widget(Paragraph::new(lines).block(block), rows[0]);
        let status = self
            .note
            .clone()
            .unwrap_or_else(|| " ↑/↓ select · Enter replay · q quit".into());
        frame.render_widget(
            Paragraph::new(status).style(theme.style(Role::StatusBar)),
            rows[1],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_opens_the_selected_run() {
        let summary = |id: &str| RunSummary {
            run: RunId::from(id),
            started_ms: 1_795_524_694_000,
            last_event_ms: 1_795_524_700_000,
            requirement: "Add stats".into(),
            phase: None,
            tasks: 6,
            merged: 6,
            failed: 0,
            tokens: 100,
            events: 10,
            base_commit: None,
        };
        let mut view = RunsView {
            runs: vec![summary("b"), summary("a")],
            selected: 0,
            note: None,
        };
        view.handle_key(KeyEvent::from(KeyCode::Down));
        assert_eq!(
            view.handle_key(KeyEvent::from(KeyCode::Enter)),
            Some(RunsAction::Open("a".into()))
        );
        assert_eq!(when(1_795_524_694_000), "2026-11-24 12:51");
    }
}
