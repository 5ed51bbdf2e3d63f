//! One agent conversation: ask the model, run the tools it calls, feed the
//! results back, until it finishes or submits its result. Every message, tool
//! call, result and token count is recorded as an event; streaming text goes
//! to the front end only.
//!
//! Here: the job, its outcome and the runner, which carries a conversation
//! over to a fresh agent when the shepherd replaces it. The loop is in
//! `conversation`, the model requests under the governor in `request`, the
//! tool calls in `dispatch`, the context window in `context_window`.

mod brief;
mod context_window;
mod conversation;
mod dispatch;
mod own_words;
mod repeated_reads;
mod request;
mod review;
mod whole_writes;

/// What a call past the reply's limit is answered.
pub const IGNORED_CALL: &str = "ignored: too many calls in one reply";

pub(crate) use context_window::FALLBACK_CONTEXT_TOKENS;
pub use review::{Review, code_review_tool, plan_review_tool, review_tool};

use std::sync::Arc;

use super::error::EngineResult;
use super::mcp_tools::McpTools;
use super::prompts::Prompt;
use super::recorder::Recorder;
use super::shepherd::{self, Shepherd};
pub use super::tools::SubmitTool;
use super::tools::{ToolBox, WorktreeTool, WriteFile};
use crate::domain::event::{AgentFinished, AgentMessage, AgentStarted, Warning};
use crate::domain::{AgentId, AgentRole, EventKind, MessageAuthor, TaskId};
use crate::llm::governor::Governor;
use crate::llm::{LlmError, LlmProvider, ReplyLimits, ToolSpec};

pub struct AgentJob {
    pub role: AgentRole,
    pub task: Option<TaskId>,
    /// Plan round or coding attempt.
    pub attempt: u32,
    pub prompt: Prompt,
    pub first_message: String,
    /// The worktree and the tools offered on it, if the role has any: the
    /// specs of built-in tools (`ToolBox::specs`), and `ask_human` when a
    /// human is there to answer. The registry is built from their names.
    pub toolbox: Option<(Arc<ToolBox>, Vec<ToolSpec>)>,
    pub submit: Option<SubmitTool>,
}

/// How the model can call it a day.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentOutcome {
    /// `finish` was called.
    Finished { summary: String },
    /// The submit tool was called with arguments that passed its check.
    Submitted { arguments: serde_json::Value },
}

/// The agent stopped without a result. Recorded, and handled by the caller
/// like a rejected attempt; distinct from an engine failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct AgentFailed(pub String);

pub struct AgentRunner {
    pub recorder: Recorder,
    pub provider: Arc<dyn LlmProvider>,
    pub model: String,
    pub max_turns: u32,
    /// Model prices, to record what each reply cost.
    pub prices: Arc<std::collections::BTreeMap<String, crate::config::Price>>,
    /// The provider's quota governor, shared with every agent on it.
    pub governor: Arc<Governor>,
    /// The role's reply cap and how many tool calls one reply may run.
    pub reply: ReplyLimits,
    /// The run's shepherd, watching for stuck work.
    pub shepherd: Arc<shepherd::Desk>,
    /// The small profile's guards: a read repeated with nothing changed in
    /// between is refused (small models loop on one read), and so is a
    /// `write_file` that would drop lines of a file it overwrites (they
    /// rewrite a file from memory). Off otherwise: after a compaction the
    /// earlier answer may no longer be in the conversation, and a large
    /// model's rewrite is deliberate.
    pub small_model_guards: bool,
}

/// Why a model request gave no reply.
enum Unanswered {
    Llm(LlmError),
    /// Parked longer in total than the provider's `max_parked_secs`.
    GaveUp(AgentFailed),
}

impl AgentJob {
    /// Whether the job's worktree tools name `tool`.
    fn offers(&self, tool: &str) -> bool {
        self.toolbox
            .as_ref()
            .is_some_and(|(_, specs)| specs.iter().any(|s| s.name == tool))
    }

    pub fn id(&self) -> AgentId {
        match &self.task {
            Some(task) => AgentId::for_task(self.role, task, self.attempt),
            None => AgentId::for_run(self.role, self.attempt),
        }
    }
}

impl AgentRunner {
    /// Runs the conversation. `Ok(Err(_))` is an agent that gave no result;
    /// `Err(_)` is the engine failing (the store, say).
    /// A conversation the shepherd stops as stuck is carried on by a fresh
    /// agent, told what failed, as a new attempt of the task.
    pub async fn run(&self, mut job: AgentJob) -> EngineResult<Result<AgentOutcome, AgentFailed>> {
        let first_message = job.first_message.clone();
        if let Some(note) = shepherd::note_for(&self.recorder, job.task.as_ref()) {
            job.first_message = format!("{first_message}\n{note}\n");
        }
        loop {
            let agent = job.id();
            self.recorder
                .record(EventKind::AgentStarted(AgentStarted {
                    agent: agent.clone(),
                    role: job.role,
                    task: job.task.clone(),
                    model: self.model.clone(),
                }))
                .await?;
            let toolbox = job.toolbox.as_ref().map(|(toolbox, _)| toolbox);
            let mcp = McpTools::start(&self.recorder, &agent, toolbox).await?;
            self.say(&agent, MessageAuthor::User, &job.first_message)
                .await?;

            let mut shepherd = Shepherd::new(
                self.shepherd.clone(),
                job.role,
                job.task.clone(),
                job.offers(WriteFile::NAME),
            );
            let result = self.converse(&agent, &job, &mcp, &mut shepherd).await;
            // The servers stop with the agent, before its work is committed.
            mcp.shutdown().await;
            let result = result?;
            let (ok, summary) = match &result {
                Ok(AgentOutcome::Finished { summary }) => (true, summary.clone()),
                Ok(AgentOutcome::Submitted { arguments }) => {
                    (true, conversation::submitted_summary(arguments))
                }
                Err(failed) => (false, failed.0.clone()),
            };
            self.recorder
                .record(EventKind::AgentFinished(AgentFinished {
                    agent,
                    ok,
                    summary,
                }))
                .await?;
            let next_attempt = job
                .task
                .as_ref()
                .and_then(|t| shepherd::attempt_of(&self.recorder, t));
            match (shepherd.restart.take(), next_attempt) {
                (Some(summary), Some(attempt)) => {
                    job.attempt = attempt;
                    job.first_message = format!("{first_message}\n{summary}");
                }
                _ => return Ok(result),
            }
        }
    }

    async fn say(&self, agent: &AgentId, from: MessageAuthor, text: &str) -> EngineResult<()> {
        self.recorder
            .record(EventKind::AgentMessage(AgentMessage {
                agent: agent.clone(),
                from,
                text: text.to_owned(),
            }))
            .await?;
        Ok(())
    }

    async fn warn(&self, job: &AgentJob, message: String) -> EngineResult<()> {
        self.recorder
            .record(EventKind::Warning(Warning {
                task: job.task.clone(),
                message,
            }))
            .await?;
        Ok(())
    }
}
