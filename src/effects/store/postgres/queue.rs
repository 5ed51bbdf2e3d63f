//! The daemons' queue of requirements on PostgreSQL, shared by every
//! `memofab serve` that names the database.
//!
//! A repository is known by its registered name, the same on every machine
//! (paths are each machine's own, so the registry stays in each daemon's
//! SQLite file). A daemon takes an entry with one statement (`FOR UPDATE
//! SKIP LOCKED`: two daemons never take the same row) and holds it under a
//! lease it renews; the lease's end is the server's clock, never a machine's.
//! An entry whose lease ran out (its daemon was killed, or its machine is
//! gone) is taken by the next daemon that looks, under the same run id, so
//! the run is resumed rather than started again. Every write a daemon makes
//! to an entry it works is fenced by its owner: a daemon whose lease was
//! taken over changes nothing more.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::Row;

use super::{PgResult, PgStore, as_i64, as_u64, pg};
use crate::domain::RunId;
use crate::domain::queue::{ItemState, QueuedRequirement, RequirementId, Source};
use crate::effects::store::StoreError;

/// The columns every entry query returns, in the order [`entry_row`] reads.
const COLUMNS: &str = "id, repo, requirement, priority, source, fingerprint, state, run, submitted_ms, finished_ms, note";

/// Takes one entry of these repositories: a queued one, or a running one
/// whose lease ran out or was let go (never one a live lease holds, even
/// the taker's own: a daemon works an entry once at a time). A run to carry
/// on comes before a new one. The old run id says whether it is resumed.
const TAKE: &str = "
WITH picked AS (
    SELECT id, run AS old_run FROM requirements
    WHERE repo = ANY($1)
      AND (state = 'queued'
           OR (state = 'running'
               AND (owner IS NULL OR lease_until IS NULL OR lease_until < now())))
    ORDER BY state = 'running' DESC, priority DESC, id
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
UPDATE requirements r
SET state = 'running', owner = $2, lease_until = now() + make_interval(secs => $3),
    attempts = r.attempts + 1, run = COALESCE(r.run, $4), note = NULL
FROM picked
WHERE r.id = picked.id
RETURNING r.id, r.repo, r.requirement, r.priority, r.source, r.fingerprint, r.state, r.run,
          r.submitted_ms, r.finished_ms, r.note, picked.old_run IS NOT NULL";

/// Runs this process works under a lease, with the lease's owner: their
/// appends are fenced (see [`check_fence`]).
static FENCES: Mutex<BTreeMap<RunId, String>> = Mutex::new(BTreeMap::new());

/// From now on, every event this process appends to `run` is refused
/// unless `owner` holds a live lease on the run's entry.
pub fn fence_run(run: &RunId, owner: &str) {
    if let Ok(mut fences) = FENCES.lock() {
        fences.insert(run.clone(), owner.to_owned());
    }
}

/// The run's entry is no longer worked here: its appends are not fenced.
/// (Kept fenced after a lost lease: anything still in flight is refused.)
pub fn unfence_run(run: &RunId) {
    if let Ok(mut fences) = FENCES.lock() {
        fences.remove(run);
    }
}

/// The owner whose lease fences appends to `run`, if any.
pub(super) fn fence_of(run: &RunId) -> Option<String> {
    FENCES.lock().ok().and_then(|f| f.get(run).cloned())
}

/// In the append's transaction: refused unless `owner` holds a live lease
/// on `run`'s entry (on the server's clock). The row is locked for share
/// until the append commits, so a daemon taking the entry over waits for
/// it, and once the lease has run out nothing more is appended, even by a
/// daemon thawed between two renewals.
pub(super) fn check_fence(
    client: &mut impl postgres::GenericClient,
    run: &RunId,
    owner: &str,
) -> PgResult<()> {
    let held = client
        .query_opt(
            "SELECT 1 FROM requirements
             WHERE run = $1 AND owner = $2 AND state = 'running' AND lease_until > now()
             FOR SHARE",
            &[&run.as_str(), &owner],
        )
        .map_err(pg("checking the run's lease"))?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::RunHeldElsewhere { run: run.clone() }),
    }
}

