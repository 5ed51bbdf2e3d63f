//! Orchestration overhead per task on a large repository: the real engine
//! runs a synthetic blueprint on the scripted provider (so agents take no
//! time), once with every task independent (wide) and once as a chain
//! (deep). Each task's steps are timed as its events arrive: ready to
//! running, running to worktree made, to agent started, and accepted to
//! merged. memofab's git layer and the `git` CLI then each reuse a worktree
//! for the next branch and merge it, in alternate rounds on the same
//! repository, so memofab's figures come with what git itself needs.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

use super::{Samples, Scale, Table, ms, thousands};
use crate::config::Config;
use crate::domain::event::{AgentStarted, TaskStateChanged, WorktreeCreated};
use crate::domain::{AgentRole, Event, EventKind, TaskId, TaskState};
use crate::effects::git::GitRepo;
use crate::engine::run::session;
use crate::llm::scenario::{Conversation, Scenario, ScriptedCall, Turn};
use crate::protocol::EngineUpdate;

/// Worktree-add-and-merge rounds done by memofab's git layer and by the
/// `git` CLI, side by side.
const GIT_ROUNDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// No dependencies: everything is ready at once, `concurrency` at a time.
    Wide,
    /// A chain: each task waits for the one before it to merge.
    Deep,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Wide => "wide",
            Shape::Deep => "deep",
        }
    }
}

/// One task's steps, from the moments its events reached the front end.
#[derive(Debug, Default)]
struct Steps {
    ready: Samples,
    worktree: Samples,
    agent: Samples,
    merge: Samples,
}

pub async fn run(dir: &Path, scale: Scale) -> anyhow::Result<Table> {
    let repo = dir.join("repo");
    let built = Instant::now();
    build_repo(&repo, scale.files, scale.repo_bytes)?;
    let build_time = built.elapsed();
    let mut table = Table::new(format!(
        "orchestration ({} tasks on a repository of {} files, {} MiB; built in {:.1} s)",
        scale.tasks,
        thousands(scale.files as u64),
        scale.repo_bytes / (1024 * 1024),
        build_time.as_secs_f64()
    ));

    let mut deep = Steps::default();
    for shape in [Shape::Wide, Shape::Deep] {
        let started = Instant::now();
        let steps = factory_run(&repo, shape, shape.name(), scale.tasks).await?;
        let wall = started.elapsed();
        table.row(
            format!("{} run: wall time, {} tasks", shape.name(), scale.tasks),
            format!("{:.2} s", wall.as_secs_f64()),
        );
        table.row(
            format!("{}: running → worktree made, p50 / p95", shape.name()),
            pair(&steps.worktree),
        );
        table.row(
            format!("{}: worktree made → agent started, p50 / p95", shape.name()),
            pair(&steps.agent),
        );
        table.row(
            format!("{}: accepted → merged, p50 / p95", shape.name()),
            pair(&steps.merge),
        );
        if shape == Shape::Deep {
            // In a chain nothing waits for a slot, so this is pure scheduling.
            table.row(
                "deep: dependency merged → next task running, p50 / p95",
                pair(&steps.ready),
            );
        }
        if shape == Shape::Deep {
            deep = steps;
        }
    }

    let rounds = GIT_ROUNDS.min(scale.tasks);
    let (ours, git) = git_rounds(&repo, dir, rounds)?;
    table.row(
        format!(
            "worktree reused by the next task, min / median / max ({rounds} rounds each): memofab"
        ),
        spread(&ours.worktree),
    );
    table.row(
        "worktree reused by the next task: git CLI (worktree move, checkout -B, clean -fdx)",
        spread(&git.worktree),
    );
    table.row(
        "merge --no-ff onto main, min / median / max: memofab",
        spread(&ours.merge),
    );
    table.row("merge --no-ff onto main: git CLI", spread(&git.merge));
    table.row(
        "worktree reused in the deep run (running → worktree made, recorded), p50",
        ms(deep.worktree.median()),
    );
    table.checked(
        "merge --no-ff onto main, p50: memofab / git CLI",
        ratio(ours.merge.median(), git.merge.median()),
        "≤ 1.0×",
        ours.merge.median() <= git.merge.median(),
    );
    table.checked(
        "worktree reused by the next task, p50: memofab / git CLI",
        ratio(ours.worktree.median(), git.worktree.median()),
        "≤ 1.0×",
        ours.worktree.median() <= git.worktree.median(),
    );
    let git_work = GitWork {
        recycle: git.worktree.median(),
        merge: git.merge.median(),
    };
    let terms = git_work.overhead(&deep);
    table.row(
        "overhead terms (deep, p50): worktree / merge beyond git, agent start, scheduling",
        terms.describe(),
    );
    table.checked(
        format!(
            "orchestration overhead per task beyond git's own work (deep, {} tasks), p50",
            scale.tasks
        ),
        ms(terms.total()),
        "≤ 5 ms",
        terms.total() <= Duration::from_millis(5),
    );
    for &tasks in scale.scaling_tasks {
        let started = Instant::now();
        // Task names of their own: the files earlier runs merged are on main.
        let steps = factory_run(&repo, Shape::Deep, &format!("deep{tasks}x"), tasks).await?;
        let wall = started.elapsed();
        let terms = git_work.overhead(&steps);
        table.checked(
            format!(
                "deep run of {tasks} tasks ({:.1} s): overhead per task, p50 ({})",
                wall.as_secs_f64(),
                terms.describe()
            ),
            ms(terms.total()),
            "≤ 5 ms",
            terms.total() <= Duration::from_millis(5),
        );
    }
    Ok(table)
}

