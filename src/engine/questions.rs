//! The `ask_human` tool: a coding agent that cannot go on without a
//! decision asks, the question lands in the cockpit's inbox, and the agent
//! waits with its conversation until the human answers. Offered only when a
//! human is attached.

use serde_json::json;

use super::error::EngineResult;
use super::recorder::Recorder;
use crate::domain::event::QuestionAsked;
use crate::domain::{AgentId, EventKind, TaskId, TaskState};
use crate::llm::ToolSpec;

pub const ASK_HUMAN: &str = "ask_human";

pub fn spec() -> ToolSpec {
    ToolSpec {
        name: ASK_HUMAN.into(),
        description: "Ask the human supervising the factory a question and wait for the answer. \
                      Use it only for decisions you cannot make from the task, the code or the \
                      acceptance criteria."
            .into(),
        parameters: json!({"type": "object", "properties": {
            "question": {"type": "string"}
        }, "required": ["question"]}),
    }
}

/// Records the question and waits for its answer: `(ok, tool output)`.
pub async fn ask(
    recorder: &Recorder,
    agent: &AgentId,
    call_id: &str,
    task: Option<&TaskId>,
    arguments: Option<&serde_json::Value>,
) -> EngineResult<(bool, String)> {
    let question = arguments
        .and_then(|a| a.get("question"))
        .and_then(|q| q.as_str())
        .map(str::trim)
        .unwrap_or_default();
    if question.is_empty() {
        return Ok((
            false,
            "ask_human needs a non-empty `question` string.".to_owned(),
        ));
    }
    recorder
        .record(EventKind::QuestionAsked(QuestionAsked {
            agent: agent.clone(),
            call_id: call_id.to_owned(),
            task: task.cloned(),
            question: question.to_owned(),
        }))
        .await?;
    let answer = recorder
        .wait_until(|s| {
            let answer = s
                .questions
                .iter()
                .find(|q| q.agent == *agent && q.call_id == call_id)
                .and_then(|q| q.answer.clone());
            let stopped = task
                .and_then(|t| s.task(t))
                .is_some_and(|t| matches!(t.state, TaskState::Cancelled | TaskState::Failed));
            match answer {
                Some(answer) => Some(Some(answer)),
                None => stopped.then_some(None),
            }
        })
        .await;
    Ok(match answer {
        Some(answer) => (true, format!("The human answered: {answer}")),
        None => (
            false,
            "The task was stopped before the human answered.".into(),
        ),
    })
}
