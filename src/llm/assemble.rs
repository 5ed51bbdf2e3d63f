//! Turns a provider's event stream into one [`Completion`], gluing streamed
//! tool-call fragments together by index. Shared by every provider so the
//! assembly rules live in one place. (Providers number calls themselves;
//! the OpenAI decoder already renumbers servers that reuse an index.)

use std::collections::BTreeMap;

use futures_util::{Stream, StreamExt};

use super::types::{Completion, LlmError, StreamEvent, ToolCall};
use crate::domain::TokenUsage;

/// A piece of streamed text, as the front end shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta<'a> {
    /// Part of the answer.
    Text(&'a str),
    /// Part of the model's reasoning.
    Reasoning(&'a str),
}

/// A reply that failed, with the tokens the server reported before it did:
/// a failed request is still paid for.
#[derive(Debug, Clone, PartialEq)]
pub struct Interrupted {
    pub error: LlmError,
    pub usage: TokenUsage,
}

/// Drains `stream`, calling `on_text` with each text delta as it arrives.
pub async fn collect_completion<S>(
    stream: S,
    mut on_text: impl FnMut(&str),
) -> Result<Completion, LlmError>
where
    S: Stream<Item = Result<StreamEvent, LlmError>> + Unpin,
{
    assemble(stream, |delta| {
        if let Delta::Text(text) = delta {
            on_text(text);
        }
    })
    .await
    .map_err(|i| i.error)
}

/// Drains `stream`, calling `on_delta` with each text or reasoning delta.
pub async fn assemble<S>(
    mut stream: S,
    mut on_delta: impl FnMut(Delta<'_>),
) -> Result<Completion, Interrupted>
where
    S: Stream<Item = Result<StreamEvent, LlmError>> + Unpin,
{
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls: BTreeMap<usize, ToolCall> = BTreeMap::new();
    let mut usage = TokenUsage::default();
    let mut finish = None;
    let fail = |error, usage| Err(Interrupted { error, usage });
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => return fail(error, usage),
        };
        match event {
            StreamEvent::TextDelta(delta) => {
                on_delta(Delta::Text(&delta));
                text.push_str(&delta);
            }
            StreamEvent::ReasoningDelta(delta) => {
                on_delta(Delta::Reasoning(&delta));
                reasoning.push_str(&delta);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                let call = calls.entry(index).or_insert_with(|| ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                if !id.is_empty() {
                    call.id = id;
                }
                if !name.is_empty() {
                    call.name = name;
                }
            }
            StreamEvent::ToolCallArgs { index, fragment } => match calls.get_mut(&index) {
                Some(call) => call.arguments.push_str(&fragment),
                None => {
                    let error = LlmError::Protocol(format!(
                        "arguments for tool call #{index} arrived before the call began"
                    ));
                    return fail(error, usage);
                }
            },
            StreamEvent::Usage(u) => {
                // Providers report usage cumulatively or once; keep the largest.
                usage.input = usage.input.max(u.input);
                usage.output = usage.output.max(u.output);
                usage.cached = usage.cached.max(u.cached);
                usage.cache_write = usage.cache_write.max(u.cache_write);
            }
            StreamEvent::Finished(reason) => finish = Some(reason),
        }
    }
    let Some(finish) = finish else {
        return fail(LlmError::Truncated, usage);
    };
    let mut tool_calls: Vec<ToolCall> = calls.into_values().collect();
    for (i, call) in tool_calls.iter_mut().enumerate() {
        if call.name.is_empty() {
            let error = LlmError::Protocol(format!("tool call #{i} has no name"));
            return fail(error, usage);
        }
        if call.id.is_empty() {
            call.id = format!("call_{i}");
        }
    }
    Ok(Completion {
        text,
        reasoning,
        tool_calls,
        finish,
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::FinishReason;
    use futures_util::stream;

    fn run(events: Vec<Result<StreamEvent, LlmError>>) -> Result<Completion, LlmError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut seen = String::new();
        let out = rt.block_on(collect_completion(stream::iter(events), |t| {
            seen.push_str(t)
        }));
        if let Ok(c) = &out {
            assert_eq!(seen, c.text);
        }
        out
    }

    #[test]
    fn glues_parallel_tool_calls_by_index() {
        let c = run(vec![
            Ok(StreamEvent::TextDelta("Let me ".into())),
            Ok(StreamEvent::TextDelta("look.".into())),
            Ok(StreamEvent::ToolCallStart {
                index: 1,
                id: "b".into(),
                name: "list_files".into(),
            }),
            Ok(StreamEvent::ToolCallStart {
                index: 0,
                id: "a".into(),
                name: "read_file".into(),
            }),
            Ok(StreamEvent::ToolCallArgs {
                index: 0,
                fragment: "{\"path\":".into(),
            }),
            Ok(StreamEvent::ToolCallArgs {
                index: 1,
                fragment: "{}".into(),
            }),
            Ok(StreamEvent::ToolCallArgs {
                index: 0,
                fragment: "\"a.rs\"}".into(),
            }),
            Ok(StreamEvent::Usage(TokenUsage {
                input: 10,
                output: 5,
                cached: 0,
                cache_write: 0,
            })),
            Ok(StreamEvent::Finished(FinishReason::ToolCalls)),
        ])
        .unwrap();
        assert_eq!(c.text, "Let me look.");
        assert_eq!(c.tool_calls.len(), 2);
        assert_eq!(c.tool_calls[0].name, "read_file");
        assert_eq!(c.tool_calls[0].arguments, "{\"path\":\"a.rs\"}");
        assert_eq!(c.tool_calls[1].id, "b");
        assert_eq!(c.usage.total(), 15);
    }

    #[test]
    fn stream_without_finish_is_truncated() {
        let err = run(vec![Ok(StreamEvent::TextDelta("hi".into()))]).unwrap_err();
        assert_eq!(err, LlmError::Truncated);
    }

    #[test]
    fn args_before_start_is_a_protocol_error() {
        let err = run(vec![Ok(StreamEvent::ToolCallArgs {
            index: 3,
            fragment: "{".into(),
        })])
        .unwrap_err();
        assert!(matches!(err, LlmError::Protocol(_)));
    }

    #[test]
    fn reasoning_is_kept_apart_and_a_failure_keeps_the_usage_seen() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut deltas = Vec::new();
        let events = vec![
            Ok(StreamEvent::ReasoningDelta("think".into())),
            Ok(StreamEvent::TextDelta("say".into())),
            Ok(StreamEvent::Finished(FinishReason::Stop)),
        ];
        let c = rt
            .block_on(assemble(stream::iter(events), |d| {
                deltas.push(format!("{d:?}"))
            }))
            .unwrap();
        assert_eq!((c.reasoning.as_str(), c.text.as_str()), ("think", "say"));
        assert_eq!(deltas, ["Reasoning(\"think\")", "Text(\"say\")"]);

        let used = TokenUsage {
            input: 2700,
            output: 12,
            ..TokenUsage::default()
        };
        let events = vec![
            Ok(StreamEvent::Usage(used)),
            Err(LlmError::StreamServer {
                status: 500,
                message: "boom".into(),
            }),
        ];
        let failed = rt
            .block_on(assemble(stream::iter(events), |_| {}))
            .unwrap_err();
        assert_eq!(failed.usage, used);
        assert!(matches!(failed.error, LlmError::StreamServer { .. }));
    }
}
