//! The Log tab: notable events, newest at the bottom, each wrapped whole
//! (a failure's reason is the part a human needs, so it is never cut).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::bordered;
use crate::text::wrap;
use crate::tui::app::App;
use crate::tui::theme::{Role, Theme};

pub(super) fn render(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let block = bordered(theme, " Log ", true);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = usize::from(inner.height);
    let width = usize::from(inner.width);
    // Wrap from the newest back, only as many entries as fill the pane.
    let mut shown: Vec<Line> = Vec::new();
    for entry in app.log.iter().rev() {
        if shown.len() >= height {
            break;
        }
        let role = if entry.warn {
            Role::Warning
        } else {
            Role::Text
        };
        let wrapped = wrap(&entry.text, "", "  ", width);
        shown.extend(
            wrapped
                .into_iter()
                .rev()
                .map(|l| Line::from(Span::styled(l, theme.style(role)))),
        );
    }
    shown.truncate(height);
    shown.reverse();
    frame.render_widget(Paragraph::new(shown), inner);
}
