//! OpenAI-compatible Chat Completions with streaming: OpenAI itself, and the
//! servers that speak its protocol (Ollama, vLLM, llama.cpp, LM Studio,
//! OpenRouter). Streamed tool calls arrive as fragments keyed by index.
//!
//! The servers differ in ways the decoder absorbs: Ollama sends every call
//! of a turn at index 0 (each whole, with its own id), reasoning models
//! stream `reasoning_content` (llama.cpp, vLLM, DeepSeek) or `reasoning`
//! (Ollama, OpenRouter), and failures can arrive inside a 200 stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde_json::{Value, json};

use super::LlmProvider;
use super::http::{
    Decoder, Endpoint, event_stream, parse_json, post_stream, send_with_retry, stream_error,
};
use super::sse::SseEvent;
use super::types::{
    ChatMessage, CompletionRequest, FinishReason, LlmError, ReasoningEffort, StreamEvent,
    TextToolCalls,
};
use crate::config::model_options::is_openai;
pub use crate::config::model_options::{MaxTokensField, ToolChoice};
use crate::domain::TokenUsage;

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Whether a 400 is the server refusing the reply cap's field name (OpenAI:
/// "Unsupported parameter: 'max_tokens' … Use 'max_completion_tokens'
/// instead"); asking again with the other name is then worth one try.
fn refuses_cap_field(error: &LlmError) -> bool {
    matches!(error, LlmError::BadRequest { status: 400, message }
        if message.contains("max_tokens") || message.contains("max_completion_tokens"))
}

/// What differs between OpenAI-compatible servers, from the provider config.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiOptions {
    pub max_tokens_field: MaxTokensField,
    /// Used when the request names none (the role did not configure one).
    pub reasoning_effort: Option<ReasoningEffort>,
    pub text_tool_calls: TextToolCalls,
    pub tool_choice: Option<ToolChoice>,
    /// Send `prompt_cache_key`, which routes the turns of one conversation
    /// to the server that holds its cached prefix. On by default for
    /// OpenAI's own API; other servers may refuse unknown fields.
    pub prompt_cache_key: bool,
}

impl OpenAiOptions {
    /// The defaults for a server at `base_url`.
    pub fn for_base_url(base_url: &str) -> Self {
        Self {
            max_tokens_field: MaxTokensField::for_base_url(base_url),
            reasoning_effort: None,
            text_tool_calls: TextToolCalls::Auto,
            tool_choice: None,
            prompt_cache_key: is_openai(base_url),
        }
    }
}

/// A conversation's `prompt_cache_key`: a hash of how it opens (model,
/// system prompt, first message), the same on every turn of it, as those
/// never change (compaction keeps the first message), and different between
/// conversations. FNV-1a, so it is stable across builds.
pub fn prompt_cache_key(request: &CompletionRequest) -> String {
    let first = request.messages.iter().find_map(|m| match m {
        ChatMessage::User { content } => Some(content.as_str()),
        _ => None,
    });
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        request.model.as_str(),
        request.system.as_str(),
        first.unwrap_or(""),
    ] {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("memofab-{hash:016x}")
}

pub struct OpenAiProvider {
    name: String,
    endpoint: Endpoint,
    options: OpenAiOptions,
    /// The configured window; else what the server reports, asked once
    /// per model.
    context_tokens: Option<u64>,
    reported: Arc<tokio::sync::Mutex<HashMap<String, Option<u64>>>>,
    /// Config named the reply cap's field: it is sent as named, always.
    cap_field_configured: bool,
    /// The field a server's 400 asked for instead of the one sent: used for
    /// the rest of the process.
    learned_cap_field: Arc<std::sync::Mutex<Option<MaxTokensField>>>,
}

impl OpenAiProvider {
    /// A provider with the defaults for the endpoint's base URL.
    pub fn new(name: &str, endpoint: Endpoint) -> Self {
        let options = OpenAiOptions::for_base_url(&endpoint.base_url);
        Self {
            name: name.to_owned(),
            endpoint,
            options,
            context_tokens: None,
            reported: Arc::default(),
            cap_field_configured: false,
            learned_cap_field: Arc::default(),
        }
    }

    /// Config named the reply cap's field (`max_tokens_field`): it is never
    /// chosen by model nor switched on a 400.
    pub fn with_configured_cap_field(mut self, configured: bool) -> Self {
        self.cap_field_configured = configured;
        self
    }

