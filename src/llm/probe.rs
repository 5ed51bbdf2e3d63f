//! `memofab doctor`'s check that a model can work as an agent: one tiny
//! request offering one tool, asked to call it. A model that only answers in
//! prose reaches the provider fine and still can never do anything, since
//! agents act only through tool calls.

use futures_util::StreamExt;
use serde_json::json;

use super::text_calls::text_tool_call;
use super::types::{ChatMessage, Completion, CompletionRequest, FinishReason, LlmError, ScriptKey};
use super::{LlmProvider, ToolSpec, collect_completion};
use crate::domain::AgentRole;

/// The probe's one tool.
pub const PROBE_TOOL: &str = "ping";

/// Room for a reasoning model to think before it calls; a small model that
/// writes the call spends a few dozen tokens.
const PROBE_MAX_TOKENS: u32 = 1024;

/// How a model answered the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCalling {
    /// A real tool call, in the protocol's own field.
    Native,
    /// The call written as JSON in the reply's text. `read` is whether the
    /// provider takes such text as the call (`text_tool_calls = "auto"`).
    AsText { read: bool },
    /// No call at all; `reply` is what it said instead.
    None { reply: String, cut: bool },
}

impl ToolCalling {
    /// Whether agents on this model can work.
    pub fn usable(&self) -> bool {
        matches!(
            self,
            ToolCalling::Native | ToolCalling::AsText { read: true }
        )
    }
}

fn probe_tool() -> ToolSpec {
    ToolSpec {
        name: PROBE_TOOL.into(),
        description: "Answer a health check. Always call this tool.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"message": {"type": "string", "description": "Any short text."}},
            "required": ["message"]
        }),
    }
}

/// Asks `model` to call the probe tool and says how it answered. Errors are
/// the provider's: unreachable, refused key, unknown model.
pub async fn probe_tool_calls(
    provider: &dyn LlmProvider,
    model: &str,
) -> Result<ToolCalling, LlmError> {
    let request = CompletionRequest {
        model: model.to_owned(),
        system: "You are a health check. You act only by calling tools.".into(),
        messages: vec![ChatMessage::User {
            content: format!("Call the `{PROBE_TOOL}` tool with message \"hello\"."),
        }],
        tools: vec![probe_tool()],
        max_tokens: PROBE_MAX_TOKENS,
        temperature: Some(0.0),
        reasoning_effort: None,
        script: ScriptKey {
            role: AgentRole::Planner,
            task: None,
            attempt: 1,
        },
    };
    let completion = collect_completion(provider.stream(request).fuse(), |_| {}).await?;
    Ok(classify(&completion, provider.reads_text_tool_calls()))
}

/// How a reply to the probe called the tool, if it did.
pub fn classify(completion: &Completion, reads_text: bool) -> ToolCalling {
    if !completion.tool_calls.is_empty() {
        return ToolCalling::Native;
    }
    if text_tool_call(&completion.text, &[probe_tool()], "probe").is_some() {
        return ToolCalling::AsText { read: reads_text };
    }
    ToolCalling::None {
        reply: completion.text.trim().to_owned(),
        cut: completion.finish == FinishReason::Length,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TokenUsage;
    use crate::llm::ToolCall;

    fn reply(text: &str, calls: Vec<ToolCall>, finish: FinishReason) -> Completion {
        Completion {
            text: text.into(),
            reasoning: String::new(),
            tool_calls: calls,
            finish,
            usage: TokenUsage::default(),
        }
    }

    #[test]
    fn replies_are_told_apart() {
        let call = ToolCall {
            id: "c".into(),
            name: PROBE_TOOL.into(),
            arguments: r#"{"message":"hello"}"#.into(),
        };
        let native = reply("", vec![call], FinishReason::ToolCalls);
        assert_eq!(classify(&native, false), ToolCalling::Native);

        let fenced = "```json\n{\"name\": \"ping\", \"arguments\": {\"message\": \"hello\"}}\n```";
        let text = reply(fenced, vec![], FinishReason::Stop);
        assert_eq!(classify(&text, true), ToolCalling::AsText { read: true });
        assert!(classify(&text, true).usable());
        assert!(!classify(&text, false).usable());

        let prose = reply(" ok\n", vec![], FinishReason::Stop);
        let got = classify(&prose, true);
        assert_eq!(
            got,
            ToolCalling::None {
                reply: "ok".into(),
                cut: false
            }
        );
        assert!(!got.usable());
        let cut = reply("Let me think", vec![], FinishReason::Length);
        assert!(matches!(
            classify(&cut, true),
            ToolCalling::None { cut: true, .. }
        ));
    }
}
