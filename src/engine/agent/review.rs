//! The reviewers' verdict: the `submit_review` tool that carries it, and
//! reading it from the reviewer's outcome.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::domain::tool_names;
use serde_json::json;

use super::AgentOutcome;
use super::brief::Task;
use crate::engine::tools::SubmitTool;
use crate::llm::ToolSpec;

/// `submit_review`: a reviewer's verdict, checked only for its form and for
/// a rejection that says the work is done.
pub fn review_tool() -> SubmitTool {
    verdict_tool(Evidence::default())
}

/// `submit_review` for the plan reviewer of a repository with `files`: a
/// rejection that says a file of it does not exist is asked again, saying
/// it does (measured: the 1.5B plan reviewer read README.md three times,
/// then rejected the plan because "The file 'README.md' does not exist.";
/// the planner then planned to create it, and the run merged a README with
/// a line doubled).
pub fn plan_review_tool(files: &[String]) -> SubmitTool {
    verdict_tool(Evidence {
        files: files.to_vec(),
        ..Evidence::default()
    })
}

/// `submit_review` for the code reviewer of `diff`: a rejection that says a
/// line it quotes is missing, when the diff adds exactly that line, is
/// asked again, with the line shown (measured: the 1.5B reviewer
/// rejected a correct change with "The line 'Hello from memofab.' was not
/// added to the README.md file.", and the rework broke it).
///
/// And when the diff does exactly what a task that only adds asks, adding
/// the lines it quotes (in `brief`) and nothing else, removing nothing, any
/// rejection is asked again, with the lines shown (measured: 1.5B
/// reviewers rejected such a change with "The README.md file does not
/// contain the expected content." and with memofab's own refusal of a
/// repeated read, reworded).
pub fn code_review_tool(diff: &str, brief: &str) -> SubmitTool {
    let added = added_lines(diff);
    let exact = Task::of(brief)
        .filter(Task::only_adds)
        .map(|task| task.lines_to_add())
        .filter(|lines| {
            let mut asked: Vec<&str> = lines.clone();
            let mut made: Vec<&str> = added.iter().map(String::as_str).collect();
            asked.sort_unstable();
            made.sort_unstable();
            !asked.is_empty() && asked == made && removes_nothing(diff)
        })
        .is_some();
    verdict_tool(Evidence {
        exact: exact.then(|| added.clone()),
        added,
        ..Evidence::default()
    })
}

/// What a rejection is checked against.
#[derive(Debug, Default)]
struct Evidence {
    /// The lines the diff adds (trimmed).
    added: Vec<String>,
    /// The repository's files.
    files: Vec<String>,
    /// The lines the diff adds, when they are exactly the ones the task
    /// quotes and it removes nothing.
    exact: Option<Vec<String>>,
}

impl Evidence {
    /// Why a rejection is to be asked again: it says what the evidence
    /// shows to be false.
    fn contradicts(&self, feedback: &str) -> Option<String> {
        if let Some(line) = said_missing_but_added(feedback, &self.added) {
            return Some(format!(
                "approved is false because \"{line}\" is missing, but the diff adds exactly \
                 that line:\n+{line}\nIf the change does what the task asks, call submit_review \
                 with approved true; if not, say what must change."
            ));
        }
        if let Some(lines) = &self.exact {
            let shown: Vec<String> = lines.iter().map(|l| format!("+{l}")).collect();
            return Some(format!(
                "approved is false, but the diff does exactly what the task asks: it adds the \
                 lines the task quotes and removes nothing:\n{}\nIf the change does what the \
                 task asks, call submit_review with approved true; if not, say what in the diff \
                 must change.",
                shown.join("\n")
            ));
        }
        let path = said_absent_but_exists(feedback, &self.files)?;
        Some(format!(
            "approved is false because {path} does not exist, but it does: {path} is in the \
             repository's list of files, and read_file reads it. If the plan does what the \
             requirement asks, call submit_review with approved true; if not, say what must change."
        ))
    }
}

