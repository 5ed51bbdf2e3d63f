//! The PostgreSQL schema and its versions, applied in order on connect, each
//! in one transaction under a database-wide advisory lock, so daemons
//! starting together migrate once. A database written by a newer memofab is
//! refused untouched, as a SQLite store is.
//!
//! Event bodies are `TEXT` holding the very JSON SQLite stores (the event's
//! kind; `run`, `seq` and `at_ms` are columns), not `jsonb`, which would
//! reorder keys and change the bytes `export` writes.

use postgres::Transaction;

use super::{PgResult, pg};
use crate::effects::store::StoreError;

/// `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1: the event log, a summary row per run, the inbox.
    "CREATE TABLE events (
        run   TEXT   NOT NULL,
        seq   BIGINT NOT NULL CHECK (seq >= 1),
        at_ms BIGINT NOT NULL,
        type  TEXT   NOT NULL,
        task  TEXT,
        body  TEXT   NOT NULL,
        PRIMARY KEY (run, seq)
     );
     CREATE TABLE runs (
        run           TEXT PRIMARY KEY,
        started_ms    BIGINT NOT NULL,
        last_event_ms BIGINT NOT NULL,
        requirement   TEXT   NOT NULL,
        phase         TEXT,
        tasks         BIGINT NOT NULL DEFAULT 0,
        merged        BIGINT NOT NULL DEFAULT 0,
        failed        BIGINT NOT NULL DEFAULT 0,
        tokens        BIGINT NOT NULL DEFAULT 0,
        events        BIGINT NOT NULL DEFAULT 0
     );
     CREATE INDEX runs_by_start ON runs (started_ms DESC, run DESC);
     CREATE TABLE inbox (
        id         BIGSERIAL PRIMARY KEY,
        run        TEXT   NOT NULL,
        created_ms BIGINT NOT NULL,
        body       TEXT   NOT NULL
     );
     CREATE INDEX inbox_by_run ON inbox (run, id);",
    // v2: the daemons' shared queue of requirements (see `queue.rs`). A
    // repository is known by its registered name, the same on every machine;
    // `owner` is the daemon working a running entry, until `lease_until`
    // (the server's clock: the machines' clocks disagree).
    "CREATE TABLE requirements (
        id           BIGSERIAL PRIMARY KEY,
        repo         TEXT   NOT NULL,
        requirement  TEXT   NOT NULL,
        priority     BIGINT NOT NULL DEFAULT 0,
        source       TEXT   NOT NULL,
        fingerprint  TEXT,
        state        TEXT   NOT NULL,
        run          TEXT,
        submitted_ms BIGINT NOT NULL,
        finished_ms  BIGINT,
        note         TEXT,
        owner        TEXT,
        lease_until  TIMESTAMPTZ,
        attempts     BIGINT NOT NULL DEFAULT 0
     );
     CREATE INDEX requirements_takeable ON requirements (repo, state, priority DESC, id);
     CREATE INDEX requirements_by_fingerprint ON requirements (fingerprint);",
    // v3 (#25, after the queue's v2): each run's base commit on its summary
    // row, from its first event, so that a repository lists its own runs
    // (those whose base commit it has) in a database of several.
    "ALTER TABLE runs ADD COLUMN base_commit TEXT;
     UPDATE runs SET base_commit =
        (SELECT e.body::json ->> 'base_commit' FROM events e WHERE e.run = runs.run AND e.seq = 1);",
];

pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The advisory lock key that serialises migrations ("memofab" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_656d_6f66_6162;

pub fn version(tx: &mut Transaction<'_>) -> PgResult<u32> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('memofab_schema') IS NOT NULL", &[])
        .map_err(pg("reading the schema version"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: i32 = tx
        .query_one("SELECT version FROM memofab_schema", &[])
        .map_err(pg("reading the schema version"))?
        .get(0);
    Ok(u32::try_from(v).unwrap_or(0))
}

pub fn migrate(client: &mut postgres::Client) -> PgResult<u32> {
    let mut tx = client.transaction().map_err(pg("starting a migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg("waiting for another migration"))?;
    let found = version(&mut tx)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(found);
    }
    if found == 0 {
        tx.batch_execute("CREATE TABLE memofab_schema (version INTEGER NOT NULL); INSERT INTO memofab_schema VALUES (0);")
            .map_err(pg("creating the schema table"))?;
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql)
            .map_err(pg(&format!("migrating the store to v{}", from + 1)))?;
    }
    let to = i32::try_from(SCHEMA_VERSION).unwrap_or(i32::MAX);
    tx.execute("UPDATE memofab_schema SET version = $1", &[&to])
        .map_err(pg("recording the schema version"))?;
    tx.commit().map_err(pg("committing a migration"))?;
    Ok(SCHEMA_VERSION)
}
