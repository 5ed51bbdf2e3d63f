//! The overseer on a schedule: at `[overseer] schedule` (each repository's own
//! config), review the runs since the repository's last review and put the
//! proposals in the inbox.
//!
//! One watcher task per registered repository; a supervisor starts watchers
//! for repositories registered while the daemon runs, and a watcher ends when
//! its repository is unregistered. The last review is kept in the queue
//! store, so a restart neither repeats nor skips a night: a daemon that was
//! down at the scheduled time reviews once when it starts. A day without runs
//! writes no report. A failed review is logged and tried again at the next
//! firing; it never stops the daemon.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local, TimeDelta};
use tokio::task::JoinSet;

use super::shared::Shared;
use crate::config::Config;
use crate::domain::overseer::{self as schedule, DailyTime};
use crate::domain::queue::RegisteredRepo;
use crate::engine::overseer;
use crate::protocol::EngineUpdate;

/// How long a wait lasts at most before repositories, config and the clock
/// are read again: new repositories and edited schedules are picked up, and
/// a machine that slept (its monotonic clock stopped meanwhile) still fires
/// on time by the wall clock.
pub const RECHECK: Duration = Duration::from_secs(5 * 60);

/// What a repository never reviewed has reviewed first.
const FIRST_WINDOW: TimeDelta = TimeDelta::hours(24);

/// The wall clock the schedule is read on.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Local>;
}

/// The machine's local time.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Local> {
        Local::now()
    }
}

