//! The Converse Stream API's JSON: the request body, and the reading of
//! event-stream messages (`messageStart`, `contentBlockStart`,
//! `contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata`, and
//! exceptions) into provider-neutral [`StreamEvent`]s.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::super::types::{ChatMessage, CompletionRequest, FinishReason, LlmError, StreamEvent};
use super::eventstream::Message;
use crate::domain::TokenUsage;
use crate::domain::redact::redact;

/// Bedrock refuses blank text blocks; an empty message or tool output is
/// sent as this instead.
const EMPTY: &str = "(empty)";

fn text_block(text: &str) -> Value {
    json!({"text": if text.trim().is_empty() { EMPTY } else { text }})
}

/// The request body. Consecutive messages of one role are merged into one
/// message of several blocks: Converse wants strictly alternating roles, and
/// tool results go back as `toolResult` blocks of a `user` message.
pub fn request_body(request: &CompletionRequest) -> Value {
    let mut messages: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut push = |role: &'static str, block: Value| match messages.last_mut() {
        Some((last, blocks)) if *last == role => blocks.push(block),
        _ => messages.push((role, vec![block])),
    };
    for message in &request.messages {
        match message {
            ChatMessage::User { content } => push("user", text_block(content)),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                if !content.trim().is_empty() || tool_calls.is_empty() {
                    push("assistant", text_block(content));
                }
                for call in tool_calls {
                    let input: Value = serde_json::from_str(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    push(
                        "assistant",
                        json!({"toolUse": {"toolUseId": call.id, "name": call.name, "input": input}}),
                    );
                }
            }
            ChatMessage::ToolResult {
                call_id,
                content,
                is_error,
            } => {
                let mut result = json!({"toolUseId": call_id, "content": [text_block(content)]});
                // Sent only on errors: not every model family takes `status`.
                if *is_error {
                    result["status"] = json!("error");
                }
                push("user", json!({ "toolResult": result }));
            }
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut inference = json!({"maxTokens": request.max_tokens});
    if let Some(t) = request.temperature {
        inference["temperature"] = json!(t);
    }
    let mut body = json!({"messages": messages, "inferenceConfig": inference});
    if !request.system.trim().is_empty() {
        body["system"] = json!([{"text": request.system}]);
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({"toolSpec": {
                    "name": t.name,
                    "description": t.description,
                    "inputSchema": {"json": t.parameters},
                }})
            })
            .collect();
        body["toolConfig"] = json!({ "tools": tools });
    }
    body
}

/// Reads decoded event-stream messages.
#[derive(Debug, Default)]
pub struct ConverseDecoder {
    /// toolUse blocks by index, and whether any input fragment arrived.
    tool_blocks: BTreeMap<usize, bool>,
    stopped: bool,
    /// The `metadata` event (usage) came: nothing follows it.
    done: bool,
    /// Kept out of error messages.
    secrets: Vec<String>,
}

impl ConverseDecoder {
    pub fn new(secrets: Vec<String>) -> Self {
        Self {
            secrets,
            ..Self::default()
        }
    }

    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    pub fn decode(&mut self, message: &Message) -> Result<Vec<StreamEvent>, LlmError> {
        match message.header(":message-type") {
            Some("exception") => {
                let kind = message.header(":exception-type").unwrap_or("exception");
                return Err(self.exception(kind, &payload_message(&message.payload)));
            }
            Some("error") => {
                let kind = message.header(":error-code").unwrap_or("error");
                let text = message
                    .header(":error-message")
                    .map_or_else(|| payload_message(&message.payload), str::to_owned);
                return Err(self.exception(kind, &text));
            }
            _ => {}
        }
        let Some(kind) = message.header(":event-type") else {
            return Ok(Vec::new());
        };
        let data: Value = serde_json::from_slice(&message.payload).map_err(|e| {
            LlmError::Protocol(format!("the {kind} event's payload is not JSON: {e}"))
        })?;
        let index = data
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        let mut out = Vec::new();
        match kind {
            "contentBlockStart" => {
                if let Some(tool) = data.pointer("/start/toolUse") {
                    self.tool_blocks.insert(index, false);
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: tool["toolUseId"].as_str().unwrap_or("").to_owned(),
                        name: tool["name"].as_str().unwrap_or("").to_owned(),
                    });
                }
            }
            "contentBlockDelta" => {
                let delta = &data["delta"];
                if let Some(text) = delta["text"].as_str().filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta(text.to_owned()));
                } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str)
                {
                    if !input.is_empty() {
                        self.tool_blocks.insert(index, true);
                        out.push(StreamEvent::ToolCallArgs {
                            index,
                            fragment: input.to_owned(),
                        });
                    }
                } else if let Some(text) = delta
                    .pointer("/reasoningContent/text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    out.push(StreamEvent::ReasoningDelta(text.to_owned()));
                }
            }
            // A tool called with no input may stream no fragments at all.
            "contentBlockStop" if self.tool_blocks.get(&index) == Some(&false) => {
                self.tool_blocks.insert(index, true);
                out.push(StreamEvent::ToolCallArgs {
                    index,
                    fragment: "{}".into(),
                });
            }
            "messageStop" => {
                self.stopped = true;
                out.push(StreamEvent::Finished(
                    match data["stopReason"].as_str().unwrap_or("end_turn") {
                        "end_turn" | "stop_sequence" => FinishReason::Stop,
                        "tool_use" => FinishReason::ToolCalls,
                        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
                        other => FinishReason::Other(other.to_owned()),
                    },
                ));
            }
            "metadata" => {
                self.done = true;
                let usage = &data["usage"];
                let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
                // `inputTokens` leaves out the tokens read from or written
                // to the prompt cache; memofab counts all of them as input.
                let (cached, cache_write) = (
                    count("cacheReadInputTokens"),
                    count("cacheWriteInputTokens"),
                );
                out.push(StreamEvent::Usage(TokenUsage {
                    input: count("inputTokens") + cached + cache_write,
                    output: count("outputTokens"),
                    cached,
                    cache_write,
                }));
            }
            _ => {} // messageStart and future event types
        }
        Ok(out)
    }

    /// Every event has come.
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// The body ended: a reply that stopped is whole even without usage.
    pub fn ended_whole(&self) -> bool {
        self.stopped
    }

    fn exception(&self, kind: &str, message: &str) -> LlmError {
        let message = redact(&format!("{kind}: {message}"), &self.secrets);
        exception_error(kind, message)
    }
}

