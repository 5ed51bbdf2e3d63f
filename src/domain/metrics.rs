//! Factory metrics over past runs, for the overseer: per agent and per task,
//! how many turns, tool calls and errors, reworks and conflicts, tokens and
//! time — and findings worth a human's attention, such as an agent running
//! the same failing command again and again. Pure: a fold over events.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::event::{Event, EventKind, MergeOutcome, TokenUsage};
use super::ids::{AgentId, AgentRole, RunId, TaskId};
use super::path_history::PathHistory;
use crate::domain::event::{
    AgentFinished, AgentStarted, MergeResult, MergeVerified, ReviewVerdict, ShepherdIntervened,
    TaskStateChanged, TestRun, TestsOnBase, TokensUsed, ToolCalled, ToolResult,
};

/// A command failing this many times in a row is a finding.
pub const REPEATED_FAILURES: u32 = 3;

/// Paths listed under "Riskiest paths" in the report.
pub const RISKIEST_PATHS: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentMetrics {
    pub run: RunId,
    pub agent: AgentId,
    pub role: Option<AgentRole>,
    pub task: Option<TaskId>,
    pub turns: u32,
    pub tool_calls: u32,
    pub tool_errors: u32,
    pub tokens: TokenUsage,
    pub wall_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    pub run: RunId,
    pub task: TaskId,
    pub final_state: String,
    pub review_rejections: u32,
    pub failed_tests: u32,
    pub conflicts: u32,
    /// Times the shepherd acted on the task's work.
    #[serde(default)]
    pub interventions: u32,
    pub tokens: TokenUsage,
    pub wall_ms: u64,
}

/// The shepherd's interventions, by what it did and by what it found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShepherdTotals {
    pub by_action: BTreeMap<super::stuck::Action, u32>,
    /// By pattern name (`repeated_call`, `no_change`, ...).
    pub by_pattern: BTreeMap<String, u32>,
}

