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
    /// A new run's base commit: which repositories it belongs to.
    pub base_commit: Option<String>,
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
            EventKind::RunStarted(RunStarted {
                requirement,
                base_commit,
                ..
            }) => {
                change.started = Some(requirement.clone());
                change.base_commit = Some(base_commit.clone());
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

/// The event, if it follows its run's last one (the writer's check).
macro_rules! insert_event {
    () => {
        "ins AS (
        INSERT INTO events (run, seq, at_ms, type, task, body)
        SELECT $1::text, $2::bigint, $3::bigint, $4::text, $5::text, $6::text
        WHERE COALESCE((SELECT MAX(seq) FROM events WHERE run = $1::text), 0) = $2::bigint - 1
        RETURNING run)"
    };
}

/// Tells the run's listeners its new last number, delivered on commit
/// only ($N: the run's channel; NULL for none: a batch tells them once, at
/// its end), then answers the number of events inserted, 0 or 1. The notice
/// is read in the answer, so the server cannot leave it out.
macro_rules! notice_and_count {
    ($channel:literal) => {
        concat!(
            ", notice AS (
        SELECT pg_notify(",
            $channel,
            "::text, $2::bigint::text) FROM ins WHERE ",
            $channel,
            "::text IS NOT NULL)
     SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM notice)"
        )
    };
}

/// A run's first event and its summary row ($7: the requirement, $8: the
/// base commit, $9: the channel); the number of events inserted, 0 or 1.
pub const APPEND_STARTED: &str = concat!(
    "WITH ",
    insert_event!(),
    ", summary AS (
        INSERT INTO runs (run, started_ms, last_event_ms, requirement, phase, events, base_commit)
        SELECT run, $3::bigint, $3::bigint, $7::text, 'planning', 1, $8::text FROM ins
        RETURNING 1)",
    notice_and_count!("$9"),
);

/// Any later event and its `Change` ($7..$12) to the summary row ($13: the
/// channel); the number of events inserted, 0 or 1.
pub const APPEND_NEXT: &str = concat!(
    "WITH ",
    insert_event!(),
    ", summary AS (
        UPDATE runs SET
            requirement = COALESCE($7::text, requirement),
            phase = COALESCE($8::text, phase),
            tasks = COALESCE($9::bigint, tasks),
            merged = merged + $10::bigint,
            failed = failed + $11::bigint,
            tokens = tokens + $12::bigint,
            events = events + 1,
            last_event_ms = GREATEST(last_event_ms, $3::bigint)
        WHERE run = (SELECT run FROM ins)
        RETURNING 1)",
    notice_and_count!("$13"),
);
