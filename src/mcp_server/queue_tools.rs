//! Tools over the daemon's queue: submit a requirement, list the queue, list
//! the registered repositories. They write the queue's store directly, as
//! `memofab submit` does, and wake a running daemon to look again.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::schemars::JsonSchema;
use rmcp::{Json, tool, tool_router};
use serde::{Deserialize, Serialize};

use super::error::ToolResult;
use super::server::FactoryServer;
use crate::daemon::protocol::{Reply, Request};
use crate::daemon::{DaemonPaths, client};
use crate::domain::queue::{ItemState, QueuedRequirement, RegisteredRepo, Source};
use crate::effects::queue::{NewRequirement, Queue};

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct SubmitArgs {
    /// The repository: its registered name (see list_repositories) or a path
    /// inside it.
    pub repo: String,
    /// What to build or fix, in plain words; its first line is its title.
    pub requirement: String,
    /// Higher runs first; equal priorities run in the order submitted
    /// (default 0).
    #[serde(default)]
    pub priority: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ListQueueArgs {
    /// Also list finished and dropped entries (default: only queued and
    /// running ones).
    #[serde(default)]
    pub all: bool,
}

/// One entry of the queue.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct QueueEntry {
    /// The entry's id, like `q12`.
    pub id: String,
    /// The repository's registered name.
    pub repo: String,
    /// queued, running, done, failed or dropped.
    pub state: String,
    pub priority: i64,
    /// Who submitted it: human, incident or mcp.
    pub source: String,
    /// The run working on it, once one started (see run_status).
    pub run: Option<String>,
    /// The requirement's first line.
    pub title: String,
    /// Unix milliseconds.
    pub submitted_ms: u64,
    pub finished_ms: Option<u64>,
}

impl From<&QueuedRequirement> for QueueEntry {
    fn from(e: &QueuedRequirement) -> Self {
        Self {
            id: e.id.to_string(),
            repo: e.repo.clone(),
            state: e.state.as_str().to_owned(),
            priority: e.priority,
            source: e.source.as_str().to_owned(),
            run: e.run.as_ref().map(|r| r.as_str().to_owned()),
            title: e.title(),
            submitted_ms: e.submitted_ms,
            finished_ms: e.finished_ms,
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct Submitted {
    pub entry: QueueEntry,
    /// Whether a daemon (`memofab serve`) is serving and was told; if not,
    /// the entry waits until one starts.
    pub daemon_serving: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct QueueListing {
    /// By repository, running first, then in the order they will run.
    pub entries: Vec<QueueEntry>,
    pub daemon_serving: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct Repository {
    /// The name tools take as `repo`.
    pub name: String,
    pub path: String,
    pub added_ms: u64,
}

impl From<RegisteredRepo> for Repository {
    fn from(r: RegisteredRepo) -> Self {
        Self {
            name: r.name,
            path: r.path.display().to_string(),
            added_ms: r.added_ms,
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct Repositories {
    pub repositories: Vec<Repository>,
}

pub(super) fn open_queue(paths: &DaemonPaths) -> ToolResult<Queue> {
    paths.create_dirs()?;
    Ok(Queue::open(&paths.queue)?)
}

pub fn submit(paths: &DaemonPaths, args: SubmitArgs) -> ToolResult<Submitted> {
    let mut queue = open_queue(paths)?;
    let entry = crate::daemon::submit::submit(
        &mut queue,
        NewRequirement {
            repo: args.repo,
            requirement: args.requirement,
            priority: args.priority,
            source: Source::Mcp,
            fingerprint: None,
        },
    )?;
    tracing::info!(entry = %entry.id, repo = %entry.repo, "queued over MCP");
    Ok(Submitted {
        entry: QueueEntry::from(&entry),
        daemon_serving: client::wake(paths),
    })
}

pub fn list_queue(paths: &DaemonPaths, args: ListQueueArgs) -> ToolResult<QueueListing> {
    let queue = open_queue(paths)?;
    let states: &[ItemState] = if args.all {
        &[]
    } else {
        &[ItemState::Queued, ItemState::Running]
    };
    let entries = queue
        .entries(states)?
        .iter()
        .map(QueueEntry::from)
        .collect();
    let daemon_serving = matches!(
        client::request(paths, &Request::Status),
        Some(Reply::Status(_))
    );
    Ok(QueueListing {
        entries,
        daemon_serving,
    })
}

pub fn list_repositories(paths: &DaemonPaths) -> ToolResult<Repositories> {
    let repositories = open_queue(paths)?
        .repos()?
        .into_iter()
        .map(Repository::from)
        .collect();
    Ok(Repositories { repositories })
}

#[tool_router(router = queue_tools, vis = "pub(super)")]
impl FactoryServer {
    /// Puts a requirement on a registered repository's queue; the factory's
    /// daemon runs it when the repository's turn comes.
    #[tool(annotations(
        title = "Submit a requirement",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn submit_requirement(
        &self,
        Parameters(args): Parameters<SubmitArgs>,
    ) -> Result<Json<Submitted>, String> {
        self.blocking(move |paths| submit(paths, args)).await
    }

    /// Lists the queue of requirements across repositories: what waits, in
    /// the order it will run, and what runs now.
    #[tool(annotations(title = "List the queue", read_only_hint = true))]
    async fn list_queue(
        &self,
        Parameters(args): Parameters<ListQueueArgs>,
    ) -> Result<Json<QueueListing>, String> {
        self.blocking(move |paths| list_queue(paths, args)).await
    }

    /// Lists the repositories the factory works in, by the name other tools
    /// take as `repo`.
    #[tool(annotations(title = "List the repositories", read_only_hint = true))]
    async fn list_repositories(&self) -> Result<Json<Repositories>, String> {
        self.blocking(list_repositories).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requirement_no_run_would_take_is_refused_and_nothing_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DaemonPaths::in_dir(&dir.path().join("home"));
        let repo = dir.path().join("shop");
        std::fs::create_dir_all(repo.join(".memofab")).unwrap();
        std::fs::write(
            repo.join(".memofab/config.toml"),
            "[run]\nmax_requirement_bytes = 100\n",
        )
        .unwrap();
        Queue::open(&paths.queue)
            .unwrap()
            .add_repo(&repo, None)
            .unwrap();
        let submit_text = |requirement: String| {
            submit(
                &paths,
                SubmitArgs {
                    repo: "shop".into(),
                    requirement,
                    priority: 0,
                },
            )
        };
        assert!(submit_text("x".repeat(101)).is_err());
        assert!(open_queue(&paths).unwrap().entries(&[]).unwrap().is_empty());
        assert!(submit_text("x".repeat(100)).is_ok());
        assert_eq!(open_queue(&paths).unwrap().entries(&[]).unwrap().len(), 1);
    }
}
