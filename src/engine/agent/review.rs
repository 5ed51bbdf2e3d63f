//! The reviewers' verdict: the `submit_review` tool that carries it, and
//! reading it from the reviewer's outcome.

use crate::domain::tool_names;
use serde_json::json;

use super::AgentOutcome;
use crate::engine::tools::SubmitTool;
use crate::llm::ToolSpec;

/// `submit_review`: the verdict of the plan reviewer and the code reviewer.
pub fn review_tool() -> SubmitTool {
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
        check: Box::new(|args| {
            let verdict: Result<Review, _> = serde_json::from_value(args.clone());
            match verdict {
                Ok(r) if !r.approved && r.feedback.trim().is_empty() => {
                    Err("feedback must say what to change when approved is false".into())
                }
                Ok(r) if !r.approved && says_the_work_is_done(&r.feedback) => Err(
                    "approved is false, but the feedback says the work is done. If it is, \
                     call submit_review with approved true; if not, say what must change."
                        .into(),
                ),
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
        // A rejection that says what to change goes through.
        assert!(rejected("1. The line is missing at the end of README.md.").is_ok());
        assert!(rejected("The task is not complete: the heading was removed.").is_ok());
        assert!(rejected("Looks good, but the test does not check the new flag.").is_ok());
        assert!(rejected("No further action is needed, but the test must check the flag.").is_ok());
        // Approving is never refused for its words.
        assert!(
            (review_tool().check)(&json!({"approved": true, "feedback": "Looks good."})).is_ok()
        );
    }
}
