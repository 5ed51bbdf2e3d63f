//! The daemon's queue of requirements and its registered repositories, in
//! one SQLite file. `memofab submit`, the incident intake and MCP write here;
//! the daemon reads it. Writers may be other processes: WAL and a busy
//! timeout let them take turns, and a requirement submitted while the
//! daemon is down waits for it.
//!
//! When the store is PostgreSQL (`postgres::selected()`), the requirements
//! live there instead, shared by every daemon that names the database and
//! taken under leases (see `store::postgres::PgQueue`); the registered
//! repositories (a name, the same on every machine, and this machine's
//! path) and the overseer's bookkeeping stay in the local file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use thiserror::Error;

use crate::domain::RunId;
use crate::domain::queue::{ItemState, QueuedRequirement, RegisteredRepo, RequirementId, Source};
use crate::effects::store::StoreError;
use crate::effects::store::postgres::{self, PgQueue};

pub use crate::effects::store::postgres::Taken;

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("queue {context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The repository named is not registered.
    #[error(
        "{0} is not a registered repository; `memofab repo add PATH` registers one, `memofab repo list` lists them"
    )]
    UnknownRepo(String),
    #[error("no queue entry {0}; `memofab queue` lists them")]
    UnknownEntry(RequirementId),
    /// The request does not fit the queue's state (e.g. dropping a running entry).
    #[error("{0}")]
    Refused(String),
    /// The shared queue (PostgreSQL) failed.
    #[error("shared queue: {0}")]
    Shared(#[from] StoreError),
    /// The entry's lease is no longer this daemon's: another one works it.
    #[error("{0} is worked by another daemon now (its lease was taken over)")]
    LeaseLost(RequirementId),
}

pub type QueueResult<T> = Result<T, QueueError>;

trait Context<T> {
    fn ctx(self, context: &str) -> QueueResult<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, context: &str) -> QueueResult<T> {
        self.map_err(|source| QueueError::Sqlite {
            context: context.to_owned(),
            source,
        })
    }
}

/// A requirement to put on the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequirement {
    /// The repository's name or path.
    pub repo: String,
    pub requirement: String,
    pub priority: i64,
    pub source: Source,
    pub fingerprint: Option<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS repos (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    added_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS requirements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- No foreign key: entries outlive an unregistered repository, as history.
    repo TEXT NOT NULL,
    requirement TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL,
    fingerprint TEXT,
    state TEXT NOT NULL,
    run TEXT,
    submitted_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    -- Why the entry failed, when its run could not start or did not finish.
    note TEXT
);
CREATE INDEX IF NOT EXISTS requirements_by_repo ON requirements(repo, state);
CREATE INDEX IF NOT EXISTS requirements_by_fingerprint ON requirements(fingerprint);
-- The scheduled overseer's last review per repository (by name), so a restart
-- neither repeats nor skips a night.
CREATE TABLE IF NOT EXISTS overseer_reviews (
    repo TEXT PRIMARY KEY,
    reviewed_ms INTEGER NOT NULL
);
";

pub struct Queue {
    conn: Connection,
    /// The shared queue's URL, when the store is PostgreSQL.
    shared: Option<&'static str>,
    /// The daemon whose lease fences this handle's writes to an entry.
    owner: Option<String>,
}