    /// The reply cap's field for `model`: config's, else the one a 400
    /// taught this provider, else the model family's, else the base URL's.
    fn cap_field(&self, model: &str) -> MaxTokensField {
        if self.cap_field_configured {
            return self.options.max_tokens_field;
        }
        let learned = *self
            .learned_cap_field
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        learned
            .or_else(|| MaxTokensField::for_model(model))
            .unwrap_or(self.options.max_tokens_field)
    }

    pub fn with_options(mut self, options: OpenAiOptions) -> Self {
        self.options = options;
        self
    }

    pub fn with_context_tokens(mut self, context_tokens: Option<u64>) -> Self {
        self.context_tokens = context_tokens;
        self
    }
}

/// How long asking a server for its context size may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The context window a local server reports: llama.cpp's `/props`
/// (`default_generation_settings.n_ctx`, one slot's share), else Ollama's
/// `/api/show` (`num_ctx` among the model's parameters). `None` for
/// servers that say neither, OpenAI's own included.
pub async fn reported_context_tokens(endpoint: &Endpoint, model: &str) -> Option<u64> {
    if is_openai(&endpoint.base_url) {
        return None;
    }
    let root = endpoint.base_url.trim_end_matches("/v1");
    let props = async {
        let response = endpoint
            .client
            .get(format!("{root}/props"))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?;
        let props: Value = response.json().await.ok()?;
        props
            .pointer("/default_generation_settings/n_ctx")
            .or_else(|| props.get("n_ctx"))
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
    };
    if let Some(n) = props.await {
        return Some(n);
    }
    let response = endpoint
        .client
        .post(format!("{root}/api/show"))
        .timeout(PROBE_TIMEOUT)
        .json(&json!({"model": model}))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?;
    let show: Value = response.json().await.ok()?;
    show.get("parameters")
        .and_then(Value::as_str)?
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("num_ctx")).then(|| words.next()?.parse().ok())?
        })
}

/// The request body for a completion.
pub fn request_body(request: &CompletionRequest, options: &OpenAiOptions) -> Value {
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
    });
    body[options.max_tokens_field.key()] = json!(request.max_tokens);
    if options.prompt_cache_key {
        body["prompt_cache_key"] = json!(prompt_cache_key(request));
    }
    if let Some(effort) = request.reasoning_effort.or(options.reasoning_effort) {
        body["reasoning_effort"] = json!(effort.as_str());
    }
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
        let constrained = options.text_tool_calls == TextToolCalls::Constrained;
        if constrained {
            body["response_format"] = one_call_format(&request.tools);
        }
        // With the reply constrained to a call, `required` is not needed,
        // and llama.cpp on a stock template pads the reply to the cap with it.
        match options.tool_choice {
            Some(ToolChoice::Required) if constrained => {}
            Some(choice) => body["tool_choice"] = json!(choice.as_str()),
            None => {}
        }
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    body
}

/// A `json_schema` response format whose schema is one call of one of
/// `tools`: `{"name": <const>, "arguments": <that tool's parameters>}`.
/// Servers that constrain decoding to it (llama.cpp turns it into a
/// grammar) make a model that writes calls as text write a whole, valid one
/// instead of echoing the tool list; the reply's text is then read as the
/// call.
pub fn one_call_format(tools: &[super::ToolSpec]) -> Value {
    let calls: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {
                    "name": {"const": t.name},
                    "arguments": t.parameters,
                },
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    json!({
        "type": "json_schema",
        "json_schema": {
            "name": "tool_call",
            "schema": {"oneOf": calls},
        },
    })
}

impl LlmProvider for OpenAiProvider {
    fn name(&self) -> String {
        format!("openai:{}", self.name)
    }

