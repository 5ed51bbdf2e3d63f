//! Token economics against local fakes speaking the real wire formats: the
//! cache breakpoints and `prompt_cache_key` a real agent sends, cached usage
//! recorded as it is reported, a local server's own context size, and a
//! conversation compacted to fit its window with the brief intact.

use crate::support::{agent_bench, fake_llm};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fake_llm::*;
use memofab::config::{ProviderConfig, ProviderKind};
use memofab::domain::event::{ContextCompacted, TokensUsed};
use memofab::domain::{Event, EventKind, TokenUsage};
use memofab::engine::agent::{AgentJob, AgentRunner};
use memofab::engine::tools::{ToolBox, ToolSet};
use memofab::llm::compaction::{self, NOTE_HEADING, SUMMARY_INSTRUCTIONS};
use memofab::llm::factory::build_provider;
use memofab::llm::types::TextToolCalls;
use memofab::llm::{LlmProvider, ReplyLimits};
use serde_json::{Value, json};

const BRIEF: &str = "Task t1: add a --verbose flag.\nAcceptance criteria:\n- `app --verbose` \
                     prints one line per call\nFeedback from the last review:\n1. Document the flag.";

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
    Bench(agent_bench::AgentBench::new("tokens"))
}

impl Bench {
    fn runner(&self, provider: Arc<dyn LlmProvider>, reply: ReplyLimits) -> AgentRunner {
        AgentRunner {
            recorder: self.recorder.clone(),
            provider,
            model: "m".into(),
            max_turns: 40,
            prices: Default::default(),
            governor: memofab::llm::governor::Governor::new("p", Default::default()),
            reply,
            // Long conversations measured for their tokens, not shepherded.
            small_model_guards: false,
            shepherd: memofab::engine::shepherd::Desk::new(
                memofab::domain::shepherd::Thresholds::off(),
            ),
        }
    }

    fn coder(&self, first_message: &str, attempt: u32) -> AgentJob {
        self.coder_job(first_message, attempt, 64 * 1024)
    }
}

fn config(kind: ProviderKind, url: String) -> ProviderConfig {
    ProviderConfig {
        base_url: Some(url),
        request_timeout_secs: 5,
        connect_timeout_secs: 2,
        max_retries: 0,
        max_concurrency: 2,
        max_parked_secs: 60,
        text_tool_calls: TextToolCalls::Off,
        ..ProviderConfig::new(kind)
    }
}

/// An Anthropic reply: optional text, then tool calls (name, input).
fn anthropic_reply(text: &str, calls: &[(&str, Value)]) -> Vec<u8> {
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 10,
            "cache_creation_input_tokens": 100, "cache_read_input_tokens": 900, "output_tokens": 1}}}),
    )];
    let mut index = 0;
    if !text.is_empty() {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": text}}),
        ));
        index = 1;
    }
    for (name, input) in calls {
        events.push(("content_block_start", json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": format!("toolu_{index}"), "name": name, "input": {}}})));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}),
        ));
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    let stop = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop},
        "usage": {"output_tokens": 12}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let events: Vec<(&str, String)> = events
        .into_iter()
        .map(|(n, d)| (n, d.to_string()))
        .collect();
    named_sse(&events)
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

