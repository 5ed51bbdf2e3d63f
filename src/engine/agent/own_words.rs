//! A final call (`finish`, a submit tool) whose text is memofab's own words
//! handed back — a nudge, a refusal — is refused, so the model says what it
//! did or found instead (`domain::shepherd::echo` decides what is an echo).

use crate::domain::tool_names;
use serde_json::Value;

use super::{AgentJob, IGNORED_CALL};
use crate::domain::shepherd::echo::{self, REFUSED};
use crate::llm::ChatMessage;

/// Why the call is refused, if it ends the conversation with an echo of
/// what memofab said to the agent in `messages`.
pub(super) fn refusal(
    job: &AgentJob,
    tool: &str,
    arguments: &Value,
    messages: &[ChatMessage],
) -> Option<String> {
    let ends = job.submit.as_ref().is_some_and(|s| s.spec.name == tool)
        || (tool == tool_names::FINISH && job.offers(tool));
    if !ends {
        return None;
    }
    // After the task itself, every user message is memofab's; of the tool
    // results, its refusals.
    let said: Vec<&str> = messages
        .iter()
        .skip(1)
        .filter_map(|m| match m {
            ChatMessage::User { content } => Some(content.as_str()),
            ChatMessage::ToolResult { content, .. }
                if content.starts_with(REFUSED) || content.starts_with(IGNORED_CALL) =>
            {
                Some(content.as_str())
            }
            _ => None,
        })
        .collect();
    echo::echoed(arguments, &said).map(|found| echo::refusal(tool, &found))
}
