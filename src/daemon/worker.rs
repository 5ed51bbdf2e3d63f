//! The daemon's workers: one per registered repository, each running that
//! repository's queue one requirement at a time.
//!
//! Invariants:
//! - An entry is marked running, with its run id, before the run starts:
//!   a daemon killed at any point finds it at its next start and resumes
//!   the run (or starts it under that id if it never got stored), so a
//!   requirement is neither lost nor run twice.
//! - A run waiting on a human (a gate, a question, a conflict) keeps its
//!   repository busy; the other repositories go on.
//! - On stop, each run is asked to shut down (it records the interruption)
//!   and its entry stays running, for the next start to resume.
//! - On a shared (PostgreSQL) queue, an entry is worked under a lease the
//!   worker renews every third of its length. A renewal that finds the
//!   lease gone (another daemon took the entry over after it expired)
//!   drops the run at once: it lands nothing more, and the run's writer
//!   lock in the store goes with it. On stop, the lease is let go, so
//!   another daemon resumes the run without waiting for it to expire.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::live::{FANOUT_CAPACITY, LiveRun};
use super::shared::Shared;
use crate::config::Config;
use crate::domain::queue::{ItemState, QueuedRequirement, RegisteredRepo, RequirementId};
use crate::domain::{RunId, RunPhase, RunState, TaskState};
use crate::effects::queue::Taken;
use crate::effects::store::{StoreError, postgres};
use crate::engine::EngineError;
use crate::engine::context::AgentSlots;
use crate::engine::run::orchestrator::Steering;
use crate::engine::run::session::{self, ResumeRequest, RunRequest};
use crate::protocol::Command;

/// How often the repositories and queues are read again without a wake: a
/// safety net for writers that could not reach the daemon.
const POLL: Duration = Duration::from_secs(5);

/// How soon a run still recorded by another process is tried again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Says one line about the queue's progress (an entry's run started,
/// ended, or waits for the repository to be ready).
pub type Report = Arc<dyn Fn(String) + Send + Sync>;

/// What the workers share besides [`Shared`].
#[derive(Clone)]
pub struct Workers {
    pub shared: Shared,
    /// The daemon's agent budget, across every repository.
    pub agent_slots: AgentSlots,
    /// Becomes true when the daemon stops.
    pub stop: watch::Receiver<bool>,
    pub report: Report,
}

/// How a queue entry's turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Failed(String),
    /// Stopped with the daemon: resumed at its next start.
    Interrupted,
    /// The repository is not ready for the run (uncommitted changes, no
    /// provider, another memofab at work): the entry waits, with why, and
    /// is tried again at the next look; the rest of the repository's queue
    /// waits behind it, as it would meet the same.
    Held(String),
    /// The run is still recorded by another process (a daemon whose lease
    /// this one took over, until it notices): tried again shortly, under
    /// this daemon's lease, so nobody else takes the entry meanwhile.
    Busy(String),
    /// Another daemon took the entry over (this one's lease ran out): the
    /// run was dropped, and the entry is the other daemon's to record.
    LeaseLost,
}

/// What a worker does after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Take the next entry now.
    Go,
    /// Wait for a wake or the next look.
    Wait,
}

struct Worker {
    bell: Arc<Notify>,
    handle: JoinHandle<()>,
}

