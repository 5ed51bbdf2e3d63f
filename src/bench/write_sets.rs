//! Merge conflicts with and without write-set scheduling.
//!
//! The demo is run for real twice (scripted agents, real git), once with
//! each setting, and its conflicting merges are counted. The 32-task
//! blueprint is simulated: the real scheduler (`schedule::to_start` over a
//! real `RunState`) decides what runs, tasks take seeded random times, write
//! the files they declared (now and then one they did not), and a merge
//! conflicts when mainline changed one of its files since the task started.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use super::Table;
use crate::config::Config;
use crate::domain::event::{ChangeCommitted, MergeResult};
use crate::domain::{
    Blueprint, Event, EventKind, MergeOutcome, RunSettings, TaskId, TaskSpec, TaskState,
};
use crate::domain::{made_up, schedule};
use crate::engine::demo_seed::{embedded_seed, prepare_repo};
use crate::engine::run::session;
use crate::llm::scenario::Scenario;

const SYNTHETIC_TASKS: usize = 32;

pub async fn run(dir: &Path, seeds: u64) -> Result<Table> {
    let mut table = Table::new("Write-set scheduling: merge conflicts with and without");
    let with = demo_conflicts(&dir.join("demo-with"), true).await?;
    let without = demo_conflicts(&dir.join("demo-without"), false).await?;
    table.row(
        "demo, real run: conflicting merges with / without",
        format!("{with} / {without}"),
    );
    let mut totals = [Sim::default(), Sim::default()];
    for seed in 1..=seeds {
        let blueprint = synthetic_blueprint(seed);
        for (i, on) in [true, false].into_iter().enumerate() {
            let sim = simulate(&blueprint, on, seed)?;
            totals[i].conflicts += sim.conflicts;
            totals[i].makespan += sim.makespan;
        }
    }
    let n = seeds.max(1) as f64;
    table.row(
        format!(
            "synthetic {SYNTHETIC_TASKS} tasks, {seeds} seeds: conflicts per run with / without"
        ),
        format!(
            "{:.1} / {:.1}",
            totals[0].conflicts as f64 / n,
            totals[1].conflicts as f64 / n
        ),
    );
    table.row(
        "synthetic: time to merge everything with / without (task-time units)",
        format!(
            "{:.1} / {:.1}",
            totals[0].makespan as f64 / n,
            totals[1].makespan as f64 / n
        ),
    );
    Ok(table)
}

/// Runs the embedded demo headless and counts the merges that conflicted.
async fn demo_conflicts(dir: &Path, write_sets: bool) -> Result<usize> {
    let scenario = Scenario::demo().context("reading the embedded scenario")?;
    let repo = prepare_repo(dir, &scenario, &embedded_seed()).context("preparing the demo")?;
    let mut config = Config::load(&[repo.join(".memofab").join("config.toml")])?;
    config.run.write_set_scheduling = write_sets;
    let requirement = scenario.requirement.clone();
    let request = super::scripted_run(&repo, requirement, config, Arc::new(scenario));
    let (updates, mut rx) = mpsc::unbounded_channel();
    let counter = tokio::spawn(async move {
        let mut conflicts = 0;
        while let Some(update) = rx.recv().await {
            if let crate::protocol::EngineUpdate::Event(Event {
                kind:
                    EventKind::MergeResult(MergeResult {
                        result: MergeOutcome::Conflict { .. },
                        ..
                    }),
                ..
            }) = update
            {
                conflicts += 1;
            }
        }
        conflicts
    });
    let (_commands, commands_rx) = mpsc::unbounded_channel();
    session::start(request, updates, commands_rx)
        .await
        .context("running the demo")?;
    counter.await.context("counting conflicts")
}

