//! `run` and `resume`: the engine with a front end attached — JSON lines on
//! stdout in headless mode, the cockpit otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;

use super::args::{GlobalArgs, ReplayArgs, ResumeArgs, RunArgs};
use super::providers;
use crate::domain::{EventKind, RunId, RunState, TaskState};
use crate::engine::orchestrator::Steering;
use crate::engine::session::{self, ResumeRequest, RunRequest};
use crate::llm::pricing::{Costs, price_table};
use crate::protocol::{Command, EngineUpdate};
use crate::tui::{Theme, TuiOptions, run_tui};

pub async fn run(global: &GlobalArgs, repo: &Path, args: RunArgs) -> Result<ExitCode> {
    let requirement = match (&args.requirement, &args.requirement_text) {
        (Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("reading the requirement from {}", file.display()))?,
        (None, Some(text)) => text.clone(),
        (None, None) => {
            bail!("give the requirement with --requirement FILE or --requirement-text TEXT")
        }
    };
    if requirement.trim().is_empty() {
        bail!("the requirement is empty");
    }
    let repo =
        std::fs::canonicalize(repo).with_context(|| format!("repository {}", repo.display()))?;
    let config = super::load_config(&repo, global.config.as_deref())?;
    let choice = providers::build(
        &config,
        args.provider.as_deref(),
        args.scenario.as_deref(),
        Duration::ZERO,
    )?;
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
        },
        args.headless,
    )
    .await
}

