//! Following one run from anywhere: its events as they are committed, in
//! order, each exactly once, from the shared PostgreSQL record.
//!
//! `LISTEN` on the run's channel first, then catch up from the table, then
//! read what follows the last event seen whenever a notice comes (its
//! payload, the run's new last number, only spares a read that would find
//! nothing). Notices sent while the connection is down are lost, so every
//! reconnection catches up from the table again, and a re-read every few
//! seconds covers any other loss: a notice is a hint, the table the truth.
//! The connection only reads (its transactions are read-only; it never
//! takes a run's writer lock), so a follower never stands in a writer's way.
//!
//! Following ends when the run does: when what was read ends with its
//! phase over (finished, failed, cancelled) or `run_interrupted` (a resumed
//! run's earlier interruption is followed by more), or when the caller says
//! stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls, Statement};

use super::{EVENTS, PgResult, SCHEMA_VERSION, as_i64, channel, event_of, pg, schema, url};
use crate::domain::event::RunPhaseChanged;
use crate::domain::{Event, EventKind, RunId};
use crate::effects::store::StoreError;

/// Events read per query while catching up.
const CHUNK: u64 = 2000;
/// The longest a wait goes without looking at the stop flag.
const SLICE: Duration = Duration::from_millis(200);
/// The first wait before reconnecting.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The follower's connection's `application_name`.
pub const APPLICATION_NAME: &str = "memofab follow";

/// How a follower reads.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// How long it goes without reading the table when no notice comes.
    pub reread: Duration,
    /// The longest wait between two attempts to reconnect.
    pub max_backoff: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            reread: Duration::from_secs(3),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Why following stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The run is over or was interrupted, and its last event was passed on.
    RunEnded,
    /// The caller said stop (the flag, or the sink returning false).
    Stopped,
}

/// Passes `run`'s events after number `after` to `sink`, in order and each
/// once, as they are committed to the database at `url`, until the run ends
/// or `stop` is set or `sink` returns false. Only a failure to connect the
/// first time (or a record it cannot read) is an error: a connection that
/// breaks later is made again, with a growing wait.
pub fn follow(
    url: &str,
    run: &RunId,
    after: u64,
    options: &FollowOptions,
    stop: &AtomicBool,
    sink: impl FnMut(Event) -> bool,
) -> PgResult<Ended> {
    let shown = url::redacted(url);
    let mut config: postgres::Config = url.parse().map_err(pg(&format!("reading {shown}")))?;
    // What `pg_stat_activity` shows an operator for this connection.
    config.application_name(APPLICATION_NAME);
    let mut follower = Follower {
        run,
        channel: channel(run),
        last: after,
        options,
        stop,
        sink,
    };
    let mut listening = follower.listen(&config, &shown)?;
    loop {
        match follower.serve(&mut listening) {
            Ok(ended) => return Ok(ended),
            Err(e @ (StoreError::Postgres { .. } | StoreError::Disconnected)) => {
                tracing::warn!(run = %run, error = %e, "following: the connection broke; reconnecting");
            }
            Err(e) => return Err(e),
        }
        let mut backoff = FIRST_BACKOFF;
        listening = loop {
            if !follower.pause(backoff) {
                return Ok(Ended::Stopped);
            }
            match follower.listen(&config, &shown) {
                Ok(listening) => break listening,
                Err(e) => {
                    tracing::warn!(run = %run, error = %e, "following: reconnecting failed");
                    backoff = (backoff * 2).min(options.max_backoff);
                }
            }
        };
    }
}

/// A connection listening on the run's channel.
struct Listening {
    client: Client,
    events: Statement,
}

struct Follower<'a, S> {
    run: &'a RunId,
    channel: String,
    /// The number of the last event passed on.
    last: u64,
    options: &'a FollowOptions,
    stop: &'a AtomicBool,
    sink: S,
}

