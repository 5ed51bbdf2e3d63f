//! Dedicated test agents on the demo, all effects real, the models scripted:
//! a tester's acceptance tests fail on the base commit, are committed before
//! the coder starts, cannot be changed by the coder, and catch in the test
//! step a bug the coder's own test missed; tests that pass on the base commit
//! go back to the tester, a bounded number of times.

use crate::support::factory;

use std::sync::Arc;

use factory::*;
use memofab::domain::event::{
    AgentStarted, TaskStateChanged, TestRun, TesterDone, TestsOnBase, ToolCalled, ToolResult,
    Warning, WorktreeCreated,
};
use memofab::domain::metrics::{FactoryMetrics, Finding};
use memofab::domain::{AgentRole, Event, EventKind, TaskState, TestAgents, TesterTests};
use memofab::effects::git::GitRepo;
use memofab::engine::context::ProviderSet;
use memofab::engine::run::orchestrator::Steering;
use memofab::llm::scenario::Scenario;
use memofab::llm::scripted::ScriptedProvider;

const ACCEPTANCE: &str = "tests/test_title_acceptance.sh";

fn tester_tests(events: &[Event], task: &str) -> TesterTests {
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TesterDone(TesterDone {
                task: t,
                tests: Some(tests),
            }) if t.as_str() == task => Some(tests.clone()),
            _ => None,
        })
        .expect("the tester's tests were committed")
}