/// The error an exception of `kind` (camelCase in streams, PascalCase in
/// `x-amzn-ErrorType`) reports. Throttling and an unavailable service park
/// the provider like a 429; server-side failures back off like a 5xx.
pub fn exception_error(kind: &str, message: String) -> LlmError {
    if is_limit(kind) {
        return LlmError::RateLimited {
            message,
            retry_after: None,
        };
    }
    match short_kind(kind).as_str() {
        "internalserver" | "modelstreamerror" | "modeltimeout" | "modelnotready" => {
            LlmError::StreamServer {
                status: 500,
                message,
            }
        }
        "validation" | "modelerror" => LlmError::BadRequest {
            status: 400,
            message,
        },
        "accessdenied" | "unrecognizedclient" | "expiredtoken" | "invalidsignature" => {
            LlmError::Auth {
                status: 403,
                message,
            }
        }
        "resourcenotfound" => LlmError::NotFound {
            status: 404,
            message,
        },
        _ => LlmError::Stream(message),
    }
}

/// Whether an exception of `kind` is a rate or capacity limit, to be sat
/// out through the governor.
pub fn is_limit(kind: &str) -> bool {
    matches!(
        short_kind(kind).as_str(),
        "throttling" | "serviceunavailable" | "servicequotaexceeded" | "toomanyrequests"
    )
}

/// `ThrottlingException:http://…` and `throttlingException` as `throttling`.
fn short_kind(kind: &str) -> String {
    let kind = kind.split(':').next().unwrap_or(kind).to_ascii_lowercase();
    kind.trim_end_matches("exception").to_owned()
}

