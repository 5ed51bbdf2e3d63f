//! Real servers' wire formats (recorded in tests/fixtures/llm/) against the
//! real HTTP providers and, where the fix lives in the agent, a real agent
//! with a real recorder, store and tools: Ollama's parallel calls at one
//! index, OpenAI's `max_completion_tokens`, reasoning shown as thinking,
//! server errors inside a 200 stream, Anthropic's cache usage and in-stream
//! overload, tool calls written as text, and the bound on calls per reply.

use crate::support::{agent_bench, fake_llm};

use std::sync::Arc;
use std::time::Duration;

use fake_llm::*;
use memofab::config::{ProviderConfig, ProviderKind};
use memofab::domain::event::{
    AgentMessage, AgentParked, ReplyBrokenOff, TokensUsed, ToolCalled, Warning,
};
use memofab::domain::{AgentRole, Event, EventKind, MessageAuthor, TokenUsage};
use memofab::engine::agent::{AgentJob, AgentOutcome, AgentRunner, IGNORED_CALL, review_tool};
use memofab::engine::prompts::Prompt;
use memofab::llm::anthropic::AnthropicProvider;
use memofab::llm::governor::{Governor, GovernorConfig};
use memofab::llm::http::{Endpoint, RetryPolicy};
use memofab::llm::openai::{MaxTokensField, OpenAiProvider};
use memofab::llm::types::TextToolCalls;
use memofab::llm::{
    ChatMessage, Completion, CompletionRequest, LlmError, LlmProvider, ReasoningEffort,
    ReplyLimits, ScriptKey, ToolSpec, assemble,
};
use serde_json::{Value, json};

fn endpoint(server: &FakeServer, path: &str) -> Endpoint {
    let retry = RetryPolicy {
        max_retries: 2,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
    };
    Endpoint::new(
        &format!("{}{path}", server.url()),
        None,
        Duration::from_secs(2),
        Duration::from_secs(5),
        retry,
    )
    .unwrap()
}

fn openai(server: &FakeServer) -> Arc<dyn LlmProvider> {
    Arc::new(OpenAiProvider::new("local", endpoint(server, "/v1")))
}

fn anthropic(server: &FakeServer) -> Arc<dyn LlmProvider> {
    Arc::new(AnthropicProvider::new("cloud", endpoint(server, "")))
}

fn request() -> CompletionRequest {
    CompletionRequest {
        model: "m".into(),
        system: "You code.".into(),
        messages: vec![ChatMessage::User {
            content: "Go.".into(),
        }],
        tools: vec![ToolSpec {
            name: "write_file".into(),
            description: "Write a file".into(),
            parameters: json!({"type": "object", "required": ["path", "content"]}),
        }],
        max_tokens: 300,
        temperature: None,
        reasoning_effort: None,
        script: ScriptKey {
            role: AgentRole::Coder,
            task: None,
            attempt: 1,
        },
    }
}

async fn complete(provider: &dyn LlmProvider) -> Result<Completion, LlmError> {
    tokio::time::timeout(
        Duration::from_secs(10),
        assemble(provider.stream(request()), |_| {}),
    )
    .await
    .expect("finishes in time")
    .map_err(|i| i.error)
}

// ---- the providers alone ------------------------------------------------

#[tokio::test]
async fn ollama_calls_sharing_index_zero_stay_two_calls() {
    let server = FakeServer::start(vec![fixture_reply("ollama_parallel_tool_calls.sse", 13)]).await;
    let c = complete(&*openai(&server)).await.unwrap();
    let calls: Vec<(&str, Value)> = c
        .tool_calls
        .iter()
        .map(|t| (t.id.as_str(), serde_json::from_str(&t.arguments).unwrap()))
        .collect();
    assert_eq!(
        calls,
        [
            (
                "call_wn3ds1uq",
                json!({"content": "print(\"hello\")\n", "path": "hello.py"})
            ),
            (
                "call_0f6k2x9a",
                json!({"content": "print(\"world\")\n", "path": "world.py"})
            ),
        ]
    );
}

