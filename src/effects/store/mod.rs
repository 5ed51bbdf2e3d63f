//! The event store: an append-only SQLite log of every run's events (WAL, so
//! a killed process loses nothing that was committed), a summary row per run
//! kept up to date in the same transaction, and an inbox through which other
//! processes (`memofab approve`) leave commands for a running engine.
//!
//! The same record can live in PostgreSQL instead (`postgres`), shared by
//! daemons on several machines: a `Store` then hands every call to it.

mod chunk;
mod decode;
pub mod export;
mod history;
mod light;
mod migrations;
pub mod postgres;
mod read;
mod scan;
mod transcript;

use std::path::Path;

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use crate::domain::event::{
    BlueprintAccepted, RunPhaseChanged, RunStarted, SpecSubmitted, TaskStateChanged, TokensUsed,
};
use crate::domain::{Decider, Event, EventKind, RunId, RunPhase, TaskState};
use crate::protocol::Command;

pub use light::{BulkRef, LightRun};
pub use migrations::SCHEMA_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        source: rusqlite::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(
        "the store was written by a newer memofab (schema v{found}; this one knows up to v{supported}); upgrade memofab"
    )]
    TooNew { found: u32, supported: u32 },
    #[error("run {run}: event #{got} does not follow #{expected_prev}")]
    SeqGap {
        run: RunId,
        expected_prev: u64,
        got: u64,
    },
    #[error("run {run}: event #{seq} is unreadable: {message}")]
    Corrupt {
        run: RunId,
        seq: u64,
        message: String,
    },
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error("a reader thread failed while loading run {0}")]
    ReaderFailed(RunId),
    #[error("{context}: {source}")]
    Postgres {
        context: String,
        source: ::postgres::Error,
    },
    #[error("run {run} is being recorded by another process (it holds the run's writer lock)")]
    RunHeldElsewhere { run: RunId },
    #[error("the connection to the PostgreSQL store is gone")]
    Disconnected,
}

type Result<T> = std::result::Result<T, StoreError>;

pub(crate) trait Context<T> {
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|source| StoreError::Sqlite {
            context: context.to_owned(),
            source,
        })
    }
}

/// How long a store waits for another process's lock before giving up.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Switches the store to WAL (a no-op once it is). Switching a new file
/// needs it to itself, and SQLite answers BUSY at once there, without the
/// busy timeout, while another process is creating the same store: wait
/// for that process here as the timeout would.
pub(crate) fn enable_wal(conn: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return result.ctx("enabling WAL"),
        }
    }
}

/// One line of `memofab runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run: RunId,
    pub started_ms: u64,
    pub last_event_ms: u64,
    pub requirement: String,
    pub phase: Option<RunPhase>,
    pub tasks: usize,
    pub merged: usize,
    pub failed: usize,
    pub tokens: u64,
    pub events: u64,
    /// The run's base commit, where the store holds several repositories'
    /// runs (PostgreSQL): a repository's runs are those whose base it has.
    /// `None` in a repository's own SQLite file.
    pub base_commit: Option<String>,
}

pub struct Store {
    conn: Connection,
    /// The PostgreSQL store every call goes to instead, when one is
    /// selected; `conn` is then an empty in-memory database nothing reads.
    pg: Option<Box<postgres::PgStore>>,
}