impl Queue {
    pub fn open(path: &Path) -> QueueResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| QueueError::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
        }
        let conn = Connection::open(path).ctx(&format!("opening {}", path.display()))?;
        conn.busy_timeout(crate::effects::store::BUSY_TIMEOUT)
            .ctx("setting the busy timeout")?;
        crate::effects::store::enable_wal(&conn).map_err(|e| QueueError::Refused(e.to_string()))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .ctx("setting synchronous")?;
        conn.execute_batch(SCHEMA).ctx("creating tables")?;
        // Files written before entries had a note.
        if conn
            .prepare("SELECT note FROM requirements LIMIT 0")
            .is_err()
        {
            conn.execute_batch("ALTER TABLE requirements ADD COLUMN note TEXT")
                .ctx("adding the note column")?;
        }
        Ok(Self {
            conn,
            shared: postgres::selected(),
            owner: None,
        })
    }

    /// Writes to an entry (hold, note, finish) through this handle change
    /// it only while `owner` holds its lease (the shared queue; the local
    /// one has a single daemon).
    pub fn as_owner(mut self, owner: &str) -> Self {
        self.owner = Some(owner.to_owned());
        self
    }

    /// Whether the requirements are the shared (PostgreSQL) queue.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The shared queue, connected on first use (the repository registry
    /// needs no database).
    fn pg(&self) -> QueueResult<Option<Arc<PgQueue>>> {
        match self.shared {
            Some(url) => Ok(Some(PgQueue::shared(url)?)),
            None => Ok(None),
        }
    }

    /// The owner fence as the shared queue takes it.
    fn fence(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Takes the next entry of `repo` for `owner`: a running one first (left
    /// by a stopped daemon, or, shared, one whose lease ran out), else the
    /// highest-priority queued one, marked running under a new run id before
    /// it starts. Shared, it is held under a lease of `lease`.
    pub fn take(&mut self, repo: &str, owner: &str, lease: Duration) -> QueueResult<Option<Taken>> {
        let fresh = RunId::generate();
        if let Some(pg) = self.pg()? {
            return Ok(pg.take(&[repo.to_owned()], owner, lease, &fresh)?);
        }
        let running = self
            .entries(&[ItemState::Running])?
            .into_iter()
            .find(|e| e.repo == repo);
        if let Some(entry) = running {
            return Ok(Some(Taken {
                entry,
                resuming: true,
            }));
        }
        let Some(mut entry) = self.next_queued(repo)? else {
            return Ok(None);
        };
        self.mark_running(entry.id, &fresh)?;
        // Its note as it was: the worker says a reason to wait only once.
        entry.state = ItemState::Running;
        entry.run = Some(fresh);
        Ok(Some(Taken {
            entry,
            resuming: false,
        }))
    }

    /// Extends `owner`'s lease on entry `id`; `Ok(false)` once it is not
    /// theirs any more. The local queue has no leases: always true.
    pub fn renew(&self, id: RequirementId, owner: &str, lease: Duration) -> QueueResult<bool> {
        match self.pg()? {
            Some(pg) => Ok(pg.renew(id, owner, lease)?),
            None => Ok(true),
        }
    }

    /// Lets go of `owner`'s lease on a running entry, so any daemon takes
    /// it over at once (a clean stop).
    pub fn release(&self, id: RequirementId, owner: &str) -> QueueResult<()> {
        if let Some(pg) = self.pg()? {
            pg.release(id, owner)?;
        }
        Ok(())
    }

    /// Registers a repository under `name` (default: its directory's name,
    /// made unique). Registering the same path again returns the existing entry.
    pub fn add_repo(&mut self, path: &Path, name: Option<&str>) -> QueueResult<RegisteredRepo> {
        let path = std::fs::canonicalize(path).map_err(|source| QueueError::Io {
            context: format!("reading {}", path.display()),
            source,
        })?;
        if let Some(existing) = self.repo_at(&path)? {
            if name.is_none_or(|n| n == existing.name) {
                return Ok(existing);
            }
            return Err(QueueError::Refused(format!(
                "{} is already registered as {}",
                path.display(),
                existing.name
            )));
        }
        let name = match name {
            Some(name) => {
                check_name(name)?;
                if self.repo_named(name)?.is_some() {
                    return Err(QueueError::Refused(format!(
                        "the name {name} is taken; choose another with --name"
                    )));
                }
                name.to_owned()
            }
            None => self.free_name(&path)?,
        };
        let repo = RegisteredRepo {
            name,
            path,
            added_ms: crate::effects::clock::now_ms(),
        };
        self.conn
            .execute(
                "INSERT INTO repos (name, path, added_ms) VALUES (?1, ?2, ?3)",
                params![repo.name, path_text(&repo.path)?, repo.added_ms as i64],
            )
            .ctx("registering a repository")?;
        Ok(repo)
    }

    /// Unregisters a repository; refused while one of its entries runs.
    /// Its queued entries are dropped.
    pub fn remove_repo(&mut self, repo: &str) -> QueueResult<RegisteredRepo> {
        let found = self.resolve_repo(repo)?;
        if self.is_shared() {
            // Shared: other daemons may serve this name; this machine's
            // registration goes, the shared entries stay.
            self.conn
                .execute("DELETE FROM repos WHERE name = ?1", [&found.name])
                .ctx("unregistering")?;
            return Ok(found);
        }
        // Immediate: it reads, then writes (see `Store::write_transaction`).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .ctx("starting a transaction")?;
        let running: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM requirements WHERE repo = ?1 AND state = 'running'",
                [&found.name],
                |r| r.get(0),
            )
            .ctx("reading the queue")?;
        if running > 0 {
            return Err(QueueError::Refused(format!(
                "{} has a run under way; let it finish (or cancel it) first",
                found.name
            )));
        }
        tx.execute(
            "UPDATE requirements SET state = 'dropped', finished_ms = ?2 WHERE repo = ?1 AND state = 'queued'",
            params![found.name, crate::effects::clock::now_ms() as i64],
        )
        .ctx("dropping the repository's queue")?;
        tx.execute("DELETE FROM repos WHERE name = ?1", [&found.name])
            .ctx("unregistering")?;
        tx.commit().ctx("committing")?;
        Ok(found)
    }

    pub fn repos(&self) -> QueueResult<Vec<RegisteredRepo>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, path, added_ms FROM repos ORDER BY name")
            .ctx("listing repositories")?;
        let rows = stmt
            .query_map([], repo_row)
            .ctx("listing repositories")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("listing repositories")?;
        Ok(rows)
    }

    /// A registered repository by name, or by a path inside its work tree.
    pub fn resolve_repo(&self, repo: &str) -> QueueResult<RegisteredRepo> {
        if let Some(found) = self.repo_named(repo)? {
            return Ok(found);
        }
        if let Ok(path) = std::fs::canonicalize(repo) {
            let repos = self.repos()?;
            if let Some(found) = repos
                .into_iter()
                .filter(|r| path.starts_with(&r.path))
                .max_by_key(|r| r.path.as_os_str().len())
            {
                return Ok(found);
            }
        }
        Err(QueueError::UnknownRepo(repo.to_owned()))
    }

    fn repo_named(&self, name: &str) -> QueueResult<Option<RegisteredRepo>> {
        self.conn
            .query_row(
                "SELECT name, path, added_ms FROM repos WHERE name = ?1",
                [name],
                repo_row,
            )
            .optional()
            .ctx("reading a repository")
    }

    fn repo_at(&self, path: &Path) -> QueueResult<Option<RegisteredRepo>> {
        self.conn
            .query_row(
                "SELECT name, path, added_ms FROM repos WHERE path = ?1",
                [path_text(path)?],
                repo_row,
            )
            .optional()
            .ctx("reading a repository")
    }

    fn free_name(&self, path: &Path) -> QueueResult<String> {
        let base: String = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let base = if base.is_empty() {
            "repo".to_owned()
        } else {
            base
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.repo_named(&name)?.is_some() {
            name = format!("{base}-{n}");
            n += 1;
        }
        Ok(name)
    }

    /// Puts a requirement on its repository's queue.
    pub fn submit(&mut self, new: NewRequirement) -> QueueResult<QueuedRequirement> {
        if new.requirement.trim().is_empty() {
            return Err(QueueError::Refused(
                "the requirement is empty; say what the factory should build".into(),
            ));
        }
        let repo = self.resolve_repo(&new.repo)?;
        let now = crate::effects::clock::now_ms();
        if let Some(pg) = self.pg()? {
            return Ok(pg.submit(
                &repo.name,
                &new.requirement,
                new.priority,
                new.source,
                new.fingerprint.as_deref(),
                now,
            )?);
        }
        self.conn
            .execute(
                "INSERT INTO requirements (repo, requirement, priority, source, fingerprint, state, submitted_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
                params![
                    repo.name,
                    new.requirement,
                    new.priority,
                    new.source.as_str(),
                    new.fingerprint,
                    now as i64
                ],
            )
            .ctx("queuing a requirement")?;
        self.entry(RequirementId(self.conn.last_insert_rowid()))
    }

    pub fn entry(&self, id: RequirementId) -> QueueResult<QueuedRequirement> {
        if let Some(pg) = self.pg()? {
            return pg.entry(id)?.ok_or(QueueError::UnknownEntry(id));
        }
        self.conn
            .query_row(&format!("{SELECT_ENTRY} WHERE id = ?1"), [id.0], entry_row)
            .optional()
            .ctx("reading a queue entry")?
            .ok_or(QueueError::UnknownEntry(id))
    }

    /// Entries in these states (all if empty), in the order they would run:
    /// by repository, running first, then by priority and age.
    pub fn entries(&self, states: &[ItemState]) -> QueueResult<Vec<QueuedRequirement>> {
        if let Some(pg) = self.pg()? {
            let mut rows = pg.entries()?;
            rows.retain(|e| states.is_empty() || states.contains(&e.state));
            return Ok(rows);
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "{SELECT_ENTRY} ORDER BY repo, state != 'running', priority DESC, id"
            ))
            .ctx("listing the queue")?;
        let rows = stmt
            .query_map([], entry_row)
            .ctx("listing the queue")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("listing the queue")?;
        Ok(rows
            .into_iter()
            .filter(|e| states.is_empty() || states.contains(&e.state))
            .collect())
    }

    /// The entry a repository runs next: highest priority, then oldest.
    pub fn next_queued(&self, repo: &str) -> QueueResult<Option<QueuedRequirement>> {
        if let Some(pg) = self.pg()? {
            return Ok(pg.next_queued(repo)?);
        }
        self.conn
            .query_row(
                &format!(
                    "{SELECT_ENTRY} WHERE repo = ?1 AND state = 'queued' ORDER BY priority DESC, id LIMIT 1"
                ),
                [repo],
                entry_row,
            )
            .optional()
            .ctx("reading the queue")
    }

    /// Entries of this group (fingerprint) in a repository, newest first.
    pub fn with_fingerprint(
        &self,
        repo: &str,
        fingerprint: &str,
    ) -> QueueResult<Vec<QueuedRequirement>> {
        if let Some(pg) = self.pg()? {
            return Ok(pg.with_fingerprint(repo, fingerprint)?);
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "{SELECT_ENTRY} WHERE repo = ?1 AND fingerprint = ?2 ORDER BY id DESC"
            ))
            .ctx("reading the queue")?;
        let rows = stmt
            .query_map(params![repo, fingerprint], entry_row)
            .ctx("reading the queue")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("reading the queue")?;
        Ok(rows)
    }

    /// Changes a queued entry's priority.
    pub fn set_priority(
        &mut self,
        id: RequirementId,
        priority: i64,
    ) -> QueueResult<QueuedRequirement> {
        let entry = self.entry(id)?;
        let refused = |entry: &QueuedRequirement| {
            QueueError::Refused(format!(
                "{id} is {}; only queued entries can be reordered",
                entry.state
            ))
        };
        if entry.state != ItemState::Queued {
            return Err(refused(&entry));
        }
        if let Some(pg) = self.pg()? {
            // Taken meanwhile by a daemon: refused as above.
            if !pg.set_priority(id, priority)? {
                return Err(refused(&self.entry(id)?));
            }
            return self.entry(id);
        }
        self.conn
            .execute(
                "UPDATE requirements SET priority = ?2 WHERE id = ?1",
                params![id.0, priority],
            )
            .ctx("reordering")?;
        self.entry(id)
    }

    /// Takes a queued entry off the queue (kept, as dropped).
    pub fn drop_entry(&mut self, id: RequirementId) -> QueueResult<QueuedRequirement> {
        let changed = if let Some(pg) = self.pg()? {
            usize::from(pg.drop_entry(id, crate::effects::clock::now_ms())?)
        } else {
            self
            .conn
            .execute(
                "UPDATE requirements SET state = 'dropped', finished_ms = ?2 WHERE id = ?1 AND state = 'queued'",
                params![id.0, crate::effects::clock::now_ms() as i64],
            )
            .ctx("dropping")?
        };
        let entry = self.entry(id)?;
        if changed == 0 {
            return Err(QueueError::Refused(format!(
                "{id} is {}; only queued entries can be dropped (cancel a running one in its cockpit)",
                entry.state
            )));
        }
        Ok(entry)
    }

    /// The daemon took the entry: its run is `run`.
    pub fn mark_running(&mut self, id: RequirementId, run: &RunId) -> QueueResult<()> {
        if let Some(pg) = self.pg()? {
            if !pg.mark_running(id, run)? {
                return Err(QueueError::Refused(format!("{id} is not queued")));
            }
            return Ok(());
        }
        let changed = self
            .conn
            .execute(
                "UPDATE requirements SET state = 'running', run = ?2, note = NULL WHERE id = ?1 AND state = 'queued'",
                params![id.0, run.as_str()],
            )
            .ctx("starting an entry")?;
        if changed == 0 {
            return Err(QueueError::Refused(format!("{id} is not queued")));
        }
        Ok(())
    }

    /// The entry's run could not start because the repository is not ready
    /// (uncommitted changes, no provider configured, another memofab at
    /// work): it goes back to the queue, unstarted, with `note` saying why,
    /// and is tried again later. A run already stored is never put back.
    pub fn hold(&mut self, id: RequirementId, note: &str) -> QueueResult<()> {
        if let Some(pg) = self.pg()? {
            pg.hold(id, note, self.fence())?;
            return Ok(());
        }
        self.conn
            .execute(
                "UPDATE requirements SET state = 'queued', run = NULL, note = ?2 WHERE id = ?1 AND state = 'running'",
                params![id.0, note],
            )
            .ctx("holding an entry")?;
        Ok(())
    }

    /// Why an entry waits, kept beside it without changing its state (a run
    /// to resume that cannot resume yet).
    pub fn set_note(&mut self, id: RequirementId, note: &str) -> QueueResult<()> {
        if let Some(pg) = self.pg()? {
            if !pg.set_note(id, note, self.fence())? && self.owner.is_some() {
                return Err(QueueError::LeaseLost(id));
            }
            return Ok(());
        }
        self.conn
            .execute(
                "UPDATE requirements SET note = ?2 WHERE id = ?1",
                params![id.0, note],
            )
            .ctx("noting why an entry waits")?;
        Ok(())
    }

    /// The entry failed: its run could not start, or ended with work not
    /// merged. `note` says why, for `memofab queue --all`.
    pub fn mark_failed(&mut self, id: RequirementId, note: &str) -> QueueResult<()> {
        if let Some(pg) = self.pg()? {
            let now = crate::effects::clock::now_ms();
            if !pg.finish(id, ItemState::Failed, Some(note), self.fence(), now)? {
                return Err(QueueError::LeaseLost(id));
            }
            return Ok(());
        }
        self.mark_finished(id, ItemState::Failed)?;
        self.conn
            .execute(
                "UPDATE requirements SET note = ?2 WHERE id = ?1",
                params![id.0, note],
            )
            .ctx("noting why an entry failed")?;
        Ok(())
    }

    /// The entry's run ended (or could not start).
    pub fn mark_finished(&mut self, id: RequirementId, state: ItemState) -> QueueResult<()> {
        debug_assert!(!state.is_open());
        if let Some(pg) = self.pg()? {
            let now = crate::effects::clock::now_ms();
            if !pg.finish(id, state, None, self.fence(), now)? {
                return Err(QueueError::LeaseLost(id));
            }
            return Ok(());
        }
        self.conn
            .execute(
                "UPDATE requirements SET state = ?2, finished_ms = ?3 WHERE id = ?1",
                params![id.0, state.as_str(), crate::effects::clock::now_ms() as i64],
            )
            .ctx("finishing an entry")?;
        Ok(())
    }
}

