//! `memofab doctor` asks every model the roles use to call one tool, and
//! fails on a model that cannot: a model that answers "ok" in prose is
//! reachable and still useless to agents, which act only through calls.

use crate::support::fake_llm;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use fake_llm::*;
use serde_json::{Value, json};

fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "c", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

/// A streamed reply that calls `ping` properly.
fn native_call() -> Vec<u8> {
    sse(&[
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "ping", "arguments": ""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"message\":\"hello\"}"}}]}),
            Some("tool_calls"),
        ),
        "[DONE]".into(),
    ])
}

/// A streamed reply whose text is `text`.
fn text_reply(text: &str) -> Vec<u8> {
    sse(&[
        chunk(json!({"role": "assistant", "content": text}), None),
        chunk(json!({}), Some("stop")),
        "[DONE]".into(),
    ])
}

const FENCED_CALL: &str =
    "```json\n{\"name\": \"ping\", \"arguments\": {\"message\": \"hello\"}}\n```";

/// `memofab doctor` with only `config` (no user config, no repository).
async fn doctor(dir: &Path, config: &str) -> (Output, String) {
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let dir = dir.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_memofab"))
            .arg("--repo")
            .arg(&dir)
            .args(["doctor", "--config"])
            .arg(&path)
            .env("XDG_CONFIG_HOME", dir.join("xdg"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

fn local(server: &FakeServer, extra: &str) -> String {
    format!(
        "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"m\"\nmax_retries = 0\n{extra}\n\
         [roles.default]\nprovider = \"local\"\n",
        server.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_calls_the_tool_passes() {
    let server = FakeServer::start(vec![ok(vec![native_call()])]).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, text) = doctor(dir.path(), &local(&server, "")).await;
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ok   provider local, model m: tool calls: yes"),
        "{text}"
    );
    // One request, offering one tool with a required argument, and no
    // tool_choice the agents would not send either.
    assert_eq!(server.count(), 1);
    let body = server.request(0).json();
    assert_eq!(body["tools"].as_array().unwrap().len(), 1);
    assert_eq!(body["tools"][0]["function"]["name"], "ping");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"],
        json!(["message"])
    );
    assert!(body.get("tool_choice").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_only_answers_in_prose_fails() {
    let server = FakeServer::start(vec![ok(vec![text_reply("ok")])]).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, text) = doctor(dir.path(), &local(&server, "")).await;
    assert!(!out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("provider local, model m:"))
        .unwrap_or_else(|| panic!("no line for the model:\n{text}"));
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(line.contains("tool calls: no"), "{line}");
    assert!(line.contains("\"ok\""), "says what it answered: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_written_as_text_is_reported_as_such() {
    let server = FakeServer::start(vec![ok(vec![text_reply(FENCED_CALL)])]).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, text) = doctor(dir.path(), &local(&server, "")).await;
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ok   provider local, model m: tool calls: only as text"),
        "{text}"
    );

    // With text calls turned off, agents would never see those calls.
    let (out, text) = doctor(dir.path(), &local(&server, "text_tool_calls = \"off\"")).await;
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("FAIL provider local, model m: tool calls: only as text"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_model_a_role_uses_is_probed_with_the_configured_tool_choice() {
    // The server answers by model: "big" calls, "small" chats.
    let responder: Responder = Arc::new(|req: &Recorded| {
        let body: Value = serde_json::from_str(&req.body).unwrap();
        if body["model"] == "big" {
            vec![native_call()]
        } else {
            vec![text_reply("Sure! Happy to help.")]
        }
    });
    let server = FakeServer::start(vec![Reply::Dynamic(responder)]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[roles.reviewer]\nprovider = \"local\"\nmodel = \"small\"\n",
        local(&server, "tool_choice = \"required\"").replace("model = \"m\"", "model = \"big\"")
    );
    let (out, text) = doctor(dir.path(), &config).await;
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("ok   provider local, model big: tool calls: yes"),
        "{text}"
    );
    assert!(
        text.contains("FAIL provider local, model small: tool calls: no"),
        "{text}"
    );
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 2, "each model once");
    assert!(bodies.iter().all(|b| b["tool_choice"] == "required"));

    // A provider no role uses is reported, not failed.
    let config = format!(
        "{}[providers.spare]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"small\"\nmax_retries = 0\n",
        local(&server, "").replace("model = \"m\"", "model = \"big\""),
        server.url()
    );
    let (out, text) = doctor(dir.path(), &config).await;
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("--   provider spare, model small: tool calls: no"),
        "{text}"
    );
}