/// The entry this daemon works, under its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub entry: QueuedRequirement,
    /// The entry already had a run (a previous holder's, or this daemon's
    /// before a restart): resume it.
    pub resuming: bool,
}

/// A connection to the shared queue.
pub struct PgQueue {
    store: PgStore,
}

/// This process's connection to the shared queue: every `Queue` opened in
/// it shares one (the worker opens one per look).
static SHARED: Mutex<Option<Arc<PgQueue>>> = Mutex::new(None);

impl PgQueue {
    /// Connects, creating or migrating the schema.
    pub fn connect(url: &str) -> PgResult<Self> {
        Ok(Self {
            store: PgStore::connect(url)?,
        })
    }

    /// The process's connection, made again when the last one broke.
    pub fn shared(url: &str) -> PgResult<Arc<Self>> {
        let mut slot = SHARED.lock().map_err(|_| StoreError::Disconnected)?;
        if let Some(queue) = slot.as_ref()
            && queue.alive()
        {
            return Ok(queue.clone());
        }
        let queue = Arc::new(Self::connect(url)?);
        *slot = Some(queue.clone());
        Ok(queue)
    }

    fn alive(&self) -> bool {
        self.store
            .call(|s| Ok(!s.client.is_closed()))
            .unwrap_or(false)
    }

    /// Queries on the connection's thread.
    fn rows(
        &self,
        context: &'static str,
        sql: String,
        params: Vec<Param>,
    ) -> PgResult<Vec<QueuedRequirement>> {
        self.store.call(move |s| {
            let refs = params_of(&params);
            let rows = s.client.query(&sql, &refs).map_err(pg(context))?;
            rows.iter().map(|r| entry_row(r, context)).collect()
        })
    }

    /// Runs a statement; the rows it changed.
    fn execute(
        &self,
        context: &'static str,
        sql: &'static str,
        params: Vec<Param>,
    ) -> PgResult<u64> {
        self.store.call(move |s| {
            let refs = params_of(&params);
            s.client.execute(sql, &refs).map_err(pg(context))
        })
    }

    pub fn submit(
        &self,
        repo: &str,
        requirement: &str,
        priority: i64,
        source: Source,
        fingerprint: Option<&str>,
        now_ms: u64,
    ) -> PgResult<QueuedRequirement> {
        let found = self.rows(
            "queuing a requirement",
            format!(
                "INSERT INTO requirements (repo, requirement, priority, source, fingerprint, state, submitted_ms)
                 VALUES ($1, $2, $3, $4, $5, 'queued', $6) RETURNING {COLUMNS}"
            ),
            vec![
                Param::Text(repo.to_owned()),
                Param::Text(requirement.to_owned()),
                Param::Int(priority),
                Param::Text(source.as_str().to_owned()),
                Param::OptText(fingerprint.map(str::to_owned)),
                Param::Int(as_i64(now_ms)),
            ],
        )?;
        found.into_iter().next().ok_or(StoreError::Disconnected)
    }

    pub fn entry(&self, id: RequirementId) -> PgResult<Option<QueuedRequirement>> {
        Ok(self
            .rows(
                "reading a queue entry",
                format!("SELECT {COLUMNS} FROM requirements WHERE id = $1"),
                vec![Param::Int(id.0)],
            )?
            .into_iter()
            .next())
    }

    /// Every entry, by repository, running first, then by priority and age.
    pub fn entries(&self) -> PgResult<Vec<QueuedRequirement>> {
        self.rows(
            "listing the queue",
            format!(
                "SELECT {COLUMNS} FROM requirements ORDER BY repo, state != 'running', priority DESC, id"
            ),
            Vec::new(),
        )
    }