const SELECT_ENTRY: &str = "SELECT id, repo, requirement, priority, source, fingerprint, state, run, submitted_ms, finished_ms, note FROM requirements";
/// The scheduled overseer's bookkeeping.
impl Queue {
    /// When the scheduled overseer last reviewed the repository (unix ms).
    pub fn last_review(&self, repo: &str) -> QueueResult<Option<u64>> {
        self.conn
            .query_row(
                "SELECT reviewed_ms FROM overseer_reviews WHERE repo = ?1",
                [repo],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .ctx("reading the last review")
            .map(|ms| ms.map(|ms| ms as u64))
    }

    /// Records a review of the repository's runs up to `at_ms` (a day
    /// without runs counts: there was nothing to review).
    pub fn set_last_review(&mut self, repo: &str, at_ms: u64) -> QueueResult<()> {
        self.conn
            .execute(
                "INSERT INTO overseer_reviews (repo, reviewed_ms) VALUES (?1, ?2)
                 ON CONFLICT(repo) DO UPDATE SET reviewed_ms = excluded.reviewed_ms",
                params![repo, at_ms as i64],
            )
            .ctx("recording a review")?;
        Ok(())
    }
}

fn entry_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedRequirement> {
    let bad = |i: usize, what: &str, value: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what} {value:?}").into(),
        )
    };
    let source: String = row.get(4)?;
    let state: String = row.get(6)?;
    Ok(QueuedRequirement {
        id: RequirementId(row.get(0)?),
        repo: row.get(1)?,
        requirement: row.get(2)?,
        priority: row.get(3)?,
        source: Source::parse(&source).ok_or_else(|| bad(4, "source", source.clone()))?,
        fingerprint: row.get(5)?,
        state: ItemState::parse(&state).ok_or_else(|| bad(6, "state", state.clone()))?,
        run: row.get::<_, Option<String>>(7)?.map(RunId::new),
        submitted_ms: row.get::<_, i64>(8)? as u64,
        finished_ms: row.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        note: row.get(10)?,
    })
}

