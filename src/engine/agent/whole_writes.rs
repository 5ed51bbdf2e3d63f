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
    let old = arguments.get("old")?.as_str()?;
    let new = arguments.get("new")?.as_str()?;
    let path = arguments.get("path")?.as_str()?;
    let lost = lost_lines(old, new);
    if lost.is_empty() || !task_only_adds(&job.first_message) {
        return None;
    }
    Some(format!(
        "{REFUSED}the task adds to {path}; this edit_file would remove {} of its lines. \
         edit_file puts `new` in the place of `old`: to add after `old`, `new` must be `old` \
         with the added lines after it.",
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
        // As measured: the last line replaced by the new one.
        let edit = serde_json::json!({"path": "README.md", "old": "A test repository.\n", "new": "Hello.\n"});
        assert_eq!(lost_lines("A test repository.\n", "Hello.\n").len(), 1);
        let kept = serde_json::json!({"path": "README.md", "old": "A test repository.\n", "new": "A test repository.\nHello.\n"});
        assert!(
            lost_lines(kept["old"].as_str().unwrap(), kept["new"].as_str().unwrap()).is_empty()
        );
        assert!(edit["new"].is_string());
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
