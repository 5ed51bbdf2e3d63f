//! The small profile's guard on `write_file` over a file that exists. Asked
//! to add a line, small models rewrite the whole file from memory and lose
//! what they did not remember (measured: a README's three lines replaced by
//! the new one). A write that would drop lines of the file is not run; the
//! answer shows the file as it is, so the model can keep it and add to it,
//! or change lines with `edit_file`. Files the agent created itself are
//! its own to rewrite.
//!
//! A task that only adds ("Add …", "Append …") gets the same guard on
//! `edit_file`: told to keep the file's lines, small models replace its last
//! line with the new one (measured: 1.5B, in 4 of 6 runs), which `old` →
//! `new` does when `new` leaves `old` out.

use crate::domain::tool_names;
use std::collections::HashSet;

use serde_json::Value;

use super::super::tools::ToolOutcome;
use super::AgentJob;
use crate::domain::shepherd::echo::REFUSED;

/// Longest current content quoted back in a refusal.
const SHOWN_CHARS: usize = 4_000;

#[derive(Debug, Default)]
pub(super) struct WholeWrites {
    /// Paths that did not exist when this agent first wrote them.
    created: HashSet<String>,
}

impl WholeWrites {
    /// Why `write_file` with `arguments` is not to be run, if it would drop
    /// lines of the file it overwrites.
    pub(super) async fn refusal(
        &mut self,
        job: &AgentJob,
        tool: &str,
        arguments: &Value,
    ) -> Option<String> {
        if tool == tool_names::EDIT_FILE {
            return edit_that_removes(job, arguments);
        }
        if tool != tool_names::WRITE_FILE {
            return None;
        }
        let (toolbox, _) = job.toolbox.as_ref()?;
        let path = arguments.get("path")?.as_str()?;
        let content = arguments.get("content")?.as_str()?;
        if self.created.contains(path) {
            return None;
        }
        // Read as the agent would read it: confined, links refused.
        let read = serde_json::json!({ "path": path }).to_string();
        let current = match toolbox.call(tool_names::READ_FILE, &read).await {
            ToolOutcome::Output { ok: true, text } => text,
            // Missing (or unreadable: the write says why): a new file.
            _ => {
                self.created.insert(path.to_owned());
                return None;
            }
        };
        if current == format!("[{path} is empty]") || current.contains("\n[... ") {
            return None;
        }
        let lost = lost_lines(&current, content);
        if lost.is_empty() {
            return None;
        }
        Some(answer(path, &current, &lost))
    }
}

/// Why an `edit_file` is not to be run: the task only adds, and `new`
/// leaves out lines of `old`.
fn edit_that_removes(job: &AgentJob, arguments: &Value) -> Option<String> {
    if !task_only_adds(&job.first_message) {
        return None;
    }
    removing_edit_refusal(arguments)
}

/// The refusal of an edit whose `new` leaves out lines of its `old`, with
/// the call that adds `new` after `old` instead. Told in words how
/// `edit_file` adds, the 1.5B coder sent the same edit again; a call built
/// from its own arguments it can copy, and copying is what small models do
/// best.
fn removing_edit_refusal(arguments: &Value) -> Option<String> {
    let old = arguments.get("old")?.as_str()?;
    let new = arguments.get("new")?.as_str()?;
    let path = arguments.get("path")?.as_str()?;
    let lost = lost_lines(old, new);
    if lost.is_empty() {
        return None;
    }
    // The line ends stay where the file had them.
    let added = if old.ends_with('\n') {
        let end = if new.ends_with('\n') { "" } else { "\n" };
        format!("{old}{new}{end}")
    } else {
        format!("{old}\n{}", new.trim_end_matches('\n'))
    };
    let call = serde_json::json!({ "path": path, "old": old, "new": added });
    Some(format!(
        "{REFUSED}the task adds to {path}; this edit_file would remove {} of its lines. \
         edit_file puts `new` in the place of `old`. To add after `old`, call edit_file with \
         these arguments:\n```json\n{call}\n```",
        lost.len()
    ))
}

/// Verbs of a task that adds, and words that say it changes or removes too.
const ADDING: &[&str] = &["add", "append", "insert"];
const NOT_ONLY_ADDING: &[&str] = &[
    "remove", "delete", "replace", "change", "rename", "update", "fix", "rewrite", "move", "edit",
    "modify", "refactor", "correct", "drop",
];

/// Whether the task in a coder's brief (`## Task ID: TITLE` and its
/// description, as `steps` writes it) only adds: its title begins with a
/// verb of adding and nothing in it or the description changes or removes.
fn task_only_adds(brief: &str) -> bool {
    let Some(at) = brief.find("## Task ") else {
        return false;
    };
    let rest = &brief[at..];
    let Some((heading, after)) = rest.split_once('\n') else {
        return false;
    };
    let title = heading.split_once(": ").map_or("", |(_, t)| t);
    let description = after.split("\n\n### ").next().unwrap_or("");
    let words = crate::text::lower_words;
    let title_words = words(title);
    let adds = title_words
        .first()
        .is_some_and(|w| ADDING.iter().any(|v| w.starts_with(v)));
    adds && !title_words
        .iter()
        .chain(words(description).iter())
        .any(|w| NOT_ONLY_ADDING.iter().any(|v| w.starts_with(v)))
}