/// Every `cache_control` in a request body, as JSON pointers.
fn breakpoints(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "cache_control" {
                    assert_eq!(v, &json!({"type": "ephemeral"}));
                    out.push(at.clone());
                } else {
                    breakpoints(v, format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                breakpoints(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn anthropic_requests_mark_tools_system_and_the_newest_turns_for_caching() {
    let b = bench();
    std::fs::write(b.work().join("a.rs"), "fn a() {}\n").unwrap();
    let server = FakeServer::start(vec![
        ok(chunked(
            &anthropic_reply("Reading.", &[("read_file", json!({"path": "a.rs"}))]),
            37,
        )),
        ok(chunked(
            &anthropic_reply("", &[("read_file", json!({"path": "a.rs"}))]),
            37,
        )),
        ok(chunked(
            &anthropic_reply("", &[("finish", json!({"summary": "done"}))]),
            37,
        )),
    ])
    .await;
    let provider = build_provider("cloud", &config(ProviderKind::Anthropic, server.url())).unwrap();
    b.runner(provider, ReplyLimits::default())
        .run(b.coder(BRIEF, 1))
        .await
        .unwrap()
        .unwrap();

    let bodies = server.bodies();
    assert_eq!(bodies.len(), 3);
    let tools = bodies[0]["tools"].as_array().unwrap().len();
    for (i, body) in bodies.iter().enumerate() {
        let mut marks = Vec::new();
        breakpoints(body, String::new(), &mut marks);
        let messages = body["messages"].as_array().unwrap();
        let last_block = |m: usize| {
            let blocks = messages[m]["content"].as_array().unwrap().len();
            format!("/messages/{m}/content/{}", blocks - 1)
        };
        let mut expected = vec![
            last_block(messages.len() - 1),
            "/system/0".to_owned(),
            format!("/tools/{}", tools - 1),
        ];
        if messages.len() > 1 {
            expected.insert(0, last_block(messages.len() - 2));
        }
        marks.sort();
        expected.sort();
        assert_eq!(marks, expected, "request {i}");
        assert!(marks.len() <= 4, "the API allows four breakpoints");
    }
    assert_eq!(bodies[0]["system"][0]["text"], "You code.");
    assert_eq!(bodies[2]["messages"][0]["content"][0]["text"], BRIEF);
    // Cache reads and writes are input, recorded as reported.
    let first = usages(&b.events())[0];
    assert_eq!(
        first,
        TokenUsage {
            input: 1010,
            output: 12,
            cached: 900,
            cache_write: 100,
        }
    );
}

/// An OpenAI-format reply making one call.
fn openai_call(name: &str, args: Value) -> Reply {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0,
            "delta": delta, "finish_reason": finish}], "usage": null})
        .to_string()
    };
    let events = vec![
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": name, "arguments": args.to_string()}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
        json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 0}}})
        .to_string(),
        "[DONE]".into(),
    ];
    ok(chunked(&sse(&events), 41))
}

#[tokio::test]
async fn openai_conversations_keep_one_prompt_cache_key_and_cached_tokens_are_recorded() {
    let b = bench();
    std::fs::write(b.work().join("a.rs"), "fn a() {}\n").unwrap();
    let server = FakeServer::start(vec![
        openai_call("read_file", json!({"path": "a.rs"})),
        fixture_reply("openai_cached_usage.sse", 29),
        openai_call("read_file", json!({"path": "a.rs"})),
        fixture_reply("openai_cached_usage.sse", 29),
    ])
    .await;
    let cfg = ProviderConfig {
        prompt_cache_key: Some(true),
        ..config(ProviderKind::Openai, format!("{}/v1", server.url()))
    };
    let provider = build_provider("cloud", &cfg).unwrap();
    let runner = b.runner(provider, ReplyLimits::default());
    runner.run(b.coder(BRIEF, 1)).await.unwrap().unwrap();
    runner
        .run(b.coder("Task t2: something else.", 1))
        .await
        .unwrap()
        .unwrap();

    let bodies = server.bodies();
    assert_eq!(bodies.len(), 4);
    for body in &bodies {
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(body.get("cache_control").is_none());
    }
    let key = |i: usize| bodies[i]["prompt_cache_key"].as_str().unwrap().to_owned();
    assert_eq!(key(0), key(1), "one key for every turn of a conversation");
    assert_eq!(key(2), key(3));
    assert_ne!(key(0), key(2), "another conversation, another key");
    // The fixture's final usage chunk: 1920 of 2006 prompt tokens cached.
    let recorded = usages(&b.events());
    assert_eq!(
        recorded[1],
        TokenUsage {
            input: 2006,
            output: 19,
            cached: 1920,
            cache_write: 0,
        }
    );
    // Local servers get no key unless configured.
    let server2 = FakeServer::start(vec![openai_call("finish", json!({"summary": "ok"}))]).await;
    let local = build_provider(
        "local",
        &config(ProviderKind::Openai, format!("{}/v1", server2.url())),
    )
    .unwrap();
    b.runner(local, ReplyLimits::default())
        .run(b.coder(BRIEF, 2))
        .await
        .unwrap()
        .unwrap();
    assert!(server2.bodies()[0].get("prompt_cache_key").is_none());
}