fn provider_config(server: &FakeServer) -> ProviderConfig {
    ProviderConfig {
        base_url: Some(format!("{}/v1", server.url())),
        request_timeout_secs: 5,
        connect_timeout_secs: 2,
        max_retries: 2,
        max_concurrency: 2,
        max_parked_secs: 60,
        text_tool_calls: TextToolCalls::Auto,
        ..ProviderConfig::new(ProviderKind::Openai)
    }
}

#[tokio::test]
async fn the_reply_cap_goes_by_the_name_the_server_wants() {
    let server = FakeServer::start(vec![fixture_reply("llamacpp_reasoning_content.sse", 64)]).await;
    // A local server (this one) gets max_tokens by default…
    let local = memofab::llm::factory::build_provider("local", &provider_config(&server)).unwrap();
    complete(&*local).await.unwrap();
    // …an OpenAI reasoning model max_completion_tokens and its effort.
    let cloud_cfg = ProviderConfig {
        max_tokens_field: Some(MaxTokensField::MaxCompletionTokens),
        reasoning_effort: Some(ReasoningEffort::Low),
        ..provider_config(&server)
    };
    let cloud = memofab::llm::factory::build_provider("cloud", &cloud_cfg).unwrap();
    complete(&*cloud).await.unwrap();

    let bodies = server.bodies();
    assert_eq!(bodies[0]["max_tokens"], 300);
    assert!(bodies[0].get("max_completion_tokens").is_none());
    assert!(bodies[0].get("reasoning_effort").is_none());
    assert_eq!(bodies[1]["max_completion_tokens"], 300);
    assert!(bodies[1].get("max_tokens").is_none(), "{}", bodies[1]);
    assert_eq!(bodies[1]["reasoning_effort"], "low");
}

/// OpenAI's refusal of `max_tokens` is asked again once, with
/// `max_completion_tokens`; refused again, it is a bad request, not retried.
#[tokio::test]
async fn openais_refusal_of_max_tokens_is_asked_again_once_with_the_other_field() {
    let body = String::from_utf8(fixture("openai_max_tokens_unsupported.json")).unwrap();
    let server = FakeServer::start(vec![status(400, &body, &[])]).await;
    let err = complete(&*openai(&server)).await.unwrap_err();
    assert!(
        matches!(err, LlmError::BadRequest { status: 400, .. }),
        "{err}"
    );
    assert_eq!(server.count(), 2);
    let bodies = server.bodies();
    assert_eq!(bodies[0]["max_tokens"], bodies[1]["max_completion_tokens"]);
    assert!(bodies[1].get("max_tokens").is_none());
}

#[tokio::test]
async fn reasoning_content_is_thinking_not_the_answer() {
    let server = FakeServer::start(vec![fixture_reply("llamacpp_reasoning_content.sse", 17)]).await;
    let c = complete(&*openai(&server)).await.unwrap();
    assert_eq!(c.text, "ok");
    assert_eq!(c.reasoning, "The user wants a one-word answer.");
    assert_eq!((c.usage.input, c.usage.output), (31, 14));
}

#[tokio::test]
async fn a_server_error_inside_a_200_stream_is_a_server_error() {
    for (name, chunk) in [
        ("llamacpp_peg_native_error.sse", 19),
        // Older servers: a non-SSE `error:` line, then `data: [DONE]`.
        ("llamacpp_legacy_error_field.sse", 7),
    ] {
        let server = FakeServer::start(vec![fixture_reply(name, chunk)]).await;
        let err = complete(&*openai(&server)).await.unwrap_err();
        assert!(
            matches!(err, LlmError::StreamServer { status: 500, .. }),
            "{name}: {err:?}"
        );
        assert!(err.is_retryable() && !err.is_garbled(), "{name}");
    }
}

#[tokio::test]
async fn anthropic_cache_tokens_are_input_and_thinking_is_apart() {
    let server = FakeServer::start(vec![fixture_reply("anthropic_cache_usage.sse", 23)]).await;
    let c = complete(&*anthropic(&server)).await.unwrap();
    assert_eq!(c.text, "Approved.");
    assert_eq!(c.reasoning, "The file is short; approve.");
    assert_eq!(
        c.usage,
        TokenUsage {
            input: 12 + 2048 + 10240,
            output: 38,
            cached: 10240,
            cache_write: 2048,
        }
    );
}

