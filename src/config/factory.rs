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
    /// `X-Memofab-Secret` header (or a fresh Sentry signature made with it).
    /// Without it, `serve --intake` refuses to start unless given
    /// `--intake-insecure` on a loopback address.
    pub intake_secret: Option<String>,
    /// Connections the intake serves at once; past it, the oldest one still
    /// sending its request is dropped, or the new one refused.
    pub intake_max_connections: usize,
    /// An incident whose fingerprint a run fixed within this many days is not
    /// queued again.
    pub recent_fix_days: u32,
    /// With the queue on PostgreSQL: how long a daemon's hold on an entry
    /// lasts unless renewed (it renews every third of it). A daemon killed
    /// or cut off loses its entries this long after its last renewal; then
    /// another daemon takes them over and resumes their runs.
    pub lease_secs: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            max_agents: 4,
            intake_secret: None,
            intake_max_connections: 16,
            recent_fix_days: 7,
            lease_secs: 30,
        }
    }
}

/// `[overseer]`: when the daemon runs the overseer by itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverseerConfig {
    /// A local wall-clock time, `HH:MM`: each day at this time the daemon
    /// reviews the runs since its last review and puts the proposals in the
    /// inbox. Unset: no scheduled review.
    pub schedule: Option<crate::domain::overseer::DailyTime>,
}

/// `[mcp]`: MCP servers (stdio) whose tools agents are given, and what
/// clients of `memofab mcp` may do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    pub servers: BTreeMap<String, McpServerConfig>,
    /// Clients of `memofab mcp` may approve and reject gates. Off by
    /// default; read from the user's config file only.
    pub allow_approve: bool,
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

impl McpConfig {
    /// The first server whose name cannot be part of its tools' names
    /// (`mcp__NAME__tool`), or that names no program.
    pub(super) fn problem(&self) -> Option<super::Problem> {
        self.servers.iter().find_map(|(name, server)| {
            if name.is_empty() || !name.chars().all(crate::domain::mcp::is_name_char) {
                return Some(super::Problem::new(
                    &["mcp", "servers", name],
                    format!(
                        "mcp.servers.{name:?}: a server's name becomes part of its tools' names \
                         (mcp__NAME__tool), so it may hold only letters, digits, '_' and '-'"
                    ),
                ));
            }
            server.command.trim().is_empty().then(|| {
                super::Problem::new(
                    &["mcp", "servers", name, "command"],
                    format!(
                        "mcp.servers.{name}.command is empty: name the program that serves MCP \
                         over its standard input and output"
                    ),
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use crate::domain::overseer::DailyTime;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("project.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&[path])
    }

    #[test]
    fn mcp_servers_are_read_with_args_and_env() {
        let config = load(
            "[mcp.servers.files]\ncommand = \"files-mcp\"\nargs = [\"--root\", \".\"]\n\
             env = { LEVEL = \"debug\" }\n",
        )
        .unwrap();
        let files = &config.mcp.servers["files"];
        assert_eq!(files.command, "files-mcp");
        assert_eq!(files.args, ["--root", "."]);
        assert_eq!(files.env["LEVEL"], "debug");
    }

    #[test]
    fn unusable_server_names_and_empty_commands_are_refused_in_their_file() {
        for text in [
            "[mcp.servers.\"a.b\"]\ncommand = \"x\"\n",
            "[mcp.servers.\"with space\"]\ncommand = \"x\"\n",
            "[mcp.servers.\"\"]\ncommand = \"x\"\n",
            "[mcp.servers.ok]\ncommand = \"  \"\n",
        ] {
            match load(text) {
                Err(ConfigError::Parse { path, .. }) => {
                    assert!(path.ends_with("project.toml"), "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(load("[mcp.servers.my-server_2]\ncommand = \"x\"\n").is_ok());
        assert!(load("[mcp.servers.x]\ncommand = \"x\"\ncmd = \"y\"\n").is_err());
    }

    #[test]
    fn a_daemon_with_no_agent_slot_is_refused_in_its_file() {
        match load("[daemon]\nmax_agents = 0\n") {
            Err(ConfigError::Parse { path, .. }) => assert!(path.ends_with("project.toml")),
            other => panic!("max_agents = 0 is refused: {other:?}"),
        }
        assert_eq!(
            load("[daemon]\nmax_agents = 1\n")
                .unwrap()
                .daemon
                .max_agents,
            1
        );
    }

    #[test]
    fn the_daemon_lease_is_thirty_seconds_unless_set() {
        assert_eq!(super::DaemonConfig::default().lease_secs, 30);
        assert_eq!(
            load("[daemon]\nlease_secs = 3\n")
                .unwrap()
                .daemon
                .lease_secs,
            3
        );
        assert!(load("[daemon]\nlease_secs = -1\n").is_err());
    }

    #[test]
    fn the_overseer_schedule_is_a_time_of_day_checked_where_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "[overseer]\nschedule = \"02:30\"\n").unwrap();
        let config = Config::load(std::slice::from_ref(&file)).unwrap();
        assert_eq!(config.overseer.schedule, DailyTime::new(2, 30));
        assert_eq!(Config::default().overseer.schedule, None);

        std::fs::write(
            &file,
            "[run]\nconcurrency = 2\n\n[overseer]\nschedule = \"25:00\"\n",
        )
        .unwrap();
        let err = Config::load(std::slice::from_ref(&file))
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.toml:5:"), "{err}");
        assert!(err.contains("25:00"), "{err}");
    }
}