/// The lines a unified diff adds, without their `+`, trimmed, not blank.
fn added_lines(diff: &str) -> Vec<String> {
    diff.lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| l[1..].trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether a unified diff removes no line (a removed line that reads
/// `-- x` is one; a file's `--- a/…` header is not).
fn removes_nothing(diff: &str) -> bool {
    !diff
        .lines()
        .any(|l| l.starts_with('-') && !l.starts_with("--- a/") && !l.starts_with("--- /dev/null"))
}

/// A rejection that says the work is done, or what `evidence` shows to be
/// false, is asked again once per reviewer: one that keeps to it is heard.
fn verdict_tool(evidence: Evidence) -> SubmitTool {
    let asked_again = AtomicBool::new(false);
    SubmitTool {
        spec: ToolSpec {
            name: tool_names::SUBMIT_REVIEW.into(),
            description:
                "Submit your verdict. approved=false sends the work back with your feedback.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "approved": {"type": "boolean"},
                    "feedback": {"type": "string", "description": "Numbered, actionable points."}
                },
                "required": ["approved", "feedback"]
            }),
        },
        check: Box::new(move |args| {
            let verdict: Result<Review, _> = serde_json::from_value(args.clone());
            match verdict {
                Ok(r) if !r.approved && r.feedback.trim().is_empty() => {
                    Err("feedback must say what to change when approved is false".into())
                }
                Ok(r)
                    if !r.approved
                        && says_the_work_is_done(&r.feedback)
                        && !asked_again.swap(true, Ordering::Relaxed) =>
                {
                    Err(
                        "approved is false, but the feedback says the work is done. If it is, \
                     call submit_review with approved true; if not, say what must change."
                            .into(),
                    )
                }
                Ok(r) if !r.approved => match evidence.contradicts(&r.feedback) {
                    Some(why) if !asked_again.swap(true, Ordering::Relaxed) => Err(why),
                    _ => Ok(()),
                },
                Ok(_) => Ok(()),
                Err(e) => Err(format!(
                    "expected {{\"approved\": bool, \"feedback\": string}}: {e}"
                )),
            }
        }),
    }
}

/// A reviewer's verdict, as `submit_review` carries it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Review {
    pub approved: bool,
    #[serde(default)]
    pub feedback: String,
}

impl Review {
    /// Reads the verdict from a reviewer's outcome. A reviewer that finished
    /// without `submit_review` has not approved anything.
    pub fn from_outcome(outcome: &AgentOutcome) -> Self {
        match outcome {
            AgentOutcome::Submitted { arguments } => serde_json::from_value(arguments.clone())
                .unwrap_or_else(|e| Review {
                    approved: false,
                    feedback: format!("The verdict could not be read: {e}"),
                }),
            AgentOutcome::Finished { summary } => Review {
                approved: false,
                feedback: format!("The reviewer finished without a verdict: {summary}"),
            },
        }
    }
}

/// Phrases that say something is not there.
const MISSING: &[&str] = &[
    "not added",
    "not been added",
    "wasn't added",
    "missing",
    "not present",
    "not found",
    "does not contain",
    "doesn't contain",
    "not included",
    "does not include",
    "doesn't include",
];

/// Words of a rejection about where or how a line is, not whether.
const PLACING: &[&str] = &[
    "end",
    "top",
    "start",
    "beginning",
    "after",
    "before",
    "order",
    "position",
    "place",
    "placed",
    "twice",
    "duplicate",
    "duplicated",
    "format",
    "indent",
    "indentation",
];

/// The line a rejection says is missing, if the diff adds exactly it: the
/// feedback quotes it, says it is missing, and says nothing of where.
fn said_missing_but_added<'a>(feedback: &str, added: &'a [String]) -> Option<&'a str> {
    if added.is_empty() {
        return None;
    }
    let own = crate::text::outside_quotes(feedback).to_lowercase();
    let says_missing = MISSING.iter().any(|p| own.contains(p));
    let placing = crate::text::lower_words(&own)
        .iter()
        .any(|w| PLACING.contains(&w.as_str()));
    if !says_missing || placing {
        return None;
    }
    crate::text::quoted(feedback)
        .into_iter()
        .map(str::trim)
        .find_map(|q| added.iter().find(|a| !q.is_empty() && a.as_str() == q))
        .map(String::as_str)
}