/// What git itself needs for a task's steps, p50.
struct GitWork {
    recycle: Duration,
    merge: Duration,
}

/// Overhead from a deep run, where no step waits for another task (in the
/// wide one, merges queue behind each other): every step where memofab
/// takes longer than git needs for the same work, plus the steps git has
/// no counterpart for (starting the agent, scheduling the next task).
struct Overhead([Duration; 4]);

impl GitWork {
    fn overhead(&self, deep: &Steps) -> Overhead {
        Overhead([
            deep.worktree.median().saturating_sub(self.recycle),
            deep.merge.median().saturating_sub(self.merge),
            deep.agent.median(),
            deep.ready.median(),
        ])
    }
}

impl Overhead {
    fn total(&self) -> Duration {
        self.0.iter().sum()
    }

    /// The terms, the largest marked.
    fn describe(&self) -> String {
        let largest = self.0.iter().max().copied().unwrap_or_default();
        self.0
            .iter()
            .map(|d| {
                let mark = if *d == largest && !d.is_zero() {
                    "*"
                } else {
                    ""
                };
                format!("{}{mark}", ms(*d))
            })
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

fn spread(s: &Samples) -> String {
    format!(
        "{} / {} / {}",
        ms(s.percentile(0.0)),
        ms(s.median()),
        ms(s.percentile(100.0))
    )
}

fn pair(s: &Samples) -> String {
    format!("{} / {}", ms(s.median()), ms(s.percentile(95.0)))
}

/// A repository of `files` files adding up to about `bytes`, in a hundred
/// directories, committed on `main`.
fn build_repo(repo: &Path, files: usize, bytes: usize) -> anyhow::Result<()> {
    if repo.exists() {
        std::fs::remove_dir_all(repo).with_context(|| format!("removing {}", repo.display()))?;
    }
    let per_file = (bytes / files.max(1)).max(64);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut list = Vec::with_capacity(files);
    for i in 0..files {
        let mut text = String::with_capacity(per_file + 80);
        while text.len() < per_file {
            // Varied lines, so git's compression has real work to do.
            text.push_str(&format!(
                "fn item_{}_{}() -> u64 {{ {} ^ {} }}\n",
                i,
                text.len(),
                next(),
                next()
            ));
        }
        list.push((
            format!("src/m{:02}/f{:05}.rs", i % 100, i),
            text.into_bytes(),
        ));
    }
    GitRepo::init_with_files(repo, &list, "a large seed")?;
    Ok(())
}

/// Runs the engine on a blueprint of `tasks` tasks shaped as `shape`, each
/// writing one new file; returns the timed steps of every task.
async fn factory_run(
    repo: &Path,
    shape: Shape,
    prefix: &str,
    tasks: usize,
) -> anyhow::Result<Steps> {
    let scenario = Arc::new(scenario(shape, prefix, tasks));
    let mut config = Config::default();
    config.run.max_tasks = tasks.max(config.run.max_tasks);
    config.project.test_command = None;
    let requirement = format!("benchmark: {tasks} {} tasks", shape.name());
    let request = super::scripted_run(repo, requirement, config, scenario);
    let (updates, mut rx) = mpsc::unbounded_channel();
    let (_commands, commands_rx) = mpsc::unbounded_channel();
    // Stamp each event as it arrives: the store's millisecond clock is too
    // coarse for steps that take a fraction of one.
    let timing = tokio::spawn(async move {
        let mut seen: Vec<(Instant, Event)> = Vec::new();
        while let Some(update) = rx.recv().await {
            if let EngineUpdate::Event(event) = update {
                seen.push((Instant::now(), event));
            }
        }
        seen
    });
    let state = session::start(request, updates, commands_rx).await?;
    let seen = timing.await.context("collecting events")?;
    let merged = state.count(TaskState::Merged);
    if merged != tasks {
        bail!(
            "the {} benchmark run merged {merged} of {tasks} tasks",
            shape.name()
        );
    }
    Ok(steps(&seen))
}

fn steps(seen: &[(Instant, Event)]) -> Steps {
    use std::collections::HashMap;
    let mut steps = Steps::default();
    let mut running: HashMap<TaskId, Instant> = HashMap::new();
    let mut worktree: HashMap<TaskId, Instant> = HashMap::new();
    let mut merging: HashMap<TaskId, Instant> = HashMap::new();
    let mut last_merge: Option<Instant> = None;
    for (at, event) in seen {
        match &event.kind {
            EventKind::TaskStateChanged(TaskStateChanged { task, to, .. }) => match to {
                TaskState::Running if !running.contains_key(task) => {
                    running.insert(task.clone(), *at);
                    if let Some(merged) = last_merge {
                        steps.ready.push(at.saturating_duration_since(merged));
                    }
                }
                TaskState::Merging => {
                    merging.insert(task.clone(), *at);
                }
                TaskState::Merged => {
                    if let Some(start) = merging.get(task) {
                        steps.merge.push(at.saturating_duration_since(*start));
                    }
                    last_merge = Some(*at);
                }
                _ => {}
            },
            EventKind::WorktreeCreated(WorktreeCreated { task, .. }) => {
                if let Some(start) = running.get(task) {
                    steps.worktree.push(at.saturating_duration_since(*start));
                }
                worktree.insert(task.clone(), *at);
            }
            EventKind::AgentStarted(AgentStarted {
                role: AgentRole::Coder,
                task: Some(task),
                ..
            }) => {
                if let Some(made) = worktree.remove(task) {
                    steps.agent.push(at.saturating_duration_since(made));
                }
            }
            _ => {}
        }
    }
    steps
}

/// Planner, plan reviewer, one coder per task (write a file, finish) and a
/// reviewer who approves.
/// Tasks are named `prefix` and a number.
fn scenario(shape: Shape, prefix: &str, tasks: usize) -> Scenario {
    let ids: Vec<String> = (0..tasks).map(|i| format!("{prefix}{i:03}")).collect();
    let blueprint = serde_json::json!({
        "title": format!("{} benchmark", shape.name()),
        "tasks": ids.iter().enumerate().map(|(i, id)| {
            let depends_on: Vec<&String> = match shape {
                Shape::Deep if i > 0 => vec![&ids[i - 1]],
                _ => Vec::new(),
            };
            serde_json::json!({
                "id": id,
                "title": format!("write {id}"),
                "description": "Write one new file.",
                "acceptance": ["the file exists"],
                "paths": [format!("bench/{id}.txt")],
                "depends_on": depends_on,
            })
        }).collect::<Vec<_>>(),
    });
    let call = |tool: &str, args: serde_json::Value| ScriptedCall {
        tool: tool.into(),
        args: Some(args),
        raw_args: None,
    };
    let one_turn = |role, task: Option<&str>, attempt, calls| Conversation {
        role,
        task: task.map(TaskId::from),
        attempt,
        turns: vec![Turn {
            text: String::new(),
            calls,
            rate_limit: None,
        }],
    };
    let mut conversations = vec![
        one_turn(
            AgentRole::Planner,
            None,
            Some(1),
            vec![call("submit_blueprint", blueprint)],
        ),
        one_turn(
            AgentRole::PlanReviewer,
            None,
            None,
            vec![call(
                "submit_review",
                serde_json::json!({"approved": true, "feedback": "fine"}),
            )],
        ),
        one_turn(
            AgentRole::Reviewer,
            None,
            None,
            vec![call(
                "submit_review",
                serde_json::json!({"approved": true, "feedback": "fine"}),
            )],
        ),
    ];
    for id in &ids {
        conversations.push(one_turn(
            AgentRole::Coder,
            Some(id),
            None,
            vec![
                call(
                    "write_file",
                    serde_json::json!({"path": format!("bench/{id}.txt"), "content": format!("{id}\n")}),
                ),
                call("finish", serde_json::json!({"summary": "written"})),
            ],
        ));
    }
    Scenario {
        name: format!("bench-{}", shape.name()),
        requirement: String::new(),
        seed: None,
        test_command: None,
        policy: None,
        conversations,
    }
}

#[derive(Default)]
struct GitTimes {
    worktree: Samples,
    merge: Samples,
}

/// The same git work done by memofab's git layer and by the `git` CLI, in
/// alternate rounds on the same repository, the way a run recycles a
/// worktree: move the last task's worktree to the next task, switch it to
/// a new branch at `main` and clean out what is not committed (timed);
/// commit one file there (untimed); merge it into `main` with a merge
/// commit, which also updates the checked-out main work tree (timed).
fn git_rounds(repo: &Path, dir: &Path, rounds: usize) -> anyhow::Result<(GitTimes, GitTimes)> {
    let layer = GitRepo::open(repo)?;
    let (mut ours, mut cli) = (GitTimes::default(), GitTimes::default());
    let (root_ours, root_cli) = (dir.join("git2-recycled"), dir.join("cli-recycled"));
    let mut current_ours = (root_ours.join("000"), "bench-git2/000".to_owned());
    layer.fresh_worktree(
        &current_ours.0,
        &current_ours.1,
        &layer.branch_head("main")?,
    )?;
    let mut current_cli = root_cli.join("000");
    git(
        repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "bench-cli/000",
            path(&current_cli)?,
            "main",
        ],
    )?;
    for i in 1..=rounds {
        let next = (
            root_ours.join(format!("{i:03}")),
            format!("bench-git2/{i:03}"),
        );
        let base = layer.branch_head("main")?;
        let started = Instant::now();
        layer.recycle_worktree(&current_ours.0, &current_ours.1, &next.0, &next.1, &base)?;
        ours.worktree.push(started.elapsed());
        current_ours = next;
        write_bench_file(&current_ours.0, &format!("git2-{i:03}"))?;
        layer.commit_all(&current_ours.0, "git2")?;
        let started = Instant::now();
        if let Err(dirty) = layer.merge_into_mainline("main", &current_ours.1, "merge")? {
            anyhow::bail!("the benchmark checkout has changes: {:?}", dirty.files);
        }
        ours.merge.push(started.elapsed());

        let next = root_cli.join(format!("{i:03}"));
        let branch = format!("bench-cli/{i:03}");
        let started = Instant::now();
        git(
            repo,
            &["worktree", "move", path(&current_cli)?, path(&next)?],
        )?;
        git(&next, &["checkout", "-q", "-B", &branch, "main"])?;
        git(&next, &["clean", "-q", "-f", "-d", "-x"])?;
        cli.worktree.push(started.elapsed());
        current_cli = next;
        write_bench_file(&current_cli, &format!("cli-{i:03}"))?;
        git_commit_all(&current_cli)?;
        let started = Instant::now();
        git(repo, &["merge", "-q", "--no-ff", "-m", "merge", &branch])?;
        cli.merge.push(started.elapsed());
    }
    layer.remove_worktree(&current_ours.0)?;
    git(
        repo,
        &["worktree", "remove", "--force", path(&current_cli)?],
    )?;
    Ok((ours, cli))
}

/// The one new file a benchmark round commits: `bench/<name>.txt`.
fn write_bench_file(worktree: &Path, name: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(worktree.join("bench"))?;
    std::fs::write(
        worktree.join(format!("bench/{name}.txt")),
        format!("{name}\n"),
    )?;
    Ok(())
}

fn git_commit_all(worktree: &Path) -> anyhow::Result<()> {
    git(worktree, &["add", "-A"])?;
    git(worktree, &["commit", "-q", "-m", "bench"])
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not valid UTF-8", p.display()))
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@memofab.invalid",
        ])
        .args(args)
        .output()
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
