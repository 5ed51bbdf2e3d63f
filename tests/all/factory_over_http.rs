//! The whole demo factory run through the OpenAI-compatible provider, over
//! real HTTP and SSE, against a fake server that answers from the demo
//! scenario. Proves agents work over the real wire format, not only with
//! the in-process scripted provider.

use crate::support::{factory, fake_llm, scenario_server};

use std::sync::Arc;
use std::time::Duration;

use factory::*;
use fake_llm::*;
use memofab::domain::event::{MergeResult, TestRun, TesterDone};
use memofab::domain::{EventKind, MergeOutcome, TaskState};
use memofab::engine::context::ProviderSet;
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session::RunRequest;
use memofab::llm::http::{Endpoint, RetryPolicy};
use memofab::llm::openai::OpenAiProvider;
use scenario_server::Router;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_over_the_openai_wire_format() {
    let demo = demo_repo();
    let router = Arc::new(Router::new(demo.scenario.clone()));
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
        EventKind::MergeResult(MergeResult {
            result: MergeOutcome::Conflict { .. },
            ..
        })
    )));
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::TestRun(TestRun { passed: false, .. })))
    );
    // Over the wire every task had a tester; only title's wrote tests.
    let testers = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::TesterDone(_)))
        .count();
    assert_eq!(testers, state.tasks().len());
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::TesterDone(TesterDone { task, tests: Some(_) }) if task.as_str() == "title"
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
