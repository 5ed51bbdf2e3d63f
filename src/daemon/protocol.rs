//! What travels over the daemon's Unix socket: one JSON object per line.
//! A client sends a [`Request`]; the daemon answers with [`Reply`] lines.
//! An attached cockpit keeps the connection: the daemon streams the run's
//! [`EngineUpdate`]s, the cockpit sends [`Command`]s, the same protocol the
//! in-process engine and cockpit speak.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::domain::RunId;
use crate::protocol::{Command, EngineUpdate};

/// Client → daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The queue or the repositories changed: look again now.
    Wake,
    /// What the daemon is doing.
    Status,
    /// Follow the run of the repository at `repo` (a path inside it):
    /// the stored events first, then live updates, until the client leaves.
    Attach { repo: PathBuf },
    /// A command for the attached run (only after `Attach`).
    Command(Command),
    /// Stop serving (runs are interrupted and resume at the next start).
    Shutdown,
}

/// Daemon → client.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Ok,
    Status(DaemonStatus),
    /// Attached; `run` is the run followed, or none while the repository
    /// waits for its next queued requirement.
    Attached {
        run: Option<RunId>,
    },
    /// One update of the attached run.
    Update(EngineUpdate),
    /// The request was refused; nothing changed.
    Error {
        message: String,
    },
}

/// What the daemon is doing, for `memofab queue` and MCP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    /// Runs under way, one per repository at most.
    pub runs: Vec<LiveRunStatus>,
    /// Where incidents are accepted, if anywhere.
    pub intake: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveRunStatus {
    pub repo: String,
    pub run: RunId,
    pub requirement: crate::domain::queue::RequirementId,
    /// Cockpits attached now.
    pub attached: usize,
}
