//! The Anthropic provider against a fake server speaking the Messages
//! streaming protocol.

use crate::support::fake_llm;

use std::time::Duration;

use fake_llm::*;
use memofab::domain::{AgentRole, TokenUsage};
use memofab::llm::anthropic::AnthropicProvider;
use memofab::llm::http::{Endpoint, RetryPolicy};
use memofab::llm::{
    ChatMessage, Completion, CompletionRequest, FinishReason, LlmError, LlmProvider, ScriptKey,
    ToolCall, collect_completion,
};
use serde_json::json;

const KEY: &str = "sk-ant-test-0123456789";

fn provider(server: &FakeServer) -> AnthropicProvider {
    let retry = RetryPolicy {
        max_retries: 2,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
    };
    let endpoint = Endpoint::new(
        &server.url(),
        Some(KEY.to_owned()),
        Duration::from_secs(2),
        Duration::from_secs(5),
        retry,
    )
    .unwrap();
    AnthropicProvider::new("fake", endpoint)
}

fn request() -> CompletionRequest {
    CompletionRequest {
        model: "claude-test".into(),
        system: "You review code.".into(),
        messages: vec![
            ChatMessage::User {
                content: "Review.".into(),
            },
            ChatMessage::Assistant {
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "tu_0".into(),
                    name: "list_files".into(),
                    arguments: "{}".into(),
                }],
            },
            ChatMessage::ToolResult {
                call_id: "tu_0".into(),
                content: "src/".into(),
                is_error: false,
            },
        ],
        tools: vec![],
        max_tokens: 512,
        temperature: None,
        reasoning_effort: None,
        script: ScriptKey {
            role: AgentRole::Reviewer,
            task: None,
            attempt: 1,
        },
    }
}

async fn complete(p: &AnthropicProvider) -> Result<Completion, LlmError> {
    tokio::time::timeout(
        Duration::from_secs(10),
        collect_completion(p.stream(request()), |_| {}),
    )
    .await
    .expect("finishes in time")
}

fn conversation() -> Vec<u8> {
    let args = r#"{"approved": true, "feedback": "Looks right ✓"}"#;
    let mut events = vec![
        ("message_start", json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 40, "cache_read_input_tokens": 8, "output_tokens": 1}}}).to_string()),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}).to_string()),
        ("ping", json!({"type": "ping"}).to_string()),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Vérifié "}}).to_string()),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "— fine."}}).to_string()),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0}).to_string()),
        ("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "tu_1", "name": "submit_review", "input": {}}}).to_string()),
    ];
    let chars: Vec<char> = args.chars().collect();
    for piece in chars.chunks(5) {
        let partial: String = piece.iter().collect();
        events.push(("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": partial}}).to_string()));
    }
    events.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 1}).to_string(),
    ));
    events.push(("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 25}}).to_string()));
    events.push(("message_stop", json!({"type": "message_stop"}).to_string()));
    named_sse(&events)
}

#[tokio::test]
async fn text_and_tool_use_stream_in_pieces() {
    let server = FakeServer::start(vec![ok(chunked(&conversation(), 9))]).await;
    let c = complete(&provider(&server)).await.unwrap();
    assert_eq!(c.text, "Vérifié — fine.");
    assert_eq!(c.finish, FinishReason::ToolCalls);
    assert_eq!(c.tool_calls.len(), 1);
    assert_eq!(c.tool_calls[0].name, "submit_review");
    let args: serde_json::Value = serde_json::from_str(&c.tool_calls[0].arguments).unwrap();
    assert_eq!(args["feedback"], "Looks right ✓");
    assert_eq!(
        c.usage,
        // Anthropic's input_tokens leaves out the cache: 40 fresh + 8 read.
        TokenUsage {
            input: 48,
            output: 25,
            cached: 8,
            cache_write: 0,
        }
    );

    let req = server.request(0);
    assert!(req.head.starts_with("POST /v1/messages "), "{}", req.head);
    assert_eq!(req.header("x-api-key").unwrap(), KEY);
    assert_eq!(req.header("anthropic-version").unwrap(), "2023-06-01");
    let body = req.json();
    assert_eq!(body["system"][0]["text"], "You review code.");
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(body["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(body["messages"][2]["content"][0]["tool_use_id"], "tu_0");
}

#[tokio::test]
async fn an_error_event_mid_stream_is_reported() {
    let body = named_sse(&[
        ("message_start", json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}}}).to_string()),
        ("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).to_string()),
    ]);
    let server = FakeServer::start(vec![ok(vec![body])]).await;
    assert_eq!(
        complete(&provider(&server)).await.unwrap_err(),
        LlmError::StreamServer {
            status: 529,
            message: "Overloaded".into()
        }
    );
}

#[tokio::test]
async fn overload_is_retried_and_a_cut_stream_is_truncated() {
    let server = FakeServer::start(vec![
        status(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            &[],
        ),
        ok(chunked(&conversation(), 64)),
    ])
    .await;
    assert!(complete(&provider(&server)).await.is_ok());
    assert_eq!(server.count(), 2);

    let full = conversation();
    let cut = full[..full.len() / 2].to_vec();
    let server = FakeServer::start(vec![ok(vec![cut])]).await;
    assert_eq!(
        complete(&provider(&server)).await.unwrap_err(),
        LlmError::Truncated
    );
}

#[tokio::test]
async fn bad_key_is_an_auth_error_without_the_key() {
    let body = format!(
        r#"{{"type":"error","error":{{"type":"authentication_error","message":"invalid x-api-key {KEY}"}}}}"#
    );
    let server = FakeServer::start(vec![status(401, &body, &[])]).await;
    let err = complete(&provider(&server)).await.unwrap_err();
    assert!(matches!(err, LlmError::Auth { .. }));
    assert!(!err.to_string().contains(KEY));
    assert_eq!(server.count(), 1);
}