/// The position of the first event matching `pred`.
fn first(events: &[Event], pred: impl Fn(&EventKind) -> bool) -> usize {
    events
        .iter()
        .position(|e| pred(&e.kind))
        .expect("the event happened")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testers_test_fails_on_base_is_kept_from_the_coder_and_catches_its_bug() {
    let demo = demo_repo();
    let state = run_demo(&demo).await;
    let events = stored_events(&demo.repo, &state.run);
    assert_eq!(fold(&events), state, "replay folds to the same state");
    let git = GitRepo::open(&demo.repo).unwrap();

    // Only the task the scenario scripts a tester for got one.
    let testers: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentStarted(AgentStarted {
                agent,
                role: AgentRole::Tester,
                ..
            }) => Some(agent.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(testers, ["tester:title#1"]);

    // 1. Its tests ran on the base commit, failed, and were committed on the
    //    task branch before the coder started.
    let on_base = first(&events, |k| {
        matches!(k, EventKind::TestsOnBase(TestsOnBase { task, round: 1, failed: true, files, .. })
            if task.as_str() == "title" && files == &[ACCEPTANCE.to_owned()])
    });
    let tests = tester_tests(&events, "title");
    assert!(tests.failed_on_base);
    assert_eq!(tests.files, [ACCEPTANCE]);
    let coder_started = first(
        &events,
        |k| matches!(k, EventKind::AgentStarted(AgentStarted { role: AgentRole::Coder, task: Some(t), .. }) if t.as_str() == "title"),
    );
    assert!(on_base < coder_started);
    let base = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::WorktreeCreated(WorktreeCreated {
                task, base_commit, ..
            }) if task.as_str() == "title" => Some(base_commit.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(git.read_file_at(&base, ACCEPTANCE).unwrap(), None);
    let written = git
        .read_file_at(&tests.commit, ACCEPTANCE)
        .unwrap()
        .unwrap();

    // 2. The coder's edit of the tester's file was refused, and the file
    //    landed on mainline exactly as the tester wrote it.
    let edit = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ToolCalled(ToolCalled {
                agent,
                call_id,
                tool,
                arguments,
            }) if agent.as_str().starts_with("coder:title")
                && tool == "edit_file"
                && arguments["path"] == ACCEPTANCE =>
            {
                Some((agent.clone(), call_id.clone()))
            }
            _ => None,
        })
        .expect("the coder tried to edit the tester's test");
    let refused = events.iter().any(|e| {
        matches!(&e.kind, EventKind::ToolResult(ToolResult { agent, call_id, ok: false, .. })
            if (agent, call_id) == (&edit.0, &edit.1))
    });
    assert!(refused, "the edit was refused");
    assert_eq!(
        git.read_file_at("main", ACCEPTANCE).unwrap().unwrap(),
        written
    );
    let title = state.task(&"title".into()).unwrap();
    let landed = title.merged_commit.as_deref().unwrap();
    assert_eq!(git.merge_base(landed, &tests.commit).unwrap(), tests.commit);

    // 3. The coder's first attempt, whose own test passed, failed the test
    //    step on the tester's test and went back for rework.
    let caught = first(&events, |k| {
        matches!(k, EventKind::TestRun(TestRun { task, passed: false, output, .. })
            if task.as_str() == "title"
                && output.contains("FAIL test_title_acceptance_lowers_the_rest_of_each_word")
                && output.contains("PASS test_title_capitalises_words"))
    });
    assert!(
        first(&events, |k| {
            matches!(k, EventKind::TaskStateChanged(TaskStateChanged { task, from: TaskState::Testing, to: TaskState::Running, .. }) if task.as_str() == "title")
        }) > caught
    );
    assert!(caught < edit_index(&events, &edit.0));

    // 4. ... and merged in the end.
    assert_eq!(title.state, TaskState::Merged);
    let out = std::process::Command::new("sh")
        .args(["tests/run.sh"])
        .current_dir(&demo.repo)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS test_title_acceptance_lowers"));

    // The tester counts in the metrics like every other role.
    let metrics = FactoryMetrics::compute(std::slice::from_ref(&events));
    let totals = &metrics.by_role[&AgentRole::Tester];
    assert_eq!(totals.agents, 1);
    assert!(totals.tool_calls >= 3 && totals.tokens.total() > 0);
}

fn edit_index(events: &[Event], agent: &memofab::domain::AgentId) -> usize {
    first(
        events,
        |k| matches!(k, EventKind::AgentStarted(AgentStarted { agent: a, .. }) if a == agent),
    )
}

/// Conversations put before the demo's, so they take precedence.
const HARDENING: &str = r#"
name = "tester-hardening"

# Round 1: a test that already passes on the base commit.
[[conversation]]
role = "tester"
task = "loader"
attempt = 1
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "write_file"
  args = { path = "tests/test_loader_acceptance.sh", content = "test_loader_acceptance_help() {\n  \"$TEXTKIT\" help >/dev/null || return 1\n}\n" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "help works" }

# Later rounds: rewrites its own file (allowed), tries to change the
# project's files by tool (refused) and by command (undone), and still
# writes a test that passes on the base commit.
[[conversation]]
role = "tester"
task = "loader"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "write_file"
  args = { path = "tests/test_loader_acceptance.sh", content = "test_loader_acceptance_upper() {\n  assert_eq \"A\" \"$(echo a | \"$TEXTKIT\" upper)\" || return 1\n}\n" }
  [[conversation.turn.call]]
  tool = "write_file"
  args = { path = "bin/textkit", content = "exit 1\n" }
  [[conversation.turn.call]]
  tool = "run"
  args = { command = "echo '# tester was here' >> lib/common.sh" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "upper works" }

# The loader's coder does its work, and also changes the tester's test
# through a command, which its file tools would refuse.
[[conversation]]
role = "coder"
task = "loader"
attempt = 1
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "edit_file"
  args = { path = "bin/textkit", old = '. "$TEXTKIT_ROOT/lib/common.sh"', new = '''
for lib in "$TEXTKIT_ROOT"/lib/*.sh; do
  . "$lib"
done''' }
  [[conversation.turn.call]]
  tool = "run"
  args = { command = "echo 'test_loader_acceptance_upper() { return 0; }' > tests/test_loader_acceptance.sh" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "bin/textkit sources every lib/*.sh" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tests_that_pass_on_base_go_back_to_the_tester_a_bounded_number_of_times() {
    let demo = demo_repo();
    let mut scenario = Scenario::parse(HARDENING, "hardening").unwrap();
    scenario
        .conversations
        .extend(demo.scenario.conversations.iter().cloned());
    let providers = ProviderSet::uniform(
        Arc::new(ScriptedProvider::new(Arc::new(scenario))),
        "scripted",
    );
    let state = run_headless(demo_request(&demo, providers, Steering::Headless, true)).await;
    let events = stored_events(&demo.repo, &state.run);
    let git = GitRepo::open(&demo.repo).unwrap();
    let path = "tests/test_loader_acceptance.sh";

    // max_rework (2) rounds sent back, then the tests are kept anyway.
    let rounds: Vec<(u32, bool)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TestsOnBase(TestsOnBase {
                task,
                round,
                failed,
                ..
            }) if task.as_str() == "loader" => Some((*round, *failed)),
            _ => None,
        })
        .collect();
    assert_eq!(rounds, [(1, false), (2, false), (3, false)]);
    let tests = tester_tests(&events, "loader");
    assert!(!tests.failed_on_base);
    assert_eq!(tests.files, [path]);
    let warned = events.iter().any(|e| {
        matches!(&e.kind, EventKind::Warning(Warning { task: Some(t), message }) if t.as_str() == "loader" && message.contains("prove nothing"))
    });
    assert!(warned);
    let findings = FactoryMetrics::compute(std::slice::from_ref(&events)).findings;
    let proved_nothing = findings
        .iter()
        .filter(
            |f| matches!(f, Finding::TesterProvedNothing { task, .. } if task.as_str() == "loader"),
        )
        .count();
    assert_eq!(
        proved_nothing, 3,
        "each round is a finding for the overseer"
    );

    // The tester added its file and changed nothing of the project's.
    let base = &state.base_commit;
    for file in ["bin/textkit", "lib/common.sh"] {
        assert_eq!(
            git.read_file_at(&tests.commit, file).unwrap(),
            git.read_file_at(base, file).unwrap(),
            "{file}"
        );
    }
    let upper = git.read_file_at(&tests.commit, path).unwrap().unwrap();
    assert!(String::from_utf8_lossy(&upper).contains("test_loader_acceptance_upper"));

    // What the coder's command did to the tester's file was put back.
    let loader = state.task(&"loader".into()).unwrap();
    assert_eq!(loader.state, TaskState::Merged);
    assert_eq!(git.read_file_at("main", path).unwrap().unwrap(), upper);
    assert!(state.tasks().iter().all(|t| t.state == TaskState::Merged));
}

