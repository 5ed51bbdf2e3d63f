//! A final call (`finish`, a submit tool) whose text is memofab's own words
//! handed back — a nudge, a refusal — is refused, so the model says what it
//! did or found instead (`domain::shepherd::echo` decides what is an echo).
//! In the small profile, so is a write that would put such words into a
//! file (measured: a 1.5B coder wrote a refusal's instruction into README.md).

use crate::domain::tool_names;
use serde_json::Value;

use super::{AgentJob, IGNORED_CALL};
use crate::domain::shepherd::echo::{self, REFUSED};
use crate::llm::ChatMessage;

/// Why the call is refused, if it ends the conversation with an echo of
/// what memofab said to the agent in `messages`.
pub(super) fn refusal(
    job: &AgentJob,
    tool: &str,
    arguments: &Value,
    messages: &[ChatMessage],
) -> Option<String> {
    let ends = job.submit.as_ref().is_some_and(|s| s.spec.name == tool)
        || (tool == tool_names::FINISH && job.offers(tool));
    if !ends {
        return None;
    }
    let said = memofabs_words(messages);
    echo::echoed(arguments, &said).map(|found| echo::refusal(tool, &found))
}

/// Why a write is refused, if a line it writes is memofab's words: the
/// text of `write_file` or the `new` of `edit_file`, line by line (a file
/// that keeps its own lines and gains one copied from a refusal is still
/// refused; a copy of the file memofab showed is not an echo).
pub(super) fn in_write(tool: &str, arguments: &Value, messages: &[ChatMessage]) -> Option<String> {
    let field = match tool {
        tool_names::WRITE_FILE => "content",
        tool_names::EDIT_FILE => "new",
        _ => return None,
    };
    let text = arguments.get(field)?.as_str()?;
    // Small models write small files; a large write is not worth the look.
    if text.len() > MAX_LOOKED_AT {
        return None;
    }
    let said: Vec<String> = memofabs_words(messages)
        .into_iter()
        .map(without_fences)
        .collect();
    let said: Vec<&str> = said.iter().map(String::as_str).collect();
    // One text per distinct line, looked at in one pass.
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.sort_unstable();
    lines.dedup();
    let lines = Value::Array(lines.into_iter().map(Value::from).collect());
    let found = echo::echoed(&lines, &said)?;
    Some(format!(
        "{REFUSED}a line of `{field}` is the factory's message to you (\"{}\"), not text for \
         the file. Write only the file's own text.",
        found.quoted
    ))
}

/// The largest write whose lines are looked at.
const MAX_LOOKED_AT: usize = 256 * 1024;

/// The text outside ``` fences: what memofab showed of a file is the
/// file's, not memofab's words.
fn without_fences(text: &str) -> String {
    text.split("```").step_by(2).collect::<Vec<_>>().join(" ")
}

/// After the task itself, every user message is memofab's; of the tool
/// results, its refusals.
fn memofabs_words(messages: &[ChatMessage]) -> Vec<&str> {
    messages
        .iter()
        .skip(1)
        .filter_map(|m| match m {
            ChatMessage::User { content } => Some(content.as_str()),
            ChatMessage::ToolResult { content, .. }
                if content.starts_with(REFUSED) || content.starts_with(IGNORED_CALL) =>
            {
                Some(content.as_str())
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused_after(answer: &str, content: &str) -> Option<String> {
        let messages = [
            ChatMessage::User {
                content: "## Task: add a line".into(),
            },
            ChatMessage::ToolResult {
                call_id: "c1".into(),
                content: answer.into(),
                is_error: true,
            },
        ];
        in_write(
            tool_names::WRITE_FILE,
            &json!({"path": "README.md", "content": content}),
            &messages,
        )
    }

    #[test]
    fn a_write_that_copies_a_refusal_into_the_file_is_refused() {
        let answer = "Not run: write_file must keep every line of README.md, which exists; this \
            write would lose 2 of them. Write the whole file again with your change in it, or use \
            edit_file. README.md is now:\n```\n# Tiny repo\n\nA test repository for memofab with a \
            local model.\n```";
        // As measured: the file's lines kept, the instruction added.
        let copied = "# Tiny repo\n\nA test repository for memofab with a local model.\nWrite the \
            whole file again with your change in it, or use edit_file.\n";
        assert!(refused_after(answer, copied).is_some());
        // The file as memofab showed it, with the new line: the file's own text.
        let right = "# Tiny repo\n\nA test repository for memofab with a local model.\nHello from \
            memofab.\n";
        assert_eq!(refused_after(answer, right), None);
        // Only writes are looked at.
        assert_eq!(
            in_write(tool_names::READ_FILE, &json!({"path": "x"}), &[]),
            None
        );
    }
}
