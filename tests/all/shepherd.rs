//! The shepherd on real runs: a coder that re-reads one file turn after turn
//! is nudged, then replaced by a fresh agent told what failed, then handed
//! to a human — long before it burns its turns; a reviewer that keeps
//! asking for the same changes gets the next coder nudged, then a human.

use crate::support::factory;

use std::path::Path;

use factory::*;
use memofab::domain::attention::{AttentionKind, inbox};
use memofab::domain::event::{
    AgentMessage, OverseerReport, ProposalDecision, RunStarted, ShepherdIntervened, TokensUsed,
};
use memofab::domain::metrics::FactoryMetrics;
use memofab::domain::metrics::Proposal;
use memofab::domain::shepherd::{Action, Pattern};
use memofab::domain::{
    AgentId, AgentRole, Event, EventKind, MessageAuthor, RunId, RunSettings, RunState, TaskId,
    TaskState,
};
use memofab::effects::store::Store;
use memofab::effects::store::export::export_markdown;
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session::store_path;

fn shepherd_repo(scenario: &str) -> DemoRepo {
    fixture_repo(&format!("shepherd/{scenario}"))
}

/// The shepherd's interventions, in order: (agent, pattern name, action).
fn interventions(events: &[Event]) -> Vec<(Option<String>, &'static str, Action)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ShepherdIntervened(ShepherdIntervened {
                agent,
                pattern,
                action,
                ..
            }) => Some((
                agent.as_ref().map(|a| a.to_string()),
                pattern.name(),
                *action,
            )),
            _ => None,
        })
        .collect()
}

fn first_message<'a>(events: &'a [Event], agent: &AgentId) -> Option<&'a str> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::AgentMessage(AgentMessage {
            agent: a,
            from: MessageAuthor::User,
            text,
        }) if a == agent => Some(text.as_str()),
        _ => None,
    })
}

