//! The scripted provider: deterministic and offline. It answers from a
//! [`Scenario`], streaming text and tool-call arguments in small pieces exactly
//! like a network provider, so everything downstream runs unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};

use super::LlmProvider;
use super::scenario::Scenario;
use super::types::{
    ChatMessage, CompletionRequest, FinishReason, LlmError, ScriptKey, StreamEvent,
};
use crate::domain::TokenUsage;

#[derive(Debug, Clone)]
pub struct ScriptedProvider {
    scenario: Arc<Scenario>,
    /// Pause between streamed pieces, so a human can watch a demo stream.
    pace: Duration,
    /// Simulated limits already answered, per conversation and turn.
    limited: Arc<Mutex<HashMap<(ScriptKey, usize), u32>>>,
}

impl ScriptedProvider {
    pub fn new(scenario: Arc<Scenario>) -> Self {
        Self {
            scenario,
            pace: Duration::ZERO,
            limited: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The simulated limit to answer `request` with instead of its turn, if
    /// the turn has one not yet used up. Counts it as used.
    fn simulated_limit(&self, request: &CompletionRequest) -> Option<LlmError> {
        let conversation = self.scenario.conversation(&request.script)?;
        let index = turn_index(request);
        let limit = conversation.turns.get(index)?.rate_limit.as_ref()?;
        let mut limited = self
            .limited
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let used = limited.entry((request.script.clone(), index)).or_insert(0);
        if *used >= limit.times {
            return None;
        }
        *used += 1;
        let message = if limit.usage {
            "You exceeded your current quota (simulated by the scenario)"
        } else {
            "Rate limit reached (simulated by the scenario)"
        };
        Some(LlmError::RateLimited {
            message: message.into(),
            retry_after: limit.retry_after_ms.map(Duration::from_millis),
        })
    }

    pub fn with_pace(mut self, pace: Duration) -> Self {
        self.pace = pace;
        self
    }

    /// The events of the reply to `request`, or why there is none.
    pub fn reply(&self, request: &CompletionRequest) -> Result<Vec<StreamEvent>, LlmError> {
        let key = &request.script;
        let who = match &key.task {
            Some(task) => format!("{} of task {task}, attempt {}", key.role, key.attempt),
            None => format!("{}, round {}", key.role, key.attempt),
        };
        let conversation = self
            .scenario
            .conversation(key)
            .ok_or_else(|| LlmError::Script(format!("no script for the {who}")))?;
        let turn_index = turn_index(request);
        let turn = conversation.turns.get(turn_index).ok_or_else(|| {
            LlmError::Script(format!(
                "the script for the {who} has {} turns; turn {} was asked for",
                conversation.turns.len(),
                turn_index + 1
            ))
        })?;

        let mut events = Vec::new();
        for piece in split_text(&turn.text) {
            events.push(StreamEvent::TextDelta(piece.to_owned()));
        }
        for (index, call) in turn.calls.iter().enumerate() {
            events.push(StreamEvent::ToolCallStart {
                index,
                id: format!("call_{turn_index}_{index}"),
                name: call.tool.clone(),
            });
            for fragment in split_args(&call.arguments()) {
                events.push(StreamEvent::ToolCallArgs {
                    index,
                    fragment: fragment.to_owned(),
                });
            }
        }
        let output_chars: usize = turn.text.len()
            + turn
                .calls
                .iter()
                .map(|c| c.arguments().len())
                .sum::<usize>();
        events.push(StreamEvent::Usage(TokenUsage {
            input: estimate_tokens(request),
            output: (output_chars as u64).div_ceil(4),
            cached: 0,
            cache_write: 0,
        }));
        events.push(StreamEvent::Finished(if turn.calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        }));
        Ok(events)
    }
}

impl LlmProvider for ScriptedProvider {
    fn name(&self) -> String {
        format!("scripted:{}", self.scenario.name)
    }

    fn scripts(&self, key: &ScriptKey) -> bool {
        self.scenario.conversation(key).is_some()
    }

