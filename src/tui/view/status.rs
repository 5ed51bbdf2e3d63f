//! The status bar: the run's counters on one line and, when the run failed
//! or the engine stopped, why, in full: it grows by as many lines
//! as the reason needs (up to a third of the screen) rather than cut it.

use ratatui::text::{Line, Span};

use super::{cache_hits, quota, short_tokens};
use crate::domain::{RunPhase, TaskState};
use crate::text::wrap;
use crate::tui::app::{App, Attached};
use crate::tui::theme::{Role, Theme};

/// The status bar's lines at `width`.
pub(super) fn status_lines(app: &App, theme: &Theme, width: u16) -> Vec<Line<'static>> {
    let style = theme.style(Role::StatusBar);
    let text = match &app.state {
        Some(s) => {
            let active = s.tasks().iter().filter(|t| t.state.holds_slot()).count();
            let gates = s.count(TaskState::AwaitingGate);
            let phase = match (&app.stopped, s.phase) {
                (Some(Some(_)), _) => "engine stopped".to_owned(),
                (_, RunPhase::Paused) => "PAUSED".to_owned(),
                (_, p) => p.to_string(),
            };
            let gate_hint = if gates > 0 {
                format!(" │ {gates} at gate: a approve, r reject")
            } else {
                String::new()
            };
            let waiting = app.inbox().len();
            let inbox_hint = if waiting > 0 {
                format!(" │ inbox {waiting}: i")
            } else {
                String::new()
            };
            format!(
                " {phase}{gate_hint}{inbox_hint}{} │ agents {active}/{}{} │ merged {}/{} │ tokens {}/{}{}{}{} │ ? help  {}",
                quota::status_note(s),
                s.settings.concurrency,
                fence_hint(&s.settings.isolation),
                s.count(TaskState::Merged),
                s.tasks().len(),
                short_tokens(s.tokens.input),
                short_tokens(s.tokens.output),
                cache_hits(&s.tokens),
                if app.costs.priced {
                    format!(" ${:.2}", app.costs.total)
                } else {
                    String::new()
                },
                burn_hint(s),
                quit_hint(app)
            )
        }
        None => match &app.attached {
            Some(attached) => {
                let what = match (&attached.run, attached.queued) {
                    (Some(_), _) => "catching up…".to_owned(),
                    (None, Some(id)) => format!("{id} queued"),
                    (None, None) => "no run under way".to_owned(),
                };
                format!(" {what} │ ? help  {}", quit_hint(app))
            }
            None => " waiting for the engine… │ ? help  q quit".to_owned(),
        },
    };
    let mut lines = vec![Line::from(Span::styled(text, style))];
    if let Some(why) = why(app) {
        let reason = theme.style(Role::Error);
        lines.extend(
            wrap(&why, " ", "   ", usize::from(width).saturating_sub(1))
                .into_iter()
                .map(|l| Line::from(Span::styled(l, reason))),
        );
    }
    lines
}

/// The isolation agents' commands run under: ` │ fence landlock`. Runs
/// stored before it was recorded show nothing; none is shouted.
fn fence_hint(isolation: &str) -> String {
    match isolation.split_whitespace().next() {
        None => String::new(),
        Some("none") => " │ fence NONE".to_owned(),
        Some(mechanism) => format!(" │ fence {mechanism}"),
    }
}

/// What `q` does: an attached cockpit detaches and the run goes on.
fn quit_hint(app: &App) -> &'static str {
    match &app.attached {
        Some(a) if a.lost.is_some() => "q quit",
        Some(a) if a.run.is_some() => "q detach (the run goes on)",
        Some(_) => "q detach",
        None => "q quit",
    }
}

/// What an attached cockpit with no run to show is waiting for.
pub(super) fn attached_waiting(attached: &Attached) -> String {
    match (&attached.run, attached.queued, &attached.refused) {
        (Some(run), _, _) => format!("attached to run {run}, catching up…"),
        (None, Some(id), _) => {
            format!("{id} is queued; the daemon starts it when the repository is free.")
        }
        (None, None, Some(why)) => format!("not queued: {why}"),
        (None, None, None) => {
            "No run under way: write a requirement in the Spec tab; Ctrl-S queues it.".to_owned()
        }
    }
}

/// Why the run stopped moving, when it says.
fn why(app: &App) -> Option<String> {
    if let Some(lost) = app.attached.as_ref().and_then(|a| a.lost.as_ref()) {
        return Some(format!(
            "lost the connection to the daemon ({lost}); if it stopped, `memofab serve` starts it again and the run resumes; `memofab` attaches again"
        ));
    }
    if let Some(Some(error)) = &app.stopped {
        return Some(format!("engine stopped: {error}"));
    }
    let state = app.state.as_ref()?;
    let reason = state.phase_reason.as_deref();
    match state.phase {
        RunPhase::Failed => Some(format!(
            "the run failed: {}",
            reason.unwrap_or("no reason given")
        )),
        RunPhase::Paused if !state.repository_changes.is_empty() => Some(format!(
            "stopped: the repository changed outside memofab: {}; look, then resume (i, Enter)",
            state.repository_changes.join("; ")
        )),
        _ => None,
    }
}

/// Spending against the run's budget and where it is heading, when the run
/// has a budget: ` │ budget 12.0k of 40.0k, forecast 31.0k`.
pub(crate) fn burn_hint(state: &crate::domain::RunState) -> String {
    let burn = crate::domain::budget::run_burn(state);
    let mut parts = Vec::new();
    if let Some(limit) = burn.token_limit {
        let mut part = format!("{} of {}", short_tokens(burn.tokens), short_tokens(limit));
        if let Some(f) = burn.forecast_tokens {
            part.push_str(&format!(", forecast {}", short_tokens(f)));
        }
        parts.push(part);
    }
    if let Some(limit) = burn.usd_limit {
        let mut part = format!("${:.2} of ${limit:.2}", burn.usd);
        if let Some(f) = burn.forecast_usd {
            part.push_str(&format!(", forecast ${f:.2}"));
        }
        parts.push(part);
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" │ budget {}", parts.join(" · "))
    }
}

#[cfg(test)]
mod tests {
    use super::fence_hint;

    #[test]
    fn the_fence_is_named_and_none_stands_out() {
        assert_eq!(
            fence_hint("landlock (writes confined ...)"),
            " │ fence landlock"
        );
        assert_eq!(fence_hint("bwrap (...)"), " │ fence bwrap");
        assert_eq!(fence_hint("none (working directory ...)"), " │ fence NONE");
        assert_eq!(fence_hint(""), "");
    }
}