// ---- through an agent ----------------------------------------------------

/// The shared bench with this module's `runner` and jobs (its own type:
/// every module adds methods of these names).
struct Bench(agent_bench::AgentBench);

impl std::ops::Deref for Bench {
    type Target = agent_bench::AgentBench;

    fn deref(&self) -> &agent_bench::AgentBench {
        &self.0
    }
}

fn bench() -> Bench {
    Bench(agent_bench::AgentBench::new("wire"))
}

impl Bench {
    fn runner(&self, provider: Arc<dyn LlmProvider>, reply: ReplyLimits) -> AgentRunner {
        AgentRunner {
            recorder: self.recorder.clone(),
            provider,
            model: "m".into(),
            max_turns: 4,
            prices: Default::default(),
            governor: Governor::new("local", GovernorConfig::default()),
            reply,
            small_model_guards: false,
            shepherd: Default::default(),
        }
    }

    fn coder(&self) -> AgentJob {
        self.coder_job("Write hello.py and world.py.", 1, 4096)
    }
}

fn prompt() -> Prompt {
    Prompt {
        text: "You code.".into(),
        source: "test".into(),
    }
}

fn reviewer() -> AgentJob {
    AgentJob {
        role: AgentRole::PlanReviewer,
        task: None,
        attempt: 1,
        prompt: prompt(),
        first_message: "Review.".into(),
        toolbox: None,
        submit: Some(review_tool()),
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string()
}

/// An OpenAI-format reply making `calls` (name, arguments) in one turn.
fn calls_reply(calls: &[(&str, Value)]) -> Reply {
    let mut events: Vec<String> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            chunk(
                json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function",
                    "function": {"name": name, "arguments": args.to_string()}}]}),
                None,
            )
        })
        .collect();
    events.push(chunk(json!({}), Some("tool_calls")));
    events.push("[DONE]".into());
    ok(chunked(&sse(&events), 101))
}

fn finish_reply() -> Reply {
    calls_reply(&[("finish", json!({"summary": "done"}))])
}

fn approval_reply() -> Reply {
    calls_reply(&[("submit_review", json!({"approved": true, "feedback": ""}))])
}

fn messages(events: &[Event], from: MessageAuthor) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentMessage(AgentMessage { from: f, text, .. }) if *f == from => {
                Some(text.clone())
            }
            _ => None,
        })
        .collect()
}

fn tool_calls(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolCalled(ToolCalled { tool, .. }) => Some(tool.clone()),
            _ => None,
        })
        .collect()
}

fn usages(events: &[Event]) -> Vec<TokenUsage> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TokensUsed(TokensUsed { usage, .. }) => Some(*usage),
            _ => None,
        })
        .collect()
}

