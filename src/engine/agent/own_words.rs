//! A final call (`finish`, a submit tool) whose text is memofab's own words
//! handed back — a nudge, a refusal — is refused, so the model says what it
//! did or found instead (`domain::shepherd::echo` decides what is an echo).
//! In the small profile, so is a write that would put such words into a
//! file (measured: a 1.5B coder wrote a refusal's instruction into README.md).

use std::collections::HashSet;

use crate::domain::tool_names;
use serde_json::Value;

use super::{AgentJob, IGNORED_CALL};
use crate::domain::shepherd::RESTART_HEADING;
use crate::domain::shepherd::echo::{self, REFUSED};
use crate::engine::tools::NOT_ACCEPTED;
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
    // What memofab showed between fences (a file, a call to copy) is not
    // its own words: a planner that submits the blueprint a refusal
    // suggested is not echoing it.
    let said: Vec<String> = memofabs_words(messages)
        .into_iter()
        .map(without_fences)
        .collect();
    let said: Vec<&str> = said.iter().map(String::as_str).collect();
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
        .chain(write_reports(messages))
        .map(|words| without_quoted_calls(&without_fences(words)))
        .collect();
    let said: Vec<&str> = said.iter().map(String::as_str).collect();
    let own = own_lines(tool, arguments, messages);
    // One text per distinct line, looked at in one pass.
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !own.contains(&echo::normalize(l)))
        .collect();
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

/// Lines that are the model's to write even where memofab's words quote
/// them (a refusal suggesting a call, the shepherd quoting a repeated
/// call's arguments): the lines of what tools answered, of what refusals
/// showed between ``` fences, of an edit's `old` (it is in the file), and
/// of the task with the texts it quotes; normalized as echoes are compared,
/// and looked up whole, so a large write costs one lookup a line. Without
/// it, the 1.5B coder that copied the call a refusal suggested was refused
/// for writing the file's own last line, and the task's new line once the
/// shepherd had quoted it.
fn own_lines(tool: &str, arguments: &Value, messages: &[ChatMessage]) -> HashSet<String> {
    let mut sources: Vec<&str> = Vec::new();
    let mut quoted: Vec<&str> = Vec::new();
    if let Some(ChatMessage::User { content }) = messages.first() {
        // The brief, without what it tells of an agent replaced before.
        let content = content
            .find(RESTART_HEADING)
            .map_or(content.as_str(), |at| &content[..at]);
        sources.push(content);
        for mark in ['\'', '"', '`'] {
            quoted.extend(content.split(mark).skip(1).step_by(2));
        }
    }
    let reports = write_reports(messages);
    for message in messages {
        if let ChatMessage::ToolResult { content, .. } = message {
            if content.starts_with(REFUSED) || content.starts_with(IGNORED_CALL) {
                sources.extend(content.split("```").skip(1).step_by(2));
            } else if !reports.contains(&content.as_str()) {
                sources.push(content);
            }
        }
    }
    if tool == tool_names::EDIT_FILE
        && let Some(old) = arguments.get("old").and_then(Value::as_str)
    {
        sources.push(old);
    }
    sources
        .iter()
        .flat_map(|text| text.lines())
        .chain(quoted)
        .map(echo::normalize)
        .filter(|line| !line.is_empty())
        .collect()
}

/// The largest write whose lines are looked at.
const MAX_LOOKED_AT: usize = 256 * 1024;

/// The text outside ``` fences: what memofab showed of a file is the
/// file's, not memofab's words.
fn without_fences(text: &str) -> String {
    text.split("```").step_by(2).collect::<Vec<_>>().join(" ")
}

/// Without the JSON objects memofab quotes (the arguments of a call the
/// shepherd saw repeated, a call a refusal suggests): they are the model's
/// words, not memofab's. An object cut short runs to the end.
fn without_quoted_calls(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("{\"") {
        kept.push_str(&rest[..at]);
        rest = match rest[at..].find('}') {
            Some(end) => &rest[at + end + 1..],
            None => "",
        };
    }
    kept.push_str(rest);
    kept
}

