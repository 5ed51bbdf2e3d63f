//! The OpenAI-compatible provider against a fake server that speaks the
//! streaming wire format byte for byte, chunk boundaries included.

use crate::support::fake_llm;

use std::time::Duration;

use fake_llm::*;
use memofab::domain::{AgentRole, TokenUsage};
use memofab::llm::http::{Endpoint, RetryPolicy};
use memofab::llm::openai::OpenAiProvider;
use memofab::llm::{
    ChatMessage, Completion, CompletionRequest, FinishReason, LlmError, LlmProvider, ScriptKey,
    ToolSpec, collect_completion,
};
use serde_json::json;

const KEY: &str = "sk-test-0123456789abcdef";

fn provider(server: &FakeServer, retries: u32) -> OpenAiProvider {
    let retry = RetryPolicy {
        max_retries: retries,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
    };
    let endpoint = Endpoint::new(
        &format!("{}/v1", server.url()),
        Some(KEY.to_owned()),
        Duration::from_secs(2),
        Duration::from_secs(5),
        retry,
    )
    .unwrap();
    OpenAiProvider::new("fake", endpoint)
}

fn request() -> CompletionRequest {
    CompletionRequest {
        model: "gpt-test".into(),
        system: "You are a coder.".into(),
        messages: vec![ChatMessage::User {
            content: "Fix it.".into(),
        }],
        tools: vec![ToolSpec {
            name: "read_file".into(),
            description: "Read a file".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }],
        max_tokens: 256,
        temperature: None,
        reasoning_effort: None,
        script: ScriptKey {
            role: AgentRole::Coder,
            task: None,
            attempt: 1,
        },
    }
}

async fn complete(p: &OpenAiProvider) -> Result<Completion, LlmError> {
    let mut seen = String::new();
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        collect_completion(p.stream(request()), |t| seen.push_str(t)),
    )
    .await
    .expect("finishes in time");
    if let Ok(c) = &out {
        assert_eq!(seen, c.text, "deltas add up to the text");
    }
    out
}

fn chunk(delta: serde_json::Value, finish: Option<&str>) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string()
}

fn usage(input: u64, output: u64) -> String {
    json!({"id": "c", "choices": [], "usage": {"prompt_tokens": input, "completion_tokens": output, "prompt_tokens_details": {"cached_tokens": 3}}}).to_string()
}

#[tokio::test]
async fn text_streams_across_split_characters_and_events() {
    let text = "Héllo ✓ wörld — ok";
    let mut events: Vec<String> = text
        .split_inclusive(' ')
        .map(|w| chunk(json!({"content": w}), None))
        .collect();
    events.push(chunk(json!({}), Some("stop")));
    events.push(usage(12, 7));
    events.push("[DONE]".into());
    let body = sse(&events);
    // 7-byte chunks split SSE lines, events, and multi-byte characters.
    let server = FakeServer::start(vec![ok(chunked(&body, 7))]).await;
    let c = complete(&provider(&server, 0)).await.unwrap();
    assert_eq!(c.text, text);
    assert_eq!(c.finish, FinishReason::Stop);
    assert_eq!(
        c.usage,
        TokenUsage {
            input: 12,
            output: 7,
            cached: 3,
            cache_write: 0,
        }
    );

    let req = server.request(0);
    assert!(
        req.head.starts_with("POST /v1/chat/completions "),
        "{}",
        req.head
    );
    assert_eq!(
        req.header("authorization").unwrap(),
        format!("Bearer {KEY}")
    );
    let body = req.json();
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You are a coder."})
    );
    assert_eq!(body["tools"][0]["function"]["name"], "read_file");
}

