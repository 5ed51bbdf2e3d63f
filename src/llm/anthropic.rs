//! Anthropic Messages with streaming. Content arrives in indexed blocks:
//! text blocks stream `text_delta`s, tool_use blocks stream their input as
//! `input_json_delta` fragments.

use std::collections::BTreeMap;

use futures_util::stream::BoxStream;
use serde_json::{Value, json};

use super::LlmProvider;
use super::http::{Decoder, Endpoint, parse_json, post_stream, stream_error};
use super::sse::SseEvent;
use super::types::{
    ChatMessage, CompletionRequest, FinishReason, LlmError, StreamEvent, TextToolCalls,
};
use crate::domain::TokenUsage;

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const API_VERSION: &str = "2023-06-01";

pub struct AnthropicProvider {
    name: String,
    endpoint: Endpoint,
    text_tool_calls: TextToolCalls,
    context_tokens: Option<u64>,
}

impl AnthropicProvider {
    pub fn new(name: &str, endpoint: Endpoint) -> Self {
        Self {
            name: name.to_owned(),
            endpoint,
            text_tool_calls: TextToolCalls::Auto,
            context_tokens: None,
        }
    }

    pub fn with_context_tokens(mut self, context_tokens: Option<u64>) -> Self {
        self.context_tokens = context_tokens;
        self
    }

    pub fn with_text_tool_calls(mut self, text_tool_calls: TextToolCalls) -> Self {
        self.text_tool_calls = text_tool_calls;
        self
    }
}

/// A prompt-cache breakpoint: the server caches the prompt up to and
/// including the block that carries it (tools, then system, then messages).
fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// The request body. Consecutive messages of one role are merged into one
/// message of several blocks, as the API wants strictly alternating roles.
/// It carries the four cache breakpoints the API allows: the last tool, the
/// system prompt and the last blocks of the two newest messages, so every
/// turn reads the conversation so far from the cache and writes only what
/// the turn added.
pub fn request_body(request: &CompletionRequest) -> Value {
    let mut messages: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut push = |role: &'static str, block: Value| match messages.last_mut() {
        Some((last, blocks)) if *last == role => blocks.push(block),
        _ => messages.push((role, vec![block])),
    };
    for message in &request.messages {
        match message {
            ChatMessage::User { content } => push("user", json!({"type": "text", "text": content})),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                if !content.is_empty() {
                    push("assistant", json!({"type": "text", "text": content}));
                }
                for call in tool_calls {
                    let input: Value = serde_json::from_str(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    push(
                        "assistant",
                        json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}),
                    );
                }
            }
            ChatMessage::ToolResult {
                call_id,
                content,
                is_error,
            } => push(
                "user",
                json!({"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error}),
            ),
        }
    }
    // Prompt caching: the newest message's last block, and the one before
    // it, which the previous request marked. A turn adds up to 17 blocks, so
    // the older mark keeps last turn's cache entry within the 20 blocks the
    // server looks back from a breakpoint.
    for (_, blocks) in messages.iter_mut().rev().take(2) {
        if let Some(last) = blocks.last_mut() {
            last["cache_control"] = ephemeral();
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "system": [{"type": "text", "text": request.system, "cache_control": ephemeral()}],
        "messages": messages,
        "stream": true,
    });
    if !request.tools.is_empty() {
        let mut tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        if let Some(last) = tools.last_mut() {
            last["cache_control"] = ephemeral();
        }
        body["tools"] = Value::Array(tools);
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    body
}

impl LlmProvider for AnthropicProvider {
    fn name(&self) -> String {
        format!("anthropic:{}", self.name)
    }

    fn stream(
        &self,
        request: CompletionRequest,
    ) -> BoxStream<'static, Result<StreamEvent, LlmError>> {
        post_stream(
            &self.endpoint,
            "/v1/messages",
            request_body(&request),
            |req, key| {
                let req = req.header("anthropic-version", API_VERSION);
                match key {
                    Some(key) => req.header("x-api-key", key),
                    None => req,
                }
            },
            EventDecoder {
                secrets: self.endpoint.api_key.iter().cloned().collect(),
                ..EventDecoder::default()
            },
        )
    }

    fn reads_text_tool_calls(&self) -> bool {
        self.text_tool_calls.reads_text()
    }

    fn context_tokens(
        &self,
        _model: &str,
    ) -> futures_util::future::BoxFuture<'static, Option<u64>> {
        let configured = self.context_tokens;
        Box::pin(async move { configured })
    }
}

