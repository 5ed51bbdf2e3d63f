//! Keeping a conversation inside its model's context window. Pure policy:
//! how big a request is, when to compact, which tool results to stub and
//! which turns to summarise. The agent runs the summarising request.
//!
//! Invariants: the first message (the brief: task, acceptance criteria and
//! the latest feedback) and the newest turns are never touched; every tool
//! call keeps its result message (a stub, not a gap), so the conversation
//! stays valid for every provider.

use std::collections::HashMap;
use std::ops::Range;

use super::types::{ChatMessage, ToolCall, ToolSpec};

/// Turns at the end of the conversation kept word for word.
pub const KEEP_RECENT_TURNS: usize = 2;
/// Tool results shorter than this are not worth a stub.
const STUB_MIN_BYTES: usize = 400;
/// Compaction starts past this share of the prompt's room (percent)...
const TRIGGER_PERCENT: u64 = 85;
/// ...and brings the prompt down to this share, so it happens rarely and
/// each compaction invalidates the prompt cache once.
const TARGET_PERCENT: u64 = 50;
/// Tokens a message costs besides its text (role, ids, separators).
const MESSAGE_OVERHEAD: u64 = 8;

/// How much room a request has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The model's context window in tokens.
    pub context_tokens: u64,
    /// What the reply may take of it (the request's `max_tokens`).
    pub reply_tokens: u64,
}

impl Window {
    /// The most a prompt may take: the window less the reply's room (at
    /// least a quarter of the window stays for the prompt).
    pub fn limit(&self) -> u64 {
        self.context_tokens
            .saturating_sub(self.reply_tokens)
            .max(self.context_tokens / 4)
    }

    pub fn trigger(&self) -> u64 {
        self.limit() * TRIGGER_PERCENT / 100
    }

    pub fn target(&self) -> u64 {
        self.limit() * TARGET_PERCENT / 100
    }
}

/// The context window of well-known models, by name.
pub fn default_context_tokens(model: &str) -> Option<u64> {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    let known: &[(&str, u64)] = &[
        ("claude", 200_000),
        ("gpt-4.1", 1_047_576),
        ("gpt-5", 400_000),
        ("gpt-4o", 128_000),
        ("gpt-4-turbo", 128_000),
        ("o1", 200_000),
        ("o3", 200_000),
        ("o4", 200_000),
        ("gemini", 1_048_576),
        ("deepseek", 64_000),
        ("qwen2.5-coder", 32_768),
        ("qwen3", 32_768),
    ];
    known
        .iter()
        .find(|(prefix, _)| m.starts_with(prefix))
        .map(|(_, n)| *n)
}

/// Estimated tokens of `text`: about 3.5 bytes a token, on the high side
/// for code and English (tokenizers give 3.5 to 4.5), so an estimate that
/// fits is a request that fits.
pub fn text_tokens(text: &str) -> u64 {
    (text.len() as u64 * 2).div_ceil(7)
}

pub fn message_tokens(message: &ChatMessage) -> u64 {
    MESSAGE_OVERHEAD
        + match message {
            ChatMessage::User { content } => text_tokens(content),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                text_tokens(content)
                    + tool_calls
                        .iter()
                        .map(|c| {
                            MESSAGE_OVERHEAD + text_tokens(&c.name) + text_tokens(&c.arguments)
                        })
                        .sum::<u64>()
            }
            ChatMessage::ToolResult { content, .. } => text_tokens(content),
        }
}

/// The fixed part of every request: system prompt and tool definitions.
pub fn fixed_tokens(system: &str, tools: &[ToolSpec]) -> u64 {
    text_tokens(system)
        + tools
            .iter()
            .map(|t| {
                MESSAGE_OVERHEAD
                    + text_tokens(&t.name)
                    + text_tokens(&t.description)
                    + text_tokens(&t.parameters.to_string())
            })
            .sum::<u64>()
}

pub fn messages_tokens(messages: &[ChatMessage]) -> u64 {
    messages.iter().map(message_tokens).sum()
}