/// A wall clock that advances with tokio's from `start`: under a paused
/// test clock, days pass in no time.
pub struct TokioClock {
    start: DateTime<Local>,
    at: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(start: DateTime<Local>) -> Self {
        Self {
            start,
            at: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Local> {
        let elapsed = TimeDelta::from_std(self.at.elapsed()).unwrap_or(TimeDelta::MAX);
        self.start.checked_add_signed(elapsed).unwrap_or(self.start)
    }
}

/// Runs the schedule until the daemon stops.
pub async fn run(shared: Shared) {
    run_with(shared, Arc::new(SystemClock)).await
}

/// [`run`] on a given clock. Dropping the future stops every watcher.
pub async fn run_with(shared: Shared, clock: Arc<dyn Clock>) {
    let mut watchers = JoinSet::new();
    let mut watched: HashMap<tokio::task::Id, String> = HashMap::new();
    loop {
        while let Some(done) = watchers.try_join_next_with_id() {
            let id = match done {
                Ok((id, ())) => id,
                Err(e) => {
                    tracing::error!(error = %e, "an overseer watcher failed; restarting it");
                    e.id()
                }
            };
            watched.remove(&id);
        }
        match shared.queue().and_then(|q| q.repos()) {
            Ok(repos) => {
                for repo in repos {
                    if !watched.values().any(|name| *name == repo.name) {
                        let watcher = Watcher {
                            shared: shared.clone(),
                            clock: clock.clone(),
                            name: repo.name.clone(),
                            handled: None,
                            retry_since: None,
                            problem: None,
                        };
                        let handle = watchers.spawn(watcher.watch());
                        watched.insert(handle.id(), repo.name);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the scheduled overseer cannot read the repositories")
            }
        }
        tokio::time::sleep(RECHECK).await;
    }
}

/// The schedule of one repository.
struct Watcher {
    shared: Shared,
    clock: Arc<dyn Clock>,
    name: String,
    /// The last firing dealt with here (unix ms), reviewed or failed: not
    /// tried again before the next one, even if recording it failed.
    handled: Option<i64>,
    /// Where the failed review's window began: the retry covers it too,
    /// when no review was ever recorded.
    retry_since: Option<u64>,
    /// The last problem logged, so a wrong config is said once, not at
    /// every recheck.
    problem: Option<String>,
}

enum Step {
    /// The repository is no longer registered.
    Gone,
    /// Look again at this firing, or after [`RECHECK`] without one.
    Wait(Option<DateTime<Local>>),
}

/// Why a review did not happen.
#[derive(Debug, thiserror::Error)]
enum ReviewError {
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error("no model for the overseer: {0}")]
    Providers(String),
}

/// What a review did.
enum Reviewed {
    NoRuns,
    Report {
        run: crate::domain::RunId,
        proposals: usize,
    },
}

impl Watcher {
    async fn watch(mut self) {
        loop {
            let next = match self.step().await {
                Step::Gone => return,
                Step::Wait(next) => next,
            };
            let wait = next
                .map(|at| (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO))
                .map_or(RECHECK, |wait| wait.min(RECHECK));
            tokio::time::sleep(wait).await;
        }
    }

    fn problem(&mut self, message: String) {
        if self.problem.as_ref() != Some(&message) {
            tracing::warn!(repo = %self.name, "scheduled overseer: {message}");
            self.problem = Some(message);
        }
    }

    async fn step(&mut self) -> Step {
        let found = self.shared.queue().and_then(|q| {
            let repo = q.repos()?.into_iter().find(|r| r.name == self.name);
            let last = q.last_review(&self.name)?;
            Ok(repo.map(|repo| (repo, last)))
        });
        let (repo, last) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Step::Gone,
            Err(e) => {
                self.problem(format!("cannot read the queue store: {e}"));
                return Step::Wait(None);
            }
        };
        let config = match Config::for_repo(&repo.path, None) {
            Ok(config) => config,
            Err(e) => {
                self.problem(format!("no review while the config is wrong: {e:#}"));
                return Step::Wait(None);
            }
        };
        let Some(schedule) = config.overseer.schedule else {
            return Step::Wait(None);
        };
        self.problem = None;
        let now = self.clock.now();
        if let Some(firing) = schedule::owed(schedule, last.unwrap_or(repo.added_ms), &now)
            && self.handled != Some(firing.timestamp_millis())
        {
            self.review(&repo, &config, schedule, last, firing, now)
                .await;
        }
        Step::Wait(Some(schedule::next_firing(schedule, &self.clock.now())))
    }

    /// Reviews the runs since the last review and records that it did.
    async fn review(
        &mut self,
        repo: &RegisteredRepo,
        config: &Config,
        schedule: DailyTime,
        last: Option<u64>,
        firing: DateTime<Local>,
        now: DateTime<Local>,
    ) {
        let since_ms = last
            .or(self.retry_since)
            .unwrap_or_else(|| unix_ms(now - FIRST_WINDOW));
        self.handled = Some(firing.timestamp_millis());
        match review(&repo.path, since_ms, config).await {
            Ok(reviewed) => {
                self.retry_since = None;
                if let Err(e) = self
                    .shared
                    .queue()
                    .and_then(|mut q| q.set_last_review(&self.name, unix_ms(now)))
                {
                    // The review is stored; at worst a restart reviews again.
                    tracing::warn!(repo = %self.name, error = %e, "scheduled overseer: the review was not recorded");
                }
                match reviewed {
                    Reviewed::NoRuns => {
                        tracing::info!(repo = %self.name, "scheduled overseer: no runs since the last review")
                    }
                    Reviewed::Report { run, proposals } => {
                        tracing::info!(repo = %self.name, report = %run, proposals, "scheduled overseer: report stored");
                        self.tell_attached(&repo.path);
                    }
                }
            }
            Err(e) => {
                self.retry_since = Some(since_ms);
                tracing::warn!(
                    repo = %self.name, error = %e, %schedule,
                    "scheduled overseer: the review failed; it is tried again at the next firing"
                );
            }
        }
    }

    /// Cockpits attached to the repository's run see the proposals now.
    fn tell_attached(&self, repo: &Path) {
        let Some(live) = self.shared.live.get(&self.name) else {
            return;
        };
        if let Ok(Some(waiting)) = overseer::waiting_proposals(repo) {
            // No cockpit attached: they read it when they attach.
            let _ = live.updates.send(EngineUpdate::ProposalsWaiting(waiting));
        }
    }
}

/// Reviews the factory's runs in `repo` started since `since_ms` with the
/// models its config names, as `memofab overseer` does; nothing without runs.
async fn review(repo: &Path, since_ms: u64, config: &Config) -> Result<Reviewed, ReviewError> {
    if overseer::runs_since(repo, since_ms)?.is_empty() {
        return Ok(Reviewed::NoRuns);
    }
    let choice = crate::engine::providers::build(config, None, None, Duration::ZERO)
        .map_err(|e| ReviewError::Providers(format!("{e:#}")))?;
    let report = overseer::review(repo, since_ms, config, &choice.set).await?;
    Ok(Reviewed::Report {
        run: report.run,
        proposals: report.proposals.len(),
    })
}

fn unix_ms(at: DateTime<Local>) -> u64 {
    u64::try_from(at.timestamp_millis()).unwrap_or(0)
}
