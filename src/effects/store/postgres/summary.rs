//! What one event changes in its run's summary row: the same fields the
//! SQLite store keeps (`memofab runs` reads the same summary from either),
//! folded into one `UPDATE` per event.

use crate::domain::event::{
    BlueprintAccepted, RunPhaseChanged, RunStarted, SpecSubmitted, TaskStateChanged, TokensUsed,
};
use crate::domain::{Event, EventKind, TaskState};

/// The summary row's change for one event.
#[derive(Debug, Default, PartialEq)]
pub struct Change {
    /// A new run: the row to insert (its requirement).
    pub started: Option<String>,
    pub requirement: Option<String>,
    pub phase: Option<&'static str>,
    pub tasks: Option<i64>,
    pub merged: i64,
    pub failed: i64,
    pub tokens: i64,
}

impl Change {
    pub fn of(event: &Event) -> Self {
        let mut change = Change::default();
        match &event.kind {
            EventKind::RunStarted(RunStarted { requirement, .. }) => {
                change.started = Some(requirement.clone());
            }
            EventKind::SpecSubmitted(SpecSubmitted { requirement }) => {
                change.requirement = Some(requirement.clone());
            }
            EventKind::RunPhaseChanged(RunPhaseChanged { to, .. }) => {
                change.phase = Some(to.as_str());
            }
            EventKind::BlueprintAccepted(BlueprintAccepted { blueprint }) => {
                change.tasks = Some(i64::try_from(blueprint.tasks.len()).unwrap_or(i64::MAX));
            }
            EventKind::TaskStateChanged(TaskStateChanged { from, to, .. }) => {
                let delta = |s: TaskState| -> i64 { i64::from(*to == s) - i64::from(*from == s) };
                change.merged = delta(TaskState::Merged);
                change.failed = delta(TaskState::Failed);
            }
            EventKind::TokensUsed(TokensUsed { usage, .. }) => {
                change.tokens = i64::try_from(usage.total()).unwrap_or(i64::MAX);
            }
            _ => {}
        }
        change
    }
}

/// Inserts a started run's row.
pub const INSERT_RUN: &str =
    "INSERT INTO runs (run, started_ms, last_event_ms, requirement, phase, events)
     VALUES ($1, $2, $2, $3, 'planning', 1)";

/// Applies a `Change` (all but `started`) and counts the event.
pub const UPDATE_RUN: &str = "UPDATE runs SET
        requirement = COALESCE($3, requirement),
        phase = COALESCE($4, phase),
        tasks = COALESCE($5, tasks),
        merged = merged + $6,
        failed = failed + $7,
        tokens = tokens + $8,
        events = events + 1,
        last_event_ms = GREATEST(last_event_ms, $2)
     WHERE run = $1";