/// Token counts as Anthropic reports them: `input_tokens` counts only the
/// prompt tokens neither read from nor written to the cache.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    uncached: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
}

impl Counts {
    /// Takes every count `usage` has; `message_delta` repeats them
    /// cumulatively, some gateways only there.
    fn update(&mut self, usage: &Value) {
        let set = |field: &mut u64, key: &str| {
            if let Some(n) = usage.get(key).and_then(Value::as_u64) {
                *field = n;
            }
        };
        set(&mut self.uncached, "input_tokens");
        set(&mut self.cache_read, "cache_read_input_tokens");
        set(&mut self.cache_write, "cache_creation_input_tokens");
        set(&mut self.output, "output_tokens");
    }

    fn usage(&self) -> TokenUsage {
        TokenUsage {
            input: self.uncached + self.cache_read + self.cache_write,
            output: self.output,
            cached: self.cache_read,
            cache_write: self.cache_write,
        }
    }
}

#[derive(Debug, Default)]
pub struct EventDecoder {
    /// tool_use blocks by index, and whether any input fragment arrived.
    tool_blocks: BTreeMap<usize, bool>,
    counts: Counts,
    finish: Option<FinishReason>,
    done: bool,
    /// Kept out of error messages.
    secrets: Vec<String>,
}

impl Decoder for EventDecoder {
    fn decode(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, LlmError> {
        if event.data.trim().is_empty() {
            return Ok(Vec::new());
        }
        let data = parse_json(&event.data)?;
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or("");
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                self.counts.update(&data["message"]["usage"]);
                out.push(StreamEvent::Usage(self.counts.usage()));
            }
            "content_block_start" => {
                let block = &data["content_block"];
                match block["type"].as_str() {
                    Some("tool_use") => {
                        self.tool_blocks.insert(index, false);
                        out.push(StreamEvent::ToolCallStart {
                            index,
                            id: block["id"].as_str().unwrap_or("").to_owned(),
                            name: block["name"].as_str().unwrap_or("").to_owned(),
                        });
                    }
                    Some("text") => {
                        if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta(text.to_owned()));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(text) = delta["text"].as_str() {
                            out.push(StreamEvent::TextDelta(text.to_owned()));
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(text) = delta["thinking"].as_str().filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::ReasoningDelta(text.to_owned()));
                        }
                    }
                    Some("input_json_delta") => {
                        let fragment = delta["partial_json"].as_str().unwrap_or("");
                        if !fragment.is_empty() {
                            self.tool_blocks.insert(index, true);
                            out.push(StreamEvent::ToolCallArgs {
                                index,
                                fragment: fragment.to_owned(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop"
                // A tool called with no input streams no fragments at all.
                if self.tool_blocks.get(&index) == Some(&false) => {
                    self.tool_blocks.insert(index, true);
                    out.push(StreamEvent::ToolCallArgs {
                        index,
                        fragment: "{}".into(),
                    });
                }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.finish = Some(match reason {
                        "end_turn" | "stop_sequence" => FinishReason::Stop,
                        "tool_use" => FinishReason::ToolCalls,
                        "max_tokens" => FinishReason::Length,
                        other => FinishReason::Other(other.to_owned()),
                    });
                }
                if data["usage"].is_object() {
                    self.counts.update(&data["usage"]);
                    out.push(StreamEvent::Usage(self.counts.usage()));
                }
            }
            "message_stop" => {
                self.done = true;
                out.push(StreamEvent::Finished(
                    self.finish.clone().unwrap_or(FinishReason::Stop),
                ));
            }
            // A limit mid-stream parks like a 429 would; `overloaded_error`
            // backs off like a 529.
            "error" => return Err(stream_error(&data["error"], &self.secrets)),
            _ => {} // ping and future event types
        }
        Ok(out)
    }

    fn is_complete(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AgentRole;
    use crate::llm::{ScriptKey, ToolCall};

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }

    #[test]
    fn events_decode_and_input_less_tools_get_empty_objects() {
        let mut d = EventDecoder::default();
        let mut out = Vec::new();
        for data in [
            r#"{"type":"message_start","message":{"usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Looking"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"tu_1","name":"list_files","input":{}}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":12}}"#,
            r#"{"type":"message_stop"}"#,
        ] {
            out.extend(d.decode(ev(data)).unwrap());
        }
        assert_eq!(
            out[0],
            StreamEvent::Usage(TokenUsage {
                input: 25,
                output: 1,
                cached: 5,
                cache_write: 0,
            })
        );
        assert_eq!(out[1], StreamEvent::TextDelta("Looking".into()));
        assert_eq!(
            out[2],
            StreamEvent::ToolCallStart {
                index: 1,
                id: "tu_1".into(),
                name: "list_files".into()
            }
        );
        assert_eq!(
            out[3],
            StreamEvent::ToolCallArgs {
                index: 1,
                fragment: "{}".into()
            }
        );
        assert_eq!(
            out.last(),
            Some(&StreamEvent::Finished(FinishReason::ToolCalls))
        );
        assert!(d.is_complete());
        let err = EventDecoder::default()
            .decode(ev(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ))
            .unwrap_err();
        assert_eq!(
            err,
            LlmError::StreamServer {
                status: 529,
                message: "Overloaded".into()
            }
        );
        let err = EventDecoder::default()
            .decode(ev(
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}"#,
            ))
            .unwrap_err();
        assert_eq!(
            err,
            LlmError::RateLimited {
                message: "Slow down".into(),
                retry_after: None
            }
        );
    }

    #[test]
    fn cache_tokens_count_as_input_and_message_delta_updates_usage() {
        let mut d = EventDecoder::default();
        let mut last = None;
        for data in [
            r#"{"type":"message_start","message":{"usage":{"input_tokens":0,"cache_creation_input_tokens":1000,"cache_read_input_tokens":4000,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":30,"output_tokens":77}}"#,
        ] {
            for e in d.decode(ev(data)).unwrap() {
                match e {
                    StreamEvent::Usage(u) => last = Some(u),
                    StreamEvent::ReasoningDelta(t) => assert_eq!(t, "hmm"),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(
            last,
            Some(TokenUsage {
                input: 5030,
                output: 77,
                cached: 4000,
                cache_write: 1000,
            })
        );
    }

    #[test]
    fn tool_results_merge_into_one_user_message() {
        let request = CompletionRequest {
            model: "claude".into(),
            system: "sys".into(),
            messages: vec![
                ChatMessage::User {
                    content: "go".into(),
                },
                ChatMessage::Assistant {
                    content: "two tools".into(),
                    tool_calls: vec![
                        ToolCall {
                            id: "a".into(),
                            name: "read_file".into(),
                            arguments: r#"{"path":"x"}"#.into(),
                        },
                        ToolCall {
                            id: "b".into(),
                            name: "run".into(),
                            arguments: "{broken".into(),
                        },
                    ],
                },
                ChatMessage::ToolResult {
                    call_id: "a".into(),
                    content: "x".into(),
                    is_error: false,
                },
                ChatMessage::ToolResult {
                    call_id: "b".into(),
                    content: "bad".into(),
                    is_error: true,
                },
            ],
            tools: vec![],
            max_tokens: 64,
            temperature: None,
            reasoning_effort: None,
            script: ScriptKey {
                role: AgentRole::Coder,
                task: None,
                attempt: 1,
            },
        };
        let body = request_body(&request);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"][1]["input"]["path"], "x");
        assert_eq!(messages[1]["content"][2]["input"], json!({}));
        assert_eq!(messages[2]["role"], "user");
        assert_eq!(messages[2]["content"].as_array().unwrap().len(), 2);
        assert_eq!(messages[2]["content"][1]["is_error"], true);
        assert_eq!(body["system"][0]["text"], "sys");
        assert!(body.get("tools").is_none());
    }
}