fn parked(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentParked(AgentParked { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn two_ollama_calls_at_index_zero_write_two_files_and_the_next_request_is_valid() {
    let b = bench();
    let server = FakeServer::start(vec![
        fixture_reply("ollama_parallel_tool_calls.sse", 31),
        finish_reply(),
    ])
    .await;
    let outcome = b
        .runner(openai(&server), ReplyLimits::default())
        .run(b.coder())
        .await
        .unwrap();
    assert!(
        matches!(outcome, Ok(AgentOutcome::Finished { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        std::fs::read_to_string(b.work().join("hello.py")).unwrap(),
        "print(\"hello\")\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.work().join("world.py")).unwrap(),
        "print(\"world\")\n"
    );
    // What Ollama answered 400 to: one call whose arguments were two objects.
    let second = &server.bodies()[1];
    let sent = second["messages"].as_array().unwrap();
    let assistant = &sent[2];
    assert_eq!(assistant["tool_calls"].as_array().unwrap().len(), 2);
    for call in assistant["tool_calls"].as_array().unwrap() {
        let args = call["function"]["arguments"].as_str().unwrap();
        serde_json::from_str::<Value>(args).expect("each call's arguments are one object");
    }
    assert_eq!(sent[3]["tool_call_id"], "call_wn3ds1uq");
    assert_eq!(sent[4]["tool_call_id"], "call_0f6k2x9a");
}

#[tokio::test]
async fn an_in_stream_server_error_backs_off_through_the_governor_and_is_asked_again() {
    let b = bench();
    let server = FakeServer::start(vec![
        fixture_reply("llamacpp_peg_native_error.sse", 29),
        approval_reply(),
    ])
    .await;
    let outcome = b
        .runner(openai(&server), ReplyLimits::default())
        .run(reviewer())
        .await
        .unwrap();
    assert!(
        matches!(outcome, Ok(AgentOutcome::Submitted { .. })),
        "{outcome:?}"
    );
    assert_eq!(server.count(), 2);
    let events = b.events();
    let parks = parked(&events);
    assert_eq!(parks.len(), 1, "{parks:?}");
    assert!(parks[0].contains("peg-native"), "{}", parks[0]);
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Warning(Warning { message, .. }) if message.contains("asking again"))),
        "not taken for a garbled reply"
    );
}

#[tokio::test]
async fn anthropic_overload_mid_stream_backs_off_and_its_tokens_are_counted() {
    let b = bench();
    let done = named_sse(&[
        ("message_start", json!({"type": "message_start", "message": {"usage": {"input_tokens": 1830, "output_tokens": 1}}}).to_string()),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "tu_1", "name": "submit_review", "input": {}}}).to_string()),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"approved\": true, \"feedback\": \"\"}"}}).to_string()),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0}).to_string()),
        ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}}).to_string()),
        ("message_stop", json!({"type": "message_stop"}).to_string()),
    ]);
    let server = FakeServer::start(vec![
        fixture_reply("anthropic_overloaded_midstream.sse", 37),
        ok(vec![done]),
    ])
    .await;
    let outcome = b
        .runner(anthropic(&server), ReplyLimits::default())
        .run(reviewer())
        .await
        .unwrap();
    assert!(
        matches!(outcome, Ok(AgentOutcome::Submitted { .. })),
        "{outcome:?}"
    );
    let events = b.events();
    assert_eq!(parked(&events).len(), 1);
    // The overloaded attempt had read 1,830 prompt tokens: they are paid for.
    let used = usages(&events);
    assert_eq!(used.len(), 2, "{used:?}");
    assert_eq!((used[0].input, used[1].input), (1830, 1830));
}