/// What memofab answered the calls that wrote files ("wrote README.md (83
/// bytes)"): its report, not text the model read. Measured: the 1.5B coder
/// wrote each such answer into README.md as a line of its own, and, the
/// answer counted as the model's own lines, no guard stopped it.
fn write_reports(messages: &[ChatMessage]) -> Vec<&str> {
    let writes: HashSet<&str> = messages
        .iter()
        .filter_map(|m| match m {
            ChatMessage::Assistant { tool_calls, .. } => Some(tool_calls),
            _ => None,
        })
        .flatten()
        .filter(|call| tool_names::writes_files(&call.name))
        .map(|call| call.id.as_str())
        .collect();
    messages
        .iter()
        .filter_map(|m| match m {
            ChatMessage::ToolResult {
                call_id, content, ..
            } if writes.contains(call_id.as_str()) && !content.starts_with(REFUSED) => {
                Some(content.as_str())
            }
            _ => None,
        })
        .collect()
}

/// After the task itself, every user message is memofab's, and so is what
/// the brief tells a fresh agent about the one it replaces (measured: a
/// 1.5B reviewer started after one that was stuck submitted the
/// shepherd's account of it, quoted refusals and all, as its verdict, and
/// the rework it sent back failed the task); of the tool results, its
/// refusals.
fn memofabs_words(messages: &[ChatMessage]) -> Vec<&str> {
    let restart = match messages.first() {
        Some(ChatMessage::User { content }) => {
            content.find(RESTART_HEADING).map(|at| &content[at..])
        }
        _ => None,
    };
    restart
        .into_iter()
        .chain(messages.iter().skip(1).filter_map(|m| match m {
            ChatMessage::User { content } => Some(content.as_str()),
            ChatMessage::ToolResult { content, .. }
                if content.starts_with(REFUSED)
                    || content.starts_with(IGNORED_CALL)
                    || not_accepted(content) =>
            {
                Some(content.as_str())
            }
            _ => None,
        }))
        .collect()
}