/// Where the kept newest turns begin: the `KEEP_RECENT_TURNS`th assistant
/// message from the end (a turn is a reply and the results it got).
pub fn recent_start(messages: &[ChatMessage]) -> usize {
    let mut seen = 0;
    for (i, message) in messages.iter().enumerate().rev() {
        if matches!(message, ChatMessage::Assistant { .. }) {
            seen += 1;
            if seen == KEEP_RECENT_TURNS {
                return i.max(1);
            }
        }
    }
    messages.len().min(1)
}

/// The one-line stand-in for a tool result taken out of the conversation.
pub fn stub_text(call: Option<&ToolCall>, content: &str) -> String {
    let lines = content.lines().count();
    let Some(call) = call else {
        return format!(
            "[a tool result of {lines} lines was removed to fit the context window; run the tool again if needed]"
        );
    };
    let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap_or_default();
    let path = args.get("path").and_then(serde_json::Value::as_str);
    let command = args.get("command").and_then(serde_json::Value::as_str);
    match (call.name.as_str(), path, command) {
        ("read_file", Some(path), _) => {
            format!("[read {path} earlier, {lines} lines — read it again if needed]")
        }
        (_, _, Some(command)) => format!(
            "[ran `{}` earlier, {lines} lines of output — run it again if needed]",
            short(command, 80)
        ),
        (tool, Some(path), _) => {
            format!("[{tool} {path} earlier, {lines} lines — call it again if needed]")
        }
        (tool, None, None) => {
            format!("[{tool} earlier, {lines} lines — call it again if needed]")
        }
    }
}

fn short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Replaces tool results before the kept newest turns (oldest first) with
/// stubs until the prompt is at most `target` tokens (with `fixed` for the
/// system prompt and tools). `all` also stubs the newest turns' results but
/// the very last message's, for a prompt that cannot fit otherwise.
/// Returns how many results were stubbed.
pub fn stub_results(messages: &mut [ChatMessage], fixed: u64, target: u64, all: bool) -> usize {
    let calls: HashMap<String, ToolCall> = messages
        .iter()
        .filter_map(|m| match m {
            ChatMessage::Assistant { tool_calls, .. } => Some(tool_calls.iter()),
            _ => None,
        })
        .flatten()
        .map(|c| (c.id.clone(), c.clone()))
        .collect();
    let end = if all {
        messages.len().saturating_sub(1)
    } else {
        recent_start(messages)
    };
    let mut total = fixed + messages_tokens(messages);
    let mut stubbed = 0;
    for message in messages.iter_mut().take(end).skip(1) {
        if total <= target {
            break;
        }
        if let ChatMessage::ToolResult {
            call_id, content, ..
        } = message
            && content.len() >= STUB_MIN_BYTES
        {
            let stub = stub_text(calls.get(call_id.as_str()), content);
            total = total - text_tokens(content) + text_tokens(&stub);
            *content = stub;
            stubbed += 1;
        }
    }
    stubbed
}

/// The turns to summarise: after the brief, up to the kept newest turns.
/// `None` when there are none (the conversation is all brief and recent).
pub fn summary_range(messages: &[ChatMessage]) -> Option<Range<usize>> {
    let end = recent_start(messages);
    (end > 1).then_some(1..end)
}

/// The summarised turns as plain text for the summarising request, each
/// piece cut to keep the whole under `budget` tokens. Messages the agent
/// was sent (earlier notes, answers, nudges) are carried whole into the
/// note by [`note`] and shown here only for context.
pub fn transcript(turns: &[ChatMessage], budget: u64) -> String {
    let per_piece = (budget as usize * 3 / turns.len().max(1)).clamp(200, 4000);
    let mut out = String::new();
    for message in turns {
        match message {
            ChatMessage::User { content } => {
                out.push_str(&format!("USER: {}\n", short(content, per_piece)));
            }
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                if !content.is_empty() {
                    out.push_str(&format!("ASSISTANT: {}\n", short(content, per_piece)));
                }
                for call in tool_calls {
                    out.push_str(&format!(
                        "CALL {}: {}\n",
                        call.name,
                        short(&call.arguments, 300)
                    ));
                }
            }
            ChatMessage::ToolResult {
                content, is_error, ..
            } => {
                let tag = if *is_error { "ERROR" } else { "RESULT" };
                out.push_str(&format!("{tag}: {}\n", short(content, per_piece)));
            }
        }
    }
    out
}