/// The `message` of an exception payload (`{"message": "..."}`, sometimes
/// `Message`), or its text.
pub fn payload_message(payload: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(payload).ok();
    parsed
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("Message")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(payload);
            let text = text.trim();
            if text.is_empty() {
                "(no message)".to_owned()
            } else {
                text.chars().take(300).collect()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::super::eventstream::HeaderValue;
    use super::*;
    use crate::domain::AgentRole;
    use crate::llm::{ScriptKey, ToolCall, ToolSpec};

    fn event(kind: &str, payload: Value) -> Message {
        Message {
            headers: vec![
                (":event-type".into(), HeaderValue::String(kind.into())),
                (":message-type".into(), HeaderValue::String("event".into())),
            ],
            payload: payload.to_string().into_bytes(),
        }
    }

    fn exception(kind: &str, text: &str) -> Message {
        Message {
            headers: vec![
                (":exception-type".into(), HeaderValue::String(kind.into())),
                (
                    ":message-type".into(),
                    HeaderValue::String("exception".into()),
                ),
            ],
            payload: json!({ "message": text }).to_string().into_bytes(),
        }
    }

    #[test]
    fn events_decode_into_text_reasoning_tool_calls_and_usage() {
        let mut d = ConverseDecoder::default();
        let mut out = Vec::new();
        for m in [
            event("messageStart", json!({"role": "assistant", "p": "abc"})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"text": "Looking"}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 1})),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "read_file"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"path\":"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "\"a.rs\"}"}}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 2})),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_2", "name": "list_files"}}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 3})),
            event("messageStop", json!({"stopReason": "tool_use"})),
        ] {
            out.extend(d.decode(&m).unwrap());
        }
        assert!(d.ended_whole() && !d.is_complete());
        out.extend(
            d.decode(&event(
                "metadata",
                json!({"usage": {"inputTokens": 12, "outputTokens": 40, "totalTokens": 5052,
                    "cacheReadInputTokens": 4000, "cacheWriteInputTokens": 1000},
                    "metrics": {"latencyMs": 900}}),
            ))
            .unwrap(),
        );
        assert!(d.is_complete());
        assert_eq!(
            out,
            [
                StreamEvent::ReasoningDelta("hmm".into()),
                StreamEvent::TextDelta("Looking".into()),
                StreamEvent::ToolCallStart {
                    index: 2,
                    id: "tooluse_1".into(),
                    name: "read_file".into()
                },
                StreamEvent::ToolCallArgs {
                    index: 2,
                    fragment: "{\"path\":".into()
                },
                StreamEvent::ToolCallArgs {
                    index: 2,
                    fragment: "\"a.rs\"}".into()
                },
                StreamEvent::ToolCallStart {
                    index: 3,
                    id: "tooluse_2".into(),
                    name: "list_files".into()
                },
                StreamEvent::ToolCallArgs {
                    index: 3,
                    fragment: "{}".into()
                },
                StreamEvent::Finished(FinishReason::ToolCalls),
                StreamEvent::Usage(TokenUsage {
                    input: 5012,
                    output: 40,
                    cached: 4000,
                    cache_write: 1000,
                }),
            ]
        );
    }

    #[test]
    fn exceptions_map_to_limits_back_offs_and_refusals() {
        let decode = |m: Message| {
            ConverseDecoder::new(vec!["secret-access-key-123".into()])
                .decode(&m)
                .unwrap_err()
        };
        assert!(matches!(
            decode(exception("throttlingException", "Too many tokens")),
            LlmError::RateLimited { .. }
        ));
        assert!(matches!(
            decode(exception("serviceUnavailableException", "busy")),
            LlmError::RateLimited { .. }
        ));
        assert!(matches!(
            decode(exception("modelStreamErrorException", "boom")),
            LlmError::StreamServer { status: 500, .. }
        ));
        assert!(matches!(
            decode(exception("validationException", "bad")),
            LlmError::BadRequest { status: 400, .. }
        ));
        let leaked = decode(exception(
            "internalServerException",
            "key secret-access-key-123",
        ));
        assert!(
            !leaked.to_string().contains("secret-access-key-123"),
            "{leaked}"
        );
        // The header form HTTP errors use: `ThrottlingException:http://...`.
        assert!(matches!(
            exception_error(
                "ThrottlingException:http://internal.amazon.com/coral/",
                "x".into()
            ),
            LlmError::RateLimited { .. }
        ));
        assert!(matches!(
            exception_error("AccessDeniedException", "x".into()),
            LlmError::Auth { .. }
        ));
    }

    #[test]
    fn the_body_alternates_roles_and_sends_tool_results_as_user_blocks() {
        let request = CompletionRequest {
            model: "anthropic.claude".into(),
            system: "sys".into(),
            messages: vec![
                ChatMessage::User {
                    content: "go".into(),
                },
                ChatMessage::Assistant {
                    content: String::new(),
                    tool_calls: vec![
                        ToolCall {
                            id: "a".into(),
                            name: "read_file".into(),
                            arguments: r#"{"path":"x"}"#.into(),
                        },
                        ToolCall {
                            id: "b".into(),
                            name: "list_files".into(),
                            arguments: "not json".into(),
                        },
                    ],
                },
                ChatMessage::ToolResult {
                    call_id: "a".into(),
                    content: "fn x() {}".into(),
                    is_error: false,
                },
                ChatMessage::ToolResult {
                    call_id: "b".into(),
                    content: String::new(),
                    is_error: true,
                },
            ],
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: "Read".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
            temperature: Some(0.5),
            reasoning_effort: None,
            script: ScriptKey {
                role: AgentRole::Coder,
                task: None,
                attempt: 1,
            },
        };
        let body = request_body(&request);
        assert_eq!(
            body,
            json!({
                "messages": [
                    {"role": "user", "content": [{"text": "go"}]},
                    {"role": "assistant", "content": [
                        {"toolUse": {"toolUseId": "a", "name": "read_file", "input": {"path": "x"}}},
                        {"toolUse": {"toolUseId": "b", "name": "list_files", "input": {}}},
                    ]},
                    {"role": "user", "content": [
                        {"toolResult": {"toolUseId": "a", "content": [{"text": "fn x() {}"}]}},
                        {"toolResult": {"toolUseId": "b", "content": [{"text": EMPTY}], "status": "error"}},
                    ]},
                ],
                "system": [{"text": "sys"}],
                "inferenceConfig": {"maxTokens": 100, "temperature": 0.5},
                "toolConfig": {"tools": [{"toolSpec": {"name": "read_file", "description": "Read",
                    "inputSchema": {"json": {"type": "object"}}}}]},
            })
        );
    }
}