/// The lines of `old` (not blank) that `new` no longer has, compared
/// without surrounding whitespace.
fn lost_lines<'a>(old: &'a str, new: &str) -> Vec<&'a str> {
    let kept: HashSet<&str> = new.lines().map(str::trim).collect();
    old.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !kept.contains(line))
        .collect()
}

/// The refusal names no lost line on a line of its own, and ends with the
/// file as it is: small models copy the last lines they were given into
/// the next write (measured: a 1.5B coder wrote this answer's instruction
/// into README.md, and it was merged).
fn answer(path: &str, current: &str, lost: &[&str]) -> String {
    let mut text = format!(
        "{REFUSED}write_file must keep every line of {path}, which exists; this write would lose \
         {} of them. Write the whole file again with your change in it, or use edit_file.",
        lost.len()
    );
    if current.chars().count() <= SHOWN_CHARS {
        text.push_str(&format!(
            " {path} is now:\n```\n{}\n```",
            current.trim_end_matches('\n')
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = "# Tiny repo\n\nA test repository for memofab with a local model.\n";

    #[test]
    fn a_rewrite_from_memory_loses_lines_an_addition_does_not() {
        // As measured: the new line alone, and the file retyped from memory.
        assert_eq!(lost_lines(README, "Hello from memofab.").len(), 2);
        assert_eq!(
            lost_lines(
                README,
                "Tiny repo\nA test repository for memofab with a local model."
            ),
            vec!["# Tiny repo"]
        );
        // Kept, with the line added (blank lines and trailing spaces aside).
        assert!(lost_lines(README, &format!("{README}Hello from memofab.\n")).is_empty());
        assert!(
            lost_lines(
                README,
                "# Tiny repo  \nA test repository for memofab with a local model.\nHello from memofab."
            )
            .is_empty()
        );
    }

    #[test]
    fn a_task_that_only_adds_is_told_from_its_brief() {
        let brief = |title: &str, description: &str| {
            format!("## Task 1: {title}\n{description}\n\n### Acceptance criteria\n- (none)\n")
        };
        assert!(task_only_adds(&brief(
            "Append 'Hello from memofab.' to the end of README.md",
            "Read the README.md file and append the line."
        )));
        assert!(task_only_adds(&format!(
            "Instructions of the project.\n\n{}",
            brief("Add line to README.md", "Add it at the end.")
        )));
        assert!(!task_only_adds(&brief(
            "Add a flag",
            "and remove the old one"
        )));
        assert!(!task_only_adds(&brief("Fix the parser", "Add a check.")));
        assert!(!task_only_adds("no brief"));
    }

    /// What `edit_file` does with the arguments: `old` replaced once.
    fn applied(file: &str, call: &Value) -> String {
        file.replacen(
            call["old"].as_str().unwrap(),
            call["new"].as_str().unwrap(),
            1,
        )
    }

    #[test]
    fn an_edit_that_replaces_the_last_line_is_answered_with_the_call_that_adds_after_it() {
        let line = "A test repository for memofab with a local model.";
        // As measured (1.5B): the last line replaced by the new one, with
        // and without the line's end in `old`.
        for (old, new) in [
            (line.to_owned(), "Hello from memofab.\n"),
            (format!("{line}\n"), "Hello from memofab."),
        ] {
            let edit = serde_json::json!({"path": "README.md", "old": old, "new": new});
            let refusal = removing_edit_refusal(&edit).expect("refused");
            assert!(refusal.starts_with(REFUSED));
            let suggested: Value =
                serde_json::from_str(refusal.lines().find(|l| l.starts_with('{')).unwrap())
                    .expect("a call on its own line");
            assert_eq!(
                applied(README, &suggested),
                format!("{README}Hello from memofab.\n"),
                "the suggested call, run, adds the line and keeps the file"
            );
        }
        // An edit that keeps `old`'s lines is not this guard's business.
        let keeps =
            serde_json::json!({"path": "README.md", "old": line, "new": format!("{line}\nHello.")});
        assert_eq!(removing_edit_refusal(&keeps), None);
    }

    #[test]
    fn the_answer_shows_the_file_as_it_is() {
        let text = answer("README.md", README, &["# Tiny repo"]);
        assert!(text.starts_with(REFUSED));
        assert!(text.contains("edit_file") && text.contains(README.trim_end()));
        let big = "x\n".repeat(SHOWN_CHARS);
        assert!(!answer("big.txt", &big, &["x"]).contains("```"));
    }
}
