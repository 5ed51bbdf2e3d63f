//! The event store on PostgreSQL: the same record as the SQLite store (the
//! same event bodies, byte for byte, the same summary rows, the same inbox),
//! shared by every daemon and cockpit that names the database.
//!
//! The `postgres` client blocks on a runtime of its own and panics when
//! called from inside another, and the engine calls the store synchronously
//! from async code: so one thread owns the connection, and every call is a
//! job sent to it, answered over a channel. The thread ends when the store
//! is dropped, closing the connection and with it every lock it held.
//!
//! Invariants: a run's events are numbered 1, 2, … without a gap (the
//! primary key and the insert's own check refuse anything else), an append
//! commits before it returns (so before the recorder publishes the event),
//! and only one connection appends to a run at a time: the first append
//! takes the run's advisory lock, held until the connection closes; a second
//! writer is refused (`StoreError::RunHeldElsewhere`).
//!
//! Every append tells the run's listeners (`LISTEN` on `channel(run)`) the
//! run's new last number, in the same transaction, so on commit only and
//! never before the events can be read: once per append, a batch's at its
//! end. A cockpit anywhere follows a run that way (`follow`), reading the
//! events themselves from the table.

pub mod follow;
mod queue;
mod schema;
mod summary;
pub mod url;

use std::collections::HashSet;
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use postgres::{Client, NoTls, Statement};

use super::{Inboxed, RunSummary, StoreError, decode};
use crate::domain::{Decider, Event, RunId};
use crate::protocol::Command;

pub use queue::{PgQueue, Taken, fence_run, unfence_run};
pub use schema::SCHEMA_VERSION;

type PgResult<T> = std::result::Result<T, StoreError>;

/// Wraps a client error with what was being done.
fn pg(context: &str) -> impl FnOnce(postgres::Error) -> StoreError + '_ {
    move |source| StoreError::Postgres {
        context: context.to_owned(),
        source,
    }
}

/// The PostgreSQL store every `Store::open` of this process connects to
/// instead of a SQLite file, when the command line, the environment or the
/// config named one. Set once, at the binary's edge, before any store opens.
static SELECTED: OnceLock<String> = OnceLock::new();

/// Makes every store this process opens the PostgreSQL database at `url`.
/// A second call with another URL is refused (`false`).
pub fn select(url: &str) -> bool {
    SELECTED.get_or_init(|| url.to_owned()) == url
}

/// The selected database's URL, if any.
pub fn selected() -> Option<&'static str> {
    SELECTED.get().map(String::as_str)
}

/// A job for the connection's thread.
type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// A connection to the shared record, owned by its own thread.
pub struct PgStore {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The URL without its password, for messages.
    shown: String,
}

/// What the connection's thread owns.
struct Session {
    client: Client,
    statements: Statements,
    /// Runs whose writer lock this connection holds.
    held: HashSet<RunId>,
}

struct Statements {
    append_started: Statement,
    append_next: Statement,
    last_seq: Statement,
    events: Statement,
    notify: Statement,
}

impl PgStore {
    /// Connects, creating or migrating the schema.
    pub fn connect(url: &str) -> PgResult<Self> {
        let shown = url::redacted(url);
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::sync_channel::<PgResult<()>>(1);
        let config: postgres::Config = url.parse().map_err(pg(&format!("reading {shown}")))?;
        let context = format!("connecting to {shown}");
        let thread = std::thread::Builder::new()
            .name("memofab-postgres".into())
            .spawn(move || serve(config, &context, ready, inbox))
            .map_err(|source| StoreError::Io {
                context: "starting the PostgreSQL connection's thread".into(),
                source,
            })?;
        let store = Self {
            jobs: Some(jobs),
            thread: Some(thread),
            shown,
        };
        connected.recv().map_err(|_| StoreError::Disconnected)??;
        Ok(store)
    }

