//! Tool calls written as text. Small local models (Qwen2.5-Coder behind
//! llama-server, say) often answer with the call as JSON in `content`
//! instead of in `tool_calls`: bare, in a ```json fence, inside Qwen's
//! `<tool_call>` tags, after an echo of the tool list, or as the arguments
//! alone. The first call of an offered tool found in the reply is taken as
//! that call, whatever its arguments: the tool's own check answers what is
//! wrong with them, as for a real call, so the text and real paths accept
//! the same calls. When JSON was written but no call can be read from it,
//! the reading says why, for the nudge the model gets back.

use serde_json::{Map, Value};

use super::types::{ToolCall, ToolSpec};

/// Start positions tried after a failed parse: a reply full of braces
/// (code, say) must not cost a parse from every one of them.
const MAX_FAILED_STARTS: usize = 64;

/// A call read from a reply's text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextCall {
    pub call: ToolCall,
    /// The reply's text without the JSON it held (prose around the call).
    pub rest: String,
}

/// What a reply's text holds.
#[derive(Debug, Clone, PartialEq)]
pub enum TextReading {
    /// A call of an offered tool.
    Call(TextCall),
    /// JSON that was meant as a call but cannot be run; says what is wrong.
    Unreadable(String),
    /// No JSON object at all.
    Prose,
}

/// Reads `text` as one call of a tool in `tools`, giving it `id`.
pub fn text_tool_call(text: &str, tools: &[ToolSpec], id: &str) -> Option<TextCall> {
    match read_text_call(text, tools, id) {
        TextReading::Call(call) => Some(call),
        _ => None,
    }
}

/// Reads the first call of a tool in `tools` written in `text`; see the
/// module docs for the shapes understood.
pub fn read_text_call(text: &str, tools: &[ToolSpec], id: &str) -> TextReading {
    let scanned = scan(text);
    let mut problems: Vec<String> = Vec::new();
    let mut bare: Vec<&Map<String, Value>> = Vec::new();
    for object in &scanned.objects {
        match classify(&object.value, tools) {
            Candidate::Call { name, arguments } => {
                return TextReading::Call(TextCall {
                    call: ToolCall {
                        id: id.to_owned(),
                        name,
                        arguments: Value::Object(arguments).to_string(),
                    },
                    rest: scanned.rest(text),
                });
            }
            Candidate::Echo => {}
            Candidate::Problem(problem) => problems.push(problem),
            Candidate::Arguments(map) => bare.push(map),
        }
    }
    for map in &bare {
        let fitting: Vec<&ToolSpec> = tools.iter().filter(|t| takes(map, t)).collect();
        if let [tool] = fitting.as_slice() {
            return TextReading::Call(TextCall {
                call: ToolCall {
                    id: id.to_owned(),
                    name: tool.name.clone(),
                    arguments: Value::Object((*map).clone()).to_string(),
                },
                rest: scanned.rest(text),
            });
        }
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        problems.push(if fitting.is_empty() {
            format!(
                "the object with keys {keys:?} names no tool and is not the arguments of any offered tool"
            )
        } else {
            let names: Vec<&str> = fitting.iter().map(|t| t.name.as_str()).collect();
            format!(
                "the object with keys {keys:?} names no tool and could be the arguments of {}: say which",
                names.join(" or ")
            )
        });
    }
    if let Some(problem) = problems.into_iter().next() {
        return TextReading::Unreadable(problem);
    }
    match scanned.broken {
        Some(error) => {
            TextReading::Unreadable(format!("the JSON written does not parse ({error})"))
        }
        None => TextReading::Prose,
    }
}

/// What one JSON object in a reply is.
enum Candidate<'a> {
    Call {
        name: String,
        arguments: Map<String, Value>,
    },
    /// A tool's description copied from the tool list, not a call.
    Echo,
    /// An object without a tool name: perhaps the arguments alone.
    Arguments(&'a Map<String, Value>),
    Problem(String),
}

/// Keys naming the tool in a call object, and holding its arguments.
const NAME_KEYS: [&str; 2] = ["name", "tool"];
const ARGUMENT_KEYS: [&str; 3] = ["arguments", "parameters", "input"];
/// Wrappers around a call: OpenAI's `function`, llama.cpp's generic
/// format (`tool_call`, `response`).
const WRAPPER_KEYS: [&str; 3] = ["function", "tool_call", "response"];

