//! Tools from MCP servers for an agent. The servers configured under
//! `[mcp.servers]` start with an agent whose toolbox names them, fenced in
//! its worktree like its commands ([`crate::effects::mcp_client`]); their
//! tools are offered to the model as `mcp__<server>__<tool>` and recorded in
//! its transcript (`McpToolsListed`); they stop when the agent ends.
//!
//! The agent's own rules hold for them:
//! - a server that does not start or list its tools is recorded and left
//!   out, and the agent goes on without it;
//! - a call whose arguments hold a command the deny-list refuses, or name a
//!   path the agent may not write (`.git`, `.memofab`, what the policy
//!   denies, a tester's locked tests), is refused before it reaches the
//!   server: a courtesy, like the deny-list;
//! - the guarantees are elsewhere: the fence keeps a server's writes inside
//!   the worktree, and what it changes there is committed and checked
//!   against the policy like any edit (`pipeline::commit_and_check`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, join_all};

use super::error::EngineResult;
use super::recorder::Recorder;
use super::tools::{Arguments, Call, Tool, ToolBox, ToolLimits, ToolOutcome};
use crate::config::McpServerConfig;
use crate::domain::event::McpToolsListed;
use crate::domain::mcp::{McpServerListing, tool_name, unusable_tool_name};
use crate::domain::{AgentId, EventKind};
use crate::effects::mcp_client::McpClient;
use crate::llm::ToolSpec;

/// How long a server has to start, shake hands and list its tools.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest string argument read as a path for the write check.
const MAX_PATH_ARGUMENT: usize = 4096;

/// The MCP tools one agent was given, and the servers behind them.
pub struct McpTools {
    servers: Vec<(String, McpClient)>,
    /// Offered name → the server (an index into `servers`) and its tool.
    routes: BTreeMap<String, (usize, String)>,
    specs: Vec<ToolSpec>,
    /// The agent's toolbox, whose limits and write rules calls keep to.
    toolbox: Option<Arc<ToolBox>>,
}

impl McpTools {
    /// No MCP tools.
    pub fn none() -> Self {
        Self {
            servers: Vec::new(),
            routes: BTreeMap::new(),
            specs: Vec::new(),
            toolbox: None,
        }
    }

    /// Starts the servers `toolbox` names, for `agent`, and records what the
    /// agent was given. No toolbox, or one naming no server: no tools.
    pub async fn start(
        recorder: &Recorder,
        agent: &AgentId,
        toolbox: Option<&Arc<ToolBox>>,
    ) -> EngineResult<Self> {
        let Some(toolbox) = toolbox.filter(|t| !t.mcp_servers().is_empty()) else {
            return Ok(Self::none());
        };
        let (tools, servers) = Self::connect(toolbox).await;
        recorder
            .record(EventKind::McpToolsListed(McpToolsListed {
                agent: agent.clone(),
                servers,
            }))
            .await?;
        Ok(tools)
    }

    /// Starts every server at once; those that fail are only listed.
    async fn connect(toolbox: &Arc<ToolBox>) -> (Self, Vec<McpServerListing>) {
        let (root, limits) = (toolbox.root(), toolbox.limits());
        let started = join_all(
            toolbox
                .mcp_servers()
                .iter()
                .map(|(name, server)| async move { (name, spawn(server, root, limits).await) }),
        )
        .await;
        let mut tools = Self {
            toolbox: Some(toolbox.clone()),
            ..Self::none()
        };
        let listings = started
            .into_iter()
            .map(|(name, started)| match started {
                Ok(client) => tools.add(name, client),
                Err(error) => McpServerListing {
                    server: name.clone(),
                    tools: Vec::new(),
                    skipped: Vec::new(),
                    error: Some(error),
                },
            })
            .collect();
        (tools, listings)
    }

    /// Offers the tools of `client`, each under a name providers accept.
    fn add(&mut self, server: &str, client: McpClient) -> McpServerListing {
        let index = self.servers.len();
        let mut listing = McpServerListing {
            server: server.to_owned(),
            tools: Vec::new(),
            skipped: Vec::new(),
            error: None,
        };
        for tool in client.tools() {
            let name = tool_name(server, &tool.name);
            if let Some(why) = unusable_tool_name(&name) {
                listing.skipped.push(why);
                continue;
            }
            if self.routes.contains_key(&name) {
                listing.skipped.push(format!("{name} is offered already"));
                continue;
            }
            let description = tool
                .description
                .as_deref()
                .filter(|d| !d.trim().is_empty())
                .map_or_else(
                    || format!("{} of the MCP server {server}.", tool.name),
                    str::to_owned,
                );
            self.specs.push(ToolSpec {
                name: name.clone(),
                description,
                parameters: serde_json::Value::Object((*tool.input_schema).clone()),
            });
            self.routes
                .insert(name.clone(), (index, tool.name.to_string()));
            listing.tools.push(name);
        }
        self.servers.push((server.to_owned(), client));
        listing
    }