    pub fn next_queued(&self, repo: &str) -> PgResult<Option<QueuedRequirement>> {
        Ok(self
            .rows(
                "reading the queue",
                format!(
                    "SELECT {COLUMNS} FROM requirements WHERE repo = $1 AND state = 'queued' ORDER BY priority DESC, id LIMIT 1"
                ),
                vec![Param::Text(repo.to_owned())],
            )?
            .into_iter()
            .next())
    }

    pub fn with_fingerprint(
        &self,
        repo: &str,
        fingerprint: &str,
    ) -> PgResult<Vec<QueuedRequirement>> {
        self.rows(
            "reading the queue",
            format!(
                "SELECT {COLUMNS} FROM requirements WHERE repo = $1 AND fingerprint = $2 ORDER BY id DESC"
            ),
            vec![
                Param::Text(repo.to_owned()),
                Param::Text(fingerprint.to_owned()),
            ],
        )
    }

    /// Changes a queued entry's priority; false if it is not queued.
    pub fn set_priority(&self, id: RequirementId, priority: i64) -> PgResult<bool> {
        self.execute(
            "reordering",
            "UPDATE requirements SET priority = $2 WHERE id = $1 AND state = 'queued'",
            vec![Param::Int(id.0), Param::Int(priority)],
        )
        .map(|n| n == 1)
    }

    /// Drops a queued entry; false if it is not queued.
    pub fn drop_entry(&self, id: RequirementId, now_ms: u64) -> PgResult<bool> {
        self.execute(
            "dropping",
            "UPDATE requirements SET state = 'dropped', finished_ms = $2 WHERE id = $1 AND state = 'queued'",
            vec![Param::Int(id.0), Param::Int(as_i64(now_ms))],
        )
        .map(|n| n == 1)
    }

    /// Marks a queued entry running with `run`, without a lease (a running
    /// entry without an owner is anyone's to resume); false if not queued.
    pub fn mark_running(&self, id: RequirementId, run: &RunId) -> PgResult<bool> {
        self.execute(
            "starting an entry",
            "UPDATE requirements SET state = 'running', run = $2, note = NULL WHERE id = $1 AND state = 'queued'",
            vec![Param::Int(id.0), Param::Text(run.as_str().to_owned())],
        )
        .map(|n| n == 1)
    }

    /// Puts an unstarted running entry back on the queue, with why; only
    /// by `owner` when one is given. False if nothing changed.
    pub fn hold(&self, id: RequirementId, note: &str, owner: Option<&str>) -> PgResult<bool> {
        self.execute(
            "holding an entry",
            "UPDATE requirements SET state = 'queued', run = NULL, note = $2, owner = NULL, lease_until = NULL
             WHERE id = $1 AND state = 'running' AND ($3::text IS NULL OR owner = $3)",
            vec![
                Param::Int(id.0),
                Param::Text(note.to_owned()),
                Param::OptText(owner.map(str::to_owned)),
            ],
        )
        .map(|n| n == 1)
    }

    /// Keeps why an entry waits; only by `owner` when one is given.
    pub fn set_note(&self, id: RequirementId, note: &str, owner: Option<&str>) -> PgResult<bool> {
        self.execute(
            "noting why an entry waits",
            "UPDATE requirements SET note = $2 WHERE id = $1 AND ($3::text IS NULL OR owner = $3)",
            vec![
                Param::Int(id.0),
                Param::Text(note.to_owned()),
                Param::OptText(owner.map(str::to_owned)),
            ],
        )
        .map(|n| n == 1)
    }

    /// Ends an entry (its lease with it); only by `owner` when one is
    /// given. False if nothing changed: another daemon works it now.
    pub fn finish(
        &self,
        id: RequirementId,
        state: ItemState,
        note: Option<&str>,
        owner: Option<&str>,
        now_ms: u64,
    ) -> PgResult<bool> {
        self.execute(
            "finishing an entry",
            "UPDATE requirements
             SET state = $2, finished_ms = $3, owner = NULL, lease_until = NULL,
                 note = CASE WHEN $2 = 'done' THEN NULL ELSE COALESCE($4, note) END
             WHERE id = $1 AND ($5::text IS NULL OR owner = $5)",
            vec![
                Param::Int(id.0),
                Param::Text(state.as_str().to_owned()),
                Param::Int(as_i64(now_ms)),
                Param::OptText(note.map(str::to_owned)),
                Param::OptText(owner.map(str::to_owned)),
            ],
        )
        .map(|n| n == 1)
    }

