//! The overseer's proposals in the terminal: read each one's evidence and
//! patch, and approve the selected one with a single keystroke.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::theme::{Role, Theme};
use crate::domain::metrics::Proposal;

pub struct ProposalsView {
    pub report: String,
    pub proposals: Vec<Proposal>,
    /// Numbers (1-based) already decided.
    pub decided: Vec<u32>,
    pub selected: usize,
    pub note: Option<String>,
    /// Show the whole report (metrics, findings) instead of one proposal.
    pub show_report: bool,
    pub scroll: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalAction {
    /// Apply proposal number n (1-based).
    Approve(u32),
    Quit,
}

impl ProposalsView {
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<ProposalAction> {
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Some(ProposalAction::Quit),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.proposals.len().saturating_sub(1));
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Char('m') => {
                self.show_report = !self.show_report;
                self.scroll = 0;
            }
            KeyCode::PageDown | KeyCode::Char('J') => self.scroll = self.scroll.saturating_add(10),
            KeyCode::PageUp | KeyCode::Char('K') => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Char('a') if !self.proposals.is_empty() => {
                let n = self.selected as u32 + 1;
                if self.decided.contains(&n) {
                    self.note = Some(format!("proposal {n} is already applied"));
                } else {
                    return Some(ProposalAction::Approve(n));
                }
            }
            _ => {}
        }
        None
    }

    pub fn render(&self, frame: &mut Frame, theme: &Theme) {
        let rows = Layout::vertical([
            Constraint::Length(self.proposals.len() as u16 + 2),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .split(frame.area());
        let list: Vec<Line> = self
            .proposals
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let n = i as u32 + 1;
                let status = if self.decided.contains(&n) {
                    "applied"
                } else {
                    "open"
                };
                let line = Line::from(vec![
                    Span::styled(format!(" {n}. [{status:<7}] "), theme.style(Role::Muted)),
                    Span::styled(format!("{} ", p.title), theme.style(Role::Text)),
                    Span::styled(format!("({})", p.target), theme.style(Role::Muted)),
                ]);
                if i == self.selected {
                    line.style(theme.style(Role::Selection))
                } else {
                    line
                }
            })
            .collect();
        let block = |title: &str| {
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.style(Role::Border))
                .title(Span::styled(title.to_owned(), theme.style(Role::Accent)))
        };
        frame.render_widget(
            Paragraph::new(list).block(block(" Overseer proposals ")),
            rows[0],
        );
        let mut detail: Vec<Line> = Vec::new();
        if self.show_report {
            detail = self
                .report
                .lines()
                .map(|l| Line::from(l.to_owned()))
                .collect();
        } else if let Some(p) = self.proposals.get(self.selected) {
            detail.push(Line::from(Span::styled(
                p.rationale.clone(),
                theme.style(Role::Text),
            )));
            detail.push(Line::from(""));
            for line in p.patch().lines() {
                let role = match line.chars().next() {
                    Some('+') if !line.starts_with("+++") => Role::DiffAdd,
                    Some('-') if !line.starts_with("---") => Role::DiffDel,
                    Some('@') => Role::DiffHunk,
                    _ => Role::DiffFile,
                };
                detail.push(Line::from(Span::styled(line.to_owned(), theme.style(role))));
            }
        } else {
            detail.push(Line::from(Span::styled(
                "The overseer proposed nothing.",
                theme.style(Role::Muted),
            )));
        }
        let title = if self.show_report {
            " Report · m back · PgUp/PgDn scroll "
        } else {
            " Evidence and patch "
        };
        frame.render_widget(
            Paragraph::new(detail)
                .wrap(Wrap { trim: false })
                .scroll((self.scroll, 0))
                .block(block(title)),
            rows[1],
        );
        let status = self.note.clone().unwrap_or_else(|| {
            " ↑/↓ select · a approve and apply · m full report · q quit".to_owned()
        });
        frame.render_widget(
            Paragraph::new(status).style(theme.style(Role::StatusBar)),
            rows[2],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn view() -> ProposalsView {
        ProposalsView {
            report: String::new(),
            proposals: vec![Proposal {
                title: "Stop repeating failing commands".into(),
                target: "prompts/coder.md".into(),
                rationale: "coder:json#1 ran the tests 3 times, failing.".into(),
                find: String::new(),
                replace: "Never run a failing command a third time.".into(),
            }],
            decided: vec![],
            selected: 0,
            note: None,
            show_report: false,
            scroll: 0,
        }
    }

    #[test]
    fn a_approves_the_selected_proposal_once() {
        let mut v = view();
        assert_eq!(
            v.handle_key(KeyEvent::from(KeyCode::Char('a'))),
            Some(ProposalAction::Approve(1))
        );
        v.decided.push(1);
        assert_eq!(v.handle_key(KeyEvent::from(KeyCode::Char('a'))), None);
        assert!(v.note.as_deref().unwrap().contains("already"));
    }

    #[test]
    fn snapshot() {
        let v = view();
        let mut terminal = Terminal::new(TestBackend::new(80, 16)).unwrap();
        terminal.draw(|f| v.render(f, &Theme::dark())).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let text: String = (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    + "\n"
            })
            .collect();
        insta::assert_snapshot!("proposals_80x16", text);
    }
}