    fn stream(
        &self,
        request: CompletionRequest,
    ) -> BoxStream<'static, Result<StreamEvent, LlmError>> {
        let field = self.cap_field(&request.model);
        let options = OpenAiOptions {
            max_tokens_field: field,
            ..self.options.clone()
        };
        let body = request_body(&request, &options);
        let decoder = ChunkDecoder {
            secrets: self.endpoint.api_key.iter().cloned().collect(),
            ..ChunkDecoder::default()
        };
        if self.cap_field_configured {
            return post_stream(&self.endpoint, "/chat/completions", body, sign, decoder);
        }
        // A server that refuses the cap's field is asked once more with the
        // other one, which this provider then keeps.
        let endpoint = self.endpoint.clone();
        let learned = self.learned_cap_field.clone();
        let start = async move {
            match send_body(&endpoint, &body).await {
                Err(refused) if refuses_cap_field(&refused) => {
                    let other = field.other();
                    let mut again = body.clone();
                    if let Some(fields) = again.as_object_mut() {
                        let cap = fields.remove(field.key()).unwrap_or(Value::Null);
                        fields.insert(other.key().to_owned(), cap);
                    }
                    let answered = send_body(&endpoint, &again).await;
                    if answered.is_ok() {
                        *learned
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(other);
                    }
                    answered
                }
                result => result,
            }
        }
        .boxed();
        event_stream(
            start,
            decoder,
            self.endpoint.api_key.iter().cloned().collect(),
        )
    }

    fn reads_text_tool_calls(&self) -> bool {
        self.options.text_tool_calls.reads_text()
    }

    fn context_tokens(&self, model: &str) -> BoxFuture<'static, Option<u64>> {
        if let Some(n) = self.context_tokens {
            return Box::pin(async move { Some(n) });
        }
        let endpoint = self.endpoint.clone();
        let reported = self.reported.clone();
        let model = model.to_owned();
        Box::pin(async move {
            let mut known = reported.lock().await;
            if let Some(n) = known.get(&model) {
                return *n;
            }
            let n = reported_context_tokens(&endpoint, &model).await;
            known.insert(model, n);
            n
        })
    }
}

/// Posts a chat completion request, retried as every request is.
async fn send_body(endpoint: &Endpoint, body: &Value) -> Result<reqwest::Response, LlmError> {
    let url = format!("{}/chat/completions", endpoint.base_url);
    send_with_retry(endpoint, || {
        sign(
            endpoint.client.post(&url).json(body),
            endpoint.api_key.as_deref(),
        )
    })
    .await
}

/// Bearer authentication, when the provider has a key.
fn sign(request: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
    match key {
        Some(key) => request.bearer_auth(key),
        None => request,
    }
}

#[derive(Debug, Default)]
pub struct ChunkDecoder {
    /// Every call of the reply by our own number: the server's index (if it
    /// sent one) and the call's id (if known yet).
    calls: Vec<(Option<u64>, String)>,
    finish: Option<FinishReason>,
    done: bool,
    /// Kept out of error messages.
    secrets: Vec<String>,
}

impl ChunkDecoder {
    /// Our number for a tool-call delta, and whether it begins a new call.
    /// A delta continues the last call at its index (or, without an index,
    /// the call with its id, else the last call), unless it brings an id
    /// other than that call's: Ollama reuses index 0 for every call.
    fn slot(&mut self, index: Option<u64>, id: &str) -> (usize, bool) {
        let candidate = match index {
            Some(i) => self.calls.iter().rposition(|(at, _)| *at == Some(i)),
            None if !id.is_empty() => self.calls.iter().rposition(|(_, known)| known == id),
            None => self.calls.len().checked_sub(1),
        };
        if let Some(slot) = candidate {
            let known = &mut self.calls[slot].1;
            if id.is_empty() || known.is_empty() || known == id {
                if known.is_empty() {
                    id.clone_into(known);
                }
                return (slot, false);
            }
        }
        self.calls.push((index, id.to_owned()));
        (self.calls.len() - 1, true)
    }