    /// The database's URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Runs `f` on the connection's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> PgResult<T> + Send + 'static,
    ) -> PgResult<T> {
        let (answer, answered) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |session| {
            let _ = answer.send(f(session));
        });
        self.jobs
            .as_ref()
            .ok_or(StoreError::Disconnected)?
            .send(job)
            .map_err(|_| StoreError::Disconnected)?;
        answered.recv().map_err(|_| StoreError::Disconnected)?
    }

    pub fn schema_version(&self) -> PgResult<u32> {
        self.call(|s| {
            let mut tx = s
                .client
                .transaction()
                .map_err(pg("reading the schema version"))?;
            schema::version(&mut tx)
        })
    }

    /// The server's version, as `SHOW server_version` gives it.
    pub fn server_version(&self) -> PgResult<String> {
        self.call(|s| {
            s.client
                .query_one("SHOW server_version", &[])
                .map(|row| row.get::<_, String>(0))
                .map_err(pg("asking the server's version"))
        })
    }

    /// Appends events in one transaction: all of them or none.
    pub fn append_batch(&self, events: &[Event]) -> PgResult<()> {
        let events = events.to_vec();
        self.call(move |s| s.append_batch(&events))
    }

    pub fn events_after(&self, run: &RunId, after: u64, upto: u64) -> PgResult<Vec<Event>> {
        let run = run.clone();
        self.call(move |s| s.events(&run, after, upto, None))
    }

    /// The events of `run` whose type is one of `types`, in order.
    pub fn events_of_types(&self, run: &RunId, types: &[&str]) -> PgResult<Vec<Event>> {
        let run = run.clone();
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        self.call(move |s| s.events(&run, 0, u64::MAX, Some(types)))
    }

    pub fn last_seq(&self, run: &RunId) -> PgResult<u64> {
        let run = run.clone();
        self.call(move |s| {
            let row = s
                .client
                .query_one(&s.statements.last_seq, &[&run.as_str()])
                .map_err(pg("reading the last sequence number"))?;
            Ok(as_u64(row.get(0)))
        })
    }

    /// Runs, newest first.
    pub fn runs(&self) -> PgResult<Vec<RunSummary>> {
        self.call(|s| {
            let rows = s
                .client
                .query(
                    "SELECT run, started_ms, last_event_ms, requirement, phase, tasks, merged, failed, tokens, events, base_commit
                     FROM runs ORDER BY started_ms DESC, run DESC",
                    &[],
                )
                .map_err(pg("listing runs"))?;
            Ok(rows
                .iter()
                .map(|row| {
                    let phase: Option<String> = row.get(4);
                    RunSummary {
                        run: RunId::new(row.get::<_, String>(0)),
                        started_ms: as_u64(row.get(1)),
                        last_event_ms: as_u64(row.get(2)),
                        requirement: row.get(3),
                        phase: phase.and_then(|p| {
                            serde_json::from_value(serde_json::Value::String(p)).ok()
                        }),
                        tasks: as_u64(row.get(5)) as usize,
                        merged: as_u64(row.get(6)) as usize,
                        failed: as_u64(row.get(7)) as usize,
                        tokens: as_u64(row.get(8)),
                        events: as_u64(row.get(9)),
                        base_commit: row.get(10),
                    }
                })
                .collect())
        })
    }

    pub fn latest_run(&self) -> PgResult<Option<RunId>> {
        self.call(|s| {
            let row = s
                .client
                .query_opt(
                    "SELECT run FROM runs ORDER BY started_ms DESC, run DESC LIMIT 1",
                    &[],
                )
                .map_err(pg("finding the latest run"))?;
            Ok(row.map(|r| RunId::new(r.get::<_, String>(0))))
        })
    }

    /// Leaves a command for the engine working `run`, wherever it runs.
    pub fn push_command(&self, run: &RunId, command: &Command, by: &Decider) -> PgResult<()> {
        let body = serde_json::to_string(&Inboxed {
            command: command.clone(),
            by: by.clone(),
        })
        .map_err(|e| StoreError::Corrupt {
            run: run.clone(),
            seq: 0,
            message: e.to_string(),
        })?;
        let run = run.clone();
        self.call(move |s| {
            s.client
                .execute(
                    "INSERT INTO inbox (run, created_ms, body) VALUES ($1, $2, $3)",
                    &[&run.as_str(), &as_i64(super::now_ms()), &body],
                )
                .map(|_| ())
                .map_err(pg("writing to the inbox"))
        })
    }

    /// Takes the commands waiting for `run`, oldest first; each is returned
    /// once, whichever process asks.
    pub fn take_commands(&self, run: &RunId) -> PgResult<Vec<Inboxed>> {
        let run = run.clone();
        self.call(move |s| {
            let mut rows = s
                .client
                .query(
                    "DELETE FROM inbox WHERE run = $1 RETURNING id, body",
                    &[&run.as_str()],
                )
                .map_err(pg("taking the inbox's commands"))?;
            rows.sort_by_key(|r| r.get::<_, i64>(0));
            let mut commands = Vec::with_capacity(rows.len());
            for row in rows {
                let (id, body): (i64, String) = (row.get(0), row.get(1));
                match Inboxed::read(&body) {
                    Ok(left) => commands.push(left),
                    Err(e) => tracing::warn!(id, error = %e, "unreadable inbox command dropped"),
                }
            }
            Ok(commands)
        })
    }

    /// Removes every trace of `run`, and lets go of its writer lock.
    pub fn forget_run(&self, run: &RunId) -> PgResult<()> {
        let run = run.clone();
        self.call(move |s| {
            let mut tx = s.client.transaction().map_err(pg("forgetting a run"))?;
            for table in ["events", "runs", "inbox"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE run = $1"),
                    &[&run.as_str()],
                )
                .map_err(pg("forgetting a run"))?;
            }
            tx.commit().map_err(pg("forgetting a run"))?;
            if s.held.remove(&run) {
                s.client
                    .execute(
                        "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                        &[&writer_key(&run)],
                    )
                    .map_err(pg("letting go of a run"))?;
            }
            Ok(())
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which closes the connection.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The connection's thread: connects, migrates, says so, then serves jobs
/// until every sender is gone.
fn serve(
    config: postgres::Config,
    context: &str,
    ready: SyncSender<PgResult<()>>,
    jobs: Receiver<Job>,
) {
    let mut session = match Session::open(&config, context) {
        Ok(session) => {
            let _ = ready.send(Ok(()));
            session
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while let Ok(job) = jobs.recv() {
        job(&mut session);
    }
    // Let go of the runs' writer locks before the store's drop returns: the
    // server would only notice the closed connection a moment later.
    if !session.held.is_empty() {
        let _ = session
            .client
            .batch_execute("SELECT pg_advisory_unlock_all()");
    }
}

/// The channel `run`'s appends notify: a plain identifier whatever the run's
/// name (`memofab_run_` and 32 hex digits of its SHA-256), so it can be
/// written into `LISTEN` as is, and stays under PostgreSQL's 63 bytes.
pub fn channel(run: &RunId) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(run.as_str().as_bytes());
    let mut name = String::from("memofab_run_");
    for byte in &digest[..16] {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// The advisory-lock key text of `run`'s writer.
fn writer_key(run: &RunId) -> String {
    format!("memofab run {run}")
}

impl Session {
    fn open(config: &postgres::Config, context: &str) -> PgResult<Self> {
        let mut client = config.connect(NoTls).map_err(pg(context))?;
        schema::migrate(&mut client)?;
        let prepare = |client: &mut Client, sql: &str| {
            client.prepare(sql).map_err(pg("preparing statements"))
        };
        let statements = Statements {
            append_started: prepare(&mut client, summary::APPEND_STARTED)?,
            append_next: prepare(&mut client, summary::APPEND_NEXT)?,
            last_seq: prepare(
                &mut client,
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run = $1",
            )?,
            events: prepare(&mut client, EVENTS)?,
            notify: prepare(&mut client, "SELECT pg_notify($1::text, $2::text)")?,
        };
        Ok(Self {
            client,
            statements,
            held: HashSet::new(),
        })
    }

    /// Takes `run`'s writer lock unless this connection holds it already.
    fn hold(&mut self, run: &RunId) -> PgResult<()> {
        if self.held.contains(run) {
            return Ok(());
        }
        let got: bool = self
            .client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&writer_key(run)],
            )
            .map_err(pg("taking the run's writer lock"))?
            .get(0);
        if !got {
            return Err(StoreError::RunHeldElsewhere { run: run.clone() });
        }
        self.held.insert(run.clone());
        Ok(())
    }

    /// One event alone is one statement, committed on its own, its notice
    /// with it: one round trip. More go in one transaction, all or none,
    /// and each run's listeners are told once, of its last number.
    fn append_batch(&mut self, events: &[Event]) -> PgResult<()> {
        for event in events {
            self.hold(&event.run)?;
        }
        // A run worked under a daemon's lease appends only while it holds it.
        let mut fences: Vec<(RunId, String)> = Vec::new();
        for event in events {
            if !fences.iter().any(|(run, _)| *run == event.run)
                && let Some(owner) = queue::fence_of(&event.run)
            {
                fences.push((event.run.clone(), owner));
            }
        }
        let st = &self.statements;
        if let ([event], []) = (events, fences.as_slice()) {
            return append_in(&mut self.client, st, event, Some(&channel(&event.run)));
        }
        let mut tx = self
            .client
            .transaction()
            .map_err(pg("starting a transaction"))?;
        for (run, owner) in &fences {
            queue::check_fence(&mut tx, run, owner)?;
        }
        let mut last: Vec<(&RunId, u64)> = Vec::new();
        for event in events {
            append_in(&mut tx, st, event, None)?;
            match last.iter_mut().find(|(run, _)| *run == &event.run) {
                Some(entry) => entry.1 = event.seq,
                None => last.push((&event.run, event.seq)),
            }
        }
        for (run, seq) in last {
            tx.execute(&st.notify, &[&channel(run), &seq.to_string()])
                .map_err(pg("notifying the run's listeners"))?;
        }
        tx.commit().map_err(pg("committing events"))
    }

    fn events(
        &mut self,
        run: &RunId,
        after: u64,
        upto: u64,
        types: Option<Vec<String>>,
    ) -> PgResult<Vec<Event>> {
        let rows = self
            .client
            .query(
                &self.statements.events,
                &[&run.as_str(), &as_i64(after), &as_i64(upto), &types],
            )
            .map_err(pg("reading events"))?;
        rows.iter().map(|row| event_of(run, row)).collect()
    }
}

/// The SELECT of a run's events after a number, up to one, in order ($1:
/// the run, $2 and $3: the bounds, $4: only these types, or NULL for all);
/// each row read by `event_of`.
const EVENTS: &str = "SELECT seq, at_ms, type, body FROM events
     WHERE run = $1 AND seq > $2 AND seq <= $3 AND ($4::text[] IS NULL OR type = ANY($4))
     ORDER BY seq";

/// One row of `EVENTS`, decoded.
fn event_of(run: &RunId, row: &postgres::Row) -> PgResult<Event> {
    let seq = as_u64(row.get(0));
    let kind: &str = row.get(2);
    let body: &str = row.get(3);
    let kind = decode::decode_kind(kind, body).map_err(|e| StoreError::Corrupt {
        run: run.clone(),
        seq,
        message: e.to_string(),
    })?;
    Ok(Event {
        run: run.clone(),
        seq,
        at_ms: as_u64(row.get(1)),
        kind,
    })
}

/// Appends `event` and updates its run's summary, in one statement, which
/// notifies `channel` too when given one; refused unless the event follows
/// the run's last one.
fn append_in(
    client: &mut impl postgres::GenericClient,
    st: &Statements,
    event: &Event,
    channel: Option<&str>,
) -> PgResult<()> {
    let body = serde_json::to_string(&event.kind).map_err(|e| StoreError::Corrupt {
        run: event.run.clone(),
        seq: event.seq,
        message: e.to_string(),
    })?;
    let run = event.run.as_str();
    let (seq, at) = (as_i64(event.seq), as_i64(event.at_ms));
    let (kind, task) = (event.kind.name(), event.kind.task().map(|t| t.as_str()));
    let change = summary::Change::of(event);
    let row = match &change.started {
        Some(requirement) => client.query_one(
            &st.append_started,
            &[
                &run,
                &seq,
                &at,
                &kind,
                &task,
                &body,
                requirement,
                &change.base_commit,
                &channel,
            ],
        ),
        None => client.query_one(
            &st.append_next,
            &[
                &run,
                &seq,
                &at,
                &kind,
                &task,
                &body,
                &change.requirement,
                &change.phase,
                &change.tasks,
                &change.merged,
                &change.failed,
                &change.tokens,
                &channel,
            ],
        ),
    }
    .map_err(pg("appending an event"))?;
    if row.get::<_, i64>(0) == 1 {
        return Ok(());
    }
    let prev: i64 = client
        .query_one(&st.last_seq, &[&run])
        .map_err(pg("reading the last sequence number"))?
        .get(0);
    Err(StoreError::SeqGap {
        run: event.run.clone(),
        expected_prev: as_u64(prev),
        got: event.seq,
    })
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
