//! Events of agents: their conversations, tool calls, token use, waits on
//! providers, compaction, MCP tools and questions to a human.

use serde::{Deserialize, Serialize};

use crate::domain::ids::{AgentId, AgentRole, TaskId};
use crate::domain::mcp::McpServerListing;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Every prompt token, cached or not.
    pub input: u64,
    pub output: u64,
    /// Of `input`, the tokens read from the provider's prompt cache.
    #[serde(default)]
    pub cached: u64,
    /// Of `input`, the tokens written to the prompt cache (Anthropic bills
    /// them above the input price).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TokenUsage {
    pub fn total(&self) -> u64 {
        self.input + self.output
    }

    pub fn add(&mut self, other: TokenUsage) {
        self.input += other.input;
        self.output += other.output;
        self.cached += other.cached;
        self.cache_write += other.cache_write;
    }
}

/// Who wrote a conversation message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageAuthor {
    System,
    User,
    Assistant,
    /// The assistant's reasoning before its answer (reasoning models).
    Thinking,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStarted {
    pub agent: AgentId,
    pub role: AgentRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    pub model: String,
}

/// A complete user or assistant message of an agent's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentMessage {
    pub agent: AgentId,
    pub from: MessageAuthor,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCalled {
    pub agent: AgentId,
    pub call_id: String,
    pub tool: String,
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    pub agent: AgentId,
    pub call_id: String,
    pub ok: bool,
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokensUsed {
    pub agent: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    pub model: String,
    pub usage: TokenUsage,
    /// What the usage cost at the model's configured price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentFinished {
    pub agent: AgentId,
    pub ok: bool,
    pub summary: String,
}

/// The agent waits for its provider's rate or usage limit to pass. It
/// resumes by itself at `until_ms`; it has not failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentParked {
    pub agent: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// The provider's config name.
    pub provider: String,
    /// Unix ms when the agent asks again.
    pub until_ms: u64,
    /// e.g. `rate limited by openai: Rate limit reached for gpt-4o`.
    pub reason: String,
}

/// The agent's conversation neared its model's context window and was
/// compacted: old tool results replaced by one-line stubs, then the
/// oldest turns summarised into a note the agent keeps (`note`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextCompacted {
    pub agent: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// The model's context window, in tokens.
    pub context_tokens: u64,
    /// The prompt's estimated size before and after.
    pub before_tokens: u64,
    pub after_tokens: u64,
    /// Tool results replaced by stubs.
    pub stubbed: u32,
    /// Messages folded into the note.
    pub summarised: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The model's reply broke off mid-stream with an error the server sent
/// after answering 200 (OpenAI's `data: {"error": …}`, Anthropic's
/// `event: error`, overloaded): the agent asks again after a back-off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyBrokenOff {
    pub agent: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// How many times this request has broken off in a row.
    pub attempt: u32,
    /// What the server said, e.g. `529: Overloaded`.
    pub reason: String,
}

/// The park is over; the agent asks the model again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentUnparked {
    pub agent: AgentId,
}

/// The tools an agent was given from the configured MCP servers, and
/// the servers that gave none; recorded right after `AgentStarted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolsListed {
    pub agent: AgentId,
    pub servers: Vec<McpServerListing>,
}

/// An agent asked the human a question (its `ask_human` tool) and waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionAsked {
    pub agent: AgentId,
    pub call_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    pub question: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionAnswered {
    pub agent: AgentId,
    pub call_id: String,
    pub answer: String,
    pub by: String,
}