fn repo_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RegisteredRepo> {
    Ok(RegisteredRepo {
        name: row.get(0)?,
        path: PathBuf::from(row.get::<_, String>(1)?),
        added_ms: row.get::<_, i64>(2)? as u64,
    })
}

fn path_text(path: &Path) -> QueueResult<&str> {
    path.to_str()
        .ok_or_else(|| QueueError::Refused(format!("{} is not valid UTF-8", path.display())))
}

/// Names appear in URLs (`/intake/NAME`) and listings.
fn check_name(name: &str) -> QueueResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(QueueError::Refused(format!(
            "{name:?}: a repository name is letters, digits, '-', '_' and '.', not starting with '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> (tempfile::TempDir, Queue, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("shop");
        std::fs::create_dir(&repo).unwrap();
        let mut q = Queue::open(&dir.path().join("state/queue.sqlite")).unwrap();
        q.add_repo(&repo, None).unwrap();
        (dir, q, repo)
    }

    fn submit(q: &mut Queue, text: &str, priority: i64) -> QueuedRequirement {
        q.submit(NewRequirement {
            repo: "shop".into(),
            requirement: text.into(),
            priority,
            source: Source::Human,
            fingerprint: None,
        })
        .unwrap()
    }

    #[test]
    fn the_highest_priority_runs_first_then_the_oldest() {
        let (_dir, mut q, _) = queue();
        let a = submit(&mut q, "a", 0);
        let b = submit(&mut q, "b", 5);
        let c = submit(&mut q, "c", 5);
        assert_eq!(q.next_queued("shop").unwrap().unwrap().id, b.id);
        q.set_priority(a.id, 9).unwrap();
        assert_eq!(q.next_queued("shop").unwrap().unwrap().id, a.id);
        q.mark_running(a.id, &RunId::new("r1")).unwrap();
        assert_eq!(q.next_queued("shop").unwrap().unwrap().id, b.id);
        q.drop_entry(b.id).unwrap();
        assert_eq!(q.next_queued("shop").unwrap().unwrap().id, c.id);
    }

    #[test]
    fn a_held_entry_goes_back_to_the_queue_unstarted_with_why() {
        let (_dir, mut q, _) = queue();
        let a = submit(&mut q, "a", 0);
        q.mark_running(a.id, &RunId::new("r1")).unwrap();
        q.hold(a.id, "uncommitted changes").unwrap();
        let held = q.entry(a.id).unwrap();
        assert_eq!(held.state, ItemState::Queued);
        assert_eq!(held.run, None);
        assert_eq!(held.note.as_deref(), Some("uncommitted changes"));
        assert_eq!(q.next_queued("shop").unwrap().unwrap().id, a.id);
        // Taken again: the note goes with the start.
        q.mark_running(a.id, &RunId::new("r2")).unwrap();
        assert_eq!(q.entry(a.id).unwrap().note, None);
        // A finished entry is never put back.
        q.mark_finished(a.id, ItemState::Done).unwrap();
        q.hold(a.id, "x").unwrap();
        assert_eq!(q.entry(a.id).unwrap().state, ItemState::Done);
    }

    #[test]
    fn a_running_entry_is_neither_dropped_nor_reordered() {
        let (_dir, mut q, _) = queue();
        let a = submit(&mut q, "a", 0);
        q.mark_running(a.id, &RunId::new("r1")).unwrap();
        assert!(q.drop_entry(a.id).is_err());
        assert!(q.set_priority(a.id, 3).is_err());
        assert_eq!(q.entry(a.id).unwrap().state, ItemState::Running);
        assert!(q.mark_running(a.id, &RunId::new("r2")).is_err());
        assert_eq!(q.entry(a.id).unwrap().run, Some(RunId::new("r1")));
    }

    #[test]
    fn a_failed_entry_keeps_why() {
        let (_dir, mut q, _) = queue();
        let a = submit(&mut q, "a", 0);
        q.mark_running(a.id, &RunId::new("r1")).unwrap();
        q.mark_failed(a.id, "the work tree has uncommitted changes")
            .unwrap();
        let entry = q.entry(a.id).unwrap();
        assert_eq!(entry.state, ItemState::Failed);
        assert_eq!(
            entry.note.as_deref(),
            Some("the work tree has uncommitted changes")
        );
        assert!(entry.finished_ms.is_some());
        let b = submit(&mut q, "b", 0);
        assert_eq!(q.entry(b.id).unwrap().note, None);
    }

    #[test]
    fn repositories_resolve_by_name_or_by_a_path_inside_them() {
        let (_dir, mut q, repo) = queue();
        std::fs::create_dir(repo.join("src")).unwrap();
        let inside = repo.join("src");
        assert_eq!(
            q.resolve_repo(inside.to_str().unwrap()).unwrap().name,
            "shop"
        );
        assert!(matches!(
            q.resolve_repo("nope"),
            Err(QueueError::UnknownRepo(_))
        ));
        // Same path again: the same entry; a second directory called shop
        // gets its own name.
        assert_eq!(q.add_repo(&repo, None).unwrap().name, "shop");
        let other = repo.join("shop");
        std::fs::create_dir(&other).unwrap();
        assert_eq!(q.add_repo(&other, None).unwrap().name, "shop-2");
        assert!(q.add_repo(&other, Some("../x")).is_err());
    }

    #[test]
    fn an_empty_requirement_or_unknown_repository_queues_nothing() {
        let (_dir, mut q, _) = queue();
        assert!(
            q.submit(NewRequirement {
                repo: "shop".into(),
                requirement: "  \n".into(),
                priority: 0,
                source: Source::Human,
                fingerprint: None,
            })
            .is_err()
        );
        assert!(
            q.submit(NewRequirement {
                repo: "elsewhere".into(),
                requirement: "x".into(),
                priority: 0,
                source: Source::Human,
                fingerprint: None,
            })
            .is_err()
        );
        assert!(q.entries(&[]).unwrap().is_empty());
    }

    #[test]
    fn removing_a_repository_drops_its_queue_but_not_a_running_one() {
        let (_dir, mut q, _) = queue();
        let a = submit(&mut q, "a", 0);
        q.mark_running(a.id, &RunId::new("r1")).unwrap();
        assert!(q.remove_repo("shop").is_err());
        q.mark_finished(a.id, ItemState::Done).unwrap();
        let b = submit(&mut q, "b", 0);
        q.remove_repo("shop").unwrap();
        assert_eq!(q.entry(b.id).unwrap().state, ItemState::Dropped);
        assert!(q.repos().unwrap().is_empty());
    }

    #[test]
    fn the_last_review_survives_reopening_and_moves_forward() {
        let (dir, mut q, _) = queue();
        assert_eq!(q.last_review("shop").unwrap(), None);
        q.set_last_review("shop", 1_000).unwrap();
        q.set_last_review("shop", 2_000).unwrap();
        drop(q);
        let q = Queue::open(&dir.path().join("state/queue.sqlite")).unwrap();
        assert_eq!(q.last_review("shop").unwrap(), Some(2_000));
        assert_eq!(q.last_review("other").unwrap(), None);
    }
}
