//! The quota governor end to end: a provider answering 429 parks the agent
//! (recorded as `agent_parked` / `agent_unparked`) and it resumes by itself
//! instead of failing; agents on one provider share its park; the demo run
//! with scripted rate limits still merges everything.

use crate::support::{agent_bench, factory, fake_llm};

use std::sync::Arc;
use std::time::Duration;

use fake_llm::*;
use memofab::domain::event::{AgentFinished, AgentParked, ProviderLimitChanged};
use memofab::domain::{AgentRole, Event, EventKind, RunPhase, TaskState};
use memofab::effects::clock::now_ms;
use memofab::engine::agent::{AgentJob, AgentOutcome, AgentRunner, review_tool};
use memofab::engine::context::ProviderSet;
use memofab::engine::prompts::Prompt;
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session;
use memofab::llm::governor::{Governor, GovernorConfig};
use memofab::llm::http::{Endpoint, RetryPolicy};
use memofab::llm::openai::OpenAiProvider;
use memofab::llm::scenario::{Scenario, SimulatedLimit};
use memofab::llm::scripted::ScriptedProvider;
use memofab::protocol::EngineUpdate;
use serde_json::json;
use tokio::sync::mpsc;

fn chunk(delta: serde_json::Value, finish: Option<&str>) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string()
}

/// A streamed reply calling `submit_review` with an approval.
fn approval() -> Reply {
    let call = json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
        "function": {"name": "submit_review", "arguments": "{\"approved\": true, \"feedback\": \"\"}"}}]});
    ok(chunked(
        &sse(&[
            chunk(call, None),
            chunk(json!({}), Some("tool_calls")),
            json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
                .to_string(),
            "[DONE]".into(),
        ]),
        41,
    ))
}

fn too_many_requests() -> Reply {
    status(
        429,
        r#"{"error": {"message": "Rate limit reached for gpt-test on requests per min", "type": "requests"}}"#,
        &[("retry-after", "1")],
    )
}

type Bench = agent_bench::AgentBench;

fn bench() -> Bench {
    Bench::new("review")
}

/// An OpenAI provider on the fake server that would retry 429s itself if
/// it still did (three retries allowed).
fn provider(server: &FakeServer) -> Arc<OpenAiProvider> {
    let retry = RetryPolicy {
        max_retries: 3,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
    };
    let endpoint = Endpoint::new(
        &format!("{}/v1", server.url()),
        None,
        Duration::from_secs(2),
        Duration::from_secs(5),
        retry,
    )
    .unwrap();
    Arc::new(OpenAiProvider::new("fake", endpoint))
}

fn runner(bench: &Bench, server: &FakeServer, governor: &Arc<Governor>) -> AgentRunner {
    AgentRunner {
        recorder: bench.recorder.clone(),
        provider: provider(server),
        model: "gpt-test".into(),
        max_turns: 4,
        prices: Default::default(),
        governor: governor.clone(),
        reply: Default::default(),
        small_model_guards: false,
        shepherd: Default::default(),
    }
}

fn review_job(round: u32) -> AgentJob {
    AgentJob {
        role: AgentRole::PlanReviewer,
        task: None,
        attempt: round,
        prompt: Prompt {
            text: "You review plans.".into(),
            source: "test".into(),
        },
        first_message: "Review this plan.".into(),
        toolbox: None,
        submit: Some(review_tool()),
    }
}

fn governor() -> Arc<Governor> {
    Governor::new("openai", GovernorConfig::default())
}

