//! Commands over stored runs: list them, decide gates from another terminal,
//! export a run's record.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::args::{
    CleanArgs, ExportArgs, ExportFormat, GateArgs, GlobalArgs, RaiseBudgetArgs, RejectArgs,
    RunsArgs,
};
use crate::domain::{Decider, RunId, RunKind, TaskId, TaskState};
use crate::effects::git::GitRepo;
use crate::effects::store::export::{export_jsonl, export_markdown};
use crate::effects::store::{RunSummary, Store};
use crate::engine::run::gate_decision::{GateDecision, leave_gate_decision};
use crate::engine::run::session::{self, store_path};
use crate::llm::pricing::{Costs, price_table};
use crate::protocol::Command;
use crate::tui::runs::when;

fn open_store(repo: &Path) -> Result<Store> {
    let path = store_path(repo);
    if !path.exists() && crate::effects::store::postgres::selected().is_none() {
        bail!(
            "no memofab store at {}; run memofab in this repository first",
            path.display()
        );
    }
    Ok(Store::open(&path)?)
}

/// The runs of `repo` among `runs` (a shared store holds several
/// repositories'): those whose base commit it has, the same test `resume`
/// makes before carrying a run on. Returns them and how many were left out.
pub(crate) fn of_this_repository(
    repo: &Path,
    runs: Vec<RunSummary>,
) -> Result<(Vec<RunSummary>, usize)> {
    if runs.iter().all(|r| r.base_commit.is_none()) {
        return Ok((runs, 0));
    }
    let git = GitRepo::open(repo).with_context(|| {
        format!(
            "{} is not a git repository, and the store holds several repositories' runs; `memofab runs --all` lists every run",
            repo.display()
        )
    })?;
    let bases: Vec<&str> = runs
        .iter()
        .filter_map(|r| r.base_commit.as_deref())
        .collect();
    let mut present = git.has_commits(&bases)?.into_iter();
    let total = runs.len();
    let ours: Vec<RunSummary> = runs
        .into_iter()
        .filter(|r| r.base_commit.is_none() || present.next().unwrap_or(false))
        .collect();
    let others = total - ours.len();
    Ok((ours, others))
}

/// `memofab runs`: the factory's runs; overseer reports have their own list.
pub fn runs(global: &GlobalArgs, repo: &Path, args: &RunsArgs) -> Result<ExitCode> {
    let store = open_store(repo)?;
    let (all, others) = if args.all {
        (store.runs()?, 0)
    } else {
        of_this_repository(repo, store.runs()?)?
    };
    let others_hint = || {
        if others > 0 {
            println!("\n{others} run(s) of other repositories: `memofab runs --all`");
        }
    };
    let (runs, reports): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|r| r.run.kind() == RunKind::Factory);
    let reports_hint = || {
        if !reports.is_empty() {
            println!(
                "\n{} overseer report(s): `memofab overseer list`",
                reports.len()
            );
        }
    };
    if runs.is_empty() {
        println!("no runs yet");
        reports_hint();
        others_hint();
        return Ok(ExitCode::SUCCESS);
    }
    let prices = super::load_config(repo, global.config.as_deref())
        .map(|c| price_table(&c))
        .unwrap_or_default();
    println!(
        "{:<30} {:<16} {:>8} {:<11} {:>5} {:>6} {:>6} {:>9} {:>8}  requirement",
        "run", "started (UTC)", "duration", "phase", "tasks", "merged", "failed", "tokens", "cost"
    );
    let live = crate::engine::run::summary::live_run(repo, &runs);
    for r in runs {
        let interrupted = r.phase.is_none_or(|p| !p.is_over()) && live.as_ref() != Some(&r.run);
        let phase = match r.phase {
            _ if interrupted => "interrupted",
            Some(p) => p.as_str(),
            None => "-",
        };
        let title = r
            .requirement
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(50)
            .collect::<String>();
        let cost = if prices.is_empty() {
            "-".to_owned()
        } else {
            let costs = Costs::of(&prices, &store.events(&r.run)?);
            if costs.priced {
                format!("${:.2}", costs.total)
            } else {
                "-".to_owned()
            }
        };
        // From the first event to the last: an interrupted run records its
        // interruption, so a run killed while it waited is not shown short.
        let secs = r.last_event_ms.saturating_sub(r.started_ms) / 1000;
        println!(
            "{:<30} {:<16} {:>7}s {:<11} {:>5} {:>6} {:>6} {:>9} {:>8}  {title}",
            r.run.as_str(),
            when(r.started_ms),
            secs,
            phase,
            r.tasks,
            r.merged,
            r.failed,
            r.tokens,
            cost
        );
    }
    reports_hint();
    others_hint();
    Ok(ExitCode::SUCCESS)
}

