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
        Some(s) => run_line(app, s, usize::from(width)),
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
    if let Some(notice) = &app.notice {
        let warning = theme.style(Role::Warning);
        lines.extend(
            wrap(notice, " ", "   ", usize::from(width).saturating_sub(1))
                .into_iter()
                .map(|l| Line::from(Span::styled(l, warning))),
        );
    }
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

/// The run's counters on one line of `width` columns. What needs the human
/// (the phase, gates, the inbox) and the keys (help, quit) always show; the
/// counters give way, least useful first, when the line is too long.
fn run_line(app: &App, s: &crate::domain::RunState, width: usize) -> String {
    let active = s.tasks().iter().filter(|t| t.state.holds_slot()).count();
    let gates = s.count(TaskState::AwaitingGate);
    let phase = match (&app.stopped, s.phase) {
        (Some(Some(_)), _) => "engine stopped".to_owned(),
        (_, RunPhase::Paused) => "PAUSED".to_owned(),
        (_, p) => p.to_string(),
    };
    let gate_hint = match gates {
        0 => String::new(),
        // A replay decides nothing: no keys to offer.
        n if app.read_only => format!(" │ {n} at gate"),
        n => format!(" │ {n} at gate: a approve, r reject"),
    };
    let waiting = app.inbox().len();
    let inbox_hint = if waiting > 0 {
        format!(" │ inbox {waiting}: i")
    } else {
        String::new()
    };
    let head = format!(" {phase}{gate_hint}{inbox_hint}");
    let fence = fence_hint(&s.settings.isolation);
    // (segment, how long it stays when room runs out: higher stays longer)
    let mut counters: Vec<(String, u8)> = vec![
        (quota::status_note(s), 6),
        (format!(" │ agents {active}/{}", s.settings.concurrency), 2),
        // An unfenced run is a warning, not a counter.
        (fence.clone(), if fence.ends_with("NONE") { 9 } else { 3 }),
        (
            format!(
                " │ merged {}/{}",
                s.count(TaskState::Merged),
                s.tasks().len()
            ),
            5,
        ),
        (
            format!(
                " │ tokens {}/{}{}{}",
                short_tokens(s.tokens.input),
                short_tokens(s.tokens.output),
                cache_hits(&s.tokens),
                if app.costs.priced {
                    format!(" ${:.2}", app.costs.total)
                } else {
                    String::new()
                }
            ),
            1,
        ),
        (burn_hint(s), 7),
    ];
    counters.retain(|(text, _)| !text.is_empty());
    let line = |counters: &[(String, u8)], quit: &str| {
        let middle: String = counters.iter().map(|(text, _)| text.as_str()).collect();
        format!("{head}{middle} │ ? help  {quit}")
    };
    let quit = quit_hint(app);
    while line(&counters, quit).chars().count() > width {
        let Some(least) = counters
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, keep))| *keep)
            .map(|(i, _)| i)
        else {
            break;
        };
        counters.remove(least);
    }
    let full = line(&counters, quit);
    if full.chars().count() > width {
        // Still too long: the key itself is what must show.
        return line(&counters, quit.split(" (").next().unwrap_or(quit));
    }
    full
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
