use std::collections::BTreeMap;

use super::*;
use crate::domain::policy::Policy;
use crate::effects::file_fence::Sandbox;
use crate::effects::process::Isolation;

/// The sh server the effects tests and the factory's integration test use.
const STUB: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mcp/stub_server.sh"
));

fn toolbox(dir: &Path, servers: BTreeMap<String, McpServerConfig>) -> Arc<ToolBox> {
    let sandbox = Sandbox::new(dir, Policy::protected_only()).unwrap();
    let limits = ToolLimits {
        command_timeout: Duration::from_secs(10),
        output_cap: 4096,
        deny_commands: vec!["git push".into()],
        isolation: Isolation::none(),
        max_file_bytes: crate::effects::git::DEFAULT_MAX_FILE_BYTES,
    };
    Arc::new(ToolBox::new(sandbox, limits).with_mcp_servers(servers))
}

fn server(command: &str, args: &[&str]) -> McpServerConfig {
    McpServerConfig {
        command: command.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: BTreeMap::new(),
    }
}

/// The in-process server's tools, offered under their MCP names.
async fn in_process_tools(dir: &Path) -> (McpTools, McpServerListing) {
    let mut tools = McpTools {
        toolbox: Some(toolbox(dir, BTreeMap::new())),
        ..McpTools::none()
    };
    let client = crate::effects::mcp_client::tests::in_process().await;
    let listing = tools.add("mem", client);
    (tools, listing)
}

#[tokio::test]
async fn tools_are_offered_under_their_server_and_calls_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let (tools, listing) = in_process_tools(dir.path()).await;
    assert_eq!(
        listing.tools,
        ["mcp__mem__echo", "mcp__mem__fail", "mcp__mem__hang"]
    );
    assert_eq!(listing.skipped.len(), 1, "{listing:?}");
    assert!(listing.skipped[0].contains("dotted.name"));
    let spec = &tools.specs()[0];
    assert_eq!(spec.parameters["properties"]["text"]["type"], "string");
    assert!(tools.offers("mcp__mem__echo") && !tools.offers("mcp__mem__dotted.name"));

    assert_eq!(
        tools.call("mcp__mem__echo", r#"{"text": "hi"}"#).await,
        (true, "hi".to_owned())
    );
    let (ok, text) = tools.call("mcp__mem__fail", "").await;
    assert!(!ok && text == "it broke", "{text}");
    let (ok, text) = tools.call("mcp__mem__echo", "[1]").await;
    assert!(!ok && text.contains("JSON object"), "{text}");
    tools.shutdown().await;
}

#[tokio::test]
async fn calls_the_agent_could_not_make_itself_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (tools, _) = in_process_tools(dir.path()).await;
    let root = dir.path().canonicalize().unwrap();
    for text in [
        "git push origin main".to_owned(),
        ".memofab/config.toml".to_owned(),
        ".git/hooks/pre-commit".to_owned(),
        "prompts/coder.md".to_owned(),
        root.join("prompts/coder.md").display().to_string(),
    ] {
        let args = serde_json::json!({"text": text}).to_string();
        let (ok, answer) = tools.call("mcp__mem__echo", &args).await;
        assert!(!ok, "{text}: {answer}");
        assert!(answer.contains("was not called"), "{text}: {answer}");
    }
    // Ordinary text and paths pass.
    for text in ["src/lib.rs", "a prompt about prompts/coder.md"] {
        let args = serde_json::json!({"text": text}).to_string();
        assert_eq!(
            tools.call("mcp__mem__echo", &args).await,
            (true, text.to_owned())
        );
    }
}

#[tokio::test]
async fn a_server_that_does_not_start_is_listed_and_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    let servers = BTreeMap::from([
        ("broken".to_owned(), server("memofab-no-such-server", &[])),
        ("stub".to_owned(), server("sh", &["-c", STUB])),
    ]);
    let (tools, listings) = McpTools::connect(&toolbox(dir.path(), servers)).await;
    assert_eq!(listings.len(), 2);
    assert_eq!(listings[0].server, "broken");
    assert!(listings[0].tools.is_empty());
    assert!(
        listings[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("memofab-no-such-server")),
        "{:?}",
        listings[0]
    );
    assert_eq!(
        listings[1].tools,
        [
            "mcp__stub__write",
            "mcp__stub__greeting",
            "mcp__stub__linger",
            "mcp__stub__plant"
        ]
    );
    let (ok, text) = tools
        .call(
            "mcp__stub__write",
            r#"{"file": "made.txt", "text": "by mcp"}"#,
        )
        .await;
    assert!(ok, "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("made.txt")).unwrap(),
        "by mcp\n"
    );
    tools.shutdown().await;
}
