//! Agents given the tools of an MCP server configured under `[mcp.servers]`:
//! a scripted factory run whose coder works through a real stdio server (a
//! tiny one in sh, tests/fixtures/mcp/stub_server.sh, started by the engine
//! in the coder's fence). Checked on the effects: the tools the coder was
//! given and its calls are in the store; what the server wrote in the
//! worktree merged; what it tried to write in the user's checkout and
//! beyond exists nowhere; a factory definition it wrote on its own fails
//! the task like the coder's own edit would, and never reaches mainline.

use crate::support::factory;

use std::collections::BTreeMap;

use factory::*;
use memofab::config::{IsolationChoice, McpServerConfig};
use memofab::domain::event::{McpToolsListed, ToolCalled, ToolResult};
use memofab::domain::mcp::McpServerListing;
use memofab::domain::{Event, EventKind, TaskState};
use memofab::effects::git::GitRepo;
use memofab::effects::isolation::{Mechanism, testing};
use memofab::engine::run::orchestrator::Steering;

const STUB: &str = include_str!("../fixtures/mcp/stub_server.sh");
const GREETING: &str = "hello from the config";

/// The fixture's run with the stub server configured, fenced by `mechanism`.
async fn run_with_stub(fixture: &str, mechanism: Mechanism) -> (DemoRepo, Vec<Event>) {
    let demo = fixture_repo(fixture);
    let mut request = demo_request(&demo, scripted(&demo), Steering::Headless, true);
    request.config.run.isolation = match mechanism {
        Mechanism::Landlock => IsolationChoice::Landlock,
        Mechanism::Bwrap => IsolationChoice::Bwrap,
        Mechanism::None => IsolationChoice::None,
    };
    request.config.mcp.servers.insert(
        "stub".into(),
        McpServerConfig {
            command: "sh".into(),
            args: vec!["-c".into(), STUB.into()],
            env: BTreeMap::from([("MCP_GREETING".to_owned(), GREETING.to_owned())]),
        },
    );
    run_headless(request).await;
    let events = stored_events(&demo.repo, &only_run(&demo.repo));
    (demo, events)
}

/// The result of each call of `tool`, in order: the first result after the
/// call with its agent and call id (ids repeat across agents).
fn results_of(events: &[Event], tool: &str) -> Vec<(bool, String)> {
    events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.kind {
            EventKind::ToolCalled(ToolCalled {
                agent,
                call_id,
                tool: t,
                ..
            }) if t == tool => Some((i, agent, call_id)),
            _ => None,
        })
        .map(|(i, agent, id)| {
            events[i..]
                .iter()
                .find_map(|e| match &e.kind {
                    EventKind::ToolResult(ToolResult {
                        agent: a,
                        call_id,
                        ok,
                        output,
                    }) if a == agent && call_id == id => Some((*ok, output.clone())),
                    _ => None,
                })
                .expect("every call has a result")
        })
        .collect()
}

fn coder_listings(events: &[Event]) -> Vec<McpServerListing> {
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::McpToolsListed(McpToolsListed { agent, servers })
                if agent.as_str().starts_with("coder") =>
            {
                Some(servers.clone())
            }
            _ => None,
        })
        .expect("the coder's MCP tools are recorded")
}

