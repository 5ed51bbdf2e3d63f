//! `ask_human`: a coding agent that cannot go on without a decision asks,
//! the question lands in the cockpit's inbox, and the agent waits with its
//! conversation until the human answers. Offered only when a human is
//! attached.

use crate::domain::tool_names;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{Call, Tool, ToolOutcome, fail, ok};
use crate::domain::event::QuestionAsked;
use crate::domain::{AgentId, EventKind, TaskId, TaskState};
use crate::engine::error::EngineResult;
use crate::engine::recorder::Recorder;
use crate::llm::ToolSpec;

/// `ask_human` for one agent: where its questions are recorded and whose
/// they are.
pub struct AskHuman {
    recorder: Recorder,
    agent: AgentId,
    task: Option<TaskId>,
}

#[derive(Deserialize)]
struct AskArgs {
    #[serde(default)]
    question: Option<serde_json::Value>,
}

impl AskHuman {
    pub const NAME: &'static str = tool_names::ASK_HUMAN;

    pub fn new(recorder: &Recorder, agent: &AgentId, task: Option<&TaskId>) -> Self {
        Self {
            recorder: recorder.clone(),
            agent: agent.clone(),
            task: task.cloned(),
        }
    }

    pub fn spec() -> ToolSpec {
        ToolSpec {
            name: Self::NAME.into(),
            description:
                "Ask the human supervising the factory a question and wait for the answer. \
                          Use it only for decisions you cannot make from the task, the code or the \
                          acceptance criteria."
                    .into(),
            parameters: json!({"type": "object", "properties": {
                "question": {"type": "string"}
            }, "required": ["question"]}),
        }
    }

    /// Records the question and waits for its answer.
    async fn ask(&self, call_id: &str, question: String) -> EngineResult<ToolOutcome> {
        let (agent, task) = (&self.agent, self.task.as_ref());
        self.recorder
            .record(EventKind::QuestionAsked(QuestionAsked {
                agent: agent.clone(),
                call_id: call_id.to_owned(),
                task: task.cloned(),
                question,
            }))
            .await?;
        let answer = self
            .recorder
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
            Some(answer) => ok(format!("The human answered: {answer}")),
            None => fail("The task was stopped before the human answered."),
        })
    }
}

impl Tool for AskHuman {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn spec(&self) -> ToolSpec {
        Self::spec()
    }

    fn call<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, EngineResult<ToolOutcome>> {
        // Only an object holding a string question is asked; anything else
        // gets the same one answer.
        let question = call
            .arguments
            .value()
            .ok()
            .filter(|v| v.is_object())
            .and_then(|_| call.arguments.typed::<AskArgs>(Self::NAME).ok())
            .and_then(|a| a.question)
            .and_then(|q| q.as_str().map(|q| q.trim().to_owned()))
            .unwrap_or_default();
        Box::pin(async move {
            if question.is_empty() {
                return Ok(fail("ask_human needs a non-empty `question` string."));
            }
            self.ask(call.id, question).await
        })
    }
}
