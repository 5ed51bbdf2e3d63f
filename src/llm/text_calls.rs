//! Tool calls written as text. Small local models (Qwen2.5-Coder behind
//! llama-server, say) often answer with the call as JSON in `content`,
//! bare or in a ```json fence, instead of in `tool_calls`. When the whole
//! reply is one such object, or holds exactly one fenced one, naming a tool
//! that was offered with arguments that fit it, it is taken as that call.

use serde_json::{Map, Value};

use super::types::{ToolCall, ToolSpec};

/// A call read from a reply's text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextCall {
    pub call: ToolCall,
    /// The reply's text without the call (prose around a fence).
    pub rest: String,
}

/// Reads `text` as one call of a tool in `tools`, giving it `id`.
pub fn text_tool_call(text: &str, tools: &[ToolSpec], id: &str) -> Option<TextCall> {
    let trimmed = text.trim();
    let (json, rest) = if trimmed.starts_with('{') {
        (trimmed, String::new())
    } else {
        let (json, before, after) = single_fence(text)?;
        let rest = format!("{}\n{}", before.trim_end(), after.trim_start());
        (json, rest.trim().to_owned())
    };
    let value: Value = serde_json::from_str(json).ok()?;
    let object = value.as_object()?;
    let name = ["name", "tool"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_str))?;
    let spec = tools.iter().find(|t| t.name == name)?;
    let arguments = ["arguments", "parameters", "input"]
        .iter()
        .find_map(|k| object.get(*k))
        .map_or_else(|| Some(Map::new()), arguments_object)?;
    if !fits(&arguments, &spec.parameters) {
        return None;
    }
    Some(TextCall {
        call: ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments: Value::Object(arguments).to_string(),
        },
        rest,
    })
}

/// Arguments as an object; some models send them as a JSON string.
fn arguments_object(value: &Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map.clone()),
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .and_then(|v| v.as_object().cloned()),
        _ => None,
    }
}

/// Whether `arguments` has every property the schema requires.
fn fits(arguments: &Map<String, Value>, schema: &Value) -> bool {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .all(|key| arguments.contains_key(key))
}

/// The body of the only ``` fence in `text` (with the text before and after
/// it), if there is exactly one and it holds a JSON object.
fn single_fence(text: &str) -> Option<(&str, &str, &str)> {
    let open = text.find("```")?;
    let after_open = &text[open + 3..];
    let body_start = after_open.find('\n')? + 1;
    let body_and_rest = &after_open[body_start..];
    let close = body_and_rest.find("```")?;
    let after = &body_and_rest[close + 3..];
    if after.contains("```") {
        return None;
    }
    let body = body_and_rest[..close].trim();
    body.starts_with('{')
        .then_some((body, &text[..open], after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "write_file".into(),
            description: "Write".into(),
            parameters: json!({"type": "object", "properties": {
                "path": {"type": "string"}, "content": {"type": "string"}
            }, "required": ["path", "content"]}),
        }]
    }

    fn read(text: &str) -> Option<TextCall> {
        text_tool_call(text, &tools(), "call_t1")
    }

    #[test]
    fn bare_and_fenced_calls_in_every_shape_are_read() {
        let args = r#"{"content":"x","path":"a.py"}"#;
        for text in [
            r#"{"name": "write_file", "arguments": {"path": "a.py", "content": "x"}}"#.to_owned(),
            r#"  {"name": "write_file", "parameters": {"path": "a.py", "content": "x"}}"#.to_owned(),
            r#"{"tool": "write_file", "arguments": "{\"path\": \"a.py\", \"content\": \"x\"}"}"#
                .to_owned(),
            "```json\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"a.py\", \"content\": \"x\"}}\n```"
                .to_owned(),
        ] {
            let got = read(&text).unwrap_or_else(|| panic!("not read: {text}"));
            assert_eq!(got.call.name, "write_file");
            assert_eq!(got.call.id, "call_t1");
            let parsed: Value = serde_json::from_str(&got.call.arguments).unwrap();
            assert_eq!(parsed, serde_json::from_str::<Value>(args).unwrap());
            assert_eq!(got.rest, "");
        }
        let with_prose = read(
            "I'll write it.\n```json\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"a\", \"content\": \"\"}}\n```\nDone.",
        )
        .unwrap();
        assert_eq!(with_prose.rest, "I'll write it.\nDone.");
    }

    #[test]
    fn anything_else_stays_text() {
        for text in [
            "Just prose.",
            // Not an offered tool.
            r#"{"name": "rm_rf", "arguments": {}}"#,
            // Missing a required argument.
            r#"{"name": "write_file", "arguments": {"path": "a"}}"#,
            // Two fences: which one would be meant?
            "```json\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"a\", \"content\": \"\"}}\n```\n```json\n{}\n```",
            // A code fence that is not JSON.
            "```python\nprint(1)\n```",
            // Broken JSON.
            r#"{"name": "write_file", "arguments": {"#,
            // Arguments that are no object.
            r#"{"name": "write_file", "arguments": [1]}"#,
        ] {
            assert_eq!(read(text), None, "{text}");
        }
    }
}