/// A small deterministic generator: the same seed, the same blueprint.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// 32 tasks on a project of eight modules and a shared registry file: each
/// adds its own file and touches one or two modules; a third also register
/// themselves in `src/lib.rs`. A task depends on up to two earlier ones.
pub fn synthetic_blueprint(seed: u64) -> Blueprint {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let tasks = (0..SYNTHETIC_TASKS)
        .map(|i| {
            let mut paths = vec![format!("src/feature_{i}.rs")];
            for _ in 0..=rng.below(2) {
                let module = format!("src/module_{}.rs", rng.below(8));
                if !paths.contains(&module) {
                    paths.push(module);
                }
            }
            if rng.below(3) == 0 {
                paths.push("src/lib.rs".into());
            }
            let mut depends_on = Vec::new();
            if i > 0 {
                for _ in 0..rng.below(3) {
                    let dep = TaskId::from(format!("t{}", rng.below(i as u64)).as_str());
                    if !depends_on.contains(&dep) {
                        depends_on.push(dep);
                    }
                }
            }
            TaskSpec {
                id: TaskId::from(format!("t{i}").as_str()),
                title: format!("feature {i}"),
                description: String::new(),
                acceptance: Vec::new(),
                paths,
                depends_on,
            }
        })
        .collect();
    Blueprint {
        title: "synthetic".into(),
        tasks,
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Sim {
    conflicts: usize,
    makespan: u64,
}

/// A task in flight in the simulation.
struct Flight {
    /// When mainline was last taken in: a file merged after it conflicts.
    base: u64,
    done_at: u64,
}

fn simulate(blueprint: &Blueprint, write_sets: bool, seed: u64) -> Result<Sim> {
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    // What each task really writes: what it declared, and now and then a
    // file it did not foresee.
    let writes: HashMap<TaskId, BTreeSet<String>> = blueprint
        .tasks
        .iter()
        .map(|t| {
            let mut files: BTreeSet<String> = t.paths.iter().cloned().collect();
            if rng.below(8) == 0 {
                files.insert(format!("src/module_{}.rs", rng.below(8)));
            }
            (t.id.clone(), files)
        })
        .collect();
    let settings = RunSettings {
        concurrency: 4,
        write_sets,
        ..RunSettings::default()
    };
    let mut state = made_up::started(settings, blueprint.tasks.clone())?;
    let mut flights: HashMap<TaskId, Flight> = HashMap::new();
    // When each file last changed on mainline.
    let mut changed: HashMap<String, u64> = HashMap::new();
    let mut now = 0;
    let mut sim = Sim::default();
    loop {
        for p in schedule::promotions(&state) {
            made_up::advance(&mut state, now, &p.task, &[p.to])?;
        }
        let active: HashSet<TaskId> = flights.keys().cloned().collect();
        for task in schedule::to_start(&state, &active) {
            made_up::advance(&mut state, now, &task, &[TaskState::Running])?;
            // The agent's writes become known as it works.
            made_up::push(
                &mut state,
                now,
                EventKind::ChangeCommitted(ChangeCommitted {
                    task: task.clone(),
                    commit: String::new(),
                    files: writes[&task].iter().cloned().collect(),
                    diff: String::new(),
                }),
            )?;
            let done_at = now + 2 + rng.below(7);
            flights.insert(task, Flight { base: now, done_at });
        }
        let Some((task, at)) = flights
            .iter()
            .map(|(t, f)| (t.clone(), f.done_at))
            .min_by_key(|(t, at)| (*at, t.clone()))
        else {
            break;
        };
        now = at;
        let base = flights[&task].base;
        let conflicted = writes[&task]
            .iter()
            .any(|f| changed.get(f).is_some_and(|&when| when > base));
        if conflicted {
            // Rework against the new mainline, then try again.
            sim.conflicts += 1;
            if let Some(f) = flights.get_mut(&task) {
                f.base = now;
                f.done_at = now + 1 + rng.below(3);
            }
            continue;
        }
        flights.remove(&task);
        for f in &writes[&task] {
            changed.insert(f.clone(), now);
        }
        made_up::advance(
            &mut state,
            now,
            &task,
            &[
                TaskState::Reviewing,
                TaskState::Testing,
                TaskState::Merging,
                TaskState::Merged,
            ],
        )?;
    }
    if state.count(TaskState::Merged) != blueprint.tasks.len() {
        anyhow::bail!("the simulation stalled before every task merged");
    }
    sim.makespan = now;
    Ok(sim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_sets_cut_the_simulated_conflicts() {
        let (mut with, mut without) = (0, 0);
        for seed in 1..=5 {
            let blueprint = synthetic_blueprint(seed);
            assert!(blueprint.validate(SYNTHETIC_TASKS).is_empty());
            with += simulate(&blueprint, true, seed).unwrap().conflicts;
            without += simulate(&blueprint, false, seed).unwrap().conflicts;
        }
        assert!(with < without, "with {with}, without {without}");
    }
}
