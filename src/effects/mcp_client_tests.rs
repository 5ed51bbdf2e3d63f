use std::future::Future;

use rmcp::model::{
    CallToolResponse, ContentBlock, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde_json::json;

use super::*;
use crate::effects::isolation::{Mechanism, testing};

/// The sh server tests/fixtures/mcp/stub_server.sh, the one the factory's
/// integration test configures too.
const STUB: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mcp/stub_server.sh"
));

/// An in-process server: `echo` answers its text, `fail` an error result,
/// `hang` never answers; `dotted.name` has a name providers refuse.
struct Server;

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListToolsResult, ErrorData>> + Send + '_ {
        let schema = |v: serde_json::Value| match v {
            serde_json::Value::Object(map) => map,
            _ => JsonObject::new(),
        };
        let text = schema(json!({"type": "object", "properties": {"text": {"type": "string"}}}));
        std::future::ready(Ok(ListToolsResult::with_all_items(vec![
            Tool::new("echo", "Answer the text.", text),
            Tool::new("fail", "Fail.", schema(json!({"type": "object"}))),
            Tool::new("hang", "Never answer.", schema(json!({"type": "object"}))),
            Tool::new("dotted.name", "", schema(json!({"type": "object"}))),
        ])))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let text = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("text"))
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_owned();
        match request.name.as_ref() {
            "echo" => Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into()),
            "fail" => Ok(CallToolResult::error(vec![ContentBlock::text("it broke")]).into()),
            "hang" => std::future::pending().await,
            other => Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        }
    }
}

/// A client of [`Server`], over an in-memory pipe.
pub(crate) async fn in_process() -> McpClient {
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Ok(running) = Server.serve(server_end).await {
            let _ = running.waiting().await;
        }
    });
    McpClient::connect(client_end, Duration::from_secs(5))
        .await
        .unwrap()
}

fn args(value: serde_json::Value) -> Option<JsonObject> {
    value.as_object().cloned()
}

#[tokio::test]
async fn tools_are_listed_and_calls_answered() {
    let client = in_process().await;
    let names: Vec<&str> = client.tools().iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["echo", "fail", "hang", "dotted.name"]);
    assert_eq!(
        client.tools()[0].input_schema["properties"]["text"]["type"],
        "string"
    );
    let timeout = Duration::from_secs(5);
    let echoed = client
        .call("echo", args(json!({"text": "hi"})), timeout)
        .await
        .unwrap();
    assert_eq!(
        echoed,
        CallOutcome {
            is_error: false,
            text: "hi".into()
        }
    );
    let failed = client.call("fail", None, timeout).await.unwrap();
    assert!(failed.is_error);
    assert_eq!(failed.text, "it broke");
    let unknown = client.call("nope", None, timeout).await.unwrap();
    assert!(unknown.is_error, "{unknown:?}");
    client.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_without_an_answer_times_out() {
    let client = in_process().await;
    let hung = client.call("hang", None, Duration::from_secs(30)).await;
    assert!(
        matches!(hung, Err(McpError::Timeout { .. })),
        "{:?}",
        hung.err()
    );
    // The connection still serves other calls.
    let echoed = client
        .call(
            "echo",
            args(json!({"text": "after"})),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(echoed.text, "after");
}

#[test]
fn exec_lines_quote_every_word() {
    assert_eq!(
        exec_line("srv", &["a b".into(), "it's".into()]),
        r"exec 'srv' 'a b' 'it'\''s'"
    );
}

fn stub_env() -> BTreeMap<String, String> {
    BTreeMap::from([("MCP_GREETING".to_owned(), "hello from config".to_owned())])
}

async fn spawn_stub(dir: &Path, isolation: &Isolation) -> McpClient {
    McpClient::spawn(
        "sh",
        &["-c".into(), STUB.into()],
        &stub_env(),
        dir,
        isolation,
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

fn fences() -> Vec<Isolation> {
    let mut fences = vec![Isolation::none()];
    fences.extend(testing::forced(Mechanism::Landlock));
    fences.extend(testing::forced(Mechanism::Bwrap));
    fences
}

#[tokio::test]
async fn a_fenced_server_writes_its_working_directory_and_nothing_else() {
    for isolation in fences() {
        let fenced = isolation.mechanism != Mechanism::None;
        let work = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("escaped");
        let client = spawn_stub(work.path(), &isolation).await;
        let timeout = Duration::from_secs(10);
        let inside = client
            .call(
                "write",
                args(json!({"file": "made.txt", "text": "in"})),
                timeout,
            )
            .await
            .unwrap();
        assert!(!inside.is_error, "{:?}: {inside:?}", isolation.mechanism);
        assert_eq!(
            std::fs::read_to_string(work.path().join("made.txt")).unwrap(),
            "in\n"
        );
        let out = client
            .call(
                "write",
                args(json!({"file": target.display().to_string(), "text": "out"})),
                timeout,
            )
            .await
            .unwrap();
        assert_eq!(out.is_error, fenced, "{:?}: {out:?}", isolation.mechanism);
        assert_eq!(target.exists(), !fenced, "{:?}", isolation.mechanism);
        // The config's variables reach it, through the scrubbed environment.
        let greeting = client.call("greeting", None, timeout).await.unwrap();
        assert_eq!(greeting.text, "hello from config");
        client.shutdown().await;
    }
}

#[tokio::test]
async fn a_stopped_server_leaves_no_process_behind() {
    for isolation in fences() {
        let work = tempfile::tempdir().unwrap();
        let client = spawn_stub(work.path(), &isolation).await;
        let lingered = client
            .call(
                "linger",
                args(json!({"file": "late.txt"})),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(lingered.text, "lingering");
        client.shutdown().await;
        // A real wait: the leftover process would write after 2 s.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !work.path().join("late.txt").exists(),
            "{:?}: the server's child outlived it",
            isolation.mechanism
        );
    }
}

#[tokio::test]
async fn a_server_that_cannot_start_says_why() {
    let work = tempfile::tempdir().unwrap();
    let err = McpClient::spawn(
        "memofab-no-such-server",
        &[],
        &BTreeMap::new(),
        work.path(),
        &Isolation::none(),
        Duration::from_secs(10),
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("memofab-no-such-server"),
        "names the program as the shell reported it: {err}"
    );
    // A server that answers nothing in time.
    let err = McpClient::spawn(
        "sleep",
        &["30".into()],
        &BTreeMap::new(),
        work.path(),
        &Isolation::none(),
        Duration::from_millis(300),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, McpError::Timeout { .. }), "{err}");
}