/// Whether a tool's answer is a submit tool's check refusing the call
/// (measured: asked again with the diff's line, 1.5B reviewers kept their
/// rejection and added the question they were asked to it, word for word).
fn not_accepted(content: &str) -> bool {
    content
        .lines()
        .next()
        .is_some_and(|first| first.contains(NOT_ACCEPTED))
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
        // A refusal that suggests a call quotes the file's own line, and the
        // shepherd quotes a repeated call's arguments: writing that line
        // (read from the file, or in the edit's `old`) is no echo.
        let line = "A test repository for memofab with a local model.";
        let suggested = format!(
            "Not run: the task adds to README.md. To add after `old`, call edit_file with these \
             arguments: {}",
            json!({"path": "README.md", "old": line, "new": format!("{line}\nHello.")})
        );
        let messages = [
            ChatMessage::User {
                content: "## Task: add a line".into(),
            },
            ChatMessage::ToolResult {
                call_id: "c1".into(),
                content: format!("# Tiny repo\n\n{line}\n"),
                is_error: false,
            },
            ChatMessage::ToolResult {
                call_id: "c2".into(),
                content: suggested.clone(),
                is_error: true,
            },
            ChatMessage::User {
                content: format!(
                    "The shepherd: `edit_file` was called 4 times ({})",
                    json!({"new": "Hello there, world.\n"})
                ),
            },
        ];
        // A line of the model's own that only the shepherd's quote holds.
        let own = json!({"path": "README.md", "old": line, "new": format!("{line}\nHello there, world.")});
        assert_eq!(in_write(tool_names::EDIT_FILE, &own, &messages), None);
        let edit = json!({"path": "README.md", "old": line, "new": format!("{line}\nHello.")});
        assert_eq!(in_write(tool_names::EDIT_FILE, &edit, &messages), None);
        let write =
            json!({"path": "README.md", "content": format!("# Tiny repo\n\n{line}\nHello.\n")});
        assert_eq!(in_write(tool_names::WRITE_FILE, &write, &messages), None);
        // memofab's own sentence beside the quote is still an echo.
        let copied = json!({"path": "README.md", "content": format!("# Tiny repo\n\n{line}\nTo add after old, call edit_file with these arguments.\n")});
        assert!(in_write(tool_names::WRITE_FILE, &copied, &messages).is_some());
        // Only writes are looked at.
        assert_eq!(
            in_write(tool_names::READ_FILE, &json!({"path": "x"}), &[]),
            None
        );
    }

    #[test]
    fn what_memofab_answered_a_write_is_its_words_not_the_files() {
        let call = |id: &str, name: &str| crate::llm::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: "{}".into(),
        };
        let file = "# Tiny repo\n\nA test repository for memofab with a local model.\n";
        let messages = [
            ChatMessage::User {
                content: "## Task 1: Add line to README.md".into(),
            },
            ChatMessage::Assistant {
                content: String::new(),
                tool_calls: vec![call("r1", tool_names::READ_FILE)],
            },
            ChatMessage::ToolResult {
                call_id: "r1".into(),
                content: file.into(),
                is_error: false,
            },
            ChatMessage::Assistant {
                content: String::new(),
                tool_calls: vec![call("w1", tool_names::WRITE_FILE)],
            },
            ChatMessage::ToolResult {
                call_id: "w1".into(),
                content: "wrote README.md (83 bytes)".into(),
                is_error: false,
            },
        ];
        // As measured (1.5B, stock template): the write's answer written
        // into the file after its lines, and merged.
        let copied = format!("{file}Hello from memofab.\nwrote README.md (83 bytes) \n");
        let write = json!({"path": "README.md", "content": copied});
        assert!(in_write(tool_names::WRITE_FILE, &write, &messages).is_some());
        // What read_file answered is the file's text.
        let right = json!({"path": "README.md", "content": format!("{file}Hello from memofab.\n")});
        assert_eq!(in_write(tool_names::WRITE_FILE, &right, &messages), None);
    }

    #[test]
    fn what_a_fresh_agent_is_told_of_the_one_it_replaces_is_memofabs_words() {
        let job_brief = "## Task 1: Add line to README.md\nReview it and call submit_review.";
        // As measured: the stuck reviewer's repeated call, quoted in the
        // fresh one's brief, then submitted by the fresh one as its verdict.
        let summary = format!(
            "{RESTART_HEADING}\nThe factory's shepherd replaced it because it was stuck.\n\
             Its most recent calls:\n- `submit_review` {{\"approved\":false}} ×4: failed: the \
             feedback of this call repeats a message of the factory, not your own account of the \
             work.\n"
        );
        let messages = [ChatMessage::User {
            content: format!("{job_brief}\n{summary}"),
        }];
        let said = memofabs_words(&messages);
        assert_eq!(said.len(), 1);
        let verdict = json!({"approved": false, "feedback": "The feedback of this call repeats a message of the factory, not your own account of the work."});
        assert!(echo::echoed(&verdict, &said).is_some());
        // The brief itself is the model's to quote.
        assert!(!said[0].contains("Add line to README.md"));
    }

    #[test]
    fn a_submit_tools_refusal_is_memofabs_words_and_a_call_it_shows_is_not() {
        // As measured (1.5B reviewer, asked again with the diff's line): the
        // rejection kept, with the question it was asked appended.
        let asked = format!(
            "submit_review{NOT_ACCEPTED}submit_review again:\napproved is false because \
             \"Hello.\" is missing, but the diff adds exactly that line:\n+Hello.\nIf the change \
             does what the task asks, call submit_review with approved true; if not, say what must \
             change."
        );
        let messages = [
            ChatMessage::User {
                content: "## Task 1: Add line to README.md".into(),
            },
            ChatMessage::ToolResult {
                call_id: "c1".into(),
                content: asked,
                is_error: true,
            },
        ];
        let said = memofabs_words(&messages);
        let verdict = json!({"approved": false, "feedback": "The line 'Hello.' was not added. If the change does what the task asks, call submit_review with approved true; if not, say what must change."});
        assert!(echo::echoed(&verdict, &said).is_some());
        // A plan a refusal shows between fences, copied, is the model's.
        let plan = "{\"title\": \"Add the line Hello. at the end of README.md.\"}";
        let shown = format!(
            "submit_blueprint{NOT_ACCEPTED}submit_blueprint again:\n- every task only looks at \
             the code. To plan it as one task, call submit_blueprint with these arguments:\n\
             ```json\n{plan}\n```"
        );
        let said: Vec<String> = [shown.as_str()].into_iter().map(without_fences).collect();
        let said: Vec<&str> = said.iter().map(String::as_str).collect();
        let copied = json!({"title": "Add the line Hello. at the end of README.md."});
        assert!(echo::echoed(&copied, &said).is_none());
    }
}
