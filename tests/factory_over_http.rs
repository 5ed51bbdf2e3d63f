//! The whole demo factory run through the OpenAI-compatible provider, over
//! real HTTP and SSE, against a fake server that answers from the demo
//! scenario. Proves agents work over the real wire format, not only with
//! the in-process scripted provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fake_llm.rs"]
mod fake_llm;
#[path = "support/factory.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_llm::*;
use memofab::domain::{AgentRole, EventKind, MergeOutcome, TaskState};
use memofab::engine::context::ProviderSet;
use memofab::engine::orchestrator::Steering;
use memofab::engine::prompts::Prompts;
use memofab::engine::session::RunRequest;
use memofab::llm::http::{Endpoint, RetryPolicy};
use memofab::llm::openai::OpenAiProvider;
use memofab::llm::scripted::ScriptedProvider;
use memofab::llm::{
    ChatMessage, CompletionRequest, FinishReason, LlmProvider, ScriptKey, StreamEvent, ToolCall,
};
use serde_json::{Value, json};
use support::*;

/// First messages of the conversations seen, per role and task.
type Seen = HashMap<(AgentRole, Option<String>), Vec<String>>;

/// Recognises which scripted conversation an OpenAI request belongs to, the
/// way a real model "knows" from its context: role from the system prompt,
/// task from the brief, attempt from how many conversations that role had
/// on that task before.
struct Router {
    scripted: ScriptedProvider,
    prompts: Vec<(AgentRole, String)>,
    conversations: Mutex<Seen>,
}

impl Router {
    fn key(&self, body: &Value) -> ScriptKey {
        let messages = body["messages"].as_array().unwrap();
        let system = messages[0]["content"].as_str().unwrap();
        let role = self
            .prompts
            .iter()
            .find(|(_, p)| p == system)
            .map(|(r, _)| *r)
            .expect("known system prompt");
        let first = messages[1]["content"].as_str().unwrap().to_owned();
        let task = first
            .split("## Task ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .map(str::to_owned)
            .filter(|_| !matches!(role, AgentRole::Planner | AgentRole::PlanReviewer));
        let mut seen = self.conversations.lock().unwrap();
        let list = seen.entry((role, task.clone())).or_default();
        let attempt = match list.iter().position(|f| *f == first) {
            Some(i) => i + 1,
            None => {
                list.push(first);
                list.len()
            }
        };
        ScriptKey {
            role,
            task: task.map(memofab::domain::TaskId::new),
            attempt: attempt as u32,
        }
    }

    fn reply(&self, body: &Value) -> Vec<Vec<u8>> {
        let key = self.key(body);
        let assistant_turns = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .count();
        let request = CompletionRequest {
            model: "gpt-fake".into(),
            system: String::new(),
            messages: vec![
                ChatMessage::Assistant {
                    content: String::new(),
                    tool_calls: Vec::<ToolCall>::new()
                };
                assistant_turns
            ],
            tools: vec![],
            max_tokens: 0,
            temperature: None,
            reasoning_effort: None,
            script: key,
        };
        // A real model is asked for every task's tester; the scenario
        // scripts one only for `title`: the others finish without tests.
        let events = if request.script.role == AgentRole::Tester
            && !self.scripted.scripts(&request.script)
        {
            vec![
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_finish".into(),
                    name: "finish".into(),
                },
                StreamEvent::ToolCallArgs {
                    index: 0,
                    fragment: r#"{"summary": "nothing to add"}"#.into(),
                },
                StreamEvent::Usage(Default::default()),
                StreamEvent::Finished(FinishReason::ToolCalls),
            ]
        } else {
            self.scripted
                .reply(&request)
                .expect("the scenario has this turn")
        };
        let mut data = Vec::new();
        let chunk = |delta: Value, finish: Option<&str>| {
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string()
        };
        for event in events {
            data.push(match event {
                StreamEvent::TextDelta(t) => chunk(json!({"content": t}), None),
                StreamEvent::ReasoningDelta(t) => chunk(json!({"reasoning_content": t}), None),
                StreamEvent::ToolCallStart { index, id, name } => chunk(
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    None,
                ),
                StreamEvent::ToolCallArgs { index, fragment } => {
                    chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}), None)
                }
                StreamEvent::Usage(u) => {
                    json!({"choices": [], "usage": {"prompt_tokens": u.input, "completion_tokens": u.output}}).to_string()
                }
                StreamEvent::Finished(reason) => {
                    let r = if reason == FinishReason::ToolCalls { "tool_calls" } else { "stop" };
                    chunk(json!({}), Some(r))
                }
            });
        }
        data.push("[DONE]".into());
        chunked(&sse(&data), 97)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_over_the_openai_wire_format() {
    let demo = demo_repo();
    let prompts = Prompts::with_dirs(vec![]);
    let router = Arc::new(Router {
        scripted: ScriptedProvider::new(Arc::new(demo.scenario.clone())),
        prompts: AgentRole::ALL
            .iter()
            .map(|r| (*r, prompts.load(*r).text))
            .collect(),
        conversations: Mutex::new(HashMap::new()),
    });
    let server = FakeServer::start(vec![Reply::Dynamic(Arc::new(move |req| {
        router.reply(&req.json())
    }))])
    .await;
    let endpoint = Endpoint::new(
        &format!("{}/v1", server.url()),
        None,
        Duration::from_secs(5),
        Duration::from_secs(30),
        RetryPolicy::new(0),
    )
    .unwrap();
    let provider = Arc::new(OpenAiProvider::new("fake", endpoint));

    let state = run_headless(RunRequest {
        provider_label: "openai".into(),
        ..demo_request(
            &demo,
            ProviderSet::uniform(provider, "gpt-fake"),
            Steering::Headless,
            true,
        )
    })
    .await;

    assert!(
        state.tasks().iter().all(|t| t.state == TaskState::Merged),
        "every task merged"
    );
    let events = stored_events(&demo.repo, &state.run);
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::MergeResult {
            result: MergeOutcome::Conflict { .. },
            ..
        }
    )));
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::TestRun { passed: false, .. }))
    );
    // Over the wire every task had a tester; only title's wrote tests.
    let testers = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::TesterDone { .. }))
        .count();
    assert_eq!(testers, state.tasks().len());
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::TesterDone { task, tests: Some(_) } if task.as_str() == "title"
    )));
    assert!(server.count() > 50, "{} requests", server.count());
    assert!(state.tokens.total() > 0);
    // Tool results went back over the wire as `tool` messages.
    let tool_messages = (0..server.count())
        .flat_map(|i| {
            server.request(i).json()["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|m| m["role"] == "tool")
        .count();
    assert!(tool_messages > 20, "{tool_messages} tool messages");
}