/// Starts a run with the chosen front end.
pub async fn launch(repo: &Path, request: RunRequest, headless: bool) -> Result<ExitCode> {
    super::init_logging(&session::factory_dir(repo));
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let (commands_tx, commands_rx) = mpsc::unbounded_channel::<Command>();
    if !headless {
        let options = cockpit_options(&request.config, "memofab")?;
        let engine = tokio::spawn(session::start(request, updates_tx, commands_rx));
        return cockpit(engine, updates_rx, commands_tx, options, repo).await;
    }
    let auto_approve = request.auto_approve;
    let prices = price_table(&request.config);
    let printer = tokio::spawn(print_json_lines(updates_rx, auto_approve));
    let result = session::start(request, updates_tx.clone(), commands_rx).await;
    drop(commands_tx);
    finish(result, updates_tx, printer, repo, &prices).await
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
/// background; quitting the cockpit shuts the engine down (resumable).
async fn cockpit(
    engine: tokio::task::JoinHandle<crate::engine::EngineResult<RunState>>,
    updates: mpsc::UnboundedReceiver<EngineUpdate>,
    commands: mpsc::UnboundedSender<Command>,
    options: TuiOptions,
    repo: &Path,
) -> Result<ExitCode> {
    let prices = options.prices.clone();
    let ui = run_tui(updates, commands.clone(), options).await;
    let _ = commands.send(Command::Shutdown);
    let state = engine.await.context("the engine task failed")??;
    ui?;
    eprintln!("{}", summary(&state, repo, &prices));
    if !state.phase.is_over() {
        eprintln!(
            "  continue:    memofab --repo {} resume {}",
            repo.display(),
            state.run
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn resume(global: &GlobalArgs, repo: &Path, args: ResumeArgs) -> Result<ExitCode> {
    let repo =
        std::fs::canonicalize(repo).with_context(|| format!("repository {}", repo.display()))?;
    let run = match args.run {
        Some(run) => RunId::new(run),
        None => latest_run(&repo)?,
    };
    let stored = session::stored_state(&repo, &run)?;
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
    };
    if !args.headless {
        let engine = tokio::spawn(session::resume(request, updates_tx, commands_rx));
        return cockpit(engine, updates_rx, commands_tx, options, &repo).await;
    }
    let printer = tokio::spawn(print_json_lines(updates_rx, stored.settings.auto_approve));
    let result = session::resume(request, updates_tx.clone(), commands_rx).await;
    drop(commands_tx);
    finish(result, updates_tx, printer, &repo, &prices).await
}

/// `memofab replay`: the cockpit over a stored run; no model, no git.
pub async fn replay(global: &GlobalArgs, repo: &Path, args: ReplayArgs) -> Result<ExitCode> {
    let repo =
        std::fs::canonicalize(repo).with_context(|| format!("repository {}", repo.display()))?;
    let store = crate::effects::store::Store::open(&session::store_path(&repo))?;
    let config = super::load_config(&repo, global.config.as_deref())?;
    let Some(run) = args.run.map(RunId::new) else {
        // No run named: the runs browser.
        let runs = store.runs()?;
        if runs.is_empty() {
            bail!("this repository has no runs yet");
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
    let events = crate::effects::store::Store::load_run(&session::store_path(&repo), &run)?;
    if events.is_empty() {
        bail!("run {run} not found; `memofab runs` lists the runs of this repository");
    }
    let options = cockpit_options(&config, &format!("memofab replay {run}"))?;
    crate::tui::run_replay(events, args.at.as_deref(), options).await?;
    Ok(ExitCode::SUCCESS)
}

fn latest_run(repo: &Path) -> Result<RunId> {
    let store = crate::effects::store::Store::open(&session::store_path(repo))?;
    store
        .latest_run()?
        .context("this repository has no runs yet")
}

async fn finish(
    result: crate::engine::EngineResult<RunState>,
    updates: mpsc::UnboundedSender<EngineUpdate>,
    printer: tokio::task::JoinHandle<()>,
    repo: &Path,
    prices: &Prices,
) -> Result<ExitCode> {
    let stopped = EngineUpdate::Stopped {
        error: result.as_ref().err().map(|e| e.to_string()),
    };
    let _ = updates.send(stopped);
    drop(updates);
    let _ = printer.await;
    let state = result?;
    eprintln!("{}", summary(&state, repo, prices));
    Ok(
        if state.count(TaskState::Merged) == state.tasks().len() && !state.tasks().is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        },
    )
}

/// Prints each stored event as one JSON line; hints at gates on stderr.
async fn print_json_lines(mut updates: mpsc::UnboundedReceiver<EngineUpdate>, auto_approve: bool) {
    let mut stdout_open = true;
    while let Some(update) = updates.recv().await {
        match update {
            EngineUpdate::Event(event) => {
                if !auto_approve
                    && let EventKind::TaskStateChanged {
                        task,
                        to: TaskState::AwaitingGate,
                        reason,
                        ..
                    } = &event.kind
                {
                    eprintln!(
                        "memofab: task {task} waits at the gate ({}); decide with `memofab approve {} {task}` or `memofab reject {} {task} --reason ...`",
                        reason.as_deref().unwrap_or("policy"),
                        event.run,
                        event.run
                    );
                }
                match &event.kind {
                    EventKind::TaskStateChanged {
                        task,
                        to: TaskState::OverBudget,
                        reason,
                        ..
                    } => eprintln!(
                        "memofab: task {task} waits over budget ({}); grant more with `memofab raise-budget {} {task}`",
                        reason.as_deref().unwrap_or("budget spent"),
                        event.run
                    ),
                    EventKind::RunPhaseChanged {
                        to: crate::domain::RunPhase::Paused,
                        reason: Some(reason),
                    } if reason.starts_with(crate::engine::orchestrator::RUN_BUDGET_PAUSE) => {
                        eprintln!(
                            "memofab: {reason}; grant more with `memofab raise-budget {}`",
                            event.run
                        )
                    }
                    EventKind::CheckoutDirty { task, files } => eprintln!(
                        "memofab: {task} waits to land: your checkout has uncommitted changes ({}); commit or stash them, then `memofab approve {} {task}`",
                        files.join(", "),
                        event.run
                    ),
                    _ => {}
                }
                if stdout_open {
                    let line = serde_json::to_string(&event).unwrap_or_default();
                    let mut out = std::io::stdout().lock();
                    // A closed pipe (`| head`) stops the printing, not the run.
                    stdout_open = writeln!(out, "{line}").and_then(|_| out.flush()).is_ok();
                }
            }
            EngineUpdate::Delta { .. } => {}
            EngineUpdate::Stopped { .. } => break,
        }
    }
}

pub fn summary(state: &RunState, repo: &Path, prices: &Prices) -> String {
    let merged = state.count(TaskState::Merged);
    let mut lines = vec![
        String::new(),
        format!("run {} — {}", state.run, state.phase),
        format!("  repository:  {}", repo.display()),
        format!(
            "  tasks:       {merged} merged of {} ({} failed, {} in conflict, {} blocked, {} at the gate)",
            state.tasks().len(),
            state.count(TaskState::Failed),
            state.count(TaskState::Conflict),
            state.count(TaskState::Blocked),
            state.count(TaskState::AwaitingGate),
        ),
        format!(
            "  mainline:    {} at {}, {} new commits",
            state.mainline,
            state.mainline_commit.get(..10).unwrap_or("?"),
            new_commits(repo, state)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into())
        ),
        format!(
            "  tokens:      {} in, {} out{}",
            state.tokens.input,
            state.tokens.output,
            run_cost(repo, state, prices)
                .map(|c| format!(", ${c:.2}"))
                .unwrap_or_default()
        ),
    ];
    // A finished run kept the worktrees and branches of these for a human.
    let kept = if state.phase.is_over() {
        kept_for_review(repo, state)
    } else {
        Vec::new()
    };
    for task in state.tasks() {
        if task.state != TaskState::Merged {
            let mut line = format!("  - {} is {}", task.id(), task.state);
            if let Some(k) = kept.iter().find(|k| k.task == task.id().as_str()) {
                let mut what = Vec::new();
                if let Some(dir) = &k.worktree {
                    what.push(format!("worktree {}", dir.display()));
                }
                if let Some(branch) = &k.branch {
                    what.push(format!("branch {branch}"));
                }
                line.push_str(&format!("; kept: {}", what.join(", ")));
            }
            lines.push(line);
        }
    }
    if !kept.is_empty() {
        lines.push(format!(
            "  clean up:    memofab --repo {} clean {}",
            repo.display(),
            state.run
        ));
    }
    lines.push(format!(
        "  replay:      memofab --repo {} export {}",
        repo.display(),
        state.run
    ));
    lines.join("\n")
}

/// The worktrees and branches a finished run kept for a human.
fn kept_for_review(repo: &Path, state: &RunState) -> Vec<crate::engine::cleanup::Kept> {
    crate::effects::git::GitRepo::open(repo)
        .map(|git| crate::engine::cleanup::kept(&git, state))
        .unwrap_or_default()
}

type Prices = std::collections::BTreeMap<String, crate::config::Price>;

/// Commits on mainline since the run started.
fn new_commits(repo: &Path, state: &RunState) -> Option<usize> {
    let git = crate::effects::git::GitRepo::open(repo).ok()?;
    let all = git.log_messages(&state.mainline, usize::MAX).ok()?;
    let before = git.log_messages(&state.base_commit, usize::MAX).ok()?;
    Some(all.len().saturating_sub(before.len()))
}

/// What the run cost, if its models have prices in config.
fn run_cost(repo: &Path, state: &RunState, prices: &Prices) -> Option<f64> {
    if prices.is_empty() {
        return None;
    }
    let store = crate::effects::store::Store::open(&session::store_path(repo)).ok()?;
    let costs = Costs::of(prices, &store.events(&state.run).ok()?);
    costs.priced.then_some(costs.total)
}

/// `memofab` with no command: the cockpit on this repository, starting with
/// the spec editor; planning waits until the human submits the requirement.
pub async fn cockpit_new_run(global: &GlobalArgs, repo: &Path) -> Result<ExitCode> {
    let repo =
        std::fs::canonicalize(repo).with_context(|| format!("repository {}", repo.display()))?;
    let config = super::load_config(&repo, global.config.as_deref())?;
    let choice = providers::build(&config, None, None, Duration::ZERO)?;
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
        },
        false,
    )
    .await
}
