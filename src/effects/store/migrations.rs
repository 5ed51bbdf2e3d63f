//! Schema versions, applied in order inside one transaction each. The version
//! lives in SQLite's `user_version`; a store from a newer memofab is refused
//! untouched rather than misread.

use rusqlite::{Connection, TransactionBehavior};

use super::{Context, StoreError};

/// `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1: the event log and a summary row per run.
    "CREATE TABLE events (
        run   TEXT    NOT NULL,
        seq   INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        type  TEXT    NOT NULL,
        task  TEXT,
        body  TEXT    NOT NULL,
        PRIMARY KEY (run, seq)
     ) WITHOUT ROWID;
     CREATE INDEX events_by_task ON events (run, task);
     CREATE TABLE runs (
        run           TEXT PRIMARY KEY,
        started_ms    INTEGER NOT NULL,
        last_event_ms INTEGER NOT NULL,
        requirement   TEXT    NOT NULL,
        phase         TEXT,
        tasks         INTEGER NOT NULL DEFAULT 0,
        merged        INTEGER NOT NULL DEFAULT 0,
        failed        INTEGER NOT NULL DEFAULT 0,
        tokens        INTEGER NOT NULL DEFAULT 0,
        events        INTEGER NOT NULL DEFAULT 0
     );",
    // v2: commands left by other processes for a running engine.
    "CREATE TABLE inbox (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        run        TEXT    NOT NULL,
        created_ms INTEGER NOT NULL,
        body       TEXT    NOT NULL
     );",
    // v3: full runs of `chunk::CHUNK_EVENTS` events sealed into compressed
    // chunks (sealed by `chunk::seal_all` right after this step); event
    // bodies hold the event's kind only, `run`, `seq` and `at_ms` being
    // columns. The by-task index was never read.
    "CREATE TABLE event_chunks (
        run       TEXT    NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq  INTEGER NOT NULL,
        light     BLOB    NOT NULL,
        bulk      BLOB    NOT NULL,
        PRIMARY KEY (run, first_seq)
     );
     DROP INDEX events_by_task;",
];

/// The version whose step seals the events already stored into chunks.
const CHUNKS_VERSION: u32 = 3;

pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Schema v1 as it shipped, to build old-store fixtures in tests.
#[cfg(test)]
pub(super) const MIGRATIONS_V1_FOR_TESTS: [&str; 1] = [MIGRATIONS[0]];

pub fn version(conn: &Connection) -> Result<u32, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .ctx("reading the schema version")
        .map(|v| v as u32)
}

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_with(conn, MIGRATIONS)
}

pub(super) fn migrate_with(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let supported = migrations.len() as u32;
    let found = version(conn)?;
    if found > supported {
        return Err(StoreError::TooNew { found, supported });
    }
    if found == supported {
        return Ok(());
    }
    // Another process may be creating the same store right now (a run
    // starting while `memofab approve` opens it): each step takes the write
    // lock first and reads the version under it, so a step the other process
    // already applied is skipped instead of failing on its tables.
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a migration")?;
        let found = version(&tx)?;
        if found > supported {
            return Err(StoreError::TooNew { found, supported });
        }
        let Some(sql) = migrations.get(found as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql)
            .ctx(&format!("migrating the store to v{}", found + 1))?;
        if found + 1 == CHUNKS_VERSION {
            super::chunk::seal_all(&tx)?;
        }
        tx.pragma_update(None, "user_version", i64::from(found + 1))
            .ctx("recording the schema version")?;
        tx.commit().ctx("committing a migration")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_opening_a_new_store_at_once_migrate_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memofab.db");
        let barrier = std::sync::Barrier::new(6);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        crate::effects::store::Store::open(&path).map(|s| s.schema_version())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in results {
            assert_eq!(r.unwrap().unwrap(), SCHEMA_VERSION);
        }
    }
}