impl Store {
    /// The store at `path`, or the PostgreSQL store if this process
    /// selected one (`postgres::select`).
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(url) = postgres::selected() {
            return Self::connect(url);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                context: format!("creating {}", parent.display()),
                source,
            })?;
        }
        let conn = Connection::open(path).ctx(&format!("opening {}", path.display()))?;
        Self::setup(conn, true)
    }

    /// The PostgreSQL store at `url`.
    pub fn connect(url: &str) -> Result<Self> {
        Ok(Self {
            conn: Connection::open_in_memory().ctx("opening an in-memory store")?,
            pg: Some(Box::new(postgres::PgStore::connect(url)?)),
        })
    }

    /// The PostgreSQL store this one hands its calls to, if any.
    pub fn postgres(&self) -> Option<&postgres::PgStore> {
        self.pg.as_deref()
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::setup(
            Connection::open_in_memory().ctx("opening an in-memory store")?,
            false,
        )
    }

    fn setup(mut conn: Connection, wal: bool) -> Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx("setting the busy timeout")?;
        if wal {
            enable_wal(&conn)?;
        }
        // WAL + NORMAL: a committed transaction survives a killed process.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .ctx("setting synchronous")?;
        migrations::migrate(&mut conn)?;
        Ok(Self { conn, pg: None })
    }

    /// A read-only connection to an existing store, for readers working
    /// beside the engine (WAL lets them read while it writes).
    pub fn open_reader(path: &Path) -> Result<Self> {
        if let Some(url) = postgres::selected() {
            return Self::connect(url);
        }
        let conn = Self::open_reader_as_is(path)?;
        if migrations::version(&conn.conn)? < SCHEMA_VERSION {
            // Written by an older memofab and not opened for writing since:
            // brought to this layout first, as any open would.
            drop(conn);
            drop(Self::open(path)?);
            return Self::open_reader_as_is(path);
        }
        Ok(conn)
    }

    fn open_reader_as_is(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ctx(&format!("opening {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx("setting the busy timeout")?;
        let found = migrations::version(&conn)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Self { conn, pg: None })
    }

    /// Moves the write-ahead log into the database file and empties it.
    pub fn checkpoint(&self) -> Result<()> {
        if self.pg.is_some() {
            return Ok(());
        }
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .ctx("checkpointing the write-ahead log")
    }

    pub fn schema_version(&self) -> Result<u32> {
        if let Some(pg) = &self.pg {
            return pg.schema_version();
        }
        migrations::version(&self.conn)
    }

    pub fn append(&mut self, event: &Event) -> Result<()> {
        self.append_batch(std::slice::from_ref(event))
    }

    /// A transaction that holds the write lock from its start. Each of ours
    /// reads before it writes (the run's last number, the inbox); begun
    /// deferred, one would fail at once with "database is locked" when
    /// another process's write landed between its read and its write, the
    /// busy timeout notwithstanding. Begun immediate, it waits its turn.
    fn write_transaction(&mut self) -> Result<Transaction<'_>> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a transaction")
    }

    /// Appends events in one transaction: all of them or none.
    pub fn append_batch(&mut self, events: &[Event]) -> Result<()> {
        if let Some(pg) = &self.pg {
            return pg.append_batch(events);
        }
        let tx = self.write_transaction()?;
        for event in events {
            append_in(&tx, event)?;
        }
        tx.commit().ctx("committing events")
    }

    pub fn events(&self, run: &RunId) -> Result<Vec<Event>> {
        self.events_after(run, 0, usize::MAX)
    }

    pub fn events_after(&self, run: &RunId, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        let upto = after_seq.saturating_add(u64::try_from(limit).unwrap_or(u64::MAX));
        if let Some(pg) = &self.pg {
            return pg.events_after(run, after_seq, upto);
        }
        read::events(&self.conn, run, after_seq, upto, read::Bodies::All)
    }

    /// Reads a whole run with one reader per core, each decoding its own
    /// range of sequence numbers: decoding, not SQLite, is most of the time
    /// it takes to open a long run (see `memofab bench replay`).
    pub fn load_run(path: &Path, run: &RunId) -> Result<Vec<Event>> {
        if let Some(url) = postgres::selected() {
            return Self::connect(url)?.events(run);
        }
        let parts = Self::in_parallel(path, run, |store, after, upto| {
            read::events(&store.conn, run, after, upto, read::Bodies::All)
        })?;
        Ok(parts.into_iter().flatten().collect())
    }

    pub fn last_seq(&self, run: &RunId) -> Result<u64> {
        if let Some(pg) = &self.pg {
            return pg.last_seq(run);
        }
        last_seq_in(&self.conn, run)
    }

    /// Runs, newest first.
    pub fn runs(&self) -> Result<Vec<RunSummary>> {
        if let Some(pg) = &self.pg {
            return pg.runs();
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT run, started_ms, last_event_ms, requirement, phase, tasks, merged, failed, tokens, events
                 FROM runs ORDER BY started_ms DESC, run DESC",
            )
            .ctx("listing runs")?;
        let rows = stmt
            .query_map([], |row| {
                let phase: Option<String> = row.get(4)?;
                Ok(RunSummary {
                    run: RunId::new(row.get::<_, String>(0)?),
                    started_ms: row.get::<_, i64>(1)? as u64,
                    last_event_ms: row.get::<_, i64>(2)? as u64,
                    requirement: row.get(3)?,
                    phase: phase
                        .and_then(|p| serde_json::from_value(serde_json::Value::String(p)).ok()),
                    tasks: row.get::<_, i64>(5)? as usize,
                    merged: row.get::<_, i64>(6)? as usize,
                    failed: row.get::<_, i64>(7)? as usize,
                    tokens: row.get::<_, i64>(8)? as u64,
                    events: row.get::<_, i64>(9)? as u64,
                    base_commit: None,
                })
            })
            .ctx("listing runs")?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx("listing runs")
    }

    pub fn latest_run(&self) -> Result<Option<RunId>> {
        if let Some(pg) = &self.pg {
            return pg.latest_run();
        }
        self.conn
            .query_row(
                "SELECT run FROM runs ORDER BY started_ms DESC, run DESC LIMIT 1",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .ctx("finding the latest run")
            .map(|r| r.map(RunId::new))
    }

    pub fn integrity_check(&self) -> Result<()> {
        if self.pg.is_some() {
            // PostgreSQL checks its own pages; the record's invariants are
            // constraints there.
            return Ok(());
        }
        let verdict: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .ctx("checking integrity")?;
        if verdict == "ok" {
            Ok(())
        } else {
            Err(StoreError::Integrity(verdict))
        }
    }

    /// Leaves a command for the engine running `run` (another process),
    /// with who sent it.
    pub fn push_command(&mut self, run: &RunId, command: &Command, by: &Decider) -> Result<()> {
        if let Some(pg) = &self.pg {
            return pg.push_command(run, command, by);
        }
        let left = Inboxed {
            command: command.clone(),
            by: by.clone(),
        };
        let body = serde_json::to_string(&left).map_err(|e| StoreError::Corrupt {
            run: run.clone(),
            seq: 0,
            message: e.to_string(),
        })?;
        self.conn
            .execute(
                "INSERT INTO inbox (run, created_ms, body) VALUES (?1, ?2, ?3)",
                params![run.as_str(), now_ms() as i64, body],
            )
            .ctx("writing to the inbox")?;
        Ok(())
    }

    /// Takes the commands waiting for `run`, oldest first; each is returned once.
    pub fn take_commands(&mut self, run: &RunId) -> Result<Vec<Inboxed>> {
        if let Some(pg) = &self.pg {
            return pg.take_commands(run);
        }
        let tx = self.write_transaction()?;
        let mut commands = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached("SELECT id, body FROM inbox WHERE run = ?1 ORDER BY id")
                .ctx("reading the inbox")?;
            let rows = stmt
                .query_map(params![run.as_str()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .ctx("reading the inbox")?;
            for row in rows {
                let (id, body) = row.ctx("reading the inbox")?;
                match Inboxed::read(&body) {
                    Ok(left) => commands.push(left),
                    Err(e) => tracing::warn!(id, error = %e, "unreadable inbox command dropped"),
                }
            }
        }
        tx.execute("DELETE FROM inbox WHERE run = ?1", params![run.as_str()])
            .ctx("clearing the inbox")?;
        tx.commit().ctx("clearing the inbox")?;
        Ok(commands)
    }

    /// Removes every trace of `run`: for a run that never came to be (a
    /// cockpit closed before its requirement was submitted), so that it is
    /// neither listed nor resumed.
    pub fn forget_run(&mut self, run: &RunId) -> Result<()> {
        if let Some(pg) = &self.pg {
            return pg.forget_run(run);
        }
        let tx = self.write_transaction()?;
        for table in ["events", "event_chunks", "runs", "inbox"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE run = ?1"),
                params![run.as_str()],
            )
            .ctx("forgetting a run")?;
        }
        tx.commit().ctx("forgetting a run")
    }
}