impl<S: FnMut(Event) -> bool> Follower<'_, S> {
    /// Connects read-only and listens, refusing a record newer than this
    /// memofab reads.
    fn listen(&self, config: &postgres::Config, shown: &str) -> PgResult<Listening> {
        let mut client = config
            .connect(NoTls)
            .map_err(pg(&format!("connecting to {shown}")))?;
        client
            .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            .map_err(pg("making the connection read-only"))?;
        let mut tx = client
            .transaction()
            .map_err(pg("reading the schema version"))?;
        let found = schema::version(&mut tx)?;
        tx.commit().map_err(pg("reading the schema version"))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        // The channel is `memofab_run_` and hex digits: an identifier as is.
        client
            .batch_execute(&format!("LISTEN \"{}\"", self.channel))
            .map_err(pg("listening for the run's events"))?;
        let events = client.prepare(EVENTS).map_err(pg("preparing statements"))?;
        Ok(Listening { client, events })
    }

    /// Catches up, then reads on every notice (or every `reread`) until the
    /// run ends or the caller stops; an error when the connection breaks.
    fn serve(&mut self, listening: &mut Listening) -> PgResult<Ended> {
        if let Some(ended) = self.read(listening)? {
            return Ok(ended);
        }
        let mut reread_at = Instant::now() + self.options.reread;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Ended::Stopped);
            }
            let wait = reread_at
                .saturating_duration_since(Instant::now())
                .min(SLICE);
            let told = self.wait(&mut listening.client, wait)?;
            if listening.client.is_closed() {
                return Err(StoreError::Disconnected);
            }
            if told || Instant::now() >= reread_at {
                if let Some(ended) = self.read(listening)? {
                    return Ok(ended);
                }
                reread_at = Instant::now() + self.options.reread;
            }
        }
    }

    /// Waits up to `wait` for notices; whether one names an event not
    /// passed on yet (a payload that is not a number counts as one).
    fn wait(&self, client: &mut Client, wait: Duration) -> PgResult<bool> {
        let mut notices = client.notifications();
        let news = |payload: &str| payload.parse::<u64>().map_or(true, |seq| seq > self.last);
        let mut told = false;
        let first = notices
            .timeout_iter(wait)
            .next()
            .map_err(pg("waiting for the run's notices"))?;
        if let Some(notice) = first {
            told |= news(notice.payload());
            // Whatever else came meanwhile, without waiting for more.
            let mut pending = notices.iter();
            while let Some(notice) = pending
                .next()
                .map_err(pg("waiting for the run's notices"))?
            {
                told |= news(notice.payload());
            }
        }
        Ok(told)
    }

    /// Passes on every stored event after the last one passed on; whether
    /// following is over.
    fn read(&mut self, listening: &mut Listening) -> PgResult<Option<Ended>> {
        let mut last_kind_ends = false;
        loop {
            let upto = self.last.saturating_add(CHUNK);
            let rows = listening
                .client
                .query(
                    &listening.events,
                    &[
                        &self.run.as_str(),
                        &as_i64(self.last),
                        &as_i64(upto),
                        &None::<Vec<String>>,
                    ],
                )
                .map_err(pg("reading the run's events"))?;
            let full = rows.len() as u64 == CHUNK;
            for row in rows {
                let event = event_of(self.run, &row)?;
                if event.seq <= self.last {
                    continue;
                }
                self.last = event.seq;
                last_kind_ends = ends_the_run(&event.kind);
                if !(self.sink)(event) {
                    return Ok(Some(Ended::Stopped));
                }
            }
            if !full {
                break;
            }
        }
        Ok(last_kind_ends.then_some(Ended::RunEnded))
    }

    /// Sleeps `wait`, looking at the stop flag; false when told to stop.
    fn pause(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(SLICE));
        }
    }
}

/// Whether a run's record ending with this event has ended: interrupted,
/// or its phase over (which `run_finished` is followed by).
fn ends_the_run(kind: &EventKind) -> bool {
    match kind {
        EventKind::RunInterrupted(_) => true,
        EventKind::RunPhaseChanged(RunPhaseChanged { to, .. }) => to.is_over(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunPhase;
    use crate::domain::event::{RunFinished, RunResumed};

    fn phase(to: RunPhase) -> EventKind {
        EventKind::RunPhaseChanged(RunPhaseChanged { to, reason: None })
    }

    #[test]
    fn a_run_ends_when_its_phase_is_over_or_it_is_interrupted() {
        assert!(ends_the_run(&EventKind::RunInterrupted(
            crate::domain::event::RunInterrupted {}
        )));
        for over in [RunPhase::Finished, RunPhase::Failed, RunPhase::Cancelled] {
            assert!(ends_the_run(&phase(over)), "{over:?}");
        }
        for going in [RunPhase::Planning, RunPhase::Building, RunPhase::Paused] {
            assert!(!ends_the_run(&phase(going)), "{going:?}");
        }
        // `run_finished` is followed by the phase's change: not the end yet.
        assert!(!ends_the_run(&EventKind::RunFinished(RunFinished {
            merged: 1,
            failed: 0,
            mainline_commit: String::new(),
        })));
        assert!(!ends_the_run(&EventKind::RunResumed(RunResumed {
            interrupted: Vec::new()
        })));
    }
}