/// Keeps one worker per registered repository until the daemon stops, then
/// waits for every worker to put its run down.
pub async fn supervise(env: Workers) {
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut stop = env.stop.clone();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        // A worker leaves by itself once its repository is unregistered.
        workers.retain(|_, w| !w.handle.is_finished());
        match env.shared.queue().and_then(|q| q.repos()) {
            Ok(repos) => {
                for repo in repos {
                    workers.entry(repo.name.clone()).or_insert_with(|| {
                        tracing::info!(repo = %repo.name, path = %repo.path.display(), "worker started");
                        let bell = Arc::new(Notify::new());
                        let handle = tokio::spawn(work(env.clone(), repo, bell.clone()));
                        Worker { bell, handle }
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the registered repositories"),
        }
        for worker in workers.values() {
            // A stored permit: a worker busy now looks again when it is done.
            worker.bell.notify_one();
        }
        tokio::select! {
            _ = env.shared.queue_changed.notified() => {}
            _ = poll.tick() => {}
            _ = stop.changed() => {}
        }
    }
    for (repo, worker) in workers {
        if let Err(e) = worker.handle.await {
            tracing::error!(%repo, error = %e, "a worker ended abnormally");
        }
    }
}

/// Runs one repository's queue until the daemon stops or the repository is
/// unregistered.
async fn work(env: Workers, repo: RegisteredRepo, bell: Arc<Notify>) {
    let mut stop = env.stop.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        match take(&env.shared, &repo.name).await {
            // An entry that could not be taken (the store is busy) waits
            // for the next look rather than spinning.
            Ok(Some(taken)) => {
                if take_turn(&env, &repo, taken).await == Next::Go {
                    continue;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(repo = %repo.name, error = %e, "cannot read the queue"),
        }
        let registered = env
            .shared
            .queue()
            .and_then(|q| q.repos())
            .map(|repos| repos.iter().any(|r| r.name == repo.name));
        if matches!(registered, Ok(false)) {
            tracing::info!(repo = %repo.name, "repository unregistered; worker stops");
            return;
        }
        tokio::select! {
            _ = bell.notified() => {}
            _ = stop.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Takes the repository's next entry: a running one left by a previous
/// daemon (or, shared, one whose lease expired) first, then the queue. It
/// is marked running with its run id before the run starts, so a kill at
/// any point is recoverable: the next taker resumes or starts that id.
async fn take(
    shared: &Shared,
    repo: &str,
) -> Result<Option<Taken>, crate::effects::queue::QueueError> {
    let (shared, repo) = (shared.clone(), repo.to_owned());
    tokio::task::spawn_blocking(move || {
        let lease = &shared.lease;
        shared.queue()?.take(&repo, &lease.owner, lease.length)
    })
    .await
    .map_err(|e| crate::effects::queue::QueueError::Refused(e.to_string()))?
}

/// Runs one entry to its end (or to the daemon's stop) and records how it
/// ended on the queue.
async fn take_turn(env: &Workers, repo: &RegisteredRepo, taken: Taken) -> Next {
    let Taken { entry, resuming } = taken;
    let id = entry.id;
    let Some(run) = entry.run.clone() else {
        // Marked running without a run id: never written by a worker.
        finish(
            env,
            &entry,
            false,
            Outcome::Failed("running without a run id".into()),
        );
        return Next::Go;
    };
    tracing::info!(entry = %id, repo = %repo.name, %run, resuming, "run starting");
    let (lost_tx, lost) = watch::channel(false);
    let shared_queue = env.shared.queue_is_shared();
    if shared_queue {
        // The record's fence: the run's appends need the live lease.
        postgres::fence_run(&run, &env.shared.lease.owner);
    }
    let renewer = shared_queue.then(|| tokio::spawn(keep_lease(env.shared.clone(), id, lost_tx)));
    let outcome = loop {
        let outcome = drive(env, repo, &entry, run.clone(), resuming, lost.clone()).await;
        let Outcome::Busy(why) = outcome else {
            break outcome;
        };
        if !shared_queue || *env.stop.borrow() || !still_ours(env, id).await {
            break Outcome::Held(why);
        }
        tracing::info!(entry = %id, %run, reason = %why, "the run is busy elsewhere; trying again");
        let mut stop = env.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(BUSY_RETRY) => {}
            _ = stop.changed() => {}
            () = lease_lost(lost.clone()) => {}
        }
    };
    if let Some(renewer) = renewer {
        renewer.abort();
    }
    // A run that failed because its appends were refused lost its lease
    // (the renewer may not have seen it yet): nothing of it is recorded.
    let outcome = match outcome {
        Outcome::Failed(_) | Outcome::Held(_) if shared_queue && !still_ours(env, id).await => {
            Outcome::LeaseLost
        }
        other => other,
    };
    if outcome != Outcome::LeaseLost {
        postgres::unfence_run(&run);
    }
    let next = match &outcome {
        Outcome::Held(why) => {
            // Said once per reason, not at every look.
            if entry.note.as_deref() != Some(why.as_str()) {
                tracing::info!(entry = %id, repo = %repo.name, reason = %why, "entry held");
                (env.report)(format!("{id} {}: waits: {why}", repo.name));
            }
            Next::Wait
        }
        _ => {
            tracing::info!(entry = %id, %run, ?outcome, "run ended");
            (env.report)(format!(
                "{id} {}: run {run} {}",
                repo.name,
                match &outcome {
                    Outcome::Done => "done: every task merged".to_owned(),
                    Outcome::Failed(why) => format!("failed: {why}"),
                    Outcome::Interrupted => "interrupted; it resumes at the next start".to_owned(),
                    Outcome::LeaseLost =>
                        "dropped: its lease ran out and another daemon carries it on".to_owned(),
                    Outcome::Held(_) | Outcome::Busy(_) => String::new(),
                }
            ));
            Next::Go
        }
    };
    finish(env, &entry, resuming, outcome);
    next
}

/// Records how the entry's turn ended, fenced by this daemon's lease on a
/// shared queue: a daemon whose entry was taken over writes nothing.
fn finish(env: &Workers, entry: &QueuedRequirement, resuming: bool, outcome: Outcome) {
    let id = entry.id;
    let owner = &env.shared.lease.owner;
    let written = env.shared.queue().and_then(|q| {
        let mut q = q.as_owner(owner);
        match &outcome {
            Outcome::Done => q.mark_finished(id, ItemState::Done),
            Outcome::Failed(note) => q.mark_failed(id, note),
            // Let go: on a shared queue another daemon resumes it at once.
            Outcome::Interrupted => q.release(id, owner),
            Outcome::LeaseLost => Ok(()),
            // A run already stored stays running, to be resumed (by any
            // daemon, once it is let go); an unstarted one goes back to
            // the queue.
            Outcome::Held(note) | Outcome::Busy(note) if resuming => {
                q.set_note(id, note).and_then(|()| q.release(id, owner))
            }
            Outcome::Held(note) | Outcome::Busy(note) => q.hold(id, note),
        }
    });
    if let Err(e) = written {
        tracing::error!(entry = %id, error = %e, "cannot record how a queue entry ended");
    }
}

type EngineRun =
    Pin<Box<dyn Future<Output = crate::engine::EngineResult<RunState>> + Send + 'static>>;

/// Starts (or resumes) the entry's run and drives it to its end, with its
/// updates fanned out to attached cockpits.
async fn drive(
    env: &Workers,
    repo: &RegisteredRepo,
    entry: &QueuedRequirement,
    run: RunId,
    resuming: bool,
    lost: watch::Receiver<bool>,
) -> Outcome {
    let stored = if resuming {
        match session::stored_state(&repo.path, &run) {
            Ok(state) => Some(state),
            // Killed after the entry was marked and before the run was stored.
            Err(EngineError::UnknownRun(_)) => None,
            Err(e) => return Outcome::Failed(format!("cannot read run {run}: {e}")),
        }
    } else {
        None
    };
    if let Some(state) = &stored
        && state.phase.is_over()
    {
        // Killed after the run ended and before the queue heard of it.
        return outcome_of(state);
    }
    let (updates_tx, mut updates_rx) = mpsc::unbounded_channel();
    let (commands_tx, commands_rx) = mpsc::unbounded_channel::<Command>();
    let engine = match prepare(env, repo, entry, &run, stored.as_ref()) {
        Ok(Launch::Start(request)) => {
            Box::pin(session::start(*request, updates_tx, commands_rx)) as EngineRun
        }
        Ok(Launch::Resume(request)) => {
            Box::pin(session::resume(*request, updates_tx, commands_rx)) as EngineRun
        }
        // The repository's config names no usable provider: every entry
        // would meet the same until it is fixed.
        Err(reason) => return Outcome::Held(reason),
    };
    let (fanout, _) = broadcast::channel(FANOUT_CAPACITY);
    env.shared.live.insert(LiveRun {
        repo: repo.name.clone(),
        path: repo.path.clone(),
        run: run.clone(),
        requirement: entry.id,
        updates: fanout.clone(),
        commands: commands_tx.clone(),
    });
    // Said when the run's first event comes, so an entry that waits for
    // its repository (and is tried again every few seconds) does not say
    // it starts each time.
    let started = format!(
        "{} {}: run {run} {}: {}",
        entry.id,
        repo.name,
        if resuming { "resumes" } else { "starts" },
        entry.title()
    );
    let report = env.report.clone();
    let forward = tokio::spawn(async move {
        let mut started = Some(started);
        while let Some(update) = updates_rx.recv().await {
            if let Some(line) = started.take() {
                report(line);
            }
            // Nobody attached is fine: the store keeps everything.
            let _ = fanout.send(update);
        }
    });
    let result = run_until_stopped(engine, &commands_tx, env.stop.clone(), lost).await;
    env.shared.live.remove(&repo.name);
    // The engine dropped its sender: the forwarder has delivered everything.
    let _ = forward.await;
    let Some(result) = result else {
        tracing::warn!(entry = %entry.id, %run, "lease lost: the run was dropped");
        return Outcome::LeaseLost;
    };
    match result {
        Ok(state) if state.phase.is_over() => outcome_of(&state),
        Ok(_) if *env.stop.borrow() => Outcome::Interrupted,
        Ok(state) => Outcome::Failed(format!(
            "run {} stopped before its end ({}); `memofab resume {}` in {} carries it on",
            state.run,
            state.phase,
            state.run,
            repo.path.display()
        )),
        // Stopped on the way: the next start tries again, and fails it
        // then if the error was not the stop's doing.
        Err(e) if *env.stop.borrow() => {
            tracing::warn!(%run, error = %e, "a run failed while the daemon stopped");
            Outcome::Interrupted
        }
        // Taken over from a daemon whose run still records (it stops at
        // its next renewal): tried again once its writer lock is gone.
        Err(e @ EngineError::Store(StoreError::RunHeldElsewhere { .. })) if resuming => {
            Outcome::Busy(e.to_string())
        }
        Err(e) if not_ready(&e) && (resuming || !stored_run(&repo.path, &run)) => {
            Outcome::Held(e.to_string())
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Errors that say the repository or its setup is not ready for a run
/// (the human can fix them), not that this requirement cannot be done.
fn not_ready(error: &EngineError) -> bool {
    matches!(
        error,
        EngineError::Preflight(_)
            | EngineError::Busy { .. }
            | EngineError::Config(_)
            | EngineError::Isolation(_)
            | EngineError::Policy(_)
            | EngineError::Invalid(_)
    )
}

/// Whether the run got as far as its store (a run stored is resumed, never
/// started again).
fn stored_run(repo: &Path, run: &RunId) -> bool {
    !matches!(
        session::stored_state(repo, run),
        Err(EngineError::UnknownRun(_) | EngineError::NoStore(_))
    )
}

/// Drives the engine; when the daemon stops, asks it to shut down and waits
/// for it to record the interruption. When the lease is lost, drops it at
/// once (`None`): the run is another daemon's, and this one must neither
/// land nor record anything more.
async fn run_until_stopped(
    engine: EngineRun,
    commands: &mpsc::UnboundedSender<Command>,
    mut stop: watch::Receiver<bool>,
    lost: watch::Receiver<bool>,
) -> Option<crate::engine::EngineResult<RunState>> {
    tokio::pin!(engine);
    let lost = lease_lost(lost);
    tokio::pin!(lost);
    loop {
        if *stop.borrow_and_update() {
            let _ = commands.send(Command::Shutdown);
            return tokio::select! {
                result = &mut engine => Some(result),
                () = &mut lost => None,
            };
        }
        tokio::select! {
            result = &mut engine => return Some(result),
            () = &mut lost => return None,
            changed = stop.changed() => {
                if changed.is_err() {
                    // The daemon is gone without a word: stop all the same.
                    let _ = commands.send(Command::Shutdown);
                    return Some(engine.await);
                }
            }
        }
    }
}

/// Completes when the lease is lost; never, without a lease to lose.
async fn lease_lost(mut lost: watch::Receiver<bool>) {
    loop {
        if *lost.borrow_and_update() {
            return;
        }
        if lost.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Whether this daemon still holds its lease on entry `id` (renewing it);
/// true when the queue cannot say (its writes are fenced all the same).
async fn still_ours(env: &Workers, id: RequirementId) -> bool {
    let shared = env.shared.clone();
    let renewed = tokio::task::spawn_blocking(move || {
        let lease = &shared.lease;
        shared.queue()?.renew(id, &lease.owner, lease.length)
    })
    .await;
    !matches!(renewed, Ok(Ok(false)))
}

/// Renews this daemon's lease on entry `id` every third of its length
/// while the run works; says `lost` when a renewal finds it gone, or when
/// no renewal got through for a whole lease (the server may have given it
/// away meanwhile: better to stop than to work a run twice).
async fn keep_lease(shared: Shared, id: RequirementId, lost: watch::Sender<bool>) {
    let lease = shared.lease.clone();
    let mut renewed_at = Instant::now();
    loop {
        tokio::time::sleep(lease.renew_every()).await;
        // Before the request: the server's lease runs from its own now,
        // which is at or after this.
        let asked_at = Instant::now();
        let (s, l) = (shared.clone(), lease.clone());
        let renewed =
            tokio::task::spawn_blocking(move || s.queue()?.renew(id, &l.owner, l.length)).await;
        match renewed {
            Ok(Ok(true)) => renewed_at = asked_at,
            Ok(Ok(false)) => {
                tracing::warn!(entry = %id, "the lease is gone: another daemon took the entry over");
                let _ = lost.send(true);
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(entry = %id, error = %e, "cannot renew the lease");
                if renewed_at.elapsed() >= lease.length {
                    let _ = lost.send(true);
                    return;
                }
            }
            Err(e) => {
                tracing::error!(entry = %id, error = %e, "the lease's renewal failed");
                let _ = lost.send(true);
                return;
            }
        }
    }
}

enum Launch {
    Start(Box<RunRequest>),
    Resume(Box<ResumeRequest>),
}

/// The run's request, with config and providers built from the repository's
/// own config as `memofab run` builds them: a repository that names no
/// provider fails its entry rather than running a scripted model.
fn prepare(
    env: &Workers,
    repo: &RegisteredRepo,
    entry: &QueuedRequirement,
    run: &RunId,
    stored: Option<&RunState>,
) -> Result<Launch, String> {
    let config = Config::load(&Config::standard_files(&repo.path)).map_err(|e| e.to_string())?;
    let agent_slots = Some(env.agent_slots.clone());
    if let Some(stored) = stored {
        // The provider the run was started with, as `memofab resume` does.
        let scenario = stored.settings.scenario.as_deref().map(Path::new);
        let choice = crate::engine::providers::build(
            &config,
            Some(stored.settings.provider.as_str()),
            scenario,
            Duration::ZERO,
        )
        .or_else(|_| crate::engine::providers::build(&config, None, scenario, Duration::ZERO))
        .map_err(|e| format!("{e:#}"))?;
        return Ok(Launch::Resume(Box::new(ResumeRequest {
            repo: repo.path.clone(),
            run: run.clone(),
            config,
            providers: choice.set,
            steering: Steering::Daemon,
            crash_after: None,
            agent_slots,
        })));
    }
    let choice = crate::engine::providers::build(&config, None, None, Duration::ZERO)
        .map_err(|e| format!("{e:#}"))?;
    Ok(Launch::Start(Box::new(RunRequest {
        repo: repo.path.clone(),
        requirement: entry.requirement.clone(),
        config,
        providers: choice.set,
        provider_label: choice.label,
        scenario: choice.scenario,
        // Gates wait for a human: `memofab approve`, or an attached cockpit.
        auto_approve: false,
        await_spec: false,
        steering: Steering::Daemon,
        crash_after: None,
        run_id: Some(run.clone()),
        agent_slots,
    })))
}

/// Done when the run finished with every task merged; failed otherwise,
/// with what happened.
fn outcome_of(state: &RunState) -> Outcome {
    let tasks = state.tasks().len();
    let merged = state.count(TaskState::Merged);
    if state.phase == RunPhase::Finished && tasks > 0 && merged == tasks {
        return Outcome::Done;
    }
    // The run's own reason, else the first unmerged task's: "0 of 6 tasks
    // merged" alone sends the human digging through the run for why.
    let why = match state.phase_reason.as_deref() {
        Some(reason) => format!(": {reason}"),
        None => state
            .tasks()
            .iter()
            .find(|t| t.state != TaskState::Merged && t.reason.is_some())
            .and_then(|t| {
                t.reason
                    .as_deref()
                    .map(|r| format!(": task {} {}: {r}", t.id(), t.state.as_str()))
            })
            .unwrap_or_default(),
    };
    Outcome::Failed(format!(
        "run {} {}{why}; {merged} of {tasks} tasks merged",
        state.run, state.phase
    ))
}
