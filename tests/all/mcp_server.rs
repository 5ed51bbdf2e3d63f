//! `memofab mcp` against clients we did not write: the official Rust SDK's
//! client over the real binary's stdio, and JSON-RPC lines written by hand
//! from the MCP specification. The queue lives in a temp `MEMOFAB_HOME`;
//! runs are real headless runs of the binary on the scripted provider.

use crate::support::factory;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use factory::*;
use memofab::daemon::DaemonPaths;
use memofab::daemon::protocol::{Reply, Request};
use memofab::domain::event::GateDecision;
use memofab::domain::queue::{ItemState, Source};
use memofab::domain::{Decider, EventKind, RunId, TaskId, TaskState};
use memofab::effects::queue::Queue;
use memofab::effects::store::Inboxed;
use memofab::engine::run::session::store_path;
use memofab::protocol::Command;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ClientConfig>;

/// The real binary serving MCP, with its queue in `home` and no user config
/// (so gate decisions are not allowed).
async fn connect(home: &Path) -> Client {
    connect_as(home, "mcp-server-test", Approvals::Off).await
}

/// Whether the user's config lets MCP clients decide gates.
#[derive(Clone, Copy, PartialEq)]
enum Approvals {
    Off,
    Allowed,
}

/// The real binary serving MCP to a client named `name`.
async fn connect_as(home: &Path, name: &str, approvals: Approvals) -> Client {
    let xdg = match approvals {
        Approvals::Off => home.join("no-user-config"),
        Approvals::Allowed => {
            let xdg = home.join("allowing-config");
            std::fs::create_dir_all(xdg.join("memofab")).unwrap();
            std::fs::write(
                xdg.join("memofab/config.toml"),
                "[mcp]\nallow_approve = true\n",
            )
            .unwrap();
            xdg
        }
    };
    let mut command = tokio::process::Command::new(memofab_bin());
    command
        .arg("mcp")
        .env("MEMOFAB_HOME", home)
        .env("XDG_CONFIG_HOME", xdg);
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new(name, "1.0"),
    )
    .serve(TokioChildProcess::new(command).unwrap())
    .await
    .expect("the MCP handshake")
}

async fn call(client: &Client, tool: &'static str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool} answered at the protocol level: {e}"))
}

/// The structured result of a call that must succeed.
async fn ok(client: &Client, tool: &'static str, arguments: Value) -> Value {
    let result = call(client, tool, arguments).await;
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    result.structured_content.expect("structured output")
}

/// A call that must be refused as a tool error, not a protocol failure.
async fn refused(client: &Client, tool: &'static str, arguments: Value) {
    let result = call(client, tool, arguments).await;
    assert_eq!(result.is_error, Some(true), "{tool}: {result:?}");
    assert!(!result.content.is_empty(), "a refusal says why");
}

fn register(home: &Path, repo: &Path) -> String {
    let paths = DaemonPaths::in_dir(home);
    let mut queue = Queue::open(&paths.queue).unwrap();
    queue.add_repo(repo, None).unwrap().name
}

