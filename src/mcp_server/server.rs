//! The MCP server: what it tells a client about this factory, its tools
//! (from [`super::queue_tools`] and [`super::run_tools`]), and serving them
//! over stdio until the client goes away.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::{Peer, RoleServer};
use rmcp::{Json, ServerHandler, ServiceExt, tool_handler};

use super::error::{ToolError, ToolResult};
use crate::daemon::DaemonPaths;
use crate::domain::Decider;

/// What a client reads first: what the factory does and how to drive it.
pub const INSTRUCTIONS: &str = "\
memofab is an autonomous software factory. Requirements go in, merged work comes out: \
for each requirement a planner writes a blueprint of tasks, coding agents build them in \
git worktrees, a reviewer and the project's tests check each change, and what passes is \
merged to the repository's mainline. Every step is recorded, so a run can be read back.

Repositories are registered with the factory (list_repositories). submit_requirement puts \
a requirement on a repository's queue; the factory's daemon (`memofab serve`) runs each \
repository's queue in priority order, one run at a time per repository. list_queue shows \
what waits and what runs; list_runs and run_status show a repository's runs: their phase, \
tasks, what waits on a human, tokens and cost, and the summary memofab prints.

Changes to risky paths (as the project's policy says) stop at a gate instead of merging: \
run_status lists them under waiting_on_human with their task ids. approve_gate lets such a \
change merge; reject_gate sends it back to its coder with a reason. Both only leave the \
decision for the engine running the run (or resuming it), after checking the task waits at \
the gate, and are refused unless the user allowed MCP clients to decide gates \
(`[mcp] allow_approve = true` in their memofab config); the decision is recorded with this \
client's name. Other waits (questions, conflicts, budgets) are decided in memofab's cockpit.";

/// The factory's MCP server: the daemon's queue and the registered
/// repositories' stores, read and written by the same functions as the CLI.
#[derive(Clone)]
pub struct FactoryServer {
    paths: Arc<DaemonPaths>,
    /// The user's `[mcp] allow_approve`: clients may decide gates.
    pub(super) allow_approve: bool,
    tools: ToolRouter<Self>,
}

impl FactoryServer {
    /// `allow_approve` comes from the user's own config file, never a
    /// project's: a project's files are what agents write and merge.
    pub fn new(paths: DaemonPaths, allow_approve: bool) -> Self {
        Self {
            paths: Arc::new(paths),
            allow_approve,
            tools: Self::queue_tools() + Self::run_tools(),
        }
    }

    /// Who decides a gate through this server: the client by the name it
    /// gave at `initialize`; refused unless the user allowed MCP approvals.
    pub(super) fn may_decide(&self, peer: &Peer<RoleServer>) -> Result<Decider, String> {
        if !self.allow_approve {
            tracing::info!("an MCP client tried to decide a gate; [mcp] allow_approve is off");
            return Err(ToolError::ApprovalsOff.to_string());
        }
        let name = peer
            .peer_info()
            .map(|info| info.client_info.name.clone())
            .unwrap_or_default();
        Ok(Decider::mcp_client(&name))
    }

    /// Runs a tool's work where blocking is fine (SQLite, git, the daemon's
    /// socket) and hands its refusal to the client as the tool's error.
    pub(super) async fn blocking<T, F>(&self, work: F) -> Result<Json<T>, String>
    where
        T: Send + 'static,
        F: FnOnce(&DaemonPaths) -> ToolResult<T> + Send + 'static,
    {
        let paths = Arc::clone(&self.paths);
        let result = tokio::task::spawn_blocking(move || work(&paths))
            .await
            .unwrap_or_else(|e| Err(ToolError::Stopped(e.to_string())));
        result.map(Json).map_err(|e| {
            tracing::info!(error = %e, "an MCP tool refused");
            e.to_string()
        })
    }
}

#[tool_handler(router = self.tools)]
impl ServerHandler for FactoryServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("memofab", env!("CARGO_PKG_VERSION"))
                    .with_title("memofab software factory")
                    .with_description(
                        "Requirements in, merged work out, with gates for risky paths.",
                    ),
            )
            .with_instructions(INSTRUCTIONS)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Boxed: the SDK's error is large, and this one is returned once.
    #[error("the MCP client did not complete the handshake: {0}")]
    Start(Box<rmcp::service::ServerInitializeError>),
    #[error("the MCP server stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

/// Serves MCP on stdin/stdout until the client closes them.
pub async fn serve_stdio(paths: DaemonPaths, allow_approve: bool) -> Result<(), ServeError> {
    let io = super::framing::checked(tokio::io::stdin(), tokio::io::stdout());
    let running = FactoryServer::new(paths, allow_approve)
        .serve((io.reader, io.writer))
        .await
        .map_err(|e| ServeError::Start(Box::new(e)))?;
    let reason = running.waiting().await?;
    tracing::info!(?reason, "the MCP client left");
    // The last answers may still be on their way to stdout. A stdin still
    // open (the service stopped for another reason) keeps the writer alive,
    // so the wait is bounded.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), io.drained).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_input_schema_and_the_info_names_the_gates() {
        let server =
            FactoryServer::new(DaemonPaths::in_dir(std::path::Path::new("/nowhere")), false);
        let mut names: Vec<String> = server
            .tools
            .list_all()
            .iter()
            .map(|t| {
                assert_eq!(
                    t.input_schema.get("type").and_then(|v| v.as_str()),
                    Some("object"),
                    "{}",
                    t.name
                );
                assert!(t.description.is_some(), "{}", t.name);
                t.name.to_string()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "approve_gate",
                "list_queue",
                "list_repositories",
                "list_runs",
                "reject_gate",
                "run_status",
                "submit_requirement"
            ]
        );
        let info = server.get_info();
        assert!(info.capabilities.tools.is_some());
        assert!(
            info.instructions
                .is_some_and(|i| i.contains("approve_gate"))
        );
    }
}