/// A tester for the gated `docs` task, whose test fails until the README
/// documents `slug`.
const DOCS_TESTER: &str = r#"
name = "docs-tester"
[[conversation]]
role = "tester"
task = "docs"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "write_file"
  args = { path = "tests/test_docs_acceptance.sh", content = "test_docs_acceptance_lists_slug() {\n  grep -q 'textkit slug' \"$ROOT/README.md\" || return 1\n}\n" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "the README must list slug" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_testers_test_only_the_tasks_the_policy_gates() {
    let demo = demo_repo();
    let mut scenario = Scenario::parse(DOCS_TESTER, "docs tester").unwrap();
    scenario
        .conversations
        .extend(demo.scenario.conversations.iter().cloned());
    let providers = ProviderSet::uniform(
        Arc::new(ScriptedProvider::new(Arc::new(scenario))),
        "scripted",
    );
    let mut request = demo_request(&demo, providers, Steering::Headless, true);
    request.config.run.test_agents = TestAgents::Gated;
    let state = run_headless(request).await;
    let events = stored_events(&demo.repo, &state.run);
    assert_eq!(state.settings.test_agents, TestAgents::Gated);
    // `title` has a tester script but is not gated; `docs` (README.md) is.
    let tested: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TesterDone(TesterDone {
                task,
                tests: Some(t),
            }) if t.failed_on_base => Some(task.as_str()),
            EventKind::TesterDone(TesterDone { task, .. }) => panic!("{task}: no tests on base"),
            _ => None,
        })
        .collect();
    assert_eq!(tested, ["docs"]);
    assert!(state.tasks().iter().all(|t| t.state == TaskState::Merged));
}