/// A command left in the inbox and who left it. Stored as
/// `{"by": .., "command": {..}}`; a bare command, as older versions left
/// them, reads as left by `human`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Inboxed {
    pub by: Decider,
    pub command: Command,
}

impl Inboxed {
    fn read(body: &str) -> serde_json::Result<Self> {
        serde_json::from_str::<Inboxed>(body).or_else(|_| {
            serde_json::from_str::<Command>(body).map(|command| Inboxed {
                by: Decider::Earlier("human".to_owned()),
                command,
            })
        })
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn last_seq_in(conn: &Connection, run: &RunId) -> Result<u64> {
    // The tail is empty right after a chunk is sealed: the chunk knows.
    // Both look-ups walk down an index: `last_seq` has none of its own.
    conn.prepare_cached(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM events WHERE run = ?1), 0),
                    COALESCE((SELECT last_seq FROM event_chunks WHERE run = ?1
                              ORDER BY first_seq DESC LIMIT 1), 0))",
    )
    .and_then(|mut s| s.query_row(params![run.as_str()], |r| r.get::<_, i64>(0)))
    .map(|v| v as u64)
    .ctx("reading the last sequence number")
}

fn append_in(tx: &Transaction<'_>, event: &Event) -> Result<()> {
    let prev = last_seq_in(tx, &event.run)?;
    if event.seq != prev + 1 {
        return Err(StoreError::SeqGap {
            run: event.run.clone(),
            expected_prev: prev,
            got: event.seq,
        });
    }
    // The kind alone: `run`, `seq` and `at_ms` are columns.
    let body = serde_json::to_string(&event.kind).map_err(|e| StoreError::Corrupt {
        run: event.run.clone(),
        seq: event.seq,
        message: e.to_string(),
    })?;
    tx.prepare_cached(
        "INSERT INTO events (run, seq, at_ms, type, task, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            event.run.as_str(),
            event.seq as i64,
            event.at_ms as i64,
            event.kind.name(),
            event.kind.task().map(|t| t.as_str()),
            body
        ])
    })
    .ctx("appending an event")?;
    update_summary(tx, event)?;
    chunk::seal_if_full(tx, &event.run, event.seq)
}

