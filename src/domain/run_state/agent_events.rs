//! How agents change the run: which task an agent works for, the files its
//! calls write, its questions to a human, waits on providers, and spending.

use super::{RunState, TransitionError, written_path};
use crate::domain::event::{
    AgentParked, AgentStarted, ProviderLimitChanged, QuestionAnswered, QuestionAsked, TokensUsed,
    ToolCalled,
};
use crate::domain::quota::{ParkedAgent, ProviderLimit};
use crate::domain::run_state::Question;

impl RunState {
    pub(super) fn agent_started(&mut self, e: &AgentStarted) {
        let Some(task) = &e.task else { return };
        self.agent_tasks.insert(e.agent.clone(), task.clone());
        // Its first message carried the shepherd's note.
        if let Some(&i) = self.index.get(task) {
            self.tasks[i].shepherd.note = None;
        }
    }

    pub(super) fn tool_called(&mut self, e: &ToolCalled) {
        if let Some(path) = written_path(&e.tool, &e.arguments)
            && let Some(&i) = self
                .agent_tasks
                .get(&e.agent)
                .and_then(|task| self.index.get(task))
        {
            self.tasks[i].observed_writes.insert(path);
        }
    }

    pub(super) fn tokens_used(&mut self, e: &TokensUsed, seq: u64) -> Result<(), TransitionError> {
        let cost = e.cost_usd.unwrap_or(0.0);
        if let Some(task) = &e.task {
            let record = self.task_mut(task, seq)?;
            record.tokens.add(e.usage);
            record.cost_usd += cost;
        }
        self.tokens.add(e.usage);
        self.cost_usd += cost;
        Ok(())
    }

    pub(super) fn question_asked(&mut self, e: &QuestionAsked, at_ms: u64) {
        self.questions.push(Question {
            agent: e.agent.clone(),
            call_id: e.call_id.clone(),
            task: e.task.clone(),
            question: e.question.clone(),
            asked_ms: at_ms,
            answer: None,
        });
    }

    pub(super) fn question_answered(&mut self, e: &QuestionAnswered) {
        if let Some(q) = self
            .questions
            .iter_mut()
            .find(|q| q.agent == e.agent && q.call_id == e.call_id)
        {
            q.answer = Some(e.answer.clone());
        }
    }

    pub(super) fn agent_parked(&mut self, e: &AgentParked) {
        self.parked.insert(
            e.agent.clone(),
            ParkedAgent {
                task: e.task.clone(),
                provider: e.provider.clone(),
                until_ms: e.until_ms,
                reason: e.reason.clone(),
            },
        );
    }

    pub(super) fn provider_limit_changed(&mut self, e: &ProviderLimitChanged) {
        self.provider_limits.insert(
            e.provider.clone(),
            ProviderLimit {
                limit: e.limit,
                ceiling: e.ceiling,
            },
        );
    }
}