    /// Takes the next entry of these repositories for `owner`, under a
    /// lease of `lease` from now (the server's now). A queued entry gets
    /// `fresh_run` as its run id; one taken over keeps its own.
    pub fn take(
        &self,
        repos: &[String],
        owner: &str,
        lease: Duration,
        fresh_run: &RunId,
    ) -> PgResult<Option<Taken>> {
        let (repos, owner, run) = (
            repos.to_vec(),
            owner.to_owned(),
            fresh_run.as_str().to_owned(),
        );
        let secs = lease.as_secs_f64();
        self.store.call(move |s| {
            let row = s
                .client
                .query_opt(TAKE, &[&repos, &owner, &secs, &run])
                .map_err(pg("taking a queue entry"))?;
            row.map(|r| {
                Ok(Taken {
                    entry: entry_row(&r, "taking a queue entry")?,
                    resuming: r.get(11),
                })
            })
            .transpose()
        })
    }

    /// Extends `owner`'s lease on a running entry to `lease` from now;
    /// false when the entry is no longer this owner's (it was taken over,
    /// finished or dropped): its run must stop at once.
    pub fn renew(&self, id: RequirementId, owner: &str, lease: Duration) -> PgResult<bool> {
        let owner = owner.to_owned();
        let secs = lease.as_secs_f64();
        self.store.call(move |s| {
            s.client
                .execute(
                    "UPDATE requirements SET lease_until = now() + make_interval(secs => $3)
                     WHERE id = $1 AND owner = $2 AND state = 'running'",
                    &[&id.0, &owner, &secs],
                )
                .map(|n| n == 1)
                .map_err(pg("renewing a lease"))
        })
    }

    /// Lets go of `owner`'s lease on a running entry: any daemon may take
    /// it (and resume its run) at once, without waiting for it to expire.
    pub fn release(&self, id: RequirementId, owner: &str) -> PgResult<bool> {
        self.execute(
            "letting go of an entry",
            "UPDATE requirements SET owner = NULL, lease_until = NULL WHERE id = $1 AND owner = $2",
            vec![Param::Int(id.0), Param::Text(owner.to_owned())],
        )
        .map(|n| n == 1)
    }
}

/// A statement's parameter, owned, to cross to the connection's thread.
enum Param {
    Int(i64),
    Text(String),
    OptText(Option<String>),
}

fn params_of(params: &[Param]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Int(v) => v as &(dyn postgres::types::ToSql + Sync),
            Param::Text(v) => v as &(dyn postgres::types::ToSql + Sync),
            Param::OptText(v) => v as &(dyn postgres::types::ToSql + Sync),
        })
        .collect()
}

fn entry_row(row: &Row, context: &str) -> PgResult<QueuedRequirement> {
    let bad = |what: &str, value: &str| StoreError::Corrupt {
        run: RunId::new(""),
        seq: 0,
        message: format!("{context}: unknown {what} {value:?}"),
    };
    let source: String = row.get(4);
    let state: String = row.get(6);
    Ok(QueuedRequirement {
        id: RequirementId(row.get(0)),
        repo: row.get(1),
        requirement: row.get(2),
        priority: row.get(3),
        source: Source::parse(&source).ok_or_else(|| bad("source", &source))?,
        fingerprint: row.get(5),
        state: ItemState::parse(&state).ok_or_else(|| bad("state", &state))?,
        run: row.get::<_, Option<String>>(7).map(RunId::new),
        submitted_ms: as_u64(row.get(8)),
        finished_ms: row.get::<_, Option<i64>>(9).map(as_u64),
        note: row.get(10),
    })
}