#[tokio::test]
async fn a_local_server_reports_its_context_size() {
    // llama.cpp: GET /props.
    let llama = FakeServer::start_answering_probes(vec![Reply::Dynamic(Arc::new(|_| {
        vec![br#"{"default_generation_settings":{"n_ctx":16384},"total_slots":1}"#.to_vec()]
    }))])
    .await;
    let provider = build_provider(
        "local",
        &config(ProviderKind::Openai, format!("{}/v1", llama.url())),
    )
    .unwrap();
    assert_eq!(provider.context_tokens("qwen").await, Some(16384));
    assert_eq!(provider.context_tokens("qwen").await, Some(16384));
    assert_eq!(llama.count(), 1, "asked once");
    assert!(llama.request(0).head.starts_with("GET /props "));
    // Ollama: /props is unknown, /api/show lists num_ctx.
    let ollama = FakeServer::start_answering_probes(vec![
        status(404, "404 page not found", &[]),
        Reply::Dynamic(Arc::new(|_| {
            vec![br#"{"parameters":"num_ctx                        8192\nstop \"<|im_end|>\"","model_info":{"qwen2.context_length":32768}}"#.to_vec()]
        })),
    ])
    .await;
    let provider = build_provider(
        "ollama",
        &config(ProviderKind::Openai, format!("{}/v1", ollama.url())),
    )
    .unwrap();
    assert_eq!(
        provider.context_tokens("qwen2.5-coder:7b").await,
        Some(8192)
    );
    assert_eq!(ollama.request(1).json()["model"], "qwen2.5-coder:7b");
    // The config wins and nothing is asked.
    let quiet = FakeServer::start_answering_probes(vec![status(500, "no", &[])]).await;
    let cfg = ProviderConfig {
        context_tokens: Some(4096),
        ..config(ProviderKind::Openai, format!("{}/v1", quiet.url()))
    };
    assert_eq!(
        build_provider("x", &cfg).unwrap().context_tokens("m").await,
        Some(4096)
    );
    assert_eq!(quiet.count(), 0);
}

#[tokio::test]
async fn a_long_conversation_is_compacted_to_fit_and_keeps_its_brief() {
    let b = bench();
    for i in 0..30 {
        // Short results: stubs cannot help, the old turns are summarised.
        std::fs::write(
            b.work().join(format!("f{i}.rs")),
            format!("fn f{i}() {{}}\n").repeat(20),
        )
        .unwrap();
    }
    std::fs::write(b.work().join("big.rs"), "fn big() {}\n".repeat(400)).unwrap();
    let coder_turn = Arc::new(AtomicUsize::new(0));
    let turn = coder_turn.clone();
    let server = FakeServer::start(vec![Reply::Dynamic(Arc::new(move |req| {
        let body = req.json();
        if body["system"][0]["text"] == SUMMARY_INSTRUCTIONS {
            return vec![anthropic_reply("- SUMMARY: read f0..f9, all trivial.", &[])];
        }
        let n = turn.fetch_add(1, Ordering::SeqCst);
        let call = match n {
            0 => ("read_file", json!({"path": "big.rs"})),
            1..30 => ("read_file", json!({"path": format!("f{n}.rs")})),
            _ => ("finish", json!({"summary": "done"})),
        };
        vec![anthropic_reply(&format!("Turn {n}."), &[call])]
    }))])
    .await;
    let tools = ToolBox::specs(ToolSet::Coder);
    let fixed = compaction::fixed_tokens("You code.", &tools);
    let window = fixed + 2_500;
    let cfg = ProviderConfig {
        context_tokens: Some(window),
        ..config(ProviderKind::Anthropic, server.url())
    };
    let provider = build_provider("cloud", &cfg).unwrap();
    let reply = ReplyLimits {
        max_tokens: 500,
        ..ReplyLimits::default()
    };
    b.runner(provider, reply)
        .run(b.coder(BRIEF, 1))
        .await
        .unwrap()
        .unwrap();

    let events = b.events();
    let compactions: Vec<&EventKind> = events
        .iter()
        .map(|e| &e.kind)
        .filter(|k| matches!(k, EventKind::ContextCompacted(_)))
        .collect();
    assert!(!compactions.is_empty());
    let EventKind::ContextCompacted(ContextCompacted {
        context_tokens,
        before_tokens,
        after_tokens,
        stubbed,
        summarised,
        ..
    }) = compactions[0]
    else {
        unreachable!()
    };
    assert_eq!(*context_tokens, window);
    assert!(after_tokens < before_tokens);
    assert_eq!(
        (*stubbed, *summarised),
        (1, 0),
        "stubbing big.rs is enough at first"
    );
    let summarised: Vec<&String> = compactions
        .iter()
        .filter_map(|k| match k {
            EventKind::ContextCompacted(ContextCompacted {
                summarised, note, ..
            }) if *summarised > 0 => note.as_ref(),
            _ => None,
        })
        .collect();
    assert!(!summarised.is_empty(), "later the old turns are summarised");
    assert!(summarised[0].contains("SUMMARY: read f0..f9"));
    assert!(summarised[0].starts_with(NOTE_HEADING));

    let bodies = server.bodies();
    let coder_bodies: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["system"][0]["text"] != SUMMARY_INSTRUCTIONS)
        .collect();
    let summaries = bodies.len() - coder_bodies.len();
    assert!(summaries >= 1, "the agent's own model summarised");
    assert_eq!(coder_turn.load(Ordering::SeqCst), 31, "every turn ran");
    let limit = window - 500;
    for body in &coder_bodies {
        // The brief is always the first block, word for word.
        assert_eq!(body["messages"][0]["content"][0]["text"], BRIEF);
        // The server's count (4 bytes a token) stays under the window.
        assert!((body.to_string().len() as u64 / 4) < limit + fixed);
    }
    let last = coder_bodies.last().unwrap().to_string();
    assert!(last.contains(&NOTE_HEADING[..40]), "the note is kept");
    assert!(!last.contains("fn big() {}\\nfn big()"), "big.rs is gone");
    // The summary's tokens are paid for and recorded.
    assert_eq!(usages(&events).len(), bodies.len());
    // Shown in the exported transcript.
    let mut md = Vec::new();
    memofab::effects::store::export::export_markdown(&events, &mut md).unwrap();
    let md = String::from_utf8(md).unwrap();
    assert!(md.contains("context compacted"), "{md}");
}

/// A first message the window cannot hold has nothing to stub or
/// summarise: the agent fails without asking the model, and no compaction
/// is recorded (it would read "N → N tokens ()").
#[tokio::test]
async fn a_brief_too_big_for_the_window_records_no_compaction_that_compacted_nothing() {
    let b = bench();
    let server = FakeServer::start(vec![Reply::Dynamic(Arc::new(|_| {
        vec![anthropic_reply("never asked", &[])]
    }))])
    .await;
    let cfg = ProviderConfig {
        context_tokens: Some(8_000),
        ..config(ProviderKind::Anthropic, server.url())
    };
    let provider = build_provider("cloud", &cfg).unwrap();
    let huge = "Every word of this brief matters. ".repeat(4_000);
    let outcome = b
        .runner(provider, ReplyLimits::default())
        .run(b.coder(&huge, 1))
        .await
        .unwrap();
    assert!(outcome.is_err(), "the agent fails");
    assert_eq!(server.count(), 0, "the model is never asked");
    let events = b.events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::ContextCompacted(_))),
        "nothing was compacted, and nothing is recorded"
    );
}
