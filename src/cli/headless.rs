//! `run` and `resume`: the engine with a front end attached — JSON lines on
//! stdout in headless mode, the cockpit otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;

use super::args::{GlobalArgs, ReplayArgs, ResumeArgs, RunArgs};
use super::signals::Signals;
use crate::domain::event::{CheckoutDirty, GateHeld, RunPhaseChanged, TaskStateChanged};
use crate::domain::{EventKind, RunId, RunKind, RunState, TaskState};
use crate::engine::providers;
use crate::engine::run::orchestrator::Steering;
use crate::engine::run::session::{self, ResumeRequest, RunRequest};
use crate::engine::run::summary::{Prices, summary};
use crate::llm::pricing::price_table;
use crate::protocol::{Command, EngineUpdate};
use crate::tui::{Theme, TuiOptions, run_tui};

pub async fn run(global: &GlobalArgs, repo: &Path, args: RunArgs) -> Result<ExitCode> {
    let requirement = super::read_requirement(
        args.requirement.as_deref(),
        args.requirement_text.as_deref(),
    )?;
    let repo = super::open_repo(repo)?;
    let config = super::load_config(&repo, global.config.as_deref())?;
    let choice = providers::build(
        &config,
        args.provider.as_deref(),
        args.scenario.as_deref(),
        Duration::ZERO,
    )?;
    if !args.headless {
        super::require_terminal("the cockpit", super::HEADLESS_INSTEAD)?;
    }
    launch(
        &repo,
        RunRequest {
            repo: repo.clone(),
            requirement,
            config,
            providers: choice.set,
            provider_label: choice.label,
            scenario: choice.scenario,
            auto_approve: args.auto_approve,
            await_spec: false,
            steering: if args.headless {
                Steering::Headless
            } else {
                Steering::Interactive
            },
            crash_after: global.crash_after_events,
            run_id: None,
            agent_slots: None,
        },
        args.headless,
    )
    .await
}

/// Starts a run with the chosen front end.
pub async fn launch(repo: &Path, request: RunRequest, headless: bool) -> Result<ExitCode> {
    super::init_logging(&session::factory_dir(repo));
    let signals = Signals::install()?;
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let (commands_tx, commands_rx) = mpsc::unbounded_channel::<Command>();
    if !headless {
        super::require_terminal("the cockpit", super::HEADLESS_INSTEAD)?;
        let options = cockpit_options(&request.config, "memofab")?;
        tell_waiting_proposals(repo, &updates_tx);
        let engine = tokio::spawn(session::start(request, updates_tx, commands_rx));
        return cockpit(engine, updates_rx, commands_tx, options, repo, signals).await;
    }
    let approver = Approver::of(repo, request.auto_approve);
    let prices = price_table(&request.config);
    let printer = tokio::spawn(print_json_lines(updates_rx, approver, 0));
    let engine = session::start(request, updates_tx.clone(), commands_rx);
    headless_until_done(
        engine,
        updates_tx,
        commands_tx,
        printer,
        repo,
        &prices,
        signals,
    )
    .await
}

/// Runs a headless engine to its end or to a stop signal, then prints the
/// summary.
async fn headless_until_done(
    engine: impl std::future::Future<Output = crate::engine::EngineResult<RunState>>,
    updates: mpsc::UnboundedSender<EngineUpdate>,
    commands: mpsc::UnboundedSender<Command>,
    printer: tokio::task::JoinHandle<()>,
    repo: &Path,
    prices: &Prices,
    signals: Signals,
) -> Result<ExitCode> {
    let (result, signal) = signals.drive(engine, &commands).await;
    drop(commands);
    let code = finish(result, updates, printer, repo, prices, signal).await?;
    Ok(signal.map_or(code, |s| s.exit_code()))
}