/// Keeps the `runs` row in step with the event just appended.
fn update_summary(tx: &Transaction<'_>, event: &Event) -> Result<()> {
    let run = event.run.as_str();
    let at = event.at_ms as i64;
    let exec = |sql: &str, extra: &[&dyn rusqlite::ToSql]| -> Result<()> {
        let mut all: Vec<&dyn rusqlite::ToSql> = vec![&run, &at];
        all.extend_from_slice(extra);
        tx.prepare_cached(sql)
            .and_then(|mut s| s.execute(all.as_slice()))
            .map(|_| ())
            .ctx("updating the run summary")
    };
    match &event.kind {
        EventKind::RunStarted(RunStarted { requirement, .. }) => {
            return exec(
                "INSERT INTO runs (run, started_ms, last_event_ms, requirement, phase, events) VALUES (?1, ?2, ?2, ?3, 'planning', 1)",
                &[requirement],
            );
        }
        EventKind::SpecSubmitted(SpecSubmitted { requirement }) => {
            exec(
                "UPDATE runs SET requirement = ?3 WHERE run = ?1 AND ?2 = ?2",
                &[requirement],
            )?;
        }
        EventKind::RunPhaseChanged(RunPhaseChanged { to, .. }) => {
            let phase = to.as_str();
            exec(
                "UPDATE runs SET phase = ?3 WHERE run = ?1 AND ?2 = ?2",
                &[&phase],
            )?;
        }
        EventKind::BlueprintAccepted(BlueprintAccepted { blueprint }) => {
            let n = blueprint.tasks.len() as i64;
            exec(
                "UPDATE runs SET tasks = ?3 WHERE run = ?1 AND ?2 = ?2",
                &[&n],
            )?;
        }
        EventKind::TaskStateChanged(TaskStateChanged { from, to, .. }) => {
            let delta = |s: TaskState| -> i64 { i64::from(*to == s) - i64::from(*from == s) };
            let (merged, failed) = (delta(TaskState::Merged), delta(TaskState::Failed));
            if merged != 0 || failed != 0 {
                exec(
                    "UPDATE runs SET merged = merged + ?3, failed = failed + ?4 WHERE run = ?1 AND ?2 = ?2",
                    &[&merged, &failed],
                )?;
            }
        }
        EventKind::TokensUsed(TokensUsed { usage, .. }) => {
            let n = usage.total() as i64;
            exec(
                "UPDATE runs SET tokens = tokens + ?3 WHERE run = ?1 AND ?2 = ?2",
                &[&n],
            )?;
        }
        _ => {}
    }
    exec(
        "UPDATE runs SET events = events + 1, last_event_ms = MAX(last_event_ms, ?2) WHERE run = ?1",
        &[],
    )
}

#[cfg(test)]
mod tests;
