//! memofab's own words, handed back as an agent's result. Small models copy
//! the last message they were given into the arguments of their final call:
//! a reviewer's "feedback" that is the shepherd's nudge, a `finish` summary
//! that is a repeat refusal, a blueprint task described as "Not run: …". Such
//! a text says nothing about the work, so it is refused and the model is
//! told to use its own words.

use serde_json::Value;

/// How every answer memofab gives in place of running a call begins: a
/// refusal by memofab, not the tool failing.
pub const REFUSED: &str = "Not run: ";

/// What memofab says to agents on its own, whether or not it was said in
/// this conversation (a fresh agent is told about the one it replaces), and
/// the instructions that close its first messages (measured: a 1.5B plan
/// reviewer rejected a plan with the closing line of its brief as the
/// feedback). Lower case, as [`normalize`] makes them.
const STEMS: &[&str] = &[
    "review it and call submit_review",
    "review the plan and call submit_review",
    "plan the work, then call submit_blueprint",
    "revise the blueprint to address every point",
    "when the task is done, call finish",
    "none of its tasks is done yet",
    "the tasks are not done yet",
    "not run: this",
    "the factory's shepherd thinks you are stuck",
    "the factory's shepherd replaced it",
    "a previous agent on this step was stopped",
    "please continue by calling a tool",
    "your reply wrote json that could not be run",
    "your reply was cut at the limit",
    "ignored: too many calls in one reply",
];

/// Shorter texts are never taken for an echo: "ok", "done".
const MIN_WORDS: usize = 3;

/// A text in a call's arguments that is memofab's words, not the agent's.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    /// Where in the arguments: `feedback`, `tasks[0].description`.
    pub field: String,
    /// The start of the text, to quote back.
    pub quoted: String,
}

/// The first text in `arguments` that is essentially memofab's own words:
/// at least half of its words are in sentences memofab said (`said`, this
/// conversation's nudges and refusals) or that begin one of its messages.
pub fn echoed(arguments: &Value, said: &[&str]) -> Option<Echo> {
    let said: Vec<String> = said.iter().map(|s| normalize(s)).collect();
    let mut found = None;
    visit(arguments, String::new(), &mut |field, text| {
        if found.is_none() && is_echo(text, &said) {
            found = Some(Echo {
                field: field.to_owned(),
                quoted: quote(text),
            });
        }
    });
    found
}

/// What the refused call is answered.
pub fn refusal(tool: &str, echo: &Echo) -> String {
    let field = if echo.field.is_empty() {
        "the argument".to_owned()
    } else {
        format!("`{}`", echo.field)
    };
    format!(
        "{REFUSED}{field} of this {tool} call repeats a message of the factory (\"{}\"), not \
         your own account of the work. Call {tool} again with your own words about the work \
         itself.",
        echo.quoted
    )
}

fn visit(value: &Value, at: String, on_text: &mut dyn FnMut(&str, &str)) {
    match value {
        Value::String(text) => on_text(&at, text),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                visit(item, format!("{at}[{i}]"), on_text);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let at = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                visit(item, at, on_text);
            }
        }
        _ => {}
    }
}

fn is_echo(text: &str, said: &[String]) -> bool {
    let total = word_count(text);
    if total < MIN_WORDS {
        return false;
    }
    let copied: usize = sentences(text)
        .filter(|sentence| {
            let normal = normalize(sentence);
            word_count(&normal) >= MIN_WORDS
                && (STEMS.iter().any(|stem| normal.contains(stem))
                    || said.iter().any(|s| s.contains(&normal)))
        })
        .map(word_count)
        .sum();
    copied * 2 >= total
}

/// Sentences end at `. `, `! `, `? ` or a line break; a dot inside a word
/// (`README.md`) does not end one.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next_is_space = chars.peek().is_none_or(|(_, n)| n.is_whitespace());
        if c == '\n' || (matches!(c, '.' | '!' | '?' | '…') && next_is_space) {
            pieces.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    pieces.push(&text[start..]);
    pieces.into_iter().filter(|p| !p.trim().is_empty())
}

