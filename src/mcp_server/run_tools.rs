//! Tools over a registered repository's runs: list them, read one's status
//! and summary, decide its gates. Runs are read from the repository's event
//! store without writing it; a gate decision goes to the store's inbox,
//! exactly as `memofab approve` and `reject` leave it.

use std::path::{Path, PathBuf};

use rmcp::handler::server::wrapper::Parameters;
use rmcp::schemars::JsonSchema;
use rmcp::service::{Peer, RoleServer};
use rmcp::{Json, tool, tool_router};
use serde::{Deserialize, Serialize};

use super::error::{ToolError, ToolResult};
use super::queue_tools::open_queue;
use super::server::FactoryServer;
use crate::config::Config;
use crate::daemon::DaemonPaths;
use crate::domain::attention::{self, AttentionKind};
use crate::domain::{Decider, RunId, RunKind, RunState, TaskId};
use crate::effects::store::{RunSummary, Store};
use crate::engine::run::gate_decision::{GateDecision, leave_gate_decision};
use crate::engine::run::session::store_path;
use crate::engine::run::summary::{live_run, run_cost, summary};
use crate::llm::pricing::price_table;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RepoArgs {
    /// The repository: its registered name (see list_repositories) or a path
    /// inside it.
    pub repo: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RunStatusArgs {
    /// The repository: its registered name or a path inside it.
    pub repo: String,
    /// The run's id (see list_runs); default: the repository's newest run.
    #[serde(default)]
    pub run: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct GateArgs {
    /// The repository: its registered name or a path inside it.
    pub repo: String,
    /// The run's id.
    pub run: String,
    /// The task waiting at the gate (run_status lists them).
    pub task: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RejectArgs {
    /// The repository: its registered name or a path inside it.
    pub repo: String,
    /// The run's id.
    pub run: String,
    /// The task waiting at the gate (run_status lists them).
    pub task: String,
    /// What the coder should change; it gets this as feedback.
    pub reason: String,
}

/// One run of a repository, newest first.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RunLine {
    pub run: String,
    /// Unix milliseconds of its first and last events.
    pub started_ms: u64,
    pub last_event_ms: u64,
    /// planning, building, paused, finished, failed, ... (none before the
    /// first phase is recorded).
    pub phase: Option<String>,
    /// An engine works on it now.
    pub engine_running: bool,
    /// Not over and no engine on it: it waits for `memofab resume`.
    pub interrupted: bool,
    /// The requirement's first line.
    pub title: String,
    pub tasks: usize,
    pub merged: usize,
    pub failed: usize,
    pub tokens: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RunListing {
    /// The repository's registered name.
    pub repo: String,
    pub runs: Vec<RunLine>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct TaskLine {
    pub id: String,
    pub title: String,
    /// pending, ready, coding, reviewing, testing, awaiting_gate, merged,
    /// failed, conflict, ...
    pub state: String,
    /// Why it entered that state, when recorded (a failure's cause, a
    /// gate's reason).
    pub reason: Option<String>,
    pub depends_on: Vec<String>,
}

/// Something the run waits for a human to decide.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct Waiting {
    /// gate, question, conflict, budget, run budget, failed, stuck, quota,
    /// plan, repository or checkout.
    pub kind: String,
    pub task: Option<String>,
    pub detail: String,
    /// What deciding it does by default.
    pub action: String,
    /// The tools of this server that decide it; the others are decided in
    /// memofab's cockpit.
    pub tools: Vec<String>,
    /// Unfinished tasks held up by it.
    pub blocks: usize,
    pub since_ms: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RunStatus {
    pub repo: String,
    pub run: String,
    pub requirement: String,
    pub phase: String,
    /// Why the run entered its phase, when recorded.
    pub phase_reason: Option<String>,
    pub engine_running: bool,
    pub interrupted: bool,
    pub tasks: Vec<TaskLine>,
    /// Most blocking first.
    pub waiting_on_human: Vec<Waiting>,
    pub tokens: Tokens,
    /// USD, when the run's models have prices in the project's config.
    pub cost_usd: Option<f64>,
    /// The summary memofab prints when a run's process ends.
    pub summary: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct GateSent {
    pub run: String,
    pub task: String,
    /// approved or rejected.
    pub decision: String,
    /// An engine works on the run now and records the decision shortly;
    /// otherwise it is recorded when the run resumes.
    pub engine_running: bool,
}

/// A registered repository's name and work tree.
fn registered(paths: &DaemonPaths, repo: &str) -> ToolResult<(String, PathBuf)> {
    let found = open_queue(paths)?.resolve_repo(repo)?;
    Ok((found.name, found.path))
}

/// The repository's factory runs, newest first; none without a store.
fn factory_runs(repo: &Path) -> ToolResult<Vec<RunSummary>> {
    let path = store_path(repo);
    if !path.exists() {
        return Ok(Vec::new());
    }
    Ok(Store::open_reader(&path)?
        .runs()?
        .into_iter()
        .filter(|r| r.run.kind() == RunKind::Factory)
        .collect())
}

fn is_over(phase: Option<crate::domain::RunPhase>) -> bool {
    phase.is_some_and(|p| p.is_over())
}

pub fn list_runs(paths: &DaemonPaths, args: RepoArgs) -> ToolResult<RunListing> {
    let (name, path) = registered(paths, &args.repo)?;
    let runs = factory_runs(&path)?;
    let live = live_run(&path, &runs);
    let runs = runs
        .into_iter()
        .map(|r| {
            let engine_running = live.as_ref() == Some(&r.run);
            RunLine {
                interrupted: !is_over(r.phase) && !engine_running,
                engine_running,
                run: r.run.as_str().to_owned(),
                started_ms: r.started_ms,
                last_event_ms: r.last_event_ms,
                phase: r.phase.map(|p| p.as_str().to_owned()),
                title: r.requirement.lines().next().unwrap_or("").trim().to_owned(),
                tasks: r.tasks,
                merged: r.merged,
                failed: r.failed,
                tokens: r.tokens,
            }
        })
        .collect();
    Ok(RunListing { repo: name, runs })
}

pub fn run_status(paths: &DaemonPaths, args: RunStatusArgs) -> ToolResult<RunStatus> {
    let (name, path) = registered(paths, &args.repo)?;
    let runs = factory_runs(&path)?;
    let run = match args.run {
        Some(run) => RunId::new(run),
        None => runs
            .first()
            .map(|r| r.run.clone())
            .ok_or_else(|| ToolError::NoRuns { repo: name.clone() })?,
    };
    let unknown = || ToolError::UnknownRun {
        repo: name.clone(),
        run: run.to_string(),
    };
    if !runs.iter().any(|r| r.run == run) {
        return Err(unknown());
    }
    let events = Store::open_reader(&store_path(&path))?.events(&run)?;
    let state = RunState::fold(&events)
        .map_err(crate::engine::EngineError::from)?
        .ok_or_else(unknown)?;
    let engine_running = live_run(&path, &runs).as_ref() == Some(&run);
    // Prices come from the project's config; without them, no cost.
    let prices = Config::load(&Config::standard_files(&path))
        .map(|c| price_table(&c))
        .unwrap_or_default();
    Ok(RunStatus {
        repo: name,
        run: run.to_string(),
        requirement: state.requirement.clone(),
        phase: state.phase.as_str().to_owned(),
        phase_reason: state.phase_reason.clone(),
        engine_running,
        interrupted: !state.phase.is_over() && !engine_running,
        tasks: state
            .tasks()
            .iter()
            .map(|t| TaskLine {
                id: t.id().to_string(),
                title: t.spec.title.clone(),
                state: t.state.as_str().to_owned(),
                reason: t.reason.clone(),
                depends_on: t.spec.depends_on.iter().map(|d| d.to_string()).collect(),
            })
            .collect(),
        waiting_on_human: attention::inbox(&state)
            .into_iter()
            .map(|item| Waiting {
                kind: item.kind.label().to_owned(),
                tools: match item.kind {
                    AttentionKind::Gate => vec!["approve_gate".into(), "reject_gate".into()],
                    _ => Vec::new(),
                },
                task: item.task.map(|t| t.to_string()),
                detail: item.detail,
                action: item.kind.action().to_owned(),
                blocks: item.blocks,
                since_ms: item.since_ms,
            })
            .collect(),
        tokens: Tokens {
            input: state.tokens.input,
            output: state.tokens.output,
        },
        cost_usd: run_cost(&path, &state, &prices),
        summary: summary(&state, &path, &prices, None).trim().to_owned(),
    })
}

/// `memofab approve`/`reject` for a registered repository, left as decided
/// by `by` (the MCP client).
pub fn decide(
    paths: &DaemonPaths,
    repo: &str,
    run: &str,
    task: &str,
    decision: GateDecision,
    by: &Decider,
) -> ToolResult<GateSent> {
    let (_, path) = registered(paths, repo)?;
    let run = RunId::new(run);
    let label = match &decision {
        GateDecision::Approve => "approved",
        GateDecision::Reject { .. } => "rejected",
    };
    leave_gate_decision(&path, &run, &TaskId::new(task), decision, by)?;
    tracing::info!(%run, task, decision = label, by = %by.as_stored(), "gate decided over MCP");
    let engine_running = live_run(&path, &factory_runs(&path)?).as_ref() == Some(&run);
    Ok(GateSent {
        run: run.to_string(),
        task: task.to_owned(),
        decision: label.to_owned(),
        engine_running,
    })
}

#[tool_router(router = run_tools, vis = "pub(super)")]
impl FactoryServer {
    /// Lists a repository's factory runs, newest first, with their phase and
    /// whether an engine works on them now.
    #[tool(annotations(title = "List a repository's runs", read_only_hint = true))]
    async fn list_runs(
        &self,
        Parameters(args): Parameters<RepoArgs>,
    ) -> Result<Json<RunListing>, String> {
        self.blocking(move |paths| list_runs(paths, args)).await
    }

    /// A run's status (default: the repository's newest run): its phase, its
    /// tasks and their states, what waits on a human (gates with their task
    /// ids, questions, conflicts), tokens and cost, and memofab's summary.
    #[tool(annotations(title = "Read a run's status", read_only_hint = true))]
    async fn run_status(
        &self,
        Parameters(args): Parameters<RunStatusArgs>,
    ) -> Result<Json<RunStatus>, String> {
        let gate_tools = self.allow_approve;
        self.blocking(move |paths| {
            run_status(paths, args).map(|mut status| {
                // Point the client at no tool that would refuse it.
                if !gate_tools {
                    for waiting in &mut status.waiting_on_human {
                        waiting.tools.clear();
                    }
                }
                status
            })
        })
        .await
    }

    /// Lets a change held at the gate merge onto mainline. Refused unless
    /// the user's config has `[mcp] allow_approve = true` and the task waits
    /// at the gate; the engine running the run records the decision, with
    /// this client's name.
    #[tool(annotations(
        title = "Approve a gated change",
        read_only_hint = false,
        // It moves mainline: what the gate held back gets merged.
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn approve_gate(
        &self,
        peer: Peer<RoleServer>,
        Parameters(args): Parameters<GateArgs>,
    ) -> Result<Json<GateSent>, String> {
        let by = self.may_decide(&peer)?;
        self.blocking(move |paths| {
            decide(
                paths,
                &args.repo,
                &args.run,
                &args.task,
                GateDecision::Approve,
                &by,
            )
        })
        .await
    }

    /// Sends a change held at the gate back to its coder, with the reason as
    /// feedback. Refused unless the user's config has `[mcp] allow_approve =
    /// true` and the task waits at the gate.
    #[tool(annotations(
        title = "Reject a gated change",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn reject_gate(
        &self,
        peer: Peer<RoleServer>,
        Parameters(args): Parameters<RejectArgs>,
    ) -> Result<Json<GateSent>, String> {
        let by = self.may_decide(&peer)?;
        self.blocking(move |paths| {
            let decision = GateDecision::Reject {
                reason: args.reason,
            };
            decide(paths, &args.repo, &args.run, &args.task, decision, &by)
        })
        .await
    }
}