/// Phrases that say a file is not there.
const ABSENT: &[&str] = &[
    "does not exist",
    "doesn't exist",
    "not exist",
    "no such file",
    "not found",
    "nonexistent",
    "non-existent",
];

/// The file of `files` a rejection says does not exist: named (quoted or
/// not) in feedback that says something does not exist.
fn said_absent_but_exists<'a>(feedback: &str, files: &'a [String]) -> Option<&'a str> {
    let lower = feedback.to_lowercase();
    if files.is_empty() || !ABSENT.iter().any(|p| lower.contains(p)) {
        return None;
    }
    let punctuation = |c: char| ".,;:!?()[]'\"`".contains(c);
    let named = feedback
        .split_whitespace()
        .map(|w| w.trim_matches(punctuation))
        .chain(crate::text::quoted(feedback).into_iter().map(str::trim));
    named
        .filter(|name| !name.is_empty())
        .find_map(|name| files.iter().find(|f| f.as_str() == name))
        .map(String::as_str)
}

/// Phrases of a verdict that the work needs nothing more.
const DONE: &[&str] = &[
    "already completed",
    "already been completed",
    "already complete",
    "already done",
    "task is complete",
    "task has been completed",
    "work is complete",
    "work is done",
    "no further action",
    "no changes are needed",
    "no changes needed",
    "nothing to change",
    "looks good",
    "lgtm",
];

/// Whether a rejection's feedback only says the work is done: short, with
/// a phrase of [`DONE`] and no negation. Measured: the 1.5B reviewer
/// rejected a correct change with "The task was already completed. No
/// further action is required.", which sent a correct change back to a
/// coder that then broke it.
fn says_the_work_is_done(feedback: &str) -> bool {
    let text = feedback.to_lowercase();
    let words = text.split_whitespace().count();
    // The "no" of a phrase of DONE is not a negation of it.
    let rest = DONE
        .iter()
        .fold(text.clone(), |rest, p| rest.replace(p, " "));
    let negated = rest
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .any(|w| matches!(w, "not" | "no" | "never" | "but" | "however") || w.ends_with("n't"));
    words <= 24 && !negated && DONE.iter().any(|p| text.contains(p))
}

#[cfg(test)]
mod done_tests {
    use super::*;

    fn rejected(feedback: &str) -> Result<(), String> {
        (review_tool().check)(&json!({"approved": false, "feedback": feedback}))
    }

    #[test]
    fn a_rejection_that_says_the_work_is_done_is_asked_again() {
        // As measured (1.5B reviewer, a correct change).
        assert!(
            rejected("The task was already completed. No further action is required.").is_err()
        );
        assert!(rejected("Looks good.").is_err());
        // Once: kept to, it is heard.
        let tool = review_tool();
        let done = json!({"approved": false, "feedback": "Looks good."});
        assert!((tool.check)(&done).is_err() && (tool.check)(&done).is_ok());
        // A rejection that says what to change goes through.
        assert!(rejected("1. The line is missing at the end of README.md.").is_ok());
        assert!(rejected("The task is not complete: the heading was removed.").is_ok());
        assert!(rejected("Looks good, but the test does not check the new flag.").is_ok());
        assert!(rejected("No further action is needed, but the test must check the flag.").is_ok());
        // Approving is never refused for its words.
        assert!(
            (code_review_tool("+x\n", "").check)(
                &json!({"approved": true, "feedback": "'x' is missing"})
            )
            .is_ok()
        );
        assert!(
            (review_tool().check)(&json!({"approved": true, "feedback": "Looks good."})).is_ok()
        );
    }
}

#[cfg(test)]
mod missing_tests {
    use super::*;

    const DIFF: &str = "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,4 @@\n # Tiny repo\n \n A test repository.\n+Hello from memofab.\n";

    fn rejected(tool: &SubmitTool, feedback: &str) -> Result<(), String> {
        (tool.check)(&json!({"approved": false, "feedback": feedback}))
    }