impl ShepherdTotals {
    pub fn total(&self) -> u32 {
        self.by_action.values().sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// An agent ran the same command, failing, several times in a row.
    RepeatedFailingCommand {
        run: RunId,
        agent: AgentId,
        command: String,
        times: u32,
    },
    ReviewRejected {
        run: RunId,
        task: TaskId,
        feedback: String,
    },
    TestsFailed {
        run: RunId,
        task: TaskId,
        command: String,
    },
    MergeConflict {
        run: RunId,
        task: TaskId,
        files: Vec<String>,
    },
    /// A tester's tests passed on the base commit: they proved nothing, and
    /// the tester was sent back (or its tests kept with a warning).
    TesterProvedNothing {
        run: RunId,
        task: TaskId,
        round: u32,
    },
}

pub use super::proposal::Proposal;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleTotals {
    pub agents: u32,
    pub turns: u32,
    pub tool_calls: u32,
    pub tool_errors: u32,
    pub tokens: TokenUsage,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FactoryMetrics {
    pub runs: usize,
    pub events: usize,
    pub agents: Vec<AgentMetrics>,
    pub tasks: Vec<TaskMetrics>,
    pub by_role: BTreeMap<AgentRole, RoleTotals>,
    pub findings: Vec<Finding>,
    #[serde(default)]
    pub shepherd: ShepherdTotals,
    /// Incidents per path, for the riskiest paths.
    #[serde(default)]
    pub paths: PathHistory,
}

/// Per-agent bookkeeping while folding.
#[derive(Default)]
struct AgentFold {
    metrics: AgentMetrics,
    first_ms: Option<u64>,
    /// Commands of `run` calls awaiting their result, by call id.
    pending: HashMap<String, String>,
    /// The current streak of one command failing.
    streak: Option<(String, u32)>,
}

impl FactoryMetrics {
    /// Folds every run's events (each list one run, in order).
    pub fn compute(runs: &[Vec<Event>]) -> Self {
        let mut out = FactoryMetrics {
            runs: runs.len(),
            paths: PathHistory::compute(runs),
            ..Default::default()
        };
        for events in runs {
            out.events += events.len();
            out.fold_run(events);
        }
        for a in &out.agents {
            if let Some(role) = a.role {
                let t = out.by_role.entry(role).or_default();
                t.agents += 1;
                t.turns += a.turns;
                t.tool_calls += a.tool_calls;
                t.tool_errors += a.tool_errors;
                t.tokens.add(a.tokens);
            }
        }
        out
    }

    fn fold_run(&mut self, events: &[Event]) {
        let mut agents: BTreeMap<AgentId, AgentFold> = BTreeMap::new();
        let mut tasks: BTreeMap<TaskId, (TaskMetrics, Option<u64>)> = BTreeMap::new();
        let task_of = |run: &RunId, task: &TaskId| -> TaskMetrics {
            TaskMetrics {
                run: run.clone(),
                task: task.clone(),
                ..Default::default()
            }
        };
        for e in events {
            let run = &e.run;
            match &e.kind {
                EventKind::AgentStarted(AgentStarted {
                    agent, role, task, ..
                }) => {
                    let f = agents.entry(agent.clone()).or_default();
                    f.metrics.run = run.clone();
                    f.metrics.agent = agent.clone();
                    f.metrics.role = Some(*role);
                    f.metrics.task = task.clone();
                    f.first_ms = Some(e.at_ms);
                }
                EventKind::TokensUsed(TokensUsed {
                    agent, task, usage, ..
                }) => {
                    let f = agents.entry(agent.clone()).or_default();
                    f.metrics.turns += 1;
                    f.metrics.tokens.add(*usage);
                    if let Some(task) = task {
                        tasks
                            .entry(task.clone())
                            .or_insert_with(|| (task_of(run, task), None))
                            .0
                            .tokens
                            .add(*usage);
                    }
                }
                EventKind::ToolCalled(ToolCalled {
                    agent,
                    call_id,
                    tool,
                    arguments,
                }) => {
                    let f = agents.entry(agent.clone()).or_default();
                    f.metrics.tool_calls += 1;
                    if tool == super::tool_names::RUN {
                        let command = arguments
                            .get("command")
                            .and_then(|c| c.as_str())
                            .unwrap_or("")
                            .to_owned();
                        f.pending.insert(call_id.clone(), command);
                    }
                }
                EventKind::ToolResult(ToolResult {
                    agent, call_id, ok, ..
                }) => {
                    let f = agents.entry(agent.clone()).or_default();
                    if !ok {
                        f.metrics.tool_errors += 1;
                    }
                    if let Some(command) = f.pending.remove(call_id) {
                        f.streak = match (f.streak.take(), ok) {
                            (_, true) => None,
                            (Some((c, n)), false) if c == command => Some((c, n + 1)),
                            (_, false) => Some((command, 1)),
                        };
                        if let Some((c, n)) = &f.streak {
                            if *n == REPEATED_FAILURES {
                                self.findings.push(Finding::RepeatedFailingCommand {
                                    run: run.clone(),
                                    agent: agent.clone(),
                                    command: c.clone(),
                                    times: *n,
                                });
                            } else if *n > REPEATED_FAILURES {
                                // Keep one finding per streak, with the full count.
                                if let Some(Finding::RepeatedFailingCommand { times, .. }) = self.findings.iter_mut().rev().find(|x| {
                                    matches!(x, Finding::RepeatedFailingCommand { agent: a, run: r, .. } if a == agent && r == run)
                                }) {
                                    *times = *n;
                                }
                            }
                        }
                    }
                }
                EventKind::AgentFinished(AgentFinished { agent, .. }) => {
                    let f = agents.entry(agent.clone()).or_default();
                    f.metrics.wall_ms = e.at_ms.saturating_sub(f.first_ms.unwrap_or(e.at_ms));
                }
                EventKind::ReviewVerdict(ReviewVerdict {
                    task,
                    approved: false,
                    feedback,
                }) => {
                    tasks
                        .entry(task.clone())
                        .or_insert_with(|| (task_of(run, task), None))
                        .0
                        .review_rejections += 1;
                    self.findings.push(Finding::ReviewRejected {
                        run: run.clone(),
                        task: task.clone(),
                        feedback: feedback.clone(),
                    });
                }
                // A merge result failing its tests is a failed test run too.
                EventKind::TestRun(TestRun {
                    task,
                    passed: false,
                    command,
                    ..
                })
                | EventKind::MergeVerified(MergeVerified {
                    task,
                    passed: false,
                    command,
                    ..
                }) => {
                    tasks
                        .entry(task.clone())
                        .or_insert_with(|| (task_of(run, task), None))
                        .0
                        .failed_tests += 1;
                    self.findings.push(Finding::TestsFailed {
                        run: run.clone(),
                        task: task.clone(),
                        command: command.clone(),
                    });
                }
                EventKind::TestsOnBase(TestsOnBase {
                    task,
                    round,
                    failed: false,
                    ..
                }) => self.findings.push(Finding::TesterProvedNothing {
                    run: run.clone(),
                    task: task.clone(),
                    round: *round,
                }),
                EventKind::MergeResult(MergeResult {
                    task,
                    result: MergeOutcome::Conflict { files },
                }) => {
                    tasks
                        .entry(task.clone())
                        .or_insert_with(|| (task_of(run, task), None))
                        .0
                        .conflicts += 1;
                    self.findings.push(Finding::MergeConflict {
                        run: run.clone(),
                        task: task.clone(),
                        files: files.clone(),
                    });
                }
                EventKind::ShepherdIntervened(ShepherdIntervened {
                    task,
                    pattern,
                    action,
                    ..
                }) => {
                    *self.shepherd.by_action.entry(*action).or_default() += 1;
                    *self
                        .shepherd
                        .by_pattern
                        .entry(pattern.name().to_owned())
                        .or_default() += 1;
                    if let Some(task) = task {
                        tasks
                            .entry(task.clone())
                            .or_insert_with(|| (task_of(run, task), None))
                            .0
                            .interventions += 1;
                    }
                }
                EventKind::TaskStateChanged(TaskStateChanged { task, to, .. }) => {
                    let entry = tasks
                        .entry(task.clone())
                        .or_insert_with(|| (task_of(run, task), None));
                    let start = *entry.1.get_or_insert(e.at_ms);
                    entry.0.final_state = to.to_string();
                    entry.0.wall_ms = e.at_ms.saturating_sub(start);
                }
                _ => {}
            }
        }
        self.agents.extend(agents.into_values().map(|f| f.metrics));
        self.tasks.extend(tasks.into_values().map(|(m, _)| m));
    }

    /// How often the shepherd stepped in, for the overseer to weigh: many
    /// interventions on one pattern point at a prompt or a tool to fix.
    fn shepherd_markdown(&self) -> String {
        let totals = &self.shepherd;
        if totals.total() == 0 {
            return "\n## Shepherd\n\nNo interventions.\n".to_owned();
        }
        let list = |pairs: Vec<(String, u32)>| {
            pairs
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let actions = totals
            .by_action
            .iter()
            .map(|(a, n)| (a.label().to_owned(), *n))
            .collect();
        let patterns = totals
            .by_pattern
            .iter()
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        let mut md = format!(
            "\n## Shepherd\n\n{} interventions: {}.\nStuck patterns: {}.\n",
            totals.total(),
            list(actions),
            list(patterns)
        );
        for t in self.tasks.iter().filter(|t| t.interventions > 0) {
            let _ = writeln!(
                md,
                "- {} ({}): {} interventions",
                t.task, t.run, t.interventions
            );
        }
        md
    }

    /// The agents that cost most in errors, then turns.
    pub fn worst_agents(&self, n: usize) -> Vec<&AgentMetrics> {
        let mut all: Vec<&AgentMetrics> = self.agents.iter().collect();
        all.sort_by_key(|a| std::cmp::Reverse((a.tool_errors, a.turns)));
        all.into_iter().take(n).collect()
    }

    /// The report's metrics part, in markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "## Metrics\n\n{} runs, {} events.\n",
            self.runs, self.events
        );
        md.push_str("| role | agents | turns | tool calls | tool errors | tokens in | tokens out |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (role, t) in &self.by_role {
            let _ = writeln!(
                md,
                "| {role} | {} | {} | {} | {} | {} | {} |",
                t.agents, t.turns, t.tool_calls, t.tool_errors, t.tokens.input, t.tokens.output
            );
        }
        md.push_str("\n| run | task | state | review rejections | failed tests | conflicts | tokens | wall time |\n|---|---|---|---:|---:|---:|---:|---:|\n");
        for t in &self.tasks {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1}s |",
                t.run,
                t.task,
                t.final_state,
                t.review_rejections,
                t.failed_tests,
                t.conflicts,
                t.tokens.total(),
                t.wall_ms as f64 / 1000.0
            );
        }
        md.push_str(&self.shepherd_markdown());
        md.push_str("\n## Riskiest paths\n\n");
        let riskiest = self.paths.riskiest(RISKIEST_PATHS);
        if riskiest.is_empty() {
            md.push_str("None: no path had a conflict, failed verification, revert or rework.\n");
        } else {
            md.push_str("| path | incidents | conflicts | failed verifications | reverts | reworks |\n|---|---:|---:|---:|---:|---:|\n");
        }
        for (path, i) in riskiest {
            let _ = writeln!(
                md,
                "| `{path}` | {} | {} | {} | {} | {} |",
                i.total(),
                i.conflicts,
                i.failed_verifications,
                i.reverts,
                i.reworks
            );
        }
        md.push_str("\n## Worst offenders\n\n");
        for a in self.worst_agents(5) {
            let _ = writeln!(
                md,
                "- `{}` ({}): {} turns, {} tool errors",
                a.agent, a.run, a.turns, a.tool_errors
            );
        }
        md.push_str("\n## Findings\n\n");
        if self.findings.is_empty() {
            md.push_str("None.\n");
        }
        for f in &self.findings {
            let line = match f {
                Finding::RepeatedFailingCommand {
                    run,
                    agent,
                    command,
                    times,
                } => {
                    format!(
                        "- **repeated failing command**: `{agent}` ({run}) ran `{command}` {times} times in a row, failing each time"
                    )
                }
                Finding::ReviewRejected {
                    run,
                    task,
                    feedback,
                } => {
                    format!(
                        "- review rejected {task} ({run}): {}",
                        feedback.trim().replace('\n', " ")
                    )
                }
                Finding::TestsFailed { run, task, command } => {
                    format!("- tests failed for {task} ({run}): `{command}`")
                }
                Finding::MergeConflict { run, task, files } => {
                    format!(
                        "- merge conflict for {task} ({run}) in {}",
                        files.join(", ")
                    )
                }
                Finding::TesterProvedNothing { run, task, round } => format!(
                    "- the tester's tests of {task} ({run}) passed on the base commit in round {round}: they proved nothing"
                ),
            };
            md.push_str(&line);
            md.push('\n');
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TaskState;
    use crate::domain::event::ChangeCommitted;

    fn run_events() -> Vec<Event> {
        let mut events = Vec::new();
        let mut push = |kind: EventKind| {
            let seq = events.len() as u64 + 1;
            events.push(Event {
                run: RunId::from("r1"),
                seq,
                at_ms: seq * 100,
                kind,
            });
        };
        let agent = AgentId::from("coder:t1#1");
        push(EventKind::AgentStarted(AgentStarted {
            agent: agent.clone(),
            role: AgentRole::Coder,
            task: Some("t1".into()),
            model: "m".into(),
        }));
        push(EventKind::TaskStateChanged(TaskStateChanged {
            task: "t1".into(),
            from: TaskState::Ready,
            to: TaskState::Running,
            reason: None,
        }));
        for (i, (command, ok)) in [
            ("make", false),
            ("make", false),
            ("make", false),
            ("make", false),
            ("ls", true),
            ("make", false),
        ]
        .into_iter()
        .enumerate()
        {
            push(EventKind::TokensUsed(TokensUsed {
                cost_usd: None,
                agent: agent.clone(),
                task: Some("t1".into()),
                model: "m".into(),
                usage: TokenUsage {
                    input: 10,
                    output: 1,
                    cached: 0,
                    cache_write: 0,
                },
            }));
            push(EventKind::ToolCalled(ToolCalled {
                agent: agent.clone(),
                call_id: format!("c{i}"),
                tool: "run".into(),
                arguments: serde_json::json!({"command": command}),
            }));
            push(EventKind::ToolResult(ToolResult {
                agent: agent.clone(),
                call_id: format!("c{i}"),
                ok,
                output: String::new(),
            }));
        }
        push(EventKind::ShepherdIntervened(ShepherdIntervened {
            task: Some("t1".into()),
            agent: Some(agent.clone()),
            pattern: crate::domain::shepherd::Pattern::RepeatedFailure {
                tool: "run".into(),
                error: "make failed".into(),
                times: 3,
            },
            action: crate::domain::shepherd::Action::Nudge,
        }));
        push(EventKind::AgentFinished(AgentFinished {
            agent,
            ok: true,
            summary: String::new(),
        }));
        push(EventKind::ChangeCommitted(ChangeCommitted {
            task: "t1".into(),
            commit: "c1".into(),
            files: vec!["src/db.rs".into()],
            diff: String::new(),
        }));
        push(EventKind::ReviewVerdict(ReviewVerdict {
            task: "t1".into(),
            approved: false,
            feedback: "add tests".into(),
        }));
        push(EventKind::TaskStateChanged(TaskStateChanged {
            task: "t1".into(),
            from: TaskState::Reviewing,
            to: TaskState::Running,
            reason: None,
        }));
        events
    }

    #[test]
    fn counts_and_findings_match_a_known_run() {
        let m = FactoryMetrics::compute(&[run_events()]);
        assert_eq!(m.agents.len(), 1);
        let a = &m.agents[0];
        assert_eq!((a.turns, a.tool_calls, a.tool_errors), (6, 6, 5));
        assert_eq!(a.tokens.total(), 66);
        assert_eq!(a.wall_ms, 2100);
        let repeated: Vec<_> = m
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::RepeatedFailingCommand { command, times, .. } => {
                    Some((command.as_str(), *times))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            repeated,
            vec![("make", 4)],
            "one finding for the streak of four; the later single failure is not one"
        );
        let t = &m.tasks[0];
        assert_eq!(
            (t.review_rejections, t.final_state.as_str()),
            (1, "running")
        );
        assert_eq!(m.by_role[&AgentRole::Coder].tool_errors, 5);
        assert_eq!(m.shepherd.total(), 1);
        assert_eq!(m.shepherd.by_pattern["repeated_failure"], 1);
        assert_eq!(
            m.shepherd.by_action[&crate::domain::shepherd::Action::Nudge],
            1
        );
        assert_eq!(t.interventions, 1);
        let md = m.to_markdown();
        assert!(
            md.contains("1 interventions: nudged the agent 1")
                && md.contains("repeated_failure 1")
                && md.contains("- t1 (r1): 1 interventions"),
            "{md}"
        );
        assert!(
            md.contains("repeated failing command") && md.contains("`make` 4 times"),
            "{md}"
        );
        // The rework after the rejection counts against the changed file.
        assert!(
            md.contains("## Riskiest paths") && md.contains("| `src/db.rs` | 1 | 0 | 0 | 0 | 1 |"),
            "{md}"
        );
    }
}