/// What the summarising request asks of the model.
pub const SUMMARY_INSTRUCTIONS: &str = "You condense the earlier part of a coding agent's \
conversation into notes the agent keeps instead of it. Write at most 25 short lines: what was \
done and found (files read and what matters in them, commands run and their results, changes \
made), decisions taken, and what was still open. Keep exact paths, names and error messages. \
Do not invent anything; do not give advice.";

/// Messages the agent was sent in the summarised turns, besides its own
/// earlier notes and the repeated nudges: carried whole into the note, so
/// no feedback is lost to a summary.
fn sent_messages(turns: &[ChatMessage]) -> Vec<&str> {
    let mut sent: Vec<&str> = Vec::new();
    for message in turns {
        if let ChatMessage::User { content } = message
            && !content.starts_with(NOTE_HEADING)
            && !sent.contains(&content.as_str())
        {
            sent.push(content);
        }
    }
    sent
}

/// How a note of earlier turns begins.
pub const NOTE_HEADING: &str = "[Notes on the earlier part of this conversation, summarised to \
fit the context window. Tool results are gone: read files again if you need them.]";

/// The message that stands in for the summarised turns.
pub fn note(summary: &str, turns: &[ChatMessage]) -> ChatMessage {
    let mut content = format!("{NOTE_HEADING}\n{}", summary.trim());
    let sent = sent_messages(turns);
    if !sent.is_empty() {
        content.push_str("\n\nMessages you were sent then, word for word:");
        for text in sent {
            content.push_str(&format!("\n---\n{text}"));
        }
    }
    ChatMessage::User { content }
}

/// A summary made without the model (when the summarising request fails):
/// the calls made, in order.
pub fn plain_summary(turns: &[ChatMessage]) -> String {
    let mut lines = Vec::new();
    for message in turns {
        if let ChatMessage::Assistant { tool_calls, .. } = message {
            for call in tool_calls {
                lines.push(format!(
                    "- called {} {}",
                    call.name,
                    short(&call.arguments, 160)
                ));
            }
        }
    }
    if lines.is_empty() {
        "- (no tool calls)".to_owned()
    } else {
        lines.join("\n")
    }
}

