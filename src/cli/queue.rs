//! `memofab repo`, `submit` and `queue`: the daemon's queue, edited in its
//! store directly so that it works whether the daemon runs or not; a
//! running daemon is woken to look again.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::args::{QueueAction, QueueArgs, RepoAction, RepoArgs, SubmitArgs};
use crate::daemon::protocol::{Reply, Request};
use crate::daemon::{DaemonPaths, client};
use crate::domain::queue::{ItemState, RequirementId, Source};
use crate::effects::queue::{NewRequirement, Queue};

fn open_queue() -> Result<(DaemonPaths, Queue)> {
    let paths = DaemonPaths::from_env()?;
    paths.create_dirs()?;
    let queue = Queue::open(&paths.queue)?;
    Ok((paths, queue))
}

pub fn repo(args: RepoArgs) -> Result<ExitCode> {
    let (paths, mut queue) = open_queue()?;
    match args.action {
        RepoAction::Add { path, name } => {
            let root = super::open_repo(&path)?;
            let git = crate::effects::git::GitRepo::open(&root)?;
            let repo = queue.add_repo(git.root(), name.as_deref())?;
            println!("registered {} ({})", repo.name, repo.path.display());
            if !client::wake(&paths) {
                println!("the daemon is not running; `memofab serve` starts it");
            }
        }
        RepoAction::List => {
            let repos = queue.repos()?;
            if repos.is_empty() {
                println!("no repositories registered; `memofab repo add PATH` registers one");
            }
            for repo in repos {
                println!("{:<20} {}", repo.name, repo.path.display());
            }
        }
        RepoAction::Remove { which } => {
            let removed = queue.remove_repo(&which)?;
            println!("unregistered {} ({})", removed.name, removed.path.display());
            client::wake(&paths);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn submit(repo: &Path, args: SubmitArgs) -> Result<ExitCode> {
    let requirement = super::read_requirement(
        args.requirement.as_deref(),
        args.requirement_text.as_deref(),
    )?;
    let (paths, mut queue) = open_queue()?;
    // A path inside the repository, or else its registered name.
    let repo = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_owned());
    let entry = crate::daemon::submit::submit(
        &mut queue,
        NewRequirement {
            repo: repo.display().to_string(),
            requirement,
            priority: args.priority,
            source: Source::Human,
            fingerprint: None,
        },
    )?;
    println!("queued {} for {}: {}", entry.id, entry.repo, entry.title());
    if !client::wake(&paths) {
        println!("the daemon is not running; it runs the queue once `memofab serve` starts");
    }
    Ok(ExitCode::SUCCESS)
}

/// `repo`: the global `--repo`, which narrows the listing to one
/// repository (a path inside it or its name).
pub fn queue(args: QueueArgs, repo: Option<&Path>) -> Result<ExitCode> {
    let (paths, mut queue) = open_queue()?;
    match args.action {
        Some(QueueAction::Move { entry, priority }) => {
            let id = entry_id(&entry)?;
            let moved = queue.set_priority(id, priority)?;
            println!("{} now has priority {}", moved.id, moved.priority);
            client::wake(&paths);
        }
        Some(QueueAction::Drop { entry }) => {
            let id = entry_id(&entry)?;
            let dropped = queue.drop_entry(id)?;
            println!("dropped {}: {}", dropped.id, dropped.title());
        }
        None => {
            let only = match repo {
                Some(repo) => {
                    let key = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_owned());
                    Some(queue.resolve_repo(&key.display().to_string())?.name)
                }
                None => None,
            };
            list(&paths, &queue, args.all, only.as_deref())?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn entry_id(text: &str) -> Result<RequirementId> {
    text.parse::<RequirementId>().map_err(anyhow::Error::msg)
}

fn list(paths: &DaemonPaths, queue: &Queue, all: bool, only: Option<&str>) -> Result<()> {
    // Asked first: whether a daemon answers changes what `running` means.
    let status = match client::request(paths, &Request::Status) {
        Some(Reply::Status(status)) => Some(status),
        _ => None,
    };
    // A shared queue's running entry may be another machine's daemon's.
    let serving = status.is_some() || queue.is_shared();
    let states: &[ItemState] = if all {
        &[]
    } else {
        &[ItemState::Queued, ItemState::Running]
    };
    let entries: Vec<_> = queue
        .entries(states)?
        .into_iter()
        .filter(|e| only.is_none_or(|repo| e.repo == repo))
        .collect();
    if entries.is_empty() {
        println!(
            "the queue is empty; `memofab submit --requirement-text ...` adds to it{}",
            if all {
                ""
            } else {
                " (--all lists finished entries)"
            }
        );
    } else {
        let states: Vec<String> = entries
            .iter()
            .map(|e| state_label(e.state, serving))
            .collect();
        let width = states.iter().map(String::len).max().unwrap_or(0).max(8);
        println!(
            "{:<6} {:<16} {:<width$} {:>8} {:<8} {:<24} requirement",
            "entry", "repo", "state", "priority", "source", "run"
        );
        for (e, state) in entries.into_iter().zip(states) {
            let title: String = e.title().chars().take(60).collect();
            println!(
                "{:<6} {:<16} {:<width$} {:>8} {:<8} {:<24} {title}",
                e.id.to_string(),
                e.repo,
                state,
                e.priority,
                e.source.as_str(),
                e.run.as_ref().map_or("-", |r| r.as_str()),
            );
            if let Some(note) = &e.note {
                // A queued or running entry with a note waits for the
                // repository to be ready; a failed one says why it failed.
                let label = if e.state.is_open() { "waits:" } else { "why:" };
                println!("{:<6} {label} {note}", "");
            }
            if let (ItemState::Running, Some(run)) = (e.state, &e.run) {
                for line in waiting_on_human(queue, &e.repo, run) {
                    println!("{:<6} {line}", "");
                }
            }
        }
    }
    print_waiting_proposals(queue)?;
    match status {
        Some(status) => println!(
            "\ndaemon: serving (pid {}), {} run(s) under way{}",
            status.pid,
            status.runs.len(),
            status
                .intake
                .map(|a| format!(", incidents accepted at {a}"))
                .unwrap_or_default()
        ),
        None => println!("\ndaemon: not running; `memofab serve` starts it"),
    }
    if queue.is_shared() {
        println!(
            "queue: shared in PostgreSQL; every daemon on the database takes entries of the repositories it has registered"
        );
    }
    Ok(())
}

/// An entry's state as the listing shows it: a `running` entry of a daemon
/// that is not serving runs nothing until it starts again.
fn state_label(state: ItemState, serving: bool) -> String {
    match state {
        ItemState::Running if !serving => {
            "running (daemon stopped; resumes when it starts)".to_owned()
        }
        state => state.as_str().to_owned(),
    }
}

/// What a running entry's run waits for from a human, each with the command
/// that decides it: a run at a gate otherwise shows only as `running`.
/// Read from the run's store; nothing is shown if it cannot be read.
fn waiting_on_human(queue: &Queue, repo: &str, run: &crate::domain::RunId) -> Vec<String> {
    use crate::domain::attention::{self, AttentionKind};
    let Ok(registered) = queue.resolve_repo(repo) else {
        return Vec::new();
    };
    let store = crate::engine::run::session::store_path(&registered.path);
    let Ok(events) = crate::effects::store::Store::open_reader(&store).and_then(|s| s.events(run))
    else {
        return Vec::new();
    };
    let Ok(Some(state)) = crate::domain::RunState::fold(&events) else {
        return Vec::new();
    };
    let path = registered.path.display();
    attention::inbox(&state)
        .into_iter()
        .map(|item| match (item.kind, item.task) {
            (AttentionKind::Gate, Some(task)) => {
                let why = state
                    .task(&task)
                    .filter(|t| !t.gate_reasons.is_empty())
                    .map(|t| {
                        format!(
                            " ({})",
                            crate::domain::gate_reason::joined(&t.gate_reasons)
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "waits: {task} at the gate{why}; `memofab --repo {path} approve {run} {task}` (or reject), or `memofab` there"
                )
            }
            (kind, task) => format!(
                "waits: {}{}; `memofab` in {path} to {}",
                kind.label(),
                task.map(|t| format!(" {t}")).unwrap_or_default(),
                kind.action()
            ),
        })
        .collect()
}

/// Per repository, the overseer's proposals no human decided yet (the
/// scheduled overseer review puts them there).
fn print_waiting_proposals(queue: &Queue) -> Result<()> {
    let mut heading = false;
    for repo in queue.repos()? {
        let line = match crate::engine::overseer::waiting_proposals(&repo.path) {
            Ok(None) => continue,
            Ok(Some(waiting)) => format!(
                "{:<16} {}
{:<16} review: memofab --repo {} overseer review {}",
                repo.name,
                waiting.summary(),
                "",
                repo.path.display(),
                waiting.report
            ),
            Err(e) => format!("{:<16} cannot read the overseer's reports: {e}", repo.name),
        };
        if !std::mem::replace(&mut heading, true) {
            println!("\nproposals waiting for a decision:");
        }
        println!("{line}");
    }
    Ok(())
}
