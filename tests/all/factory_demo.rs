//! The whole demo scenario on a real temp repository: planning with a
//! revision, parallel coding, a tester's test catching a bug, a review
//! rejection, a failing test, a real merge conflict, a gate — all effects
//! real, the model scripted. `tests/tester_agents.rs` looks closer at the
//! tester's part.

use crate::support::factory;

use std::collections::{BTreeMap, HashSet};

use factory::*;
use memofab::domain::event::{
    ConflictMarkers, GateDecision, MergeResult, MergeVerified, PlanReviewed, ReviewVerdict,
    TaskStateChanged, TestRun, TestsOnBase,
};
use memofab::domain::{EventKind, MergeCheck, MergeOutcome, RunPhase, TaskState};
use memofab::effects::git::GitRepo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_scenario_runs_to_a_fully_merged_mainline() {
    let demo = demo_repo();
    let state = run_demo(&demo).await;
    let events = stored_events(&demo.repo, &state.run);

    // The state folded from the store is the state the engine ended with.
    assert_eq!(fold(&events), state);
    assert_eq!(state.phase, RunPhase::Finished);
    let blueprint = state.blueprint.as_ref().expect("blueprint accepted");
    assert!(blueprint.tasks.len() >= 6, "at least six tasks");
    for task in state.tasks() {
        assert_eq!(
            task.state,
            TaskState::Merged,
            "task {} is {}",
            task.id(),
            task.state
        );
    }

    // Mainline contains every merged task's final commit.
    let git = GitRepo::open(&demo.repo).unwrap();
    let main_head = git.branch_head("main").unwrap();
    for task in state.tasks() {
        let head = task.head_commit.as_deref().expect("task committed");
        assert_eq!(
            git.merge_base(&main_head, head).unwrap(),
            head,
            "{} not on main",
            task.id()
        );
    }

    // The story: plan revised once, a tester's catch, a review rejection, a
    // failing test, a real conflict between two tasks that both landed, a
    // gate decision.
    let plan_rejected = events.iter().any(|e| {
        matches!(
            &e.kind,
            EventKind::PlanReviewed(PlanReviewed {
                approved: false,
                ..
            })
        )
    });
    assert!(plan_rejected, "the plan reviewer asked for a revision");
    let proposals = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::BlueprintProposed(_)))
        .count();
    assert!(proposals >= 2);

    let rejected: HashSet<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ReviewVerdict(ReviewVerdict {
                task,
                approved: false,
                ..
            }) => Some(task.clone()),
            _ => None,
        })
        .collect();
    assert!(!rejected.is_empty(), "a code review rejected a change");

    let failed_tests: HashSet<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TestRun(TestRun {
                task,
                passed: false,
                ..
            }) => Some(task.clone()),
            _ => None,
        })
        .collect();
    assert!(!failed_tests.is_empty(), "a test run failed");

    // The tester's tests failed on the base commit, then caught a bug in
    // the test step that the coder's own tests did not.
    let title = memofab::domain::TaskId::from("title");
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::TestsOnBase(TestsOnBase { task, failed: true, .. }) if *task == title)));
    assert!(
        failed_tests.contains(&title),
        "the tester's test caught a bug"
    );
    assert!(state.task(&title).unwrap().tester.tests().is_some());

    let conflicted: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MergeResult(MergeResult {
                task,
                result: MergeOutcome::Conflict { files },
            }) => Some((task.clone(), files.clone())),
            _ => None,
        })
        .collect();
    assert!(!conflicted.is_empty(), "a merge conflicted");
    let markers = events.iter().any(|e| matches!(&e.kind, EventKind::ConflictMarkers(ConflictMarkers { files, .. }) if files.iter().any(|f| f.content.contains("<<<<<<<"))));
    assert!(markers, "the coder saw real conflict markers");
    for (task, _) in &conflicted {
        assert_eq!(state.task(task).unwrap().conflict_reworks, 1);
    }

    let gated = events.iter().any(|e| {
        matches!(
            &e.kind,
            EventKind::GateDecision(GateDecision { approved: true, .. })
        )
    });
    assert!(gated, "a gated merge was approved");

    // At least three coding agents worked at once.
    let mut running = BTreeMap::new();
    let mut most = 0;
    for e in &events {
        if let EventKind::TaskStateChanged(TaskStateChanged { task, to, .. }) = &e.kind {
            running.insert(task.clone(), *to == TaskState::Running);
            most = most.max(running.values().filter(|r| **r).count());
        }
    }
    assert!(most >= 3, "at most {most} tasks ran at once");

    // Each task merged exactly once.
    for task in state.tasks() {
        let merges = events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::MergeResult(MergeResult { task: t, result }) if t == task.id() && !matches!(result, MergeOutcome::Conflict { .. })))
            .count();
        assert_eq!(merges, 1, "{} merged {merges} times", task.id());
    }

    // Every task went through the merge queue: queued, then verified on the
    // merged tree before mainline moved.
    for state_seen in [TaskState::Queued, TaskState::Verifying] {
        for task in state.tasks() {
            let seen = events.iter().any(|e| {
                matches!(&e.kind, EventKind::TaskStateChanged(TaskStateChanged { task: t, to, .. }) if t == task.id() && *to == state_seen)
            });
            assert!(seen, "{} was never {state_seen}", task.id());
        }
    }
    for task in state.tasks() {
        let landed = task.merged_commit.as_deref().expect("merged");
        let verified = events.iter().any(|e| {
            matches!(&e.kind, EventKind::MergeVerified(MergeVerified { task: t, check: MergeCheck::Verify, candidate, passed: true, .. }) if t == task.id() && candidate == landed)
        });
        assert!(verified, "{} landed {landed} unverified", task.id());
    }

    // The seed's own tests pass on the final mainline.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            demo.scenario.test_command.as_deref().unwrap_or("true"),
        ])
        .current_dir(&demo.repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tests fail on mainline: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