/// Lower case, one space between words, no quotes or backticks, no
/// trailing ellipsis: a copy that lost its formatting is still a copy.
pub fn normalize(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, '`' | '"' | '“' | '”'))
        .flat_map(char::to_lowercase)
        .collect();
    cleaned
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches(['…', '.'])
        .trim()
        .to_owned()
}

fn word_count(text: &str) -> usize {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .count()
}

fn quote(text: &str) -> String {
    const CHARS: usize = 80;
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= CHARS {
        return text;
    }
    let cut: String = text.chars().take(CHARS).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NUDGE: &str = "The factory's shepherd thinks you are stuck: `list_files` failed 3 \
        times with the same error: README.md is not a directory. Doing the same again will fail \
        the same way. Read the error, then change the command or its input, or take another \
        approach.";

    #[test]
    fn the_shepherds_nudge_as_a_verdict_is_an_echo() {
        // As measured (f3): the nudge, cut short by the model.
        let verdict = json!({"approved": true, "feedback": "The factory's shepherd thinks you are stuck: `list_files` failed 3 times with the same error: README.md is not a directory. …"});
        let echo = echoed(&verdict, &[NUDGE]).expect("an echo");
        assert_eq!(echo.field, "feedback");
        // Even when it was not said in this conversation.
        assert!(echoed(&verdict, &[]).is_some());
    }

    #[test]
    fn a_repeat_refusal_as_a_summary_or_a_task_description_is_an_echo() {
        let said = "Not run: this write_file call is the same as the one just before it, which \
            already wrote exactly this; it would change nothing. Check the task: if it is done, \
            call `finish`; if not, make a different change.";
        let finish = json!({"summary": "Not run: this write_file call is the same as the one just before it, which already wrote exactly this"});
        assert!(echoed(&finish, &[said]).is_some());
        let blueprint = json!({"title": "t", "tasks": [
            {"id": "a", "title": "Add the line", "description": "Append the line to README.md."},
            {"id": "list_files", "title": "List", "description": "Not run: this list_files call, with the same arguments, already ran 2 times…"}
        ]});
        assert_eq!(
            echoed(&blueprint, &[]).map(|e| e.field),
            Some("tasks[1].description".to_owned())
        );
        // The closing line of the plan reviewer's brief, as measured.
        let verdict = json!({"approved": false, "feedback": "The tasks are not done yet; the repository is as it was before them. Review the plan and call submit_review."});
        assert!(echoed(&verdict, &[]).is_some());
        // A sentence memofab said in this conversation, not a known stem.
        let nudge = "Please continue by calling a tool. When you are done, call `finish`.";
        assert!(
            echoed(
                &json!({"summary": "When you are done, call finish."}),
                &[nudge]
            )
            .is_some()
        );
    }

    #[test]
    fn the_agents_own_words_are_not_an_echo() {
        let said = [NUDGE];
        for own in [
            "Added the line 'Hello from memofab.' at the end of README.md.",
            "1. README.md lost its first three lines. 2. The new line is missing.",
            "ok",
            "approved",
            // Quoting a little of memofab in a real verdict is fine.
            "README.md now ends with the new line and keeps its three lines; the tests pass. \
             The listing error earlier was mine: README.md is not a directory.",
        ] {
            assert_eq!(echoed(&json!({"feedback": own}), &said), None, "{own}");
        }
        assert_eq!(echoed(&json!({"approved": true}), &said), None);
    }

    #[test]
    fn the_refusal_names_the_field_and_begins_as_memofabs_refusals_do() {
        let echo = Echo {
            field: "feedback".into(),
            quoted: "The factory's shepherd…".into(),
        };
        let text = refusal("submit_review", &echo);
        assert!(text.starts_with(REFUSED));
        assert!(text.contains("`feedback`") && text.contains("submit_review"));
    }
}