fn parks(events: &[Event]) -> Vec<(String, u64, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentParked(AgentParked {
                agent,
                until_ms,
                reason,
                provider,
                ..
            }) => {
                assert_eq!(provider, "openai");
                Some((agent.to_string(), *until_ms, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_429_parks_the_agent_and_it_resumes_without_failing() {
    let server = FakeServer::start(vec![too_many_requests(), approval()]).await;
    let bench = bench();
    let governor = governor();
    let before = now_ms();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        runner(&bench, &server, &governor).run(review_job(1)),
    )
    .await
    .expect("the agent finishes")
    .expect("the engine did not fail");
    let after = now_ms();

    assert!(
        matches!(outcome, Ok(AgentOutcome::Submitted { .. })),
        "{outcome:?}"
    );
    assert_eq!(server.count(), 2, "one refused request, one answered");
    assert!(after - before >= 1000, "waited for retry-after");

    let events = bench.events();
    let parks = parks(&events);
    assert_eq!(parks.len(), 1, "{parks:?}");
    let (agent, until_ms, reason) = &parks[0];
    assert_eq!(agent, "plan_reviewer#1");
    assert!(
        (before + 1000..=after).contains(until_ms),
        "until {until_ms} is not about a second after {before}"
    );
    assert!(
        reason.starts_with("rate limited by openai: Rate limit reached"),
        "{reason}"
    );
    let position = |name: &str| events.iter().position(|e| e.kind.name() == name);
    let parked = position("agent_parked").unwrap();
    let unparked = position("agent_unparked").unwrap();
    assert!(parked < unparked);
    assert!(events[unparked].at_ms >= *until_ms);
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::AgentFinished(AgentFinished { ok: true, .. })
    )));
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::ProviderLimitChanged(ProviderLimitChanged {
            limit: 2,
            ceiling: 4,
            ..
        })
    )));
    // Only the answered request counts as a turn.
    let turns = events
        .iter()
        .filter(|e| e.kind.name() == "tokens_used")
        .count();
    assert_eq!(turns, 1);
    let state = bench.recorder.snapshot();
    assert!(state.parked.is_empty(), "{:?}", state.parked);
}