    fn tool_calls(&mut self, delta: &Value, out: &mut Vec<StreamEvent>) {
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64);
            let id = call.get("id").and_then(Value::as_str).unwrap_or("");
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let (index, new) = self.slot(index, id);
            if new || !id.is_empty() || !name.is_empty() {
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
    }
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
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            return Err(stream_error(error, &self.secrets));
        }
        if event.event.as_deref() == Some("error") {
            return Err(stream_error(&chunk, &self.secrets));
        }
        let mut out = Vec::new();
        if let Some(choice) = chunk.pointer("/choices/0") {
            let delta = &choice["delta"];
            let reasoning = ["reasoning_content", "reasoning"]
                .iter()
                .find_map(|key| delta.get(key).and_then(Value::as_str))
                .filter(|t| !t.is_empty());
            if let Some(text) = reasoning {
                out.push(StreamEvent::ReasoningDelta(text.to_owned()));
            }
            if let Some(text) = delta.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                out.push(StreamEvent::TextDelta(text.to_owned()));
            }
            self.tool_calls(delta, &mut out);
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
                cache_write: 0,
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
                    cached: 2,
                    cache_write: 0,
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
            reasoning_effort: None,
            script: ScriptKey {
                role: AgentRole::Coder,
                task: None,
                attempt: 1,
            },
        };
        let local = OpenAiOptions::for_base_url("http://127.0.0.1:11434/v1");
        let body = request_body(&request, &local);
        assert_eq!(body["max_tokens"], 100);
        assert!(body.get("max_completion_tokens").is_none());
        assert!(body.get("reasoning_effort").is_none());
        let openai = OpenAiOptions {
            reasoning_effort: Some(ReasoningEffort::Low),
            ..OpenAiOptions::for_base_url(DEFAULT_BASE_URL)
        };
        let cloud = request_body(&request, &openai);
        assert_eq!(cloud["max_completion_tokens"], 100);
        assert!(cloud.get("max_tokens").is_none());
        assert_eq!(cloud["reasoning_effort"], "low");
        assert!(body.get("tool_choice").is_none(), "sent only when set");
        let required = OpenAiOptions {
            tool_choice: Some(ToolChoice::Required),
            ..local.clone()
        };
        assert_eq!(request_body(&request, &required)["tool_choice"], "required");
        let no_tools = CompletionRequest {
            tools: Vec::new(),
            ..request.clone()
        };
        assert!(
            request_body(&no_tools, &required)
                .get("tool_choice")
                .is_none()
        );
        assert!(body.get("prompt_cache_key").is_none(), "local servers");
        let key = cloud["prompt_cache_key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("memofab-"), "{key}");
        let mut later = request.clone();
        later.messages.push(ChatMessage::User {
            content: "more".into(),
        });
        assert_eq!(
            request_body(&later, &openai)["prompt_cache_key"],
            key.as_str(),
            "stable over the turns of one conversation"
        );
        let other = CompletionRequest {
            messages: vec![ChatMessage::User {
                content: "another task".into(),
            }],
            ..request.clone()
        };
        assert_ne!(
            request_body(&other, &openai)["prompt_cache_key"],
            key.as_str()
        );
        let high = CompletionRequest {
            reasoning_effort: Some(ReasoningEffort::High),
            ..request.clone()
        };
        assert_eq!(
            request_body(&high, &openai)["reasoning_effort"],
            "high",
            "the role's effort wins over the provider's"
        );
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

    #[test]
    fn reasoning_families_get_max_completion_tokens_wherever_served() {
        for model in [
            "o1",
            "o3-mini",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "openai/o3",
            "O1-preview",
        ] {
            assert_eq!(
                MaxTokensField::for_model(model),
                Some(MaxTokensField::MaxCompletionTokens),
                "{model}"
            );
        }
        for model in ["gpt-4o", "qwen3-coder", "llama3.1", "o1x", "gpt-4.1-mini"] {
            assert_eq!(MaxTokensField::for_model(model), None, "{model}");
        }
    }

    #[test]
    fn a_text_only_model_is_asked_for_one_call_and_never_for_a_required_one() {
        let tool = |name: &str, parameters: Value| ToolSpec {
            name: name.into(),
            description: "d".into(),
            parameters,
        };
        let read = json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]});
        let request = CompletionRequest {
            model: "qwen".into(),
            system: "sys".into(),
            messages: vec![ChatMessage::User {
                content: "go".into(),
            }],
            tools: vec![
                tool("read_file", read.clone()),
                tool("finish", json!({"type": "object"})),
            ],
            max_tokens: 100,
            temperature: None,
            reasoning_effort: None,
            script: ScriptKey {
                role: AgentRole::Coder,
                task: None,
                attempt: 1,
            },
        };
        let options = OpenAiOptions {
            text_tool_calls: TextToolCalls::Constrained,
            tool_choice: Some(ToolChoice::Required),
            ..OpenAiOptions::for_base_url("http://127.0.0.1:8080/v1")
        };
        let body = request_body(&request, &options);
        assert!(body.get("tool_choice").is_none(), "{body}");
        assert_eq!(body["tools"].as_array().map(Vec::len), Some(2));
        let format = &body["response_format"];
        assert_eq!(format["type"], "json_schema");
        assert_eq!(format["json_schema"]["name"], "tool_call");
        let calls = &format["json_schema"]["schema"]["oneOf"];
        assert_eq!(calls[0]["properties"]["name"]["const"], "read_file");
        assert_eq!(calls[0]["properties"]["arguments"], read);
        assert_eq!(calls[1]["properties"]["name"]["const"], "finish");
        assert_eq!(calls[0]["required"], json!(["name", "arguments"]));
        // `auto` sends neither; `tool_choice = "auto"` still goes out.
        let auto = OpenAiOptions {
            text_tool_calls: TextToolCalls::Auto,
            tool_choice: Some(ToolChoice::Auto),
            ..options.clone()
        };
        let body = request_body(&request, &auto);
        assert!(body.get("response_format").is_none());
        assert_eq!(body["tool_choice"], "auto");
        let no_tools = CompletionRequest {
            tools: Vec::new(),
            ..request
        };
        assert!(
            request_body(&no_tools, &options)
                .get("response_format")
                .is_none()
        );
    }

    #[test]
    fn the_cap_field_defaults_by_host() {
        use MaxTokensField::*;
        for (url, field) in [
            ("https://api.openai.com/v1", MaxCompletionTokens),
            ("https://API.OpenAI.com:443/v1", MaxCompletionTokens),
            ("https://my.openai.azure.com/openai", MaxCompletionTokens),
            ("http://127.0.0.1:11434/v1", MaxTokens),
            ("https://openrouter.ai/api/v1", MaxTokens),
            ("http://api.openai.com.evil.example/v1", MaxTokens),
        ] {
            assert_eq!(MaxTokensField::for_base_url(url), field, "{url}");
        }
    }

    fn decode_all(lines: &[&str]) -> Vec<StreamEvent> {
        let mut d = ChunkDecoder::default();
        lines
            .iter()
            .flat_map(|l| d.decode(sse(l)).unwrap())
            .collect()
    }

    fn starts(events: &[StreamEvent]) -> Vec<(usize, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallStart { index, id, .. } => Some((*index, id.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_id_at_a_used_index_is_a_new_call() {
        // Ollama 0.20: two whole calls, both at index 0.
        let out = decode_all(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_a","index":0,"type":"function","function":{"name":"write_file","arguments":"{\"path\":\"a\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_b","index":0,"type":"function","function":{"name":"write_file","arguments":"{\"path\":\"b\"}"}}]}}]}"#,
        ]);
        assert_eq!(
            starts(&out),
            [(0, "call_a".to_owned()), (1, "call_b".to_owned())]
        );
        assert!(out.contains(&StreamEvent::ToolCallArgs {
            index: 1,
            fragment: r#"{"path":"b"}"#.into()
        }));
    }

    #[test]
    fn missing_indices_and_empty_ids_continue_the_call_they_belong_to() {
        let out = decode_all(&[
            // No index at all (old Ollama): told apart by id.
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"x","function":{"name":"a","arguments":"{"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"","function":{"arguments":"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"y","function":{"name":"b","arguments":"{}"}}]}}]}"#,
            // The same id again is the same call.
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"y","function":{"arguments":""}}]}}]}"#,
        ]);
        assert_eq!(
            starts(&out),
            [(0, "x".into()), (1, "y".into()), (1, "y".into())]
        );
        assert!(out.contains(&StreamEvent::ToolCallArgs {
            index: 0,
            fragment: "}".into()
        }));
    }

    #[test]
    fn reasoning_streams_apart_from_the_answer() {
        let out = decode_all(&[
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"Let me think"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning":" more","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Done."}}]}"#,
        ]);
        assert_eq!(
            out,
            [
                StreamEvent::ReasoningDelta("Let me think".into()),
                StreamEvent::ReasoningDelta(" more".into()),
                StreamEvent::TextDelta("Done.".into()),
            ]
        );
    }

    #[test]
    fn errors_in_the_stream_are_read_in_both_shapes() {
        let mut d = ChunkDecoder::default();
        let err = d
            .decode(sse(
                r#"{"error":{"code":500,"message":"peg","type":"server_error"}}"#,
            ))
            .unwrap_err();
        assert!(matches!(err, LlmError::StreamServer { status: 500, .. }));
        let err = d
            .decode(SseEvent {
                event: Some("error".into()),
                data: r#"{"code":503,"message":"Loading model","type":"unavailable_error"}"#.into(),
            })
            .unwrap_err();
        assert!(matches!(err, LlmError::StreamServer { status: 503, .. }));
    }
}
