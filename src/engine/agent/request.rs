//! Model requests under the provider's governor: parked while a limit
//! lasts, asked again after a server error, and the tokens each reply used.

use std::time::Duration;

use tokio::time::Instant;

use super::{AgentFailed, AgentId, AgentJob, AgentRunner, Unanswered};
use crate::domain::EventKind;
use crate::domain::event::{
    AgentParked, AgentUnparked, ProviderLimitChanged, ReplyBrokenOff, TokensUsed,
};
use crate::engine::error::EngineResult;
use crate::llm::governor::{Admission, Limit, LimitKind, Park};
use crate::llm::{Completion, CompletionRequest, Delta, Interrupted, assemble};
use crate::protocol::EngineUpdate;

/// Server errors inside a reply's stream sat out in a row before giving up
/// on a request (with the governor's growing back-off, about half a minute).
const MAX_SERVER_ERRORS: u32 = 5;

impl AgentRunner {
    /// Sends one request under the provider's governor. A rate or usage
    /// limit parks the agent until it passes and the same request is sent
    /// again: limits never fail an agent, unless it has been parked for
    /// longer in total than the provider allows (`parked` adds up).
    pub(super) async fn ask(
        &self,
        agent: &AgentId,
        job: &AgentJob,
        request: CompletionRequest,
        parked: &mut Duration,
    ) -> EngineResult<Result<Completion, Unanswered>> {
        let mut server_errors = 0;
        loop {
            let permit = match self.governor.admit().await {
                Admission::Go(permit) => permit,
                Admission::Parked(park) => {
                    if let Some(failed) = self.sit_out(agent, job, park, parked).await? {
                        return Ok(Err(Unanswered::GaveUp(failed)));
                    }
                    continue;
                }
            };
            let recorder = &self.recorder;
            let reply = assemble(self.provider.stream(request.clone()), |delta| {
                let agent = agent.clone();
                recorder.publish(match delta {
                    Delta::Text(text) => EngineUpdate::Delta {
                        agent,
                        text: text.to_owned(),
                    },
                    Delta::Reasoning(text) => EngineUpdate::ThinkingDelta {
                        agent,
                        text: text.to_owned(),
                    },
                });
            })
            .await;
            let Interrupted { error, usage } = match reply {
                Ok(reply) => {
                    if let Some(limit) = permit.succeeded() {
                        self.limit_changed(limit).await?;
                    }
                    return Ok(Ok(reply));
                }
                Err(interrupted) => interrupted,
            };
            // The server may have read the whole prompt before it failed.
            if usage.total() > 0 {
                self.record_usage(agent, job, usage).await?;
            }
            let limit = Limit::of(&error).filter(|limit| {
                if limit.kind != LimitKind::ServerError {
                    return true;
                }
                server_errors += 1;
                server_errors <= MAX_SERVER_ERRORS
            });
            let Some(limit) = limit else {
                drop(permit);
                return Ok(Err(Unanswered::Llm(error)));
            };
            if limit.kind == LimitKind::ServerError {
                // Asked again after the back-off: the human sees why.
                self.recorder
                    .record(EventKind::ReplyBrokenOff(ReplyBrokenOff {
                        agent: agent.clone(),
                        task: job.task.clone(),
                        attempt: server_errors,
                        reason: limit.message.clone(),
                    }))
                    .await?;
            }
            // The next round of the loop finds the provider parked.
            if let Some(new_limit) = permit.limited(&limit).new_limit {
                self.limit_changed(new_limit).await?;
            }
        }
    }

    /// Waits out a park of the provider, recorded as this agent's park, or
    /// gives up if that would take the agent past its parking allowance.
    async fn sit_out(
        &self,
        agent: &AgentId,
        job: &AgentJob,
        mut park: Park,
        parked: &mut Duration,
    ) -> EngineResult<Option<AgentFailed>> {
        let allowed = self.governor.config().max_parked;
        let provider = self.governor.name().to_owned();
        let started = Instant::now();
        loop {
            let wait = park.until.saturating_duration_since(Instant::now());
            if *parked + started.elapsed() + wait > allowed {
                return Ok(Some(AgentFailed(format!(
                    "gave up waiting on {provider}'s limits: {}s parked in total would pass \
                     providers.{provider}.max_parked_secs ({}s); last: {}",
                    (*parked + started.elapsed() + wait).as_secs(),
                    allowed.as_secs(),
                    park.reason
                ))));
            }
            self.recorder
                .record(EventKind::AgentParked(AgentParked {
                    agent: agent.clone(),
                    task: job.task.clone(),
                    provider: provider.clone(),
                    until_ms: park.until_ms,
                    reason: park.reason.clone(),
                }))
                .await?;
            self.governor.sit_until(park.until).await;
            // Another agent may have hit the limit again meanwhile.
            match self.governor.parked() {
                Some(longer) if longer.until > park.until => park = longer,
                _ => break,
            }
        }
        *parked += started.elapsed();
        self.recorder
            .record(EventKind::AgentUnparked(AgentUnparked {
                agent: agent.clone(),
            }))
            .await?;
        Ok(None)
    }

    pub(super) async fn record_usage(
        &self,
        agent: &AgentId,
        job: &AgentJob,
        usage: crate::domain::TokenUsage,
    ) -> EngineResult<()> {
        self.recorder
            .record(EventKind::TokensUsed(TokensUsed {
                agent: agent.clone(),
                task: job.task.clone(),
                model: self.model.clone(),
                usage,
                cost_usd: crate::llm::pricing::cost_usd(&self.prices, &self.model, &usage),
            }))
            .await?;
        Ok(())
    }

    async fn limit_changed(&self, limit: u32) -> EngineResult<()> {
        self.recorder
            .record(EventKind::ProviderLimitChanged(ProviderLimitChanged {
                provider: self.governor.name().to_owned(),
                limit,
                ceiling: self.governor.ceiling(),
            }))
            .await?;
        Ok(())
    }
}
