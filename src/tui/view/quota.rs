//! How provider limits show in the cockpit: parked agents with the time they
//! resume, and a provider's concurrency while the governor holds it below
//! its ceiling. Reads the folded run state only.

use crate::domain::{AgentId, ParkedAgent, RunState, TaskId};

/// `parked · resumes in 12s (rate limited by openai)`, or the short form
/// `parked · 12s` where space is tight.
pub fn parked_text(parked: &ParkedAgent, now_ms: u64, long: bool) -> String {
    let secs = parked.resumes_in_secs(now_ms);
    match (long, secs) {
        (true, 0) => format!("parked · resuming ({})", parked.short_reason()),
        (true, _) => format!(
            "parked · resumes in {} ({})",
            wait_text(secs),
            parked.short_reason()
        ),
        (false, _) => format!("parked · {}", wait_text(secs)),
    }
}

/// The parked agent of `task` that resumes first, if any.
pub fn parked_on_task<'a>(state: &'a RunState, task: &TaskId) -> Option<&'a ParkedAgent> {
    state
        .parked
        .values()
        .filter(|p| p.task.as_ref() == Some(task))
        .min_by_key(|p| p.until_ms)
}

/// The park of one agent, if it is parked.
pub fn parked_agent<'a>(state: &'a RunState, agent: &AgentId) -> Option<&'a ParkedAgent> {
    state.parked.get(agent)
}

/// The parked agents not bound to a task (planner, plan reviewer), first
/// to resume first.
pub fn parked_run_agent(state: &RunState) -> Option<&ParkedAgent> {
    state
        .parked
        .values()
        .filter(|p| p.task.is_none())
        .min_by_key(|p| p.until_ms)
}

/// The status-bar note: ` │ 2 parked │ openai 2/4 slots`, empty when
/// nothing is held back.
pub fn status_note(state: &RunState) -> String {
    let mut note = String::new();
    if !state.parked.is_empty() {
        note.push_str(&format!(" │ {} parked", state.parked.len()));
    }
    for (provider, limit) in &state.provider_limits {
        if limit.limit < limit.ceiling {
            note.push_str(&format!(
                " │ {provider} {}/{} slots",
                limit.limit, limit.ceiling
            ));
        }
    }
    note
}

/// `12s`, `4m05`, `2h05m`: parks range from seconds to hours.
fn wait_text(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(until_ms: u64) -> ParkedAgent {
        ParkedAgent {
            task: None,
            provider: "openai".into(),
            until_ms,
            reason: "rate limited by openai: Rate limit reached".into(),
        }
    }

    #[test]
    fn parked_agents_say_when_they_resume_and_why() {
        let p = parked(12_000);
        assert_eq!(
            parked_text(&p, 0, true),
            "parked · resumes in 12s (rate limited by openai)"
        );
        assert_eq!(parked_text(&p, 0, false), "parked · 12s");
        assert_eq!(
            parked_text(&p, 20_000, true),
            "parked · resuming (rate limited by openai)"
        );
        assert_eq!(parked_text(&parked(7_500_000), 0, false), "parked · 2h05m");
        assert_eq!(parked_text(&parked(245_000), 0, false), "parked · 4m05");
    }
}