    /// The tools to offer the model.
    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    pub fn offers(&self, name: &str) -> bool {
        self.routes.contains_key(name)
    }

    /// The tools to offer, each an adapter behind [`Tool`].
    pub fn tools(&self) -> impl Iterator<Item = McpTool<'_>> {
        self.specs.iter().map(|spec| McpTool { tools: self, spec })
    }

    /// Runs one call: `(ok, output for the model)`. Every failure is an
    /// answer the model can act on.
    pub async fn call(&self, name: &str, raw: &str) -> (bool, String) {
        self.call_with(name, &Arguments::parse(raw)).await
    }

    async fn call_with(&self, name: &str, given: &Arguments<'_>) -> (bool, String) {
        let (Some((index, tool)), Some(toolbox)) = (self.routes.get(name), &self.toolbox) else {
            return (false, format!("There is no tool named {name:?}."));
        };
        let Some((server, client)) = self.servers.get(*index) else {
            return (false, format!("There is no tool named {name:?}."));
        };
        let arguments = if given.is_empty() {
            None
        } else {
            match given.value() {
                Ok(serde_json::Value::Object(map)) => Some(map.clone()),
                _ => {
                    return (
                        false,
                        format!(
                            "the arguments of {name} could not be read; send one JSON object matching its schema"
                        ),
                    );
                }
            }
        };
        if let Some(args) = &arguments {
            // The check looks at the worktree: off the async threads.
            let (toolbox, args) = (toolbox.clone(), serde_json::Value::Object(args.clone()));
            let refusal = tokio::task::spawn_blocking(move || refused(&toolbox, &args))
                .await
                .unwrap_or_else(|e| Some(format!("its arguments could not be checked: {e}")));
            if let Some(refusal) = refusal {
                return (false, format!("{name} was not called: {refusal}"));
            }
        }
        let limits = toolbox.limits();
        match client.call(tool, arguments, limits.command_timeout).await {
            Ok(outcome) => {
                let (text, _) =
                    crate::effects::process::cap(outcome.text.as_bytes(), limits.output_cap);
                (!outcome.is_error, text)
            }
            Err(e) => (false, format!("the MCP server {server} failed: {e}")),
        }
    }

    /// Stops every server, waiting for each to exit.
    pub async fn shutdown(self) {
        join_all(
            self.servers
                .into_iter()
                .map(|(_, client)| client.shutdown()),
        )
        .await;
    }
}

/// One tool of an MCP server, as the agent is offered it.
pub struct McpTool<'a> {
    tools: &'a McpTools,
    spec: &'a ToolSpec,
}

impl Tool for McpTool<'_> {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn call<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, EngineResult<ToolOutcome>> {
        Box::pin(async move {
            let (ok, text) = self.tools.call_with(&self.spec.name, call.arguments).await;
            Ok(ToolOutcome::Output { ok, text })
        })
    }
}

async fn spawn(
    server: &McpServerConfig,
    root: &Path,
    limits: &ToolLimits,
) -> Result<McpClient, String> {
    McpClient::spawn(
        &server.command,
        &server.args,
        &server.env,
        root,
        &limits.isolation,
        START_TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())
}

/// Why a call with `arguments` is refused, if it is: any string in them
/// that the deny-list refuses as a command, or that names a path the agent
/// may not write.
fn refused(toolbox: &ToolBox, arguments: &serde_json::Value) -> Option<String> {
    match arguments {
        serde_json::Value::String(text) => {
            if let Some(denied) = super::deny_list::denied(text, &toolbox.limits().deny_commands) {
                return Some(format!(
                    "its arguments hold {denied:?}, which is not allowed here; the factory commits and merges for you"
                ));
            }
            let path_like = !text.is_empty()
                && text.len() <= MAX_PATH_ARGUMENT
                && !text.contains(char::is_whitespace);
            path_like.then(|| toolbox.refused_write(text)).flatten()
        }
        serde_json::Value::Array(items) => items.iter().find_map(|v| refused(toolbox, v)),
        serde_json::Value::Object(map) => map.values().find_map(|v| refused(toolbox, v)),
        _ => None,
    }
}

#[cfg(test)]
#[path = "mcp_tools_tests.rs"]
mod tests;