#[tokio::test]
async fn parallel_tool_calls_are_assembled_from_many_deltas() {
    let args_a = r#"{"path": "src/main.rs"}"#;
    let args_b = r#"{"path": "Cargo.toml"}"#;
    let mut events = vec![
        chunk(
            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "read_file", "arguments": ""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "read_file", "arguments": ""}}]}),
            None,
        ),
    ];
    // Interleave the two calls' argument fragments, three bytes at a time.
    let (a, b): (Vec<char>, Vec<char>) = (args_a.chars().collect(), args_b.chars().collect());
    for i in (0..a.len().max(b.len())).step_by(3) {
        for (index, s) in [(0, &a), (1, &b)] {
            if i < s.len() {
                let piece: String = s[i..(i + 3).min(s.len())].iter().collect();
                events.push(chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
        }
    }
    events.push(chunk(json!({}), Some("tool_calls")));
    events.push(usage(30, 20));
    events.push("[DONE]".into());
    let server = FakeServer::start(vec![ok(chunked(&sse(&events), 50))]).await;
    let c = complete(&provider(&server, 0)).await.unwrap();
    assert_eq!(c.finish, FinishReason::ToolCalls);
    assert_eq!(c.tool_calls.len(), 2);
    assert_eq!(
        (
            c.tool_calls[0].id.as_str(),
            c.tool_calls[0].arguments.as_str()
        ),
        ("call_a", args_a)
    );
    assert_eq!(
        (
            c.tool_calls[1].id.as_str(),
            c.tool_calls[1].arguments.as_str()
        ),
        ("call_b", args_b)
    );
}

fn good_reply() -> Reply {
    ok(vec![sse(&[
        chunk(json!({"content": "fine"}), Some("stop")),
        "[DONE]".into(),
    ])])
}

#[tokio::test]
async fn rate_limits_go_to_the_governor_with_the_time_asked() {
    // Not retried here: the agent's governor parks every agent on the
    // provider instead (tests/quota_governor.rs).
    let server = FakeServer::start(vec![
        status(
            429,
            r#"{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota"}}"#,
            &[("retry-after", "7")],
        ),
        good_reply(),
    ])
    .await;
    let err = complete(&provider(&server, 3)).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::RateLimited {
            message: "You exceeded your current quota".into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    assert_eq!(server.count(), 1, "not retried by the HTTP layer");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let server = FakeServer::start(vec![
        status(500, r#"{"error": {"message": "boom"}}"#, &[]),
        status(500, r#"{"error": {"message": "boom"}}"#, &[]),
        good_reply(),
    ])
    .await;
    assert_eq!(complete(&provider(&server, 3)).await.unwrap().text, "fine");
    assert_eq!(server.count(), 3);

    let exhausted = FakeServer::start(vec![status(503, "overloaded", &[])]).await;
    let err = complete(&provider(&exhausted, 2)).await.unwrap_err();
    assert!(matches!(err, LlmError::Server { status: 503, .. }), "{err}");
    assert_eq!(exhausted.count(), 3, "one try and two retries");
}

#[tokio::test]
async fn bad_credentials_fail_at_once_without_leaking_the_key() {
    let body = format!(
        r#"{{"error": {{"message": "Incorrect API key provided: {KEY}", "type": "invalid_request_error"}}}}"#
    );
    let server = FakeServer::start(vec![status(401, &body, &[])]).await;
    let err = complete(&provider(&server, 3)).await.unwrap_err();
    assert!(matches!(err, LlmError::Auth { status: 401, .. }), "{err}");
    assert_eq!(server.count(), 1, "not retried");
    let shown = err.to_string();
    assert!(shown.contains("Incorrect API key provided"), "{shown}");
    assert!(!shown.contains(KEY), "the key leaked: {shown}");

    let missing = FakeServer::start(vec![status(
        404,
        r#"{"error": {"message": "The model `nope` does not exist"}}"#,
        &[],
    )])
    .await;
    let err = complete(&provider(&missing, 3)).await.unwrap_err();
    assert!(
        matches!(err, LlmError::NotFound { .. }) && err.to_string().contains("nope"),
        "{err}"
    );
}

#[tokio::test]
async fn a_stream_cut_midway_is_truncated() {
    let events = vec![
        chunk(json!({"content": "partial "}), None),
        chunk(json!({"content": "answ"}), None),
    ];
    let server = FakeServer::start(vec![ok(chunked(&sse(&events), 16))]).await;
    assert_eq!(
        complete(&provider(&server, 0)).await.unwrap_err(),
        LlmError::Truncated
    );
}

#[tokio::test]
async fn garbage_in_a_data_line_is_a_protocol_error() {
    let body =
        b"data: {\"choices\": [{\"delta\": {\"content\": \"hi\"}}]}\n\ndata: {not json at all\n\n"
            .to_vec();
    let server = FakeServer::start(vec![ok(vec![body])]).await;
    assert!(matches!(
        complete(&provider(&server, 0)).await.unwrap_err(),
        LlmError::Protocol(_)
    ));
}

#[tokio::test]
async fn dropping_the_stream_stops_reading() {
    // A reply that would take long to stream; the consumer gives up early.
    let events: Vec<String> = (0..200)
        .map(|i| chunk(json!({"content": format!("w{i} ")}), None))
        .collect();
    let server = FakeServer::start(vec![ok(chunked(&sse(&events), 40))]).await;
    let p = provider(&server, 0);
    let mut stream = p.stream(request());
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(matches!(first, Some(Ok(_))));
    drop(stream);
    assert_eq!(server.count(), 1);
}

fn doctor(
    config: &std::path::Path,
    dir: &std::path::Path,
    key: Option<&str>,
) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_memofab"));
    cmd.arg("--repo")
        .arg(dir)
        .arg("doctor")
        .arg("--config")
        .arg(config);
    cmd.env("XDG_CONFIG_HOME", dir.join("xdg"));
    match key {
        Some(k) => cmd.env("MEMOFAB_TEST_KEY", k),
        None => cmd.env_remove("MEMOFAB_TEST_KEY"),
    };
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reaches_each_configured_provider() {
    let server = FakeServer::start(vec![
        ok(vec![sse(&[
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "ping", "arguments": "{\"message\":\"hello\"}"}}]}),
                Some("tool_calls"),
            ),
            "[DONE]".into(),
        ])]),
        status(
            401,
            r#"{"error": {"message": "Incorrect API key provided"}}"#,
            &[],
        ),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"MEMOFAB_TEST_KEY\"\nmodel = \"qwen-test\"\nmax_retries = 0\n[roles.default]\nprovider = \"local\"\n",
            server.url()
        ),
    )
    .unwrap();
    let path = dir.path().to_owned();
    let (cfg, p2) = (config.clone(), path.clone());
    let good = tokio::task::spawn_blocking(move || doctor(&cfg, &p2, Some(KEY)))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(
        text.contains("ok   provider local, model qwen-test: tool calls: yes"),
        "{text}"
    );
    assert!(good.status.success(), "{text}");

    let (cfg, p2) = (config.clone(), path.clone());
    let bad = tokio::task::spawn_blocking(move || doctor(&cfg, &p2, Some(KEY)))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        text.contains("FAIL provider local") && text.contains("Incorrect API key"),
        "{text}"
    );
    assert!(!text.contains(KEY));
    assert!(!bad.status.success());

    let (cfg, p2) = (config, path);
    let missing = tokio::task::spawn_blocking(move || doctor(&cfg, &p2, None))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&missing.stdout);
    assert!(
        text.contains("MEMOFAB_TEST_KEY") && text.contains("not set"),
        "{text}"
    );
}