/// Replaces `range` with `note`.
pub fn replace_with_note(messages: &mut Vec<ChatMessage>, range: Range<usize>, note: ChatMessage) {
    messages.splice(range, std::iter::once(note));
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIEF: &str = "Task t1: add a --verbose flag.\nAcceptance criteria:\n- `app --verbose` \
                         prints debug lines\nFeedback from the last review:\n1. The flag is not \
                         documented in --help.";

    fn call(id: &str, name: &str, args: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
        }
    }

    /// A brief, then `turns` turns each reading one 8 KB file.
    fn conversation(turns: usize) -> Vec<ChatMessage> {
        let mut messages = vec![ChatMessage::User {
            content: BRIEF.into(),
        }];
        for i in 0..turns {
            let id = format!("c{i}");
            messages.push(ChatMessage::Assistant {
                content: format!("Reading file {i}."),
                tool_calls: vec![call(
                    &id,
                    "read_file",
                    &format!(r#"{{"path":"src/f{i}.rs"}}"#),
                )],
            });
            messages.push(ChatMessage::ToolResult {
                call_id: id,
                content: format!("fn f{i}() {{}}\n").repeat(8192 / 12),
                is_error: false,
            });
        }
        messages
    }

    fn window() -> Window {
        Window {
            context_tokens: 32_000,
            reply_tokens: 4_000,
        }
    }

    #[test]
    fn well_known_models_have_windows() {
        assert_eq!(default_context_tokens("claude-sonnet-4-5"), Some(200_000));
        assert_eq!(default_context_tokens("openai/gpt-4o-mini"), Some(128_000));
        assert_eq!(default_context_tokens("o3-mini"), Some(200_000));
        assert_eq!(default_context_tokens("my-finetune"), None);
    }

    #[test]
    fn estimates_err_on_the_high_side() {
        // Four bytes a token is typical; the estimate says more.
        assert!(text_tokens(&"x".repeat(4000)) > 1000);
        assert_eq!(text_tokens(""), 0);
        let w = window();
        assert_eq!(w.limit(), 28_000);
        assert!(w.target() < w.trigger() && w.trigger() < w.limit());
        let tiny = Window {
            context_tokens: 4096,
            reply_tokens: 8192,
        };
        assert_eq!(tiny.limit(), 1024, "a quarter stays for the prompt");
    }

    #[test]
    fn old_results_become_one_line_stubs_oldest_first() {
        let mut messages = conversation(12);
        let before = messages_tokens(&messages);
        assert!(before > window().trigger());
        let stubbed = stub_results(&mut messages, 0, window().target(), false);
        assert!(stubbed > 0);
        assert!(messages_tokens(&messages) <= window().target());
        let ChatMessage::ToolResult { content, .. } = &messages[2] else {
            panic!("{:?}", messages[2]);
        };
        assert_eq!(
            content,
            "[read src/f0.rs earlier, 682 lines — read it again if needed]"
        );
        // The newest turns are whole; every call still has its result.
        let recent = recent_start(&messages);
        for m in &messages[recent..] {
            if let ChatMessage::ToolResult { content, .. } = m {
                assert!(content.len() > 8000);
            }
        }
        assert_eq!(messages.len(), 25);
    }

    #[test]
    fn compaction_keeps_the_task_criteria_and_latest_feedback() {
        let mut messages = conversation(10);
        // Feedback that arrived mid-conversation, and a nudge.
        messages.insert(
            5,
            ChatMessage::User {
                content: "Reviewer: use clap's `ArgAction::Count`.".into(),
            },
        );
        let brief = messages[0].clone();
        let newest: Vec<ChatMessage> = messages[recent_start(&messages)..].to_vec();
        stub_results(&mut messages, 0, 1, false);
        let range = summary_range(&messages).unwrap();
        assert_eq!(range.start, 1);
        let turns = messages[range.clone()].to_vec();
        let text = transcript(&turns, 2000);
        assert!(text.contains("CALL read_file"), "{text}");
        assert!(text.contains("USER: Reviewer"), "{text}");
        replace_with_note(
            &mut messages,
            range,
            note("- read f0..f7; nothing to change there", &turns),
        );
        assert_eq!(messages[0], brief, "the brief is untouched");
        let ChatMessage::User { content } = &messages[1] else {
            panic!("{:?}", messages[1]);
        };
        assert!(content.starts_with(NOTE_HEADING));
        assert!(content.contains("read f0..f7"));
        assert!(
            content.contains("Reviewer: use clap's `ArgAction::Count`."),
            "feedback is carried word for word: {content}"
        );
        assert_eq!(&messages[2..], &newest[..], "the newest turns are whole");
        assert!(matches!(messages[2], ChatMessage::Assistant { .. }));
        assert!(messages_tokens(&messages) < window().target());
    }

    #[test]
    fn a_second_compaction_folds_the_first_note_in() {
        let mut messages = conversation(6);
        let range = summary_range(&messages).unwrap();
        let turns = messages[range.clone()].to_vec();
        replace_with_note(&mut messages, range, note("first", &turns));
        messages.extend(conversation(4).into_iter().skip(1));
        let range = summary_range(&messages).unwrap();
        let turns = messages[range.clone()].to_vec();
        let ChatMessage::User { content } = note("second", &turns) else {
            panic!()
        };
        assert!(!content.contains("first"), "old notes are not copied again");
        assert!(transcript(&turns, 1000).contains("first"), "but summarised");
    }

    #[test]
    fn short_conversations_have_nothing_to_summarise() {
        assert_eq!(summary_range(&conversation(2)), None);
        assert_eq!(summary_range(&conversation(0)), None);
        assert_eq!(recent_start(&conversation(0)), 1);
    }

    #[test]
    fn stubs_say_what_to_do_again() {
        let run = call("r", "run", r#"{"command":"cargo test"}"#);
        assert_eq!(
            stub_text(Some(&run), "a\nb\n"),
            "[ran `cargo test` earlier, 2 lines of output — run it again if needed]"
        );
        let list = call("l", "list_files", "{}");
        assert!(stub_text(Some(&list), "x").starts_with("[list_files earlier"));
        assert!(stub_text(None, "x").contains("run the tool again"));
        let mut all = conversation(3);
        assert_eq!(stub_results(&mut all, 0, 0, true), 2, "all but the last");
        assert!(plain_summary(&all).contains("called read_file"));
    }
}
