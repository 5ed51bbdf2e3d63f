//! Errors of the engine: which effect failed, with what context.

use crate::domain::{TaskId, TaskState, TransitionError};
use crate::effects::file_fence::SandboxError;
use crate::effects::git::GitError;
use crate::effects::process::ProcessError;
use crate::effects::store::StoreError;
use crate::llm::LlmError;
use crate::llm::scenario::ScenarioError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("git: {0}")]
    Git(#[from] GitError),
    /// Git work on one task's worktree failed: likely over what the task's
    /// own commands left there (files in the way of a merge, say). The task
    /// fails with this reason; the run goes on.
    #[error("git, in the worktree of {task}: {source}")]
    TaskWorktree { task: TaskId, source: GitError },
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("LLM: {0}")]
    Llm(#[from] LlmError),
    #[error("state machine refused an event: {0}")]
    Transition(#[from] TransitionError),
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("process: {0}")]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Isolation(#[from] crate::effects::isolation::IsolationError),
    #[error(transparent)]
    Policy(#[from] crate::domain::policy::PolicyError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("unknown task {0}")]
    UnknownTask(TaskId),
    /// A run was asked about in a repository memofab never ran in.
    #[error("no memofab store at {}; run memofab in this repository first", .0.display())]
    NoStore(std::path::PathBuf),
    #[error("a rejection's reason must say what the coder should change")]
    RejectionWithoutReason,
    /// A gate decision for a task that does not wait at the gate.
    #[error("task {task} is {state}, not waiting at the gate")]
    NotAtGate { task: TaskId, state: TaskState },
    #[error("run {0} not found in this repository's store")]
    UnknownRun(String),
    /// A shared store (PostgreSQL) holds the runs of many repositories.
    #[error(
        "run {run} was recorded in another repository ({repo}): its base commit {base} is not in this one; resume it there"
    )]
    OtherRepository {
        run: String,
        repo: String,
        base: String,
    },
    #[error(
        "the requirement is {size} bytes, over the limit of {limit} (run.max_requirement_bytes in the config); shorten it or raise the limit"
    )]
    RequirementTooLarge { size: usize, limit: usize },
    #[error(
        "the requirement is about {tokens} tokens; the planner ({model}, a context window of {context_tokens} tokens) has room for about {room} beside its prompt and reply; shorten it, or give the planner a model with a larger window (context_tokens in the provider's config)"
    )]
    RequirementTooLong {
        tokens: u64,
        room: u64,
        model: String,
        context_tokens: u64,
    },
    #[error("the repository is not ready for a run: {0}")]
    Preflight(String),
    /// Another engine holds the repository's lock: whatever was asked
    /// (a run, `clean`) must wait for it.
    #[error(
        "another memofab (pid {pid}) is working in this repository; wait for it or stop it first"
    )]
    Busy { pid: u32 },
    /// A file memofab reads is wrong; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// An overseer proposal that cannot be applied, and why.
    #[error("cannot apply the proposal: {0}")]
    Proposal(String),
    #[error("the prompt for {role} is missing: {detail}")]
    Prompt { role: String, detail: String },
    #[error("a background job failed: {0}")]
    Join(String),
    #[error("the engine was shut down")]
    Shutdown,
}

impl EngineError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| EngineError::Io { context, source }
    }
}

pub type EngineResult<T> = std::result::Result<T, EngineError>;