/// `memofab overseer list`: the stored overseer reports, newest first.
pub fn overseer_reports(repo: &Path) -> Result<ExitCode> {
    let store = open_store(repo)?;
    let reports: Vec<_> = store
        .runs()?
        .into_iter()
        .filter(|r| r.run.kind() == RunKind::OverseerReport)
        .collect();
    if reports.is_empty() {
        println!("no overseer reports yet; `memofab overseer` writes one");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<30} {:<16}  reviewed", "report", "written (UTC)");
    for r in reports {
        println!(
            "{:<30} {:<16}  {}",
            r.run.as_str(),
            when(r.started_ms),
            r.requirement.lines().next().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Leaves a gate decision for the running engine, after checking the task
/// waits at the gate.
fn decide(repo: &Path, run: &str, task: &str, decision: GateDecision) -> Result<ExitCode> {
    leave_gate_decision(
        repo,
        &RunId::new(run),
        &TaskId::new(task),
        decision,
        &Decider::Cli,
    )?;
    println!("sent; the running memofab will record the decision");
    Ok(ExitCode::SUCCESS)
}

pub fn approve(repo: &Path, args: GateArgs) -> Result<ExitCode> {
    decide(repo, &args.run, &args.task, GateDecision::Approve)
}

/// Leaves a budget raise in the store's inbox, if something waits for one.
pub fn raise_budget(repo: &Path, args: RaiseBudgetArgs) -> Result<ExitCode> {
    let run = RunId::new(&args.run);
    let state = session::stored_state(repo, &run)?;
    let task = args.task.as_deref().map(TaskId::new);
    match &task {
        Some(task) => {
            let record = state
                .task(task)
                .with_context(|| format!("run {run} has no task {task}"))?;
            if record.state != TaskState::OverBudget {
                bail!("task {task} is {}, not waiting over budget", record.state);
            }
        }
        None => {
            if crate::domain::budget::run_overrun(&state).is_none() {
                bail!("run {run} is within its budget");
            }
        }
    }
    let mut store = open_store(repo)?;
    store.push_command(&run, &Command::RaiseBudget { task }, &Decider::Cli)?;
    println!("sent; the running memofab will raise the budget");
    Ok(ExitCode::SUCCESS)
}

pub fn reject(repo: &Path, args: RejectArgs) -> Result<ExitCode> {
    let decision = GateDecision::Reject {
        reason: args.reason,
    };
    decide(repo, &args.run, &args.task, decision)
}

/// `memofab clean [RUN]`: removes what finished runs left, says what.
pub fn clean(repo: &Path, args: CleanArgs) -> Result<ExitCode> {
    let run = args.run.map(RunId::new);
    let cleaned = crate::engine::cleanup::clean(repo, run.as_ref())?;
    for (run, phase) in &cleaned.skipped {
        println!("left run {run} alone: it is {phase}, not over");
    }
    if cleaned.removed.is_empty() {
        println!("nothing to remove");
    }
    for line in &cleaned.removed {
        println!("removed {line}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(repo: &Path, args: ExportArgs) -> Result<ExitCode> {
    let store = open_store(repo)?;
    let run = RunId::new(&args.run);
    let events = store.events(&run)?;
    if events.is_empty() {
        bail!("run {run} not found; `memofab runs` lists the runs of this repository");
    }
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    match args.format {
        ExportFormat::Jsonl => export_jsonl(&events, &mut out),
        ExportFormat::Markdown => export_markdown(&events, &mut out),
    }
    .context("writing the export")?;
    out.flush().context("writing the export")?;
    Ok(ExitCode::SUCCESS)
}
