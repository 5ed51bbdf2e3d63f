//! Why a tool refused: the caller reads the message as the tool's error
//! text, so each says what to do instead.

use thiserror::Error;

use crate::daemon::DaemonError;
use crate::effects::queue::QueueError;
use crate::effects::store::StoreError;
use crate::engine::EngineError;

#[derive(Debug, Error)]
pub enum ToolError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("{repo} has no runs yet; submit_requirement queues one")]
    NoRuns { repo: String },
    #[error("{repo} has no run {run}; list_runs lists its runs")]
    UnknownRun { repo: String, run: String },
    #[error(
        "MCP clients may not approve or reject gates here: the user decides them in memofab's \
         cockpit or with `memofab approve`/`reject`, unless they set `[mcp] allow_approve = true` \
         in their own memofab config file"
    )]
    ApprovalsOff,
    /// The blocking work behind a tool panicked or was cancelled.
    #[error("the tool stopped before it finished: {0}")]
    Stopped(String),
}

pub type ToolResult<T> = Result<T, ToolError>;