async fn a_coder_works_through_a_fenced_mcp_server(mechanism: Mechanism) {
    if testing::forced(mechanism).is_none() {
        return;
    }
    let (demo, events) = run_with_stub("mcp/scenario.toml", mechanism).await;
    let state = fold(&events);

    // The tools the coder was given are in its transcript; planners and
    // reviewers, who change nothing, got none.
    let listings = coder_listings(&events);
    assert_eq!(listings.len(), 1);
    assert_eq!(listings[0].server, "stub");
    assert!(
        listings[0].tools.contains(&"mcp__stub__write".to_owned()),
        "{listings:?}"
    );
    let listed_for: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::McpToolsListed(McpToolsListed { agent, .. }) => Some(agent.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(listed_for.len(), 1, "{listed_for:?}");

    // The server wrote the work in the worktree, and it merged.
    let writes = results_of(&events, "mcp__stub__write");
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert_eq!(writes[0], (true, "wrote notes.txt".to_owned()));
    assert_eq!(
        state.task(&"notes".into()).map(|t| t.state),
        Some(TaskState::Merged),
        "{mechanism:?}"
    );
    let main = GitRepo::open(&demo.repo).unwrap();
    assert_eq!(
        main.read_file_at("main", "notes.txt").unwrap().as_deref(),
        Some(&b"written by mcp\n"[..])
    );

    // Its writes into the user's checkout and above it went nowhere.
    for escaped in [
        demo.repo.join("mcp-escaped.txt"),
        demo.dir.path().join("mcp-escaped.txt"),
    ] {
        assert!(!escaped.exists(), "{mechanism:?}: {}", escaped.display());
    }
    assert!(
        !main
            .list_files_at("main")
            .unwrap()
            .iter()
            .any(|f| f.contains("escaped")),
        "{mechanism:?}"
    );

    // The server's config env reached it through the scrubbed environment.
    assert_eq!(
        results_of(&events, "mcp__stub__greeting"),
        [(true, GREETING.to_owned())]
    );
}

#[tokio::test]
async fn a_coder_works_through_an_mcp_server_under_landlock() {
    a_coder_works_through_a_fenced_mcp_server(Mechanism::Landlock).await;
}

#[tokio::test]
async fn a_coder_works_through_an_mcp_server_under_bubblewrap() {
    a_coder_works_through_a_fenced_mcp_server(Mechanism::Bwrap).await;
}

#[tokio::test]
async fn a_factory_definition_written_by_an_mcp_server_fails_the_task() {
    let mechanism = Mechanism::Landlock;
    if testing::forced(mechanism).is_none() {
        return;
    }
    let (demo, events) = run_with_stub("mcp/protected.toml", mechanism).await;
    assert_eq!(
        results_of(&events, "mcp__stub__plant"),
        [(true, "set up".to_owned())]
    );
    let state = fold(&events);
    assert_eq!(
        state.task(&"notes".into()).map(|t| t.state),
        Some(TaskState::Failed)
    );
    let main = GitRepo::open(&demo.repo).unwrap();
    assert_eq!(
        main.read_file_at("main", "prompts/planted.md").unwrap(),
        None
    );
    assert_eq!(main.read_file_at("main", "notes.txt").unwrap(), None);
}

#[tokio::test]
async fn a_server_that_cannot_start_is_recorded_and_the_coder_goes_on() {
    let demo = fixture_repo("mcp/protected.toml");
    let mut request = demo_request(&demo, scripted(&demo), Steering::Headless, true);
    request.config.run.isolation = IsolationChoice::None;
    request.config.mcp.servers.insert(
        "stub".into(),
        McpServerConfig {
            command: "memofab-no-such-mcp-server".into(),
            args: Vec::new(),
            env: BTreeMap::new(),
        },
    );
    run_headless(request).await;
    let events = stored_events(&demo.repo, &only_run(&demo.repo));
    let listings = coder_listings(&events);
    assert!(listings[0].tools.is_empty());
    assert!(listings[0].error.is_some(), "{listings:?}");
    // The call of a tool it never got is answered, and the coder's own
    // work merges.
    let planted = results_of(&events, "mcp__stub__plant");
    assert!(matches!(planted.as_slice(), [(false, _)]), "{planted:?}");
    assert_eq!(
        fold(&events).task(&"notes".into()).map(|t| t.state),
        Some(TaskState::Merged)
    );
    let main = GitRepo::open(&demo.repo).unwrap();
    assert_eq!(
        main.read_file_at("main", "notes.txt").unwrap().as_deref(),
        Some(&b"notes\n"[..])
    );
}