fn classify<'a>(value: &'a Value, tools: &[ToolSpec]) -> Candidate<'a> {
    let Some(object) = value.as_object() else {
        return Candidate::Echo;
    };
    let named = NAME_KEYS.iter().any(|k| object.contains_key(*k));
    if let Some(inner) = WRAPPER_KEYS
        .iter()
        .find_map(|k| object.get(*k).filter(|v| v.is_object() && !named))
    {
        return classify(inner, tools);
    }
    let Some(name) = NAME_KEYS
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_str))
    else {
        return Candidate::Arguments(object);
    };
    let Some(spec) = tools.iter().find(|t| t.name == name) else {
        let offered: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        return Candidate::Problem(format!(
            "{name:?} is not one of the tools offered ({})",
            offered.join(", ")
        ));
    };
    if object.contains_key("description") {
        return Candidate::Echo;
    }
    let arguments = match ARGUMENT_KEYS.iter().find_map(|k| object.get(*k)) {
        Some(raw) => match arguments_object(raw) {
            Some(map) => map,
            None => {
                return Candidate::Problem(format!(
                    "the arguments of {name} are not a JSON object"
                ));
            }
        },
        // The arguments beside the name, flattened into the call.
        None => object
            .iter()
            .filter(|(k, _)| !NAME_KEYS.contains(&k.as_str()) && k.as_str() != "type")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    if is_schema_of(&arguments, spec) {
        return Candidate::Echo;
    }
    Candidate::Call {
        name: name.to_owned(),
        arguments,
    }
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

/// Whether `arguments` is the tool's own parameter schema, echoed.
fn is_schema_of(arguments: &Map<String, Value>, spec: &ToolSpec) -> bool {
    let declares = |key: &str| properties(&spec.parameters).any(|p| p == key);
    arguments.get("type").and_then(Value::as_str) == Some("object")
        && arguments.get("properties").is_some_and(Value::is_object)
        && !declares("properties")
}

fn properties(schema: &Value) -> impl Iterator<Item = &str> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|p| p.keys().map(String::as_str))
}

/// Whether `arguments`, written without a tool name, can only be meant for
/// `tool`: every key is one of its parameters.
fn takes(arguments: &Map<String, Value>, tool: &ToolSpec) -> bool {
    !arguments.is_empty()
        && arguments
            .keys()
            .all(|k| properties(&tool.parameters).any(|p| p == k))
}

/// One JSON object found in the text, and where.
struct Found {
    value: Value,
    start: usize,
    end: usize,
}

struct Scanned {
    /// Every top-level JSON object, in order.
    objects: Vec<Found>,
    /// Why an object that opens a fence, a tag or the reply does not parse.
    broken: Option<String>,
}

/// Finds the JSON objects in `text`, from left to right, not looking
/// inside one already found.
fn scan(text: &str) -> Scanned {
    let mut objects = Vec::new();
    let mut broken = None;
    let mut failed = 0;
    let mut at = 0;
    while let Some(offset) = text[at..].find('{') {
        let start = at + offset;
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                let end = start + stream.byte_offset();
                objects.push(Found { value, start, end });
                at = end;
            }
            Some(Err(e)) => {
                if broken.is_none() && opens_a_call(&text[..start]) {
                    broken = Some(e.to_string());
                }
                failed += 1;
                if failed >= MAX_FAILED_STARTS {
                    break;
                }
                at = start + 1;
            }
            None => break,
        }
    }
    Scanned { objects, broken }
}

/// Whether an object starting after `before` is where a call would be:
/// the reply's start, a fence's first line, or a `<tool_call>` tag.
fn opens_a_call(before: &str) -> bool {
    let before = before.trim_end();
    before.is_empty()
        || before.ends_with("<tool_call>")
        || before
            .rsplit('\n')
            .next()
            .is_some_and(|line| line.trim_start().starts_with("```"))
}

impl Scanned {
    /// The text without its JSON objects and the fences and tags that held
    /// them: what the model said around its call.
    fn rest(&self, text: &str) -> String {
        let mut out = String::new();
        let mut at = 0;
        for object in &self.objects {
            out.push_str(&text[at..object.start]);
            at = object.end;
        }
        out.push_str(&text[at..]);
        let wrapper = |line: &str| {
            let line = line.trim();
            line.starts_with("```")
                || matches!(
                    line,
                    "<tool_call>" | "</tool_call>" | "<tools>" | "</tools>"
                )
        };
        out.lines()
            .filter(|line| !wrapper(line) && !line.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
#[path = "text_calls_tests.rs"]
mod tests;