fn fold(events: &[Event]) -> RunState {
    RunState::fold(events).unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coder_rereading_one_file_is_nudged_replaced_then_handed_to_a_human() {
    let demo = shepherd_repo("rereader.toml");
    let request = demo_request(&demo, scripted(&demo), Steering::Headless, true);
    let max_turns = request.config.run.max_agent_turns;
    let state = run_headless(request).await;
    let task = TaskId::from("notes");
    let events = stored_events(&demo.repo, &state.run);

    let first = AgentId::for_task(AgentRole::Coder, &task, 1);
    let fresh = AgentId::for_task(AgentRole::Coder, &task, 2);
    assert_eq!(
        interventions(&events),
        vec![
            (Some(first.to_string()), "repeated_call", Action::Nudge),
            (Some(first.to_string()), "repeated_call", Action::FreshAgent),
            (Some(fresh.to_string()), "repeated_call", Action::Escalate),
        ]
    );
    // The nudge went to the model, naming the call it repeats.
    let nudged = events.iter().any(|e| {
        matches!(&e.kind, EventKind::AgentMessage(AgentMessage { agent, from: MessageAuthor::User, text })
            if *agent == first && text.contains("shepherd") && text.contains("README.md"))
    });
    assert!(nudged, "the first coder is told it is stuck");
    // The fresh agent is a new attempt, told what failed.
    let told = first_message(&events, &fresh).expect("a fresh coder started");
    assert!(
        told.contains("A previous agent on this step was stopped") && told.contains("README.md"),
        "{told}"
    );

    // Stopped well before the turns it was allowed.
    let coder_turns = events
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::TokensUsed(TokensUsed { agent, .. }) if *agent == first || *agent == fresh)
        })
        .count();
    assert_eq!(coder_turns, 12, "four reads for each step of the ladder");
    assert!(coder_turns < max_turns as usize);

    // The task waits for a human, as a stuck item in the inbox.
    let notes = state.task(&task).unwrap();
    assert_eq!(notes.state, TaskState::Failed);
    assert_eq!(notes.attempt, 2);
    let items = inbox(&state);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].kind, AttentionKind::Stuck);
    assert!(items[0].detail.contains("read_file"), "{}", items[0].detail);

    // Replayed from the store, the state is the same; the export and the
    // overseer's metrics tell the story too.
    assert_eq!(fold(&events), state);
    let mut md = Vec::new();
    export_markdown(&events, &mut md).unwrap();
    let md = String::from_utf8(md).unwrap();
    assert!(md.contains("the shepherd started a fresh agent"), "{md}");
    let metrics = FactoryMetrics::compute(&[events]);
    assert_eq!(metrics.shepherd.total(), 3);
    assert_eq!(metrics.shepherd.by_pattern["repeated_call"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_repeating_its_feedback_gets_the_coder_nudged_then_a_human() {
    let demo = shepherd_repo("echo.toml");
    let state = run_headless(demo_request(
        &demo,
        scripted(&demo),
        Steering::Headless,
        true,
    ))
    .await;
    let task = TaskId::from("notes");
    let events = stored_events(&demo.repo, &state.run);
    assert_eq!(
        interventions(&events),
        vec![
            (None, "rework_echo", Action::Nudge),
            (None, "rework_echo", Action::Escalate),
        ]
    );
    // The third coder is told the reviewer keeps asking for the same.
    let third = AgentId::for_task(AgentRole::Coder, &task, 3);
    let told = first_message(&events, &third).expect("a third coder started");
    assert!(
        told.contains("the reviewer asked for the same changes"),
        "{told}"
    );
    let second = AgentId::for_task(AgentRole::Coder, &task, 2);
    assert!(
        !first_message(&events, &second)
            .unwrap()
            .contains("shepherd")
    );

    let notes = state.task(&task).unwrap();
    assert_eq!(notes.state, TaskState::Failed);
    assert!(
        notes.reason.as_deref().is_some_and(|r| r.contains("stuck")),
        "{:?}",
        notes.reason
    );
    assert_eq!(inbox(&state)[0].kind, AttentionKind::Stuck);
    assert_eq!(fold(&events), state);
    assert!(matches!(
        events.iter().find_map(|e| match &e.kind {
            EventKind::ShepherdIntervened(ShepherdIntervened { pattern, .. }) =>
                Some(pattern.clone()),
            _ => None,
        }),
        Some(Pattern::ReworkEcho { rounds: 2 })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_without_a_call_are_nudged_then_stopped_not_asked_again_until_the_time_limit() {
    let demo = shepherd_repo("silent_reviewer.toml");
    let request = demo_request(&demo, scripted(&demo), Steering::Headless, true);
    let state = run_headless(request).await;
    let events = stored_events(&demo.repo, &state.run);
    let reviewer = AgentId::for_run(AgentRole::PlanReviewer, 1);
    assert_eq!(
        interventions(&events),
        vec![
            (Some(reviewer.to_string()), "no_call", Action::Nudge),
            (Some(reviewer.to_string()), "no_call", Action::Stop),
        ]
    );
    // Four replies were asked for, not the ten it would have given.
    let replies = events
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::AgentMessage(AgentMessage { agent, from: MessageAuthor::Assistant, .. })
                if *agent == reviewer)
        })
        .count();
    assert_eq!(replies, 4);
    // Planning went on without the review: the task was built and merged.
    let notes = state.task(&"notes".into()).expect("the task");
    assert_eq!(notes.state, TaskState::Merged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_shepherd_lets_the_coder_run_out_of_turns() {
    let demo = shepherd_repo("rereader.toml");
    let mut request = demo_request(&demo, scripted(&demo), Steering::Headless, true);
    request.config.shepherd.enabled = false;
    request.config.run.max_agent_turns = 10;
    let state = run_headless(request).await;
    let events = stored_events(&demo.repo, &state.run);
    assert!(interventions(&events).is_empty());
    let notes = state.task(&"notes".into()).unwrap();
    assert_eq!((notes.state, notes.attempt), (TaskState::Failed, 1));
    assert!(
        notes
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("max_agent_turns")),
        "{:?}",
        notes.reason
    );
    assert_eq!(inbox(&state)[0].kind, AttentionKind::Failed);
}

/// Stores an overseer report, as `memofab overseer` would, with proposals
/// and the human's decisions on them (1-based).
fn store_overseer_report(repo: &Path, proposals: Vec<Proposal>, rejected: &[u32]) {
    let run = RunId::overseer_report();
    let mut kinds = vec![
        EventKind::RunStarted(RunStarted {
            requirement: "Overseer review of 1 runs".into(),
            repo: repo.display().to_string(),
            mainline: String::new(),
            base_commit: String::new(),
            settings: RunSettings::default(),
        }),
        EventKind::OverseerReport(OverseerReport {
            runs: vec![],
            markdown: String::new(),
            proposals,
        }),
    ];
    kinds.extend(rejected.iter().map(|&proposal| {
        EventKind::ProposalDecision(ProposalDecision {
            proposal,
            approved: false,
            by: "ana".into(),
        })
    }));
    let mut store = Store::open(&store_path(repo)).unwrap();
    for (i, kind) in kinds.into_iter().enumerate() {
        let event = Event {
            run: run.clone(),
            seq: i as u64 + 1,
            at_ms: 1 + i as u64,
            kind,
        };
        store.append(&event).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nudge_quotes_the_overseers_last_advice_on_the_pattern() {
    let demo = shepherd_repo("rereader.toml");
    let proposal = |title: &str, replace: &str| Proposal {
        title: title.into(),
        target: "prompts/coder.md".into(),
        rationale: "coders re-read the same file again and again".into(),
        find: String::new(),
        replace: replace.into(),
    };
    store_overseer_report(
        &demo.repo,
        vec![
            proposal("Read once", "Read each file once; its content stays above."),
            proposal("Read never", "Never read files."),
        ],
        &[2],
    );
    let state = run_headless(demo_request(
        &demo,
        scripted(&demo),
        Steering::Headless,
        true,
    ))
    .await;
    let events = stored_events(&demo.repo, &state.run);
    let first = AgentId::for_task(AgentRole::Coder, &"notes".into(), 1);
    let nudge = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::AgentMessage(AgentMessage {
                agent,
                from: MessageAuthor::User,
                text,
            }) if *agent == first && text.contains("shepherd") => Some(text.clone()),
            _ => None,
        })
        .expect("a nudge");
    assert!(
        nudge.contains("The overseer's advice about this: Read each file once"),
        "the rejected proposal is not advice: {nudge}"
    );
}
