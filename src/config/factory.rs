//! Config sections of the long-running factory: the daemon, the overseer's
//! schedule and the MCP servers whose tools agents may be given.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[daemon]`: what `memofab serve` shares across the repositories it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Agents working at once across every repository the daemon runs (each
    /// run still keeps to its own `run.concurrency`).
    pub max_agents: usize,
    /// The incident intake refuses a request without this value in its
    /// `X-Memofab-Secret` header (or a Sentry signature made with it).
    pub intake_secret: Option<String>,
    /// An incident whose fingerprint a run fixed within this many days is not
    /// queued again.
    pub recent_fix_days: u32,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            max_agents: 4,
            intake_secret: None,
            recent_fix_days: 7,
        }
    }
}

/// `[overseer]`: when the daemon runs the overseer by itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverseerConfig {
    /// A local wall-clock time, `HH:MM`: each day at this time the daemon
    /// reviews the day's runs and puts the proposals in the inbox.
    pub schedule: Option<String>,
}

/// `[mcp]`: MCP servers (stdio) whose tools agents are given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    pub servers: BTreeMap<String, McpServerConfig>,
}

/// One MCP server, started as a child process speaking MCP over stdio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}