    fn stream(
        &self,
        request: CompletionRequest,
    ) -> BoxStream<'static, Result<StreamEvent, LlmError>> {
        if let Some(limit) = self.simulated_limit(&request) {
            return stream::once(async move { Err(limit) }).boxed();
        }
        let events = match self.reply(&request) {
            Ok(events) => events,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let pace = self.pace;
        stream::iter(events)
            .then(move |event| async move {
                let wait = paced(&event, pace);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(event)
            })
            .boxed()
    }
}

/// A tool call takes as long to write as this many words: without it a
/// turn of calls and few words would flash by.
const WORDS_PER_CALL: u32 = 4;

/// How long a watched stream waits before `event`, at `pace` per word.
fn paced(event: &StreamEvent, pace: Duration) -> Duration {
    match event {
        StreamEvent::TextDelta(_) => pace,
        StreamEvent::ToolCallStart { .. } => pace * WORDS_PER_CALL,
        _ => Duration::ZERO,
    }
}

/// Which turn of its conversation a request asks for: one per assistant
/// message already in it.
fn turn_index(request: &CompletionRequest) -> usize {
    request
        .messages
        .iter()
        .filter(|m| matches!(m, ChatMessage::Assistant { .. }))
        .count()
}

/// Splits text into word-sized pieces (keeping the whitespace), as a model streams.
fn split_text(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() && i > start {
            pieces.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Splits JSON arguments into a few fragments on char boundaries.
fn split_args(args: &str) -> Vec<&str> {
    const PIECE: usize = 48;
    let mut pieces = Vec::new();
    let mut rest = args;
    while rest.len() > PIECE {
        let mut cut = PIECE;
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}

/// A rough token count (four bytes a token) so usage and cost views have data.
fn estimate_tokens(request: &CompletionRequest) -> u64 {
    let chars = request.system.len()
        + request
            .messages
            .iter()
            .map(|m| match m {
                ChatMessage::User { content } => content.len(),
                ChatMessage::Assistant {
                    content,
                    tool_calls,
                } => content.len() + tool_calls.iter().map(|c| c.arguments.len()).sum::<usize>(),
                ChatMessage::ToolResult { content, .. } => content.len(),
            })
            .sum::<usize>();
    (chars as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AgentRole;
    use crate::llm::{ScriptKey, ToolCall, collect_completion};

    fn provider() -> ScriptedProvider {
        let scenario = Scenario::parse(
            r#"
            name = "t"
            [[conversation]]
            role = "coder"
            task = "a"
              [[conversation.turn]]
              text = "Reading the code first."
              [[conversation.turn.call]]
              tool = "read_file"
              args = { path = "src/ünïcode/and/a/rather/long/path/to/split/main.rs" }
              [[conversation.turn]]
              [[conversation.turn.call]]
              tool = "finish"
              args = { summary = "done" }
            "#,
            "test",
        )
        .unwrap();
        ScriptedProvider::new(Arc::new(scenario))
    }

    fn request(messages: Vec<ChatMessage>) -> CompletionRequest {
        CompletionRequest {
            model: "scripted".into(),
            system: "sys".into(),
            messages,
            tools: vec![],
            max_tokens: 1000,
            temperature: None,
            reasoning_effort: None,
            script: ScriptKey {
                role: AgentRole::Coder,
                task: Some("a".into()),
                attempt: 1,
            },
        }
    }

    #[tokio::test]
    async fn turns_follow_the_conversation_and_stream_in_pieces() {
        let p = provider();
        let mut deltas = 0;
        let first = collect_completion(p.stream(request(vec![])), |_| deltas += 1)
            .await
            .unwrap();
        assert!(deltas > 1, "text streams in pieces");
        assert_eq!(first.text, "Reading the code first.");
        assert_eq!(first.finish, FinishReason::ToolCalls);
        let args: serde_json::Value = serde_json::from_str(&first.tool_calls[0].arguments).unwrap();
        assert!(args["path"].as_str().unwrap().contains("ünïcode"));

        let history = vec![
            ChatMessage::User {
                content: "go".into(),
            },
            ChatMessage::Assistant {
                content: first.text.clone(),
                tool_calls: vec![ToolCall {
                    id: "x".into(),
                    name: "read_file".into(),
                    arguments: "{}".into(),
                }],
            },
        ];
        let second = collect_completion(p.stream(request(history.clone())), |_| {})
            .await
            .unwrap();
        assert_eq!(second.tool_calls[0].name, "finish");

        let mut more = history;
        more.push(ChatMessage::Assistant {
            content: String::new(),
            tool_calls: vec![],
        });
        let err = collect_completion(p.stream(request(more)), |_| {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("turn 3"), "{err}");
    }

    #[tokio::test]
    async fn a_simulated_limit_refuses_the_turn_once() {
        let scenario = Scenario::parse(
            r#"
            name = "t"
            [[conversation]]
            role = "coder"
              [[conversation.turn]]
              text = "hello"
              rate_limit = { retry_after_ms = 250, usage = true }
            "#,
            "test",
        )
        .unwrap();
        let p = ScriptedProvider::new(Arc::new(scenario));
        let err = collect_completion(p.stream(request(vec![])), |_| {})
            .await
            .unwrap_err();
        let LlmError::RateLimited {
            message,
            retry_after,
        } = err
        else {
            panic!("not a rate limit: {err}");
        };
        assert!(message.contains("quota"), "{message}");
        assert_eq!(retry_after, Some(Duration::from_millis(250)));
        let reply = collect_completion(p.clone().stream(request(vec![])), |_| {})
            .await
            .unwrap();
        assert_eq!(reply.text, "hello", "a clone shares what was used up");
    }

    #[tokio::test]
    async fn missing_script_is_a_clear_error() {
        let mut req = request(vec![]);
        req.script.role = AgentRole::Planner;
        req.script.task = None;
        let err = collect_completion(provider().stream(req), |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "scripted scenario: no script for the planner, round 1"
        );
    }

    #[test]
    fn splitting_keeps_every_byte() {
        let text = "héllo  wörld\nnext line";
        assert_eq!(split_text(text).concat(), text);
        let args = "é".repeat(100);
        assert_eq!(split_args(&args).concat(), args);
    }
}
