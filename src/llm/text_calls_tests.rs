use super::*;
use serde_json::json;

fn spec(name: &str, parameters: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("{name} tool"),
        parameters,
    }
}

fn tools() -> Vec<ToolSpec> {
    vec![
        spec(
            "read_file",
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        ),
        spec(
            "list_files",
            json!({"type": "object", "properties": {"path": {"type": "string"}, "recursive": {"type": "boolean"}}}),
        ),
        spec(
            "write_file",
            json!({"type": "object", "properties": {
                "path": {"type": "string"}, "content": {"type": "string"}
            }, "required": ["path", "content"]}),
        ),
        spec(
            "finish",
            json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}),
        ),
        spec(
            "submit_blueprint",
            json!({"type": "object", "properties": {
                "title": {"type": "string"}, "tasks": {"type": "array"}
            }, "required": ["title", "tasks"]}),
        ),
    ]
}

fn read(text: &str) -> TextReading {
    read_text_call(text, &tools(), "call_t1")
}

fn call(text: &str) -> TextCall {
    match read(text) {
        TextReading::Call(call) => call,
        other => panic!("not read as a call: {other:?}\n{text}"),
    }
}

fn arguments(call: &TextCall) -> Value {
    serde_json::from_str(&call.call.arguments).unwrap()
}

#[test]
fn bare_and_fenced_calls_in_every_shape_are_read() {
    let args = json!({"content": "x", "path": "a.py"});
    for text in [
        r#"{"name": "write_file", "arguments": {"path": "a.py", "content": "x"}}"#.to_owned(),
        r#"  {"name": "write_file", "parameters": {"path": "a.py", "content": "x"}}"#.to_owned(),
        r#"{"tool": "write_file", "arguments": "{\"path\": \"a.py\", \"content\": \"x\"}"}"#
            .to_owned(),
        "```json\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"a.py\", \"content\": \"x\"}}\n```"
            .to_owned(),
        // Qwen's own tags.
        "<tool_call>\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"a.py\", \"content\": \"x\"}}\n</tool_call>"
            .to_owned(),
        // OpenAI's shape, and llama.cpp's generic one.
        r#"{"type": "function", "function": {"name": "write_file", "arguments": {"path": "a.py", "content": "x"}}}"#
            .to_owned(),
        r#"{"tool_call": {"name": "write_file", "arguments": {"path": "a.py", "content": "x"}}}"#
            .to_owned(),
        // The arguments flattened beside the name.
        r#"{"name": "write_file", "path": "a.py", "content": "x"}"#.to_owned(),
    ] {
        let got = call(&text);
        assert_eq!(got.call.name, "write_file", "{text}");
        assert_eq!(got.call.id, "call_t1");
        assert_eq!(arguments(&got), args, "{text}");
        assert_eq!(got.rest, "", "{text}");
    }
    let with_prose = call(
        "I'll write it.\n```json\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"a\", \"content\": \"\"}}\n```\nDone.",
    );
    assert_eq!(with_prose.rest, "I'll write it.\nDone.");
}

