//! Provider-neutral request, message and stream types.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::config::model_options::{
    DEFAULT_LOCAL_MAX_REPLY_TOKENS, DEFAULT_MAX_REPLY_TOKENS, DEFAULT_MAX_TOOL_CALLS,
    ReasoningEffort, ReplyLimits, TextToolCalls,
};
use crate::domain::{AgentRole, TaskId, TokenUsage};

/// A message of the conversation after the system prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    User {
        content: String,
    },
    Assistant {
        content: String,
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
    },
    ToolResult {
        call_id: String,
        content: String,
        #[serde(default)]
        is_error: bool,
    },
}

/// A tool call as the model produced it. `arguments` stays raw JSON text:
/// models do emit invalid JSON, and the agent must be able to say so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool offered to the model, described by a JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// Which scripted conversation a request belongs to. Real providers ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScriptKey {
    pub role: AgentRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// Plan round for the planner and plan reviewer, attempt for task agents.
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub model: String,
    pub system: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    /// How hard a reasoning model thinks; `None` leaves it to the provider's
    /// config, then to the server.
    pub reasoning_effort: Option<ReasoningEffort>,
    pub script: ScriptKey,
}

/// One piece of a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    TextDelta(String),
    /// The model's reasoning ("thinking"), shown apart from the answer and
    /// never sent back to it.
    ReasoningDelta(String),
    /// A new tool call begins at `index` (the provider's own numbering).
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    /// More of the JSON arguments of the tool call at `index`.
    ToolCallArgs {
        index: usize,
        fragment: String,
    },
    Usage(TokenUsage),
    Finished(FinishReason),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    ToolCalls,
    Length,
    Other(String),
}

/// A whole reply, assembled from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    /// Reasoning text, if the model streamed any.
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: FinishReason,
    pub usage: TokenUsage,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("the provider refused the credentials (HTTP {status}): {message}")]
    Auth { status: u16, message: String },
    #[error("the provider does not know this model or endpoint (HTTP {status}): {message}")]
    NotFound { status: u16, message: String },
    #[error("rate limited (HTTP 429): {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("the provider failed (HTTP {status}): {message}")]
    Server {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("the provider rejected the request (HTTP {status}): {message}")]
    BadRequest { status: u16, message: String },
    #[error("could not reach the provider: {0}")]
    Connect(String),
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("the reply stream was malformed: {0}")]
    Protocol(String),
    #[error("the reply stream ended before the reply was complete")]
    Truncated,
    #[error("the provider reported an error in the stream: {0}")]
    Stream(String),
    /// A server error reported inside a streamed reply (after HTTP 200):
    /// Anthropic's `overloaded_error`, llama.cpp's 500s. Retried after a
    /// back-off through the provider's governor, like a 5xx.
    #[error("the provider failed mid-reply ({status}): {message}")]
    StreamServer { status: u16, message: String },
    #[error("scripted scenario: {0}")]
    Script(String),
    #[error("provider configuration: {0}")]
    Config(String),
}

impl LlmError {
    /// Worth retrying the same request after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::RateLimited { .. }
                | LlmError::Server { .. }
                | LlmError::StreamServer { .. }
                | LlmError::Connect(_)
                | LlmError::Timeout
        )
    }

    /// What the server asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } | LlmError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The reply was cut or garbled; asking again may well succeed.
    pub fn is_garbled(&self) -> bool {
        matches!(
            self,
            LlmError::Protocol(_) | LlmError::Truncated | LlmError::Stream(_)
        )
    }
}
