//! The overseer on a real demo run: the metrics find the coder that repeated
//! a failing command, the overseer agent proposes a prompt change, and only a
//! human's approval applies it — recorded as an event.

use crate::support::factory;

use std::sync::Arc;

use factory::*;
use memofab::domain::event::{AgentStarted, ProposalDecision};
use memofab::domain::metrics::Finding;
use memofab::domain::{AgentRole, EventKind};
use memofab::engine::context::ProviderSet;
use memofab::engine::overseer;
use memofab::engine::prompts::Prompts;
use memofab::llm::scripted::ScriptedProvider;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overseer_finds_the_repeated_failing_command_and_waits_for_approval() {
    let demo = demo_repo();
    let state = run_demo(&demo).await;
    let providers = ProviderSet::uniform(
        Arc::new(ScriptedProvider::new(Arc::new(demo.scenario.clone()))),
        "scripted",
    );
    let config = project_config(&demo.repo);

    let report = overseer::review(&demo.repo, 0, &config, &providers)
        .await
        .unwrap();
    assert_eq!(report.metrics.runs, 1);
    let repeated: Vec<_> = report
        .metrics
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::RepeatedFailingCommand {
                agent,
                command,
                times,
                run,
            } => Some((agent.as_str(), command.as_str(), *times, run.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        repeated,
        vec![("coder:json#1", "sh tests/run.sh", 3, state.run.clone())]
    );
    assert!(
        report
            .metrics
            .findings
            .iter()
            .any(|f| matches!(f, Finding::ReviewRejected { task, .. } if task.as_str() == "title"))
    );
    assert!(
        report
            .metrics
            .findings
            .iter()
            .any(|f| matches!(f, Finding::TestsFailed { task, .. } if task.as_str() == "json"))
    );
    let coder = &report.metrics.by_role[&AgentRole::Coder];
    assert!(coder.tool_errors >= 3 && coder.turns > 10);
    assert!(
        report.markdown.contains("| coder |") && report.markdown.contains("### 1."),
        "{}",
        report.markdown
    );
    assert_eq!(report.proposals.len(), 1);

    // Nothing changed yet.
    let before = Prompts::for_repo(&demo.repo).load(AgentRole::Coder);
    assert!(before.source.contains("built in"));

    let path = overseer::apply(&demo.repo, &report.run, 1, "tester").unwrap();
    assert!(path.ends_with(".memofab/prompts/coder.md"));
    let after = Prompts::for_repo(&demo.repo).load(AgentRole::Coder);
    assert!(
        after.text.starts_with(before.text.trim_end()),
        "the prompt is amended, not replaced"
    );
    assert!(
        after
            .text
            .contains("Never run the same failing command a third time")
    );

    let err = overseer::apply(&demo.repo, &report.run, 1, "tester")
        .unwrap_err()
        .to_string();
    assert!(err.contains("already decided"), "{err}");
    assert!(overseer::apply(&demo.repo, &report.run, 7, "tester").is_err());

    let events = stored_events(&demo.repo, &report.run);
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::ProposalDecision(ProposalDecision { proposal: 1, approved: true, by }) if by == "tester")));
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::AgentStarted(AgentStarted {
            role: AgentRole::Overseer,
            ..
        })
    )));
    // The factory's runs are unchanged; the overseer's session is its own run.
    assert_eq!(fold(&stored_events(&demo.repo, &state.run)), state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_in_effect_is_applied_once_and_not_proposed_again() {
    let demo = demo_repo();
    run_demo(&demo).await;
    let providers = scripted(&demo);
    let config = project_config(&demo.repo);
    let rule = "Never run the same failing command a third time";

    // Two reviews before anything is applied propose the same change.
    let first = overseer::review(&demo.repo, 0, &config, &providers)
        .await
        .unwrap();
    let second = overseer::review(&demo.repo, 0, &config, &providers)
        .await
        .unwrap();
    assert_eq!(first.proposals, second.proposals);
    assert_eq!(first.proposals.len(), 1);

    // Applying both changes the prompt once.
    let path = overseer::apply(&demo.repo, &first.run, 1, "tester").unwrap();
    let once = std::fs::read_to_string(&path).unwrap();
    overseer::apply(&demo.repo, &second.run, 1, "tester").unwrap();
    let twice = std::fs::read_to_string(&path).unwrap();
    assert_eq!(twice, once);
    assert_eq!(twice.matches(rule).count(), 1);

    // The metrics still show the repeated command, but the rule is in the
    // prompt now: it is not proposed again.
    let third = overseer::review(&demo.repo, 0, &config, &providers)
        .await
        .unwrap();
    assert!(third.proposals.is_empty(), "{:?}", third.proposals);
    assert!(
        third.markdown.contains("already in effect"),
        "{}",
        third.markdown
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), once);
}