fn inbox(repo: &Path) -> Vec<Inboxed> {
    let conn = rusqlite::Connection::open(store_path(repo)).unwrap();
    let mut stmt = conn.prepare("SELECT body FROM inbox ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|body| serde_json::from_str(&body.unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_are_listed_with_their_input_schemas_and_the_server_says_what_it_is() {
    let home = tempfile::tempdir().unwrap();
    let client = connect(home.path()).await;
    let info = client.peer_info().expect("the server's info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("memofab")
    );
    assert!(
        info.instructions
            .as_deref()
            .is_some_and(|i| i.contains("submit_requirement") && i.contains("gate"))
    );
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "approve_gate",
            "list_queue",
            "list_repositories",
            "list_runs",
            "reject_gate",
            "run_status",
            "submit_requirement"
        ]
    );
    for tool in &tools {
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            tool.name
        );
        assert!(tool.output_schema.is_some(), "{}", tool.name);
    }
    let submit = tools
        .iter()
        .find(|t| t.name == "submit_requirement")
        .unwrap();
    // Approving moves mainline: clients are told it is destructive.
    let approve = tools.iter().find(|t| t.name == "approve_gate").unwrap();
    assert_eq!(
        approve
            .annotations
            .as_ref()
            .and_then(|a| a.destructive_hint),
        Some(true)
    );
    let required = submit.input_schema.get("required").unwrap();
    assert!(required.as_array().unwrap().contains(&json!("repo")));
    assert!(required.as_array().unwrap().contains(&json!("requirement")));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requirement_submitted_over_mcp_is_queued_as_from_mcp() {
    let home = tempfile::tempdir().unwrap();
    let demo = fixture_repo("hygiene/lazy.toml");
    let name = register(home.path(), &demo.repo);
    let client = connect(home.path()).await;

    let listed = ok(&client, "list_repositories", json!({})).await;
    assert_eq!(listed["repositories"][0]["name"], json!(name));

    let submitted = ok(
        &client,
        "submit_requirement",
        json!({"repo": name, "requirement": "Add a --version flag\nPrint the version.", "priority": 3}),
    )
    .await;
    assert_eq!(submitted["daemon_serving"], json!(false));
    assert_eq!(submitted["entry"]["source"], json!("mcp"));
    // Unknown repositories and empty requirements queue nothing.
    refused(
        &client,
        "submit_requirement",
        json!({"repo": "elsewhere", "requirement": "x"}),
    )
    .await;
    refused(
        &client,
        "submit_requirement",
        json!({"repo": name, "requirement": "  "}),
    )
    .await;

    let queue = Queue::open(&DaemonPaths::in_dir(home.path()).queue).unwrap();
    let entries = queue.entries(&[]).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.source, Source::Mcp);
    assert_eq!(entry.state, ItemState::Queued);
    assert_eq!(entry.priority, 3);
    assert_eq!(entry.repo, name);
    assert_eq!(entry.title(), "Add a --version flag");
    assert_eq!(submitted["entry"]["id"], json!(entry.id.to_string()));

    let listing = ok(&client, "list_queue", json!({})).await;
    assert_eq!(listing["entries"].as_array().unwrap().len(), 1);
    // No runs yet: listed as none, and a status says so as a tool error.
    let runs = ok(&client, "list_runs", json!({"repo": name})).await;
    assert_eq!(runs["runs"], json!([]));
    refused(&client, "run_status", json!({"repo": name})).await;
    assert!(!store_path(&demo.repo).exists(), "reading made no store");

    // A serving daemon is woken, and the result says so.
    let listener = std::os::unix::net::UnixListener::bind(home.path().join("daemon.sock")).unwrap();
    let daemon = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request).unwrap();
        writeln!(&stream, "{}", serde_json::to_string(&Reply::Ok).unwrap()).unwrap();
        serde_json::from_str::<Request>(&request).unwrap()
    });
    let woken = ok(
        &client,
        "submit_requirement",
        json!({"repo": name, "requirement": "Add a --quiet flag"}),
    )
    .await;
    assert_eq!(woken["daemon_serving"], json!(true));
    assert_eq!(daemon.join().unwrap(), Request::Wake);
    client.cancel().await.unwrap();
}

/// `memofab run --headless --provider scripted` on the demo repository, in
/// the background; the policy holds `docs` at the gate.
fn spawn_gated_run(demo: &DemoRepo, home: &Path) -> std::process::Child {
    std::process::Command::new(memofab_bin())
        .args([
            "run",
            "--headless",
            "--provider",
            "scripted",
            "--requirement-text",
        ])
        .arg(&demo.scenario.requirement)
        .arg("--repo")
        .arg(&demo.repo)
        .env("XDG_CONFIG_HOME", home.join("no-user-config"))
        .env("MEMOFAB_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memofab run starts")
}