/// Qwen2.5-Coder-1.5B on llama.cpp with the GGUF's own template, asked to
/// plan: it copies the tool list, then writes the call without the
/// blueprint's `title` (from a proxy.py log).
#[test]
fn an_echoed_tool_list_then_a_call_missing_a_key_is_run_as_that_call() {
    let text = r#"<tools>
{"type": "function", "function": {"name": "read_file", "description": "Read a text file of the repository.", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}
{"type": "function", "function": {"name": "submit_blueprint", "description": "Submit the blueprint: a DAG of tasks.", "parameters": {"type": "object", "properties": {"title": {"type": "string"}, "tasks": {"type": "array"}}, "required": ["title", "tasks"]}}}
</tools>

```json
{
  "name": "submit_blueprint",
  "arguments": {
    "tasks": [
      {
        "id": "greeting",
        "title": "Add a greeting to README.md",
        "description": "Append the line Hello to README.md",
        "acceptance": ["README.md ends with Hello"],
        "paths": ["README.md"],
        "depends_on": []
      }
    ]
  }
}
```"#;
    let got = call(text);
    assert_eq!(got.call.name, "submit_blueprint");
    let args = arguments(&got);
    assert!(
        args.get("title").is_none(),
        "the missing key is not invented"
    );
    assert_eq!(args["tasks"][0]["id"], "greeting");
    assert_eq!(got.rest, "", "the echo is not kept as the reply's text");
    // An echo in the other shape, a tool's description, is no call either.
    let echo = r#"{"name": "read_file", "description": "Read", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}
{"name": "read_file", "arguments": {"path": "README.md"}}"#;
    assert_eq!(arguments(&call(echo)), json!({"path": "README.md"}));
    // Or just its parameter schema under the tool's name.
    let schema = r#"{"name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}"#;
    assert_eq!(read(schema), TextReading::Prose);
}

#[test]
fn arguments_alone_are_read_when_exactly_one_tool_takes_them() {
    let got = call(r#"{"summary": "Added the greeting."}"#);
    assert_eq!(got.call.name, "finish");
    assert_eq!(arguments(&got), json!({"summary": "Added the greeting."}));
    let got = call("```json\n{\"tasks\": []}\n```");
    assert_eq!(got.call.name, "submit_blueprint");
    // `path` alone fits read_file and list_files: which one is not guessed.
    let TextReading::Unreadable(why) = read(r#"{"path": "README.md"}"#) else {
        panic!("ambiguous arguments were read");
    };
    assert!(
        why.contains("read_file") && why.contains("list_files"),
        "{why}"
    );
}

#[test]
fn the_first_of_several_calls_is_the_one_read() {
    let got = call(
        "{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"b\"}}",
    );
    assert_eq!(arguments(&got), json!({"path": "a"}));
    let fences = call(
        "```json\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}\n```\n```json\n{}\n```",
    );
    assert_eq!(arguments(&fences), json!({"path": "a"}));
}

#[test]
fn a_call_missing_required_keys_is_still_that_call() {
    let got = call(r#"{"name": "write_file", "arguments": {"path": "a"}}"#);
    assert_eq!(got.call.name, "write_file");
    assert_eq!(arguments(&got), json!({"path": "a"}));
    let empty = call(r#"{"name": "finish"}"#);
    assert_eq!(arguments(&empty), json!({}));
}

#[test]
fn json_that_is_no_call_says_what_is_wrong() {
    for (text, says) in [
        (r#"{"name": "rm_rf", "arguments": {}}"#, "rm_rf"),
        (
            r#"{"name": "write_file", "arguments": [1]}"#,
            "not a JSON object",
        ),
        (r#"{"name": "write_file", "arguments": {"#, "does not parse"),
        ("```json\n{\"name\": \"write_file\",\n```", "does not parse"),
        (r#"{"colour": "blue"}"#, "colour"),
    ] {
        match read(text) {
            TextReading::Unreadable(why) => assert!(why.contains(says), "{text}: {why}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn prose_and_code_stay_text() {
    for text in [
        "Just prose.",
        "```python\nprint(1)\n```",
        "The set {1, 2} has two members.",
        "",
    ] {
        assert_eq!(read(text), TextReading::Prose, "{text}");
    }
}

#[test]
fn a_reply_full_of_broken_braces_is_scanned_in_bounded_time() {
    let text = "{".repeat(200_000);
    let started = std::time::Instant::now();
    assert!(matches!(read(&text), TextReading::Unreadable(_)));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// The text of a recorded stream: every `delta.content`, in order.
fn streamed_text(sse: &str) -> String {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// Recorded from Qwen2.5-Coder-1.5B on llama.cpp answering memofab's
/// planner with a one-call `response_format`: the grammar puts
/// `arguments` before `name`, pretty-printed.
#[test]
fn a_recorded_constrained_reply_is_read_as_its_call() {
    let text = streamed_text(include_str!(
        "../../tests/fixtures/llm/llamacpp_qwen15b_constrained_blueprint.sse"
    ));
    assert!(
        text.trim_start().starts_with("{\n  \"arguments\""),
        "{text}"
    );
    let got = call(&text);
    assert_eq!(got.call.name, "submit_blueprint");
    let args = arguments(&got);
    assert_eq!(args["tasks"][0]["id"], "add-hello-to-readme");
    assert_eq!(args["tasks"][0]["paths"], json!(["README.md"]));
    assert_eq!(got.rest, "");
}