    #[test]
    fn a_rejection_that_says_an_added_line_is_missing_is_asked_again_once() {
        let tool = code_review_tool(DIFF, "");
        // As measured (1.5B reviewer, a correct change).
        let measured = "The line 'Hello from memofab.' was not added to the README.md file.";
        let asked = rejected(&tool, measured).expect_err("asked again");
        assert!(asked.contains("\n+Hello from memofab.\n"), "{asked}");
        // Kept to: heard.
        assert!(rejected(&tool, measured).is_ok());
    }

    const BRIEF: &str = "## Task 1: Add line to README.md\nAdd the line 'Hello from memofab.' at \
        the end of README.md.\n\n### Acceptance criteria\n- success\n";

    #[test]
    fn any_rejection_of_a_diff_that_adds_exactly_the_tasks_line_is_asked_again_once() {
        // As measured (1.5B reviewers, a correct change).
        for measured in [
            "The README.md file does not contain the expected content.",
            "The read_file call was already run and did not write anything.",
        ] {
            let tool = code_review_tool(DIFF, BRIEF);
            let asked = rejected(&tool, measured).expect_err("asked again");
            assert!(asked.contains("\n+Hello from memofab.\n"), "{asked}");
            assert!(rejected(&tool, measured).is_ok(), "kept to: heard");
        }
        // Not exactly the task's line, or a line removed too, or a task
        // that does more than add: the rejection goes through.
        let more = DIFF.replace("+Hello from memofab.\n", "+Hello from memofab.\n+Bye.\n");
        let removes = DIFF.replace(" A test repository.\n", "-A test repository.\n");
        let changes = BRIEF.replace("Add line to", "Update");
        for (diff, brief) in [
            (more.as_str(), BRIEF),
            (removes.as_str(), BRIEF),
            (DIFF, changes.as_str()),
            (DIFF, ""),
        ] {
            let tool = code_review_tool(diff, brief);
            assert!(
                rejected(&tool, "1. Not what was asked.").is_ok(),
                "{diff} {brief}"
            );
        }
    }

    #[test]
    fn a_rejection_of_what_the_diff_does_not_add_or_of_where_it_is_goes_through() {
        for feedback in [
            // Not a line the diff adds.
            "The line 'Goodbye.' was not added.",
            // Where or how, not whether.
            "'Hello from memofab.' is missing at the end of README.md.",
            "The line 'Hello from memofab.' was added twice.",
            // No claim that it is missing.
            "'Hello from memofab.' should say memofab with a capital M.",
            "1. Add a test.",
        ] {
            assert!(
                rejected(&code_review_tool(DIFF, ""), feedback).is_ok(),
                "{feedback}"
            );
        }
        // The other reviewers' tools have no diff.
        assert!(rejected(&review_tool(), "'Hello from memofab.' is missing").is_ok());
        assert_eq!(added_lines(DIFF), ["Hello from memofab."]);
    }
}

#[cfg(test)]
mod absent_tests {
    use super::*;

    fn rejected(tool: &SubmitTool, feedback: &str) -> Result<(), String> {
        (tool.check)(&json!({"approved": false, "feedback": feedback}))
    }

    #[test]
    fn a_plan_rejection_that_says_a_file_of_the_repository_does_not_exist_is_asked_again_once() {
        let files = ["README.md".to_owned(), "tests/run.sh".to_owned()];
        let tool = plan_review_tool(&files);
        // As measured (1.5B plan reviewer).
        let measured = "The file 'README.md' does not exist.";
        assert!(rejected(&tool, measured).is_err());
        assert!(rejected(&tool, measured).is_ok(), "kept to: heard");
        assert!(rejected(&plan_review_tool(&files), "tests/run.sh doesn't exist.").is_err());
        // A file the repository does not have, or no claim of absence.
        for feedback in [
            "The file 'docs/new.md' does not exist yet: add a task that creates it.",
            "The task for README.md has no acceptance criteria.",
        ] {
            assert!(
                rejected(&plan_review_tool(&files), feedback).is_ok(),
                "{feedback}"
            );
        }
        assert!(rejected(&review_tool(), measured).is_ok());
    }
}