async fn until_gate(client: &Client, name: &str, run: &mut std::process::Child) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the gate never opened");
        assert!(run.try_wait().unwrap().is_none(), "the run ended early");
        let result = call(client, "run_status", json!({"repo": name})).await;
        if result.is_error != Some(true) {
            let status = result.structured_content.unwrap();
            let gated = status["waiting_on_human"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["kind"] == json!("gate") && w["task"] == json!("docs"));
            if gated {
                return status;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_is_read_and_approved_over_mcp_and_the_resumed_run_merges_it() {
    let home = tempfile::tempdir().unwrap();
    let demo = demo_repo();
    let name = register(home.path(), &demo.repo);
    let readme_before = std::fs::read(demo.repo.join("README.md")).unwrap();
    let client = connect_as(home.path(), "gatekeeper", Approvals::Allowed).await;
    let mut engine = spawn_gated_run(&demo, home.path());

    let status = until_gate(&client, &name, &mut engine).await;
    let run = status["run"].as_str().unwrap().to_owned();
    assert_eq!(status["engine_running"], json!(true));

    // A client the user did not allow to decide gates is refused while the
    // engine runs, and nothing is decided: no decision left or recorded,
    // mainline where it was, the task still at the gate.
    let mainline = || {
        git2::Repository::open(&demo.repo)
            .unwrap()
            .refname_to_id("refs/heads/main")
            .unwrap()
    };
    let mainline_before = mainline();
    let denied = connect(home.path()).await;
    let seen = ok(&denied, "run_status", json!({"repo": name, "run": run})).await;
    assert!(
        seen["waiting_on_human"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["tools"] == json!([])),
        "no tool offered that would refuse: {seen}"
    );
    let approve = json!({"repo": name, "run": run, "task": "docs"});
    refused(&denied, "approve_gate", approve.clone()).await;
    refused(
        &denied,
        "reject_gate",
        json!({"repo": name, "run": run, "task": "docs", "reason": "redo"}),
    )
    .await;
    assert!(inbox(&demo.repo).is_empty());
    // Several of the engine's looks at its inbox.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = stored_events(&demo.repo, &RunId::new(&run));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::GateDecision(_))),
        "nothing decided"
    );
    assert_eq!(mainline(), mainline_before, "mainline did not move");
    let still = ok(&denied, "run_status", json!({"repo": name, "run": run})).await;
    assert!(
        still["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == json!("docs") && t["state"] == json!("awaiting_gate")),
        "{still}"
    );
    denied.cancel().await.unwrap();
    let docs = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == json!("docs"))
        .unwrap();
    assert_eq!(docs["state"], json!(TaskState::AwaitingGate.as_str()));
    let gate = status["waiting_on_human"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == json!("gate"))
        .unwrap();
    assert!(
        gate["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("approve_gate"))
    );
    assert!(status["summary"].as_str().unwrap().contains(&run));
    let merged = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["state"] == json!("merged"))
        .expect("docs depends on tasks merged before it")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = ok(&client, "list_runs", json!({"repo": name})).await;
    assert_eq!(listed["runs"][0]["run"], json!(run));

    // The engine dies at the gate: decisions wait in the store for the next one.
    engine.kill().unwrap();
    engine.wait().unwrap();
    let status = ok(&client, "run_status", json!({"repo": name, "run": run})).await;
    assert_eq!(status["interrupted"], json!(true));

    // Wrong tasks and unknown repositories are refused and leave nothing.
    refused(
        &client,
        "reject_gate",
        json!({"repo": name, "run": run, "task": "nope", "reason": "redo"}),
    )
    .await;
    refused(
        &client,
        "approve_gate",
        json!({"repo": name, "run": run, "task": merged}),
    )
    .await;
    refused(
        &client,
        "reject_gate",
        json!({"repo": name, "run": run, "task": "docs", "reason": " "}),
    )
    .await;
    refused(
        &client,
        "approve_gate",
        json!({"repo": "elsewhere", "run": run, "task": "docs"}),
    )
    .await;
    assert!(inbox(&demo.repo).is_empty());

    let sent = ok(
        &client,
        "approve_gate",
        json!({"repo": name, "run": run, "task": "docs"}),
    )
    .await;
    assert_eq!(sent["decision"], json!("approved"));
    assert_eq!(sent["engine_running"], json!(false));
    assert_eq!(
        inbox(&demo.repo),
        [Inboxed {
            by: Decider::Mcp("gatekeeper".into()),
            command: Command::ApproveGate {
                task: TaskId::new("docs")
            }
        }]
    );

    let resumed = resume(&demo.repo);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let events = stored_events(&demo.repo, &RunId::new(&run));
    // Recorded with the client's own name.
    assert!(
        events.iter().any(|e| matches!(
            &e.kind,
            EventKind::GateDecision(GateDecision { approved: true, by, .. })
                if *by == Decider::Mcp("gatekeeper".into())
        )),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(
        &e.kind,
        EventKind::GateDecision(GateDecision {
            approved: false,
            ..
        })
    )));
    // Mainline moved: the docs change is on it.
    let readme_after = memofab::effects::git::GitRepo::open(&demo.repo)
        .unwrap()
        .read_file_at("main", "README.md")
        .unwrap()
        .unwrap();
    assert_ne!(readme_after, readme_before);
    let status = ok(&client, "run_status", json!({"repo": name, "run": run})).await;
    assert_eq!(status["waiting_on_human"], json!([]));
    assert!(
        status["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == json!("merged"))
    );
    client.cancel().await.unwrap();
}

/// Reads JSON-RPC lines until the response with `id`; every line on stdout
/// must be a JSON-RPC message.
fn response(lines: &mut impl Iterator<Item = std::io::Result<String>>, id: u64) -> Value {
    for line in lines {
        let message: Value = serde_json::from_str(&line.unwrap()).expect("stdout is JSON-RPC only");
        assert_eq!(message["jsonrpc"], json!("2.0"));
        if message["id"] == json!(id) {
            return message;
        }
    }
    panic!("no response {id}");
}

#[test]
fn a_client_speaking_plain_json_rpc_lines_is_served() {
    let home = tempfile::tempdir().unwrap();
    let mut server = std::process::Command::new(memofab_bin())
        .arg("mcp")
        .env("MEMOFAB_HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("no-user-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = server.stdin.take().unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let send = |stdin: &mut std::process::ChildStdin, message: Value| {
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    };

    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "by-hand", "version": "1.0"}
        }}),
    );
    let init = response(&mut lines, 1);
    assert_eq!(init["result"]["protocolVersion"], json!("2025-06-18"));
    assert_eq!(init["result"]["serverInfo"]["name"], json!("memofab"));
    assert!(init["result"]["capabilities"]["tools"].is_object());
    assert!(init["result"]["instructions"].is_string());

    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    let tools = response(&mut lines, 2);
    let tools = tools["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 7);
    assert!(
        tools
            .iter()
            .all(|t| t["inputSchema"]["type"] == json!("object"))
    );

    // Missing arguments are the tool's error, not the protocol's.
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": "run_status", "arguments": {}}}),
    );
    let call = response(&mut lines, 3);
    assert_eq!(call["result"]["isError"], json!(true), "{call}");

    // The client closing stdin ends the server cleanly.
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server outlived its client");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(lines.next().is_none(), "nothing after the last response");
}

#[test]
fn a_line_that_is_not_json_gets_a_parse_error_with_a_null_id_and_the_session_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let mut server = std::process::Command::new(memofab_bin())
        .arg("mcp")
        .env("MEMOFAB_HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("no-user-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = server.stdin.take().unwrap();
    // Read on a thread, so a server that never answers fails the test
    // instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = server.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("an answer within 20 s")
    };

    writeln!(stdin, "{{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ").unwrap();
    stdin.flush().unwrap();
    let error: Value = serde_json::from_str(&next().unwrap()).unwrap();
    assert_eq!(error["jsonrpc"], json!("2.0"));
    assert_eq!(error["id"], Value::Null);
    assert_eq!(error["error"]["code"], json!(-32700));

    // The session is not spoiled: a well-formed request is still served.
    let init = json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "by-hand", "version": "1.0"}
    }});
    writeln!(stdin, "{init}").unwrap();
    stdin.flush().unwrap();
    let init = response(&mut std::iter::from_fn(|| Some(next())), 2);
    assert_eq!(init["result"]["serverInfo"]["name"], json!("memofab"));

    drop(stdin);
    let _ = server.wait();
}
