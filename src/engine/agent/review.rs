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