#[tokio::test]
async fn a_call_written_as_text_is_run_and_said_so() {
    let b = bench();
    let server = FakeServer::start(vec![
        fixture_reply("llamacpp_qwen_text_tool_call.sse", 11),
        finish_reply(),
    ])
    .await;
    let outcome = b
        .runner(openai(&server), ReplyLimits::default())
        .run(b.coder())
        .await
        .unwrap();
    assert!(
        matches!(outcome, Ok(AgentOutcome::Finished { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        std::fs::read_to_string(b.work().join("hello.py")).unwrap(),
        "print('hello')\n"
    );
    let events = b.events();
    assert_eq!(tool_calls(&events), ["write_file", "finish"]);
    let notes = messages(&events, MessageAuthor::System);
    assert!(notes.iter().any(|n| n.contains("write_file")), "{notes:?}");
    // The model is shown its call as a call, not as text.
    let sent = &server.bodies()[1]["messages"];
    assert_eq!(sent[2]["tool_calls"][0]["function"]["name"], "write_file");
    assert_eq!(sent[3]["role"], "tool");
}

#[tokio::test]
async fn with_text_tool_calls_off_the_text_stays_text() {
    let b = bench();
    let server = FakeServer::start(vec![
        fixture_reply("llamacpp_qwen_text_tool_call.sse", 11),
        finish_reply(),
    ])
    .await;
    let cfg = ProviderConfig {
        text_tool_calls: TextToolCalls::Off,
        ..provider_config(&server)
    };
    let provider = memofab::llm::factory::build_provider("local", &cfg).unwrap();
    b.runner(provider, ReplyLimits::default())
        .run(b.coder())
        .await
        .unwrap()
        .unwrap();
    assert!(!b.work().join("hello.py").exists());
    assert_eq!(tool_calls(&b.events()), ["finish"]);
}

#[tokio::test]
async fn calls_past_the_limit_are_answered_ignored_and_not_run() {
    let b = bench();
    std::fs::write(b.work().join("a.rs"), "fn a() {}\n").unwrap();
    let many: Vec<(&str, Value)> = (0..20)
        .map(|_| ("read_file", json!({"path": "a.rs"})))
        .collect();
    let server = FakeServer::start(vec![calls_reply(&many), finish_reply()]).await;
    let limits = ReplyLimits {
        max_tokens: 1234,
        max_tool_calls: 16,
        reasoning_effort: None,
        temperature: None,
    };
    b.runner(openai(&server), limits)
        .run(b.coder())
        .await
        .unwrap()
        .unwrap();
    let events = b.events();
    let run = tool_calls(&events);
    assert_eq!(run.iter().filter(|t| *t == "read_file").count(), 16);
    let bodies = server.bodies();
    assert_eq!(bodies[0]["max_tokens"], 1234, "the role's cap is sent");
    let results: Vec<&Value> = bodies[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(results.len(), 20, "every call is answered");
    let ignored = results
        .iter()
        .filter(|m| m["content"].as_str().unwrap().starts_with(IGNORED_CALL))
        .count();
    assert_eq!(ignored, 4);
}

#[tokio::test]
async fn reasoning_is_recorded_as_thinking_before_the_answer() {
    let b = bench();
    let server = FakeServer::start(vec![
        fixture_reply("llamacpp_reasoning_content.sse", 41),
        approval_reply(),
    ])
    .await;
    b.runner(openai(&server), ReplyLimits::default())
        .run(reviewer())
        .await
        .unwrap()
        .unwrap();
    let events = b.events();
    assert_eq!(
        messages(&events, MessageAuthor::Thinking),
        ["The user wants a one-word answer."]
    );
    assert!(messages(&events, MessageAuthor::Assistant).contains(&"ok".to_owned()));
    // The reasoning is not sent back as part of the answer.
    let sent = server.bodies()[1]["messages"].to_string();
    assert!(!sent.contains("one-word"), "{sent}");
}

/// A reply that breaks off after the 200 (OpenAI's `data: {"error": …}`
/// chunk, then `[DONE]`) is asked again, and the human is told: a
/// `reply_broken_off` event naming the agent and the attempt, in the
/// agent's transcript of the export.
#[tokio::test]
async fn a_reply_broken_off_mid_stream_is_recorded_before_it_is_asked_again() {
    let b = bench();
    let broken = ok(vec![sse(&[
        chunk(json!({"content": "Looking at the"}), None),
        json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}).to_string(),
        "[DONE]".into(),
    ])]);
    let server = FakeServer::start(vec![broken, approval_reply()]).await;
    let outcome = b
        .runner(openai(&server), ReplyLimits::default())
        .run(reviewer())
        .await
        .unwrap();
    assert!(
        matches!(outcome, Ok(AgentOutcome::Submitted { .. })),
        "{outcome:?}"
    );
    assert_eq!(server.count(), 2);
    let events = b.events();
    let broken: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ReplyBrokenOff(ReplyBrokenOff {
                agent,
                attempt,
                reason,
                ..
            }) => Some((agent.to_string(), *attempt, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(broken.len(), 1, "{broken:?}");
    let (agent, attempt, reason) = &broken[0];
    assert_eq!(attempt, &1);
    assert!(reason.contains("The server had an error"), "{reason}");
    let mut markdown = Vec::new();
    memofab::effects::store::export::export_markdown(&events, &mut markdown).unwrap();
    let markdown = String::from_utf8(markdown).unwrap();
    let transcript = markdown.split("\n### ").find(|section| {
        section.starts_with(agent.as_str()) && section.contains("The server had an error")
    });
    assert!(transcript.is_some(), "{markdown}");
}