#[tokio::test]
async fn agents_on_one_provider_share_its_park() {
    let server = FakeServer::start(vec![too_many_requests(), approval()]).await;
    let mut bench = bench();
    let governor = governor();

    let first = runner(&bench, &server, &governor);
    let first = tokio::spawn(async move { first.run(review_job(1)).await });
    // Wait until the first agent is parked.
    let until = loop {
        let update = tokio::time::timeout(Duration::from_secs(10), bench.updates.recv())
            .await
            .expect("an update in time")
            .expect("the recorder is alive");
        if let EngineUpdate::Event(Event {
            kind: EventKind::AgentParked(AgentParked { until_ms, .. }),
            ..
        }) = update
        {
            break until_ms;
        }
    };

    let second = runner(&bench, &server, &governor);
    let second = tokio::spawn(async move { second.run(review_job(2)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.count(),
        1,
        "the second agent did not ask while the provider is parked"
    );

    for agent in [first, second] {
        let outcome = tokio::time::timeout(Duration::from_secs(20), agent)
            .await
            .expect("finishes")
            .unwrap()
            .unwrap();
        assert!(matches!(outcome, Ok(AgentOutcome::Submitted { .. })));
    }
    assert_eq!(server.count(), 3);
    let parks = parks(&bench.events());
    let agents: Vec<&str> = parks.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(agents, ["plan_reviewer#1", "plan_reviewer#2"]);
    assert!(
        parks.iter().all(|(_, u, _)| *u == until),
        "one park for both: {parks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_with_scripted_rate_limits_merges_everything() {
    let demo = factory::demo_repo();
    let mut scenario = demo.scenario.clone();
    // The planner's first request and a coder's second turn hit limits.
    let planner = scenario
        .conversations
        .iter_mut()
        .find(|c| c.role == AgentRole::Planner && c.attempt == Some(1))
        .expect("the demo has a first planner round");
    planner.turns[0].rate_limit = Some(SimulatedLimit {
        retry_after_ms: Some(300),
        usage: false,
        times: 1,
    });
    limit_a_coders_second_turn(
        &mut scenario,
        SimulatedLimit {
            retry_after_ms: Some(200),
            usage: true,
            times: 2,
        },
    );
    let providers = ProviderSet::uniform(
        Arc::new(ScriptedProvider::new(Arc::new(scenario))),
        "scripted",
    );

    let state = factory::run_headless(factory::demo_request(
        &demo,
        providers,
        Steering::Headless,
        true,
    ))
    .await;

    assert_eq!(state.phase, RunPhase::Finished);
    assert!(
        state.tasks().iter().all(|t| t.state == TaskState::Merged),
        "every task merged"
    );
    assert!(state.parked.is_empty());
    let events = factory::stored_events(&demo.repo, &state.run);
    assert_eq!(factory::fold(&events), state);
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentParked(AgentParked { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("rate limited by")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("usage limit reached on")),
        "{reasons:?}"
    );
    let parked = reasons.len();
    let unparked = events
        .iter()
        .filter(|e| e.kind.name() == "agent_unparked")
        .count();
    assert_eq!(parked, unparked, "every park ended");
}

#[tokio::test]
async fn an_agent_gives_up_only_past_its_parking_allowance() {
    let server = FakeServer::start(vec![too_many_requests()]).await;
    let bench = bench();
    let governor = Governor::new(
        "openai",
        GovernorConfig {
            max_concurrency: 2,
            max_parked: Duration::from_millis(500),
        },
    );
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        runner(&bench, &server, &governor).run(review_job(1)),
    )
    .await
    .expect("the agent finishes")
    .expect("the engine did not fail");
    let failed = outcome.expect_err("a park longer than allowed fails the agent");
    assert!(
        failed.0.contains("providers.openai.max_parked_secs"),
        "{failed}"
    );
    assert_eq!(server.count(), 1);
    assert!(parks(&bench.events()).is_empty(), "it never parked");
}

/// The demo's first coder with two turns meets `limit` on its second.
fn limit_a_coders_second_turn(scenario: &mut Scenario, limit: SimulatedLimit) {
    let coder = scenario
        .conversations
        .iter_mut()
        .find(|c| c.role == AgentRole::Coder && c.turns.len() > 1)
        .expect("the demo has a coder with two turns");
    coder.turns[1].rate_limit = Some(limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_park_is_lifted_from_the_inbox_with_one_command() {
    let demo = factory::demo_repo();
    let mut scenario = demo.scenario.clone();
    // A coder's second turn meets a limit that asks for an hour.
    limit_a_coders_second_turn(
        &mut scenario,
        SimulatedLimit {
            retry_after_ms: Some(3_600_000),
            usage: false,
            times: 1,
        },
    );
    let providers = ProviderSet::uniform(
        Arc::new(ScriptedProvider::new(Arc::new(scenario))),
        "scripted",
    );
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let engine = tokio::spawn(session::start(
        factory::demo_request(&demo, providers, Steering::Interactive, true),
        updates_tx,
        commands_rx,
    ));
    let mut state: Option<memofab::domain::RunState> = None;
    let mut lifted = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let update = tokio::time::timeout_at(deadline, updates.recv())
            .await
            .expect("the run moves on")
            .expect("the engine is running");
        let EngineUpdate::Event(event) = update else {
            continue;
        };
        match &mut state {
            None => state = Some(memofab::domain::RunState::start(&event).unwrap()),
            Some(s) => s.apply(&event).unwrap(),
        }
        let s = state.as_ref().unwrap();
        if !lifted && !s.parked.is_empty() {
            let items = memofab::domain::attention::inbox(s);
            let item = items
                .iter()
                .find(|i| i.kind == memofab::domain::attention::AttentionKind::QuotaPause)
                .expect("the pause is in the inbox");
            assert_eq!(item.kind.action(), "ask the provider again now");
            commands
                .send(memofab::protocol::Command::LiftPark {
                    provider: item.provider.clone().unwrap(),
                })
                .unwrap();
            lifted = true;
        }
        if !s.tasks().is_empty() && s.tasks().iter().all(|t| t.state == TaskState::Merged) {
            break;
        }
    }
    commands.send(memofab::protocol::Command::Shutdown).unwrap();
    let state = engine.await.unwrap().unwrap();
    assert!(lifted);
    assert!(state.parked.is_empty());
    let events = factory::stored_events(&demo.repo, &state.run);
    assert!(events.iter().any(|e| e.kind.name() == "park_lifted"));
}
