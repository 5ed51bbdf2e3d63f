//! OpenAI-compatible Chat Completions with streaming: OpenAI itself, and the
//! servers that speak its protocol (Ollama, vLLM, llama.cpp, LM Studio,
//! OpenRouter). Streamed tool calls arrive as fragments keyed by index.

use std::collections::BTreeSet;

use futures_util::stream::BoxStream;
use serde_json::{Value, json};

use super::LlmProvider;
use super::http::{Decoder, Endpoint, parse_json, post_stream};
use super::sse::SseEvent;
use super::types::{ChatMessage, CompletionRequest, FinishReason, LlmError, StreamEvent};
use crate::domain::TokenUsage;

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

pub struct OpenAiProvider {
    name: String,
    endpoint: Endpoint,
}

impl OpenAiProvider {
    pub fn new(name: &str, endpoint: Endpoint) -> Self {
        Self {
            name: name.to_owned(),
            endpoint,
        }
    }
}

/// The request body for a completion.
pub fn request_body(request: &CompletionRequest) -> Value {
    let mut messages = vec![json!({"role": "system", "content": request.system})];
    for message in &request.messages {
        messages.push(match message {
            ChatMessage::User { content } => json!({"role": "user", "content": content}),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut m = json!({
                    "role": "assistant",
                    "content": if content.is_empty() { Value::Null } else { json!(content) },
                });
                if !tool_calls.is_empty() {
                    m["tool_calls"] = tool_calls
                        .iter()
                        .map(|c| {
                            json!({
                                "id": c.id,
                                "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments},
                            })
                        })
                        .collect();
                }
                m
            }
            ChatMessage::ToolResult {
                call_id, content, ..
            } => {
                json!({"role": "tool", "tool_call_id": call_id, "content": content})
            }
        });
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": request.max_tokens,
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                })
            })
            .collect();
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    body
}

impl LlmProvider for OpenAiProvider {
    fn name(&self) -> String {
        format!("openai:{}", self.name)
    }

    fn stream(
        &self,
        request: CompletionRequest,
    ) -> BoxStream<'static, Result<StreamEvent, LlmError>> {
        post_stream(
            &self.endpoint,
            "/chat/completions",
            request_body(&request),
            |req, key| match key {
                Some(key) => req.bearer_auth(key),
                None => req,
            },
            ChunkDecoder::default(),
        )
    }
}

#[derive(Debug, Default)]
pub struct ChunkDecoder {
    started: BTreeSet<usize>,
    finish: Option<FinishReason>,
    done: bool,
}

impl Decoder for ChunkDecoder {
    fn decode(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, LlmError> {
        if event.data.trim() == "[DONE]" {
            self.done = true;
            return Ok(vec![StreamEvent::Finished(
                self.finish.clone().unwrap_or(FinishReason::Stop),
            )]);
        }
        if event.data.trim().is_empty() {
            return Ok(Vec::new());
        }
        let chunk = parse_json(&event.data)?;
        if let Some(error) = chunk.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            return Err(LlmError::Stream(message.to_owned()));
        }
        let mut out = Vec::new();
        if let Some(choice) = chunk.pointer("/choices/0") {
            let delta = &choice["delta"];
            if let Some(text) = delta.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                out.push(StreamEvent::TextDelta(text.to_owned()));
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let id = call.get("id").and_then(Value::as_str).unwrap_or("");
                let name = call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if self.started.insert(index) || !id.is_empty() || !name.is_empty() {
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: id.to_owned(),
                        name: name.to_owned(),
                    });
                }
                if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str)
                    && !args.is_empty()
                {
                    out.push(StreamEvent::ToolCallArgs {
                        index,
                        fragment: args.to_owned(),
                    });
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(match reason {
                    "stop" => FinishReason::Stop,
                    "tool_calls" | "function_call" => FinishReason::ToolCalls,
                    "length" => FinishReason::Length,
                    other => FinishReason::Other(other.to_owned()),
                });
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            let n = |p: &str| usage.pointer(p).and_then(Value::as_u64).unwrap_or(0);
            out.push(StreamEvent::Usage(TokenUsage {
                input: n("/prompt_tokens"),
                output: n("/completion_tokens"),
                cached: n("/prompt_tokens_details/cached_tokens"),
            }));
        }
        Ok(out)
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    /// Some servers end the body without `[DONE]`; a reply that already
    /// gave its finish reason is whole.
    fn end_of_body(&mut self) -> Vec<StreamEvent> {
        match self.finish.clone() {
            Some(reason) => {
                self.done = true;
                vec![StreamEvent::Finished(reason)]
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AgentRole;
    use crate::llm::{ScriptKey, ToolCall, ToolSpec};

    fn sse(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }

    #[test]
    fn chunks_decode_to_text_tool_fragments_usage_and_finish() {
        let mut d = ChunkDecoder::default();
        let mut out = Vec::new();
        for data in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"read_file","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"path\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":2}}}"#,
            "[DONE]",
        ] {
            out.extend(d.decode(sse(data)).unwrap());
        }
        assert_eq!(
            out,
            vec![
                StreamEvent::TextDelta("Hi".into()),
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_1".into(),
                    name: "read_file".into()
                },
                StreamEvent::ToolCallArgs {
                    index: 0,
                    fragment: "{\"path\"".into()
                },
                StreamEvent::Usage(TokenUsage {
                    input: 9,
                    output: 4,
                    cached: 2
                }),
                StreamEvent::Finished(FinishReason::ToolCalls),
            ]
        );
        assert!(d.is_complete());
        assert!(matches!(d.decode(sse("{nope")), Err(LlmError::Protocol(_))));
    }

    #[test]
    fn body_maps_messages_and_tools() {
        let request = CompletionRequest {
            model: "gpt-x".into(),
            system: "sys".into(),
            messages: vec![
                ChatMessage::User {
                    content: "go".into(),
                },
                ChatMessage::Assistant {
                    content: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "run".into(),
                        arguments: "{}".into(),
                    }],
                },
                ChatMessage::ToolResult {
                    call_id: "c1".into(),
                    content: "ok".into(),
                    is_error: false,
                },
            ],
            tools: vec![ToolSpec {
                name: "run".into(),
                description: "d".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
            temperature: None,
            script: ScriptKey {
                role: AgentRole::Coder,
                task: None,
                attempt: 1,
            },
        };
        let body = request_body(&request);
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["name"],
            "run"
        );
        assert_eq!(body["messages"][3]["role"], "tool");
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["stream_options"]["include_usage"], true);
    }
}
