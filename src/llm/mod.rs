//! LLM access. Every provider — the offline scripted one and the real HTTP
//! ones — implements [`LlmProvider`] by producing the same stream of
//! [`StreamEvent`]s, so agents cannot tell them apart.

pub mod anthropic;
pub mod assemble;
pub mod bedrock;
pub mod compaction;
pub mod factory;
pub mod governor;
pub mod http;
pub mod local;
pub mod openai;
pub mod pricing;
pub mod probe;
pub mod scenario;
pub mod scripted;
pub mod sse;
pub mod text_calls;
pub mod types;

use futures_util::stream::BoxStream;

pub use assemble::{Delta, Interrupted, assemble, collect_completion};
pub use types::{
    ChatMessage, Completion, CompletionRequest, FinishReason, LlmError, ReasoningEffort,
    ReplyLimits, ScriptKey, StreamEvent, ToolCall, ToolSpec,
};

/// A streaming chat model.
///
/// The stream is `'static` and owns its request, so dropping it cancels the
/// call (for HTTP providers: aborts the request).
pub trait LlmProvider: Send + Sync {
    /// A short name for logs and events, e.g. `scripted` or `openai:gpt-4o`.
    fn name(&self) -> String;

    fn stream(
        &self,
        request: CompletionRequest,
    ) -> BoxStream<'static, Result<StreamEvent, LlmError>>;

    /// Whether a reply without tool calls whose text is one JSON tool call
    /// is taken as that call (small local models write calls as text).
    fn reads_text_tool_calls(&self) -> bool {
        false
    }

    /// Whether the provider can hold the conversation `key` names: a model
    /// can hold any; a scripted provider only those its scenario scripts.
    /// Optional steps (a task's tester) are left out when it cannot.
    fn scripts(&self, key: &ScriptKey) -> bool {
        let _ = key;
        true
    }

    /// `model`'s context window in tokens, where the config sets it or the
    /// server reports it; `None` leaves it to the defaults for the model.
    fn context_tokens(&self, model: &str) -> futures_util::future::BoxFuture<'static, Option<u64>> {
        let _ = model;
        Box::pin(async { None })
    }
}
