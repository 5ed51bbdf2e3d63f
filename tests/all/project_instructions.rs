//! The repository's AGENTS.md files (CLAUDE.md where a directory has none)
//! reach the agents in their first message, as stored in the run's events:
//! the planner sees them all, a task's agents the root's and those of the
//! directories the task touches.

use crate::support::factory;

use std::collections::BTreeMap;

use factory::*;
use memofab::domain::event::{AgentMessage, AgentStarted};
use memofab::domain::{AgentId, AgentRole, EventKind, MessageAuthor, RunPhase, TaskId};
use memofab::effects::git::GitRepo;

/// Every agent's role, task and first message.
fn first_messages(
    events: &[memofab::domain::Event],
) -> BTreeMap<AgentId, (AgentRole, Option<TaskId>, String)> {
    let mut started = BTreeMap::new();
    let mut first = BTreeMap::new();
    for event in events {
        match &event.kind {
            EventKind::AgentStarted(AgentStarted {
                agent, role, task, ..
            }) => {
                started.insert(agent.clone(), (*role, task.clone()));
            }
            EventKind::AgentMessage(AgentMessage {
                agent,
                from: MessageAuthor::User,
                text,
            }) => {
                let (role, task) = started[agent].clone();
                first
                    .entry(agent.clone())
                    .or_insert((role, task, text.clone()));
            }
            _ => {}
        }
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_told_the_instructions_for_where_they_work() {
    let demo = demo_repo();
    for (path, text) in [
        ("AGENTS.md", "Root rule: ROOT-RULE-1."),
        // Ignored: the root has an AGENTS.md.
        ("CLAUDE.md", "Root Claude rule: ROOT-CLAUDE-2."),
        ("lib/AGENTS.md", "Library rule: LIB-RULE-3."),
        // Used: tests/ has no AGENTS.md.
        ("tests/CLAUDE.md", "Test rule: TESTS-CLAUDE-4."),
    ] {
        std::fs::write(demo.repo.join(path), text).unwrap();
    }
    let git = GitRepo::open(&demo.repo).unwrap();
    git.commit_all(&demo.repo, "instructions").unwrap().unwrap();

    let state = run_demo(&demo).await;
    assert_eq!(state.phase, RunPhase::Finished);
    let events = stored_events(&demo.repo, &state.run);
    let messages = first_messages(&events);

    let mut planners = 0;
    for (role, _, text) in messages.values().filter(|(_, task, _)| task.is_none()) {
        if !matches!(role, AgentRole::Planner | AgentRole::PlanReviewer) {
            continue;
        }
        planners += 1;
        for rule in ["ROOT-RULE-1", "LIB-RULE-3", "TESTS-CLAUDE-4"] {
            assert!(text.contains(rule), "{role} lacks {rule}:\n{text}");
        }
        assert!(!text.contains("ROOT-CLAUDE-2"), "{text}");
        // Root first: the deeper file, which wins, comes later.
        assert!(text.find("ROOT-RULE-1") < text.find("LIB-RULE-3"));
    }
    assert!(planners >= 2);

    // First attempts only: a rework also counts the paths seen written.
    let first_attempt = |task: &str, role: AgentRole| {
        let id = AgentId::for_task(role, &TaskId::new(task), 1);
        messages
            .get(&id)
            .map(|(_, _, text)| text.clone())
            .unwrap_or_else(|| panic!("no {id} in the run"))
    };
    // stats declared lib/stats.sh and tests/test_stats.sh.
    for role in [AgentRole::Coder, AgentRole::Reviewer] {
        let text = first_attempt("stats", role);
        for rule in ["ROOT-RULE-1", "LIB-RULE-3", "TESTS-CLAUDE-4"] {
            assert!(text.contains(rule), "stats {role} lacks {rule}:\n{text}");
        }
        assert!(!text.contains("ROOT-CLAUDE-2"));
    }
    // loader declared bin/textkit only: the root's rules, the others named.
    let text = first_attempt("loader", AgentRole::Coder);
    assert!(text.contains("ROOT-RULE-1"), "{text}");
    for rule in ["LIB-RULE-3", "TESTS-CLAUDE-4", "ROOT-CLAUDE-2"] {
        assert!(!text.contains(rule), "loader's coder got {rule}:\n{text}");
    }
    assert!(text.contains("lib/AGENTS.md") && text.contains("tests/CLAUDE.md"));
}