/// A reasoning model reached through a gateway (not api.openai.com) gets
/// `max_completion_tokens`, chosen by its family.
#[tokio::test]
async fn a_reasoning_model_behind_a_gateway_gets_max_completion_tokens() {
    let server = FakeServer::start(vec![good_reply()]).await;
    let p = provider(&server, 0);
    let o3 = CompletionRequest {
        model: "openai/o3-mini".into(),
        ..request()
    };
    collect_completion(p.stream(o3), |_| {}).await.unwrap();
    let body = server.request(0).json();
    assert_eq!(body["max_completion_tokens"], 256);
    assert!(body.get("max_tokens").is_none());
}

/// The 400 that asks for the other field name is answered by asking again
/// once with it, and the provider keeps it for its later requests.
#[tokio::test]
async fn a_refused_cap_field_is_switched_once_and_remembered() {
    let refused = r#"{"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}"#;
    let server =
        FakeServer::start(vec![status(400, refused, &[]), good_reply(), good_reply()]).await;
    let p = provider(&server, 0);
    assert_eq!(complete(&p).await.unwrap().text, "fine");
    assert_eq!(complete(&p).await.unwrap().text, "fine");
    assert_eq!(server.count(), 3, "asked again once, then once more");
    let sent: Vec<_> = (0..3).map(|i| server.request(i).json()).collect();
    assert_eq!(sent[0]["max_tokens"], 256);
    for later in &sent[1..] {
        assert_eq!(later["max_completion_tokens"], 256);
        assert!(later.get("max_tokens").is_none());
    }

    // A second refusal is not asked again.
    let stubborn =
        FakeServer::start(vec![status(400, refused, &[]), status(400, refused, &[])]).await;
    let err = complete(&provider(&stubborn, 0)).await.unwrap_err();
    assert!(
        matches!(err, LlmError::BadRequest { status: 400, .. }),
        "{err}"
    );
    assert_eq!(stubborn.count(), 2);
}
