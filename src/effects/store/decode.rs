//! Decoding stored event bodies. Serde decodes an internally tagged enum by
//! first buffering every field of the object; for the conversation events,
//! which are nearly all of a long run, the `type` column already names the
//! variant, so their fields are decoded straight into place instead. Twice
//! as fast, and the JSON stays the one `export` and `--headless` print.

use serde::Deserialize;

use crate::domain::{AgentId, EventKind, MessageAuthor, TaskId, TokenUsage};

#[derive(Deserialize)]
struct Message {
    agent: AgentId,
    from: MessageAuthor,
    text: String,
}

#[derive(Deserialize)]
struct Called {
    agent: AgentId,
    call_id: String,
    tool: String,
    arguments: serde_json::Value,
}

#[derive(Deserialize)]
struct Result {
    agent: AgentId,
    call_id: String,
    ok: bool,
    output: String,
}

#[derive(Deserialize)]
struct Tokens {
    agent: AgentId,
    #[serde(default)]
    task: Option<TaskId>,
    model: String,
    usage: TokenUsage,
    #[serde(default)]
    cost_usd: Option<f64>,
}

/// The kind of the event stored as `body`, whose `type` column is `kind`.
pub fn decode_kind(kind: &str, body: &str) -> serde_json::Result<EventKind> {
    Ok(match kind {
        "agent_message" => {
            let m: Message = serde_json::from_str(body)?;
            EventKind::AgentMessage {
                agent: m.agent,
                from: m.from,
                text: m.text,
            }
        }
        "tool_called" => {
            let c: Called = serde_json::from_str(body)?;
            EventKind::ToolCalled {
                agent: c.agent,
                call_id: c.call_id,
                tool: c.tool,
                arguments: c.arguments,
            }
        }
        "tool_result" => {
            let r: Result = serde_json::from_str(body)?;
            EventKind::ToolResult {
                agent: r.agent,
                call_id: r.call_id,
                ok: r.ok,
                output: r.output,
            }
        }
        "tokens_used" => {
            let t: Tokens = serde_json::from_str(body)?;
            EventKind::TokensUsed {
                agent: t.agent,
                task: t.task,
                model: t.model,
                usage: t.usage,
                cost_usd: t.cost_usd,
            }
        }
        _ => serde_json::from_str(body)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Event, RunId};

    /// Each fast path gives exactly what the generic decoder gives.
    #[test]
    fn fast_paths_agree_with_serde() {
        let agent = AgentId::from("coder:a#1");
        let kinds = [
            EventKind::AgentMessage {
                agent: agent.clone(),
                from: MessageAuthor::Assistant,
                text: "héllo \"there\"\n".into(),
            },
            EventKind::ToolCalled {
                agent: agent.clone(),
                call_id: "c1".into(),
                tool: "write_file".into(),
                arguments: serde_json::json!({"path": "a", "content": "x"}),
            },
            EventKind::ToolResult {
                agent: agent.clone(),
                call_id: "c1".into(),
                ok: false,
                output: "no".into(),
            },
            EventKind::TokensUsed {
                cost_usd: None,
                agent: agent.clone(),
                task: None,
                model: "m".into(),
                usage: TokenUsage {
                    input: 1,
                    output: 2,
                    cached: 3,
                    cache_write: 0,
                },
            },
            EventKind::RunResumed {
                interrupted: vec!["a".into()],
            },
        ];
        for kind in kinds {
            let event = Event {
                run: RunId::from("r"),
                seq: 7,
                at_ms: 9,
                kind: kind.clone(),
            };
            let body = serde_json::to_string(&event).unwrap();
            assert_eq!(decode_kind(kind.name(), &body).unwrap(), kind);
        }
        assert!(decode_kind("agent_message", "{\"agent\": 1}").is_err());
    }
}