/// Puts the overseer's undecided proposals in the cockpit's inbox. Read
/// once, before the cockpit starts: the render path does no IO.
pub(crate) fn tell_waiting_proposals(repo: &Path, updates: &mpsc::UnboundedSender<EngineUpdate>) {
    match crate::engine::overseer::waiting_proposals(repo) {
        Ok(Some(waiting)) => {
            let _ = updates.send(EngineUpdate::ProposalsWaiting(waiting));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("reading the overseer's proposals: {e}"),
    }
}

pub(crate) fn cockpit_options(config: &crate::config::Config, title: &str) -> Result<TuiOptions> {
    let theme = Theme::load(&config.ui.theme)
        .with_context(|| format!("loading theme {:?}", config.ui.theme))?;
    Ok(TuiOptions {
        theme,
        mouse: config.ui.mouse,
        title: title.to_owned(),
        prices: price_table(config),
        notify: config.ui.notify,
    })
}

/// Runs the cockpit in the foreground while the engine works in the
/// background; quitting the cockpit, or a stop signal, shuts the engine down
/// (resumable).
async fn cockpit(
    engine: tokio::task::JoinHandle<crate::engine::EngineResult<RunState>>,
    updates: mpsc::UnboundedReceiver<EngineUpdate>,
    commands: mpsc::UnboundedSender<Command>,
    options: TuiOptions,
    repo: &Path,
    mut signals: Signals,
) -> Result<ExitCode> {
    let prices = options.prices.clone();
    // On a signal the cockpit is dropped, which restores the terminal.
    let (ui, signal) = tokio::select! {
        ui = run_tui(updates, commands.clone(), options) => (ui, None),
        signal = signals.recv() => (Ok(()), Some(signal)),
    };
    let _ = commands.send(Command::Shutdown);
    // Stopping: another signal must not wait for the engine.
    signals.exit_on_next();
    let state = engine.await.context("the engine task failed")??;
    ui?;
    if !state.spec_submitted {
        // Closed in the spec editor: the engine kept no run.
        super::signals::say("memofab: no requirement was submitted; no run was recorded");
        return Ok(signal.map_or(ExitCode::SUCCESS, |s| s.exit_code()));
    }
    super::signals::say(&summary(&state, repo, &prices, signal.map(|s| s.name())));
    Ok(signal.map_or_else(|| outcome_code(&state), |s| s.exit_code()))
}

/// What a run's end means to a script, the same from the cockpit as
/// headless: 0 when every task merged, 2 when some did not (failed,
/// blocked, or left for `memofab resume` by quitting).
fn outcome_code(state: &RunState) -> ExitCode {
    let all_merged =
        !state.tasks().is_empty() && state.count(TaskState::Merged) == state.tasks().len();
    if all_merged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

pub async fn resume(global: &GlobalArgs, repo: &Path, args: ResumeArgs) -> Result<ExitCode> {
    let repo = super::open_repo(repo)?;
    let run = match args.run {
        Some(run) => RunId::new(run),
        None => run_to_resume(&repo)?,
    };
    if run.kind() == RunKind::OverseerReport {
        bail!("{run} is an overseer report, not a run; `memofab overseer show {run}` prints it");
    }
    if !args.headless {
        super::require_terminal("the cockpit", super::HEADLESS_INSTEAD)?;
    }
    let stored = session::stored_state(&repo, &run)?;
    if stored.phase.is_over() {
        // Nothing to carry on, and nothing is recorded.
        eprintln!(
            "memofab: run {run} is already {}; nothing to resume (look back with `memofab replay {run}`)",
            stored.phase
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.headless && !stored.spec_submitted {
        // Only the cockpit's spec editor can give it one; headless would
        // wait for it forever.
        bail!(
            "run {run} has no requirement yet; `memofab resume {run}` opens the cockpit's spec editor for it"
        );
    }
    let signals = Signals::install()?;
    let config = super::load_config(&repo, global.config.as_deref())?;
    let scenario = stored.settings.scenario.as_ref().map(PathBuf::from);
    let provider = stored.settings.provider.clone();
    let choice = providers::build(
        &config,
        Some(provider.as_str()),
        scenario.as_deref(),
        Duration::ZERO,
    )
    .or_else(|_| providers::build(&config, None, scenario.as_deref(), Duration::ZERO))?;
    super::init_logging(&session::factory_dir(&repo));
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let (commands_tx, commands_rx) = mpsc::unbounded_channel::<Command>();
    let options = cockpit_options(&config, "memofab resume")?;
    let prices = price_table(&config);
    let request = ResumeRequest {
        repo: repo.clone(),
        run,
        config,
        providers: choice.set,
        steering: if args.headless {
            Steering::Headless
        } else {
            Steering::Interactive
        },
        crash_after: global.crash_after_events,
        agent_slots: None,
    };
    if !args.headless {
        tell_waiting_proposals(&repo, &updates_tx);
        let engine = tokio::spawn(session::resume(request, updates_tx, commands_rx));
        return cockpit(engine, updates_rx, commands_tx, options, &repo, signals).await;
    }
    // What still waits on a human is said once; the stored events come
    // again on stdout, but their old hints do not.
    let approver = Approver::of(&repo, stored.settings.auto_approve);
    for task in stored.tasks() {
        if task.state == TaskState::AwaitingGate && approver.leaves_to_a_human(&task.gate_reasons) {
            eprintln!(
                "{}",
                gate_hint(&stored.run, task.id(), task.reason.as_deref())
            );
        }
    }
    let printer = tokio::spawn(print_json_lines(updates_rx, approver, stored.last_seq));
    let engine = session::resume(request, updates_tx.clone(), commands_rx);
    headless_until_done(
        engine,
        updates_tx,
        commands_tx,
        printer,
        &repo,
        &prices,
        signals,
    )
    .await
}

/// `memofab replay`: the cockpit over a stored run; no model, no git.
pub async fn replay(global: &GlobalArgs, repo: &Path, args: ReplayArgs) -> Result<ExitCode> {
    if let Some(at) = &args.at {
        check_at(at)?;
    }
    let repo = super::open_repo(repo)?;
    let config = super::load_config(&repo, global.config.as_deref())?;
    // `--at` without a run means the latest run; a bare `replay`, the browser.
    let run = match (args.run, &args.at) {
        (Some(run), _) => Some(RunId::new(run)),
        (None, Some(_)) => Some(latest_run(&repo, "replay")?),
        (None, None) => None,
    };
    super::require_terminal(
        "the replay cockpit",
        "`memofab export RUN` writes a run's record as text instead",
    )?;
    let store = open_store(&repo, "replay")?;
    let Some(run) = run else {
        // No run named: the runs browser.
        let runs: Vec<_> = store
            .runs()?
            .into_iter()
            .filter(|r| r.run.kind() == RunKind::Factory)
            .collect();
        if runs.is_empty() {
            bail!(
                "no run to replay: {} has no runs yet; start one with `memofab` (the cockpit) or `memofab run`",
                repo.display()
            );
        }
        let view = crate::tui::runs::RunsView {
            runs,
            selected: 0,
            note: None,
        };
        let options = cockpit_options(&config, "memofab runs")?;
        crate::tui::run_browser(view, options, |run| {
            store.events(run).map_err(|e| e.to_string())
        })
        .await?;
        return Ok(ExitCode::SUCCESS);
    };
    drop(store);
    let path = session::store_path(&repo);
    if crate::effects::store::Store::open_reader(&path)?.last_seq(&run)? == 0 {
        bail!("run {run} not found; `memofab runs` lists the runs of this repository");
    }
    let options = cockpit_options(&config, &format!("memofab replay {run}"))?;
    crate::tui::run_stored_replay(&path, &run, args.at.as_deref(), options).await?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses a `--at` that is neither an event number nor a time into the
/// run, before anything opens.
fn check_at(at: &str) -> Result<()> {
    let spec = at.trim();
    let number = spec.strip_suffix(['s', 'm']).map_or_else(
        || spec.parse::<u64>().is_ok(),
        |n| n.parse::<f64>().is_ok_and(|v| v >= 0.0),
    );
    if !number {
        bail!(
            "--at {at:?}: give an event number (`--at 120`) or a time into the run (`--at 90s`, `--at 2m`)"
        );
    }
    Ok(())
}

/// The repository's store, if a run was ever started here; opening it must
/// not create one (and the `.memofab` directory) as a side effect.
fn open_store(repo: &Path, what: &str) -> Result<crate::effects::store::Store> {
    let path = session::store_path(repo);
    if !path.exists() && crate::effects::store::postgres::selected().is_none() {
        bail!(
            "no run to {what}: {} has no runs yet; start one with `memofab` (the cockpit) or `memofab run`",
            repo.display()
        );
    }
    Ok(crate::effects::store::Store::open(&path)?)
}

/// The newest factory run (never an overseer report).
fn latest_run(repo: &Path, what: &str) -> Result<RunId> {
    factory_runs(repo, what)?
        .first()
        .map(|r| r.run.clone())
        .with_context(|| no_runs(repo, what))
}

fn no_runs(repo: &Path, what: &str) -> String {
    format!(
        "no run to {what}: {} has no runs yet; start one with `memofab` (the cockpit) or `memofab run`",
        repo.display()
    )
}

/// This repository's factory runs (a shared store holds others' too).
fn factory_runs(repo: &Path, what: &str) -> Result<Vec<crate::effects::store::RunSummary>> {
    let (runs, _) = super::records::of_this_repository(repo, open_store(repo, what)?.runs()?)?;
    Ok(runs
        .into_iter()
        .filter(|r| r.run.kind() == RunKind::Factory)
        .collect())
}

/// What `resume` without an id carries on: the newest factory run that is
/// not over, else the newest factory run (which then says it is over).
/// Overseer reports and runs without a requirement are never picked.
fn run_to_resume(repo: &Path) -> Result<RunId> {
    // A run without a requirement (a cockpit killed in its spec editor)
    // has nothing to carry on.
    let runs: Vec<_> = factory_runs(repo, "resume")?
        .into_iter()
        .filter(|r| !r.requirement.trim().is_empty())
        .collect();
    runs.iter()
        .find(|r| r.phase.is_none_or(|p| !p.is_over()))
        .or(runs.first())
        .map(|r| r.run.clone())
        .with_context(|| no_runs(repo, "resume"))
}

async fn finish(
    result: crate::engine::EngineResult<RunState>,
    updates: mpsc::UnboundedSender<EngineUpdate>,
    printer: tokio::task::JoinHandle<()>,
    repo: &Path,
    prices: &Prices,
    signal: Option<super::signals::StopSignal>,
) -> Result<ExitCode> {
    let stopped = EngineUpdate::Stopped {
        error: result.as_ref().err().map(|e| e.to_string()),
    };
    let _ = updates.send(stopped);
    drop(updates);
    let _ = printer.await;
    let state = result?;
    super::signals::say(&summary(&state, repo, prices, signal.map(|s| s.name())));
    Ok(outcome_code(&state))
}

/// Prints each stored event as one JSON line; hints at gates on stderr.
/// Events up to `history_until` were stored before this process started
/// (a resumed run): printed again, but without hints.
async fn print_json_lines(
    mut updates: mpsc::UnboundedReceiver<EngineUpdate>,
    approver: Approver,
    history_until: u64,
) {
    let mut stdout_open = true;
    while let Some(update) = updates.recv().await {
        match update {
            EngineUpdate::Event(event) if event.seq <= history_until => {
                if stdout_open {
                    stdout_open = print_line(&event);
                }
            }
            EngineUpdate::Event(event) => {
                // Every gate is held with its reasons first.
                if let EventKind::GateHeld(GateHeld { task, reasons }) = &event.kind
                    && approver.leaves_to_a_human(reasons)
                {
                    let why = crate::domain::gate_reason::joined(reasons);
                    eprintln!(
                        "{}",
                        gate_hint(&event.run, task, Some(&format!("needs approval: {why}")))
                    );
                }
                match &event.kind {
                    EventKind::TaskStateChanged(TaskStateChanged {
                        task,
                        to: TaskState::OverBudget,
                        reason,
                        ..
                    }) => eprintln!(
                        "memofab: task {task} waits over budget ({}); grant more with `memofab raise-budget {} {task}`",
                        reason.as_deref().unwrap_or("budget spent"),
                        event.run
                    ),
                    EventKind::RunPhaseChanged(RunPhaseChanged {
                        to: crate::domain::RunPhase::Paused,
                        reason: Some(reason),
                    }) if reason
                        .starts_with(crate::engine::run::orchestrator::RUN_BUDGET_PAUSE) =>
                    {
                        eprintln!(
                            "memofab: {reason}; grant more with `memofab raise-budget {}`",
                            event.run
                        )
                    }
                    EventKind::CheckoutDirty(CheckoutDirty { task, files }) => eprintln!(
                        "memofab: {task} waits to land: your checkout has uncommitted changes ({}); commit or stash them, then `memofab approve {} {task}`",
                        files.join(", "),
                        event.run
                    ),
                    _ => {}
                }
                if stdout_open {
                    stdout_open = print_line(&event);
                }
            }
            EngineUpdate::Delta { .. }
            | EngineUpdate::ThinkingDelta { .. }
            | EngineUpdate::ProposalsWaiting(_) => {}
            EngineUpdate::Stopped { .. } => break,
        }
    }
}

/// One event as a JSON line on stdout; false once stdout is closed (`| head`
/// stops the printing, not the run).
fn print_line(event: &crate::domain::Event) -> bool {
    let line = serde_json::to_string(event).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
}

/// Whether gates are left to a human in a headless run: all of them
/// without `--auto-approve`; with it, those held for a governance path
/// (unless the policy lets auto-approve approve those too).
struct Approver {
    auto: bool,
    policy: crate::domain::policy::Policy,
}

impl Approver {
    fn of(repo: &Path, auto: bool) -> Self {
        Self {
            auto,
            // The run itself refuses a policy it cannot load.
            policy: session::load_policy(repo)
                .unwrap_or_else(|_| crate::domain::policy::Policy::protected_only()),
        }
    }

    fn leaves_to_a_human(&self, reasons: &[crate::domain::gate_reason::GateReason]) -> bool {
        !self.auto || !crate::domain::risk::auto_approvable(&self.policy, reasons)
    }
}

fn gate_hint(run: &RunId, task: &crate::domain::TaskId, reason: Option<&str>) -> String {
    format!(
        "memofab: task {task} waits at the gate ({}); decide with `memofab approve {run} {task}` or `memofab reject {run} {task} --reason ...`",
        reason.unwrap_or("policy")
    )
}

/// `memofab` with no command: the cockpit on this repository, starting with
/// the spec editor; planning waits until the human submits the requirement.
pub async fn cockpit_new_run(
    global: &GlobalArgs,
    repo: &Path,
    provider: Option<&str>,
) -> Result<ExitCode> {
    let repo = super::open_repo(repo)?;
    let config = super::load_config(&repo, global.config.as_deref())?;
    let choice = providers::build(&config, provider, None, Duration::ZERO)?;
    super::require_terminal("the cockpit", super::HEADLESS_INSTEAD)?;
    launch(
        &repo,
        RunRequest {
            repo: repo.clone(),
            requirement: String::new(),
            config,
            providers: choice.set,
            provider_label: choice.label,
            scenario: choice.scenario,
            auto_approve: false,
            await_spec: true,
            steering: Steering::Interactive,
            crash_after: global.crash_after_events,
            run_id: None,
            agent_slots: None,
        },
        false,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gate_reason::{GateReason, GovernanceClass};
    use crate::domain::policy::Policy;

    #[test]
    fn a_headless_run_says_which_gates_wait_for_a_human() {
        let agents = [GateReason::Governance {
            path: "AGENTS.md".into(),
            class: GovernanceClass::Instructions,
        }];
        let big = [GateReason::TooManyFiles { files: 30, max: 20 }];
        let manual = Approver {
            auto: false,
            policy: Policy::protected_only(),
        };
        assert!(manual.leaves_to_a_human(&big) && manual.leaves_to_a_human(&agents));
        let auto = Approver {
            auto: true,
            policy: Policy::protected_only(),
        };
        assert!(!auto.leaves_to_a_human(&big));
        assert!(auto.leaves_to_a_human(&agents));
    }
}
