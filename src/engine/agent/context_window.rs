//! The agent's hook before each request: keep the conversation inside the
//! model's context window (policy in [`crate::llm::compaction`]). Old tool
//! results are stubbed first; if that is not enough the oldest turns are
//! summarised by the agent's own model into a note it keeps. A compaction
//! is recorded as a `ContextCompacted` event; a request that still cannot
//! fit is never sent.

use std::time::Duration;

use super::{AgentFailed, AgentJob, AgentRunner, Unanswered};
use crate::domain::event::ContextCompacted;
use crate::domain::{AgentId, EventKind};
use crate::engine::error::EngineResult;
use crate::llm::compaction::{self, Window};
use crate::llm::{ChatMessage, CompletionRequest, ScriptKey, ToolSpec};

/// Context window assumed for a model nobody describes: small enough for
/// most served models; set `context_tokens` for a bigger one.
pub const FALLBACK_CONTEXT_TOKENS: u64 = 32_768;
/// Prompts this small fit any model's window: the window (for a local
/// server, a question to it) is looked up only past this.
const SMALL_PROMPT_TOKENS: u64 = 2_000;
/// The cap on the summary's length.
const SUMMARY_TOKENS: u32 = 2_048;

impl AgentRunner {
    /// The model's window: the provider's figure (config, or the server's
    /// own), else a default for well-known models, else the fallback.
    pub(super) async fn window(&self) -> Window {
        let context_tokens = match self.provider.context_tokens(&self.model).await {
            Some(n) => n,
            None => {
                compaction::default_context_tokens(&self.model).unwrap_or(FALLBACK_CONTEXT_TOKENS)
            }
        };
        Window {
            context_tokens,
            reply_tokens: u64::from(self.reply.max_tokens),
        }
    }

    /// Compacts `messages` when the next request would come near the
    /// window. `Ok(Err(_))`: it cannot be made to fit.
    pub(super) async fn fit_window(
        &self,
        agent: &AgentId,
        job: &AgentJob,
        messages: &mut Vec<ChatMessage>,
        tools: &[ToolSpec],
        window: &mut Option<Window>,
        parked: &mut Duration,
    ) -> EngineResult<Result<(), AgentFailed>> {
        let fixed = compaction::fixed_tokens(&job.prompt.text, tools);
        let size = |messages: &[ChatMessage]| fixed + compaction::messages_tokens(messages);
        let before = size(messages);
        if before <= SMALL_PROMPT_TOKENS {
            return Ok(Ok(()));
        }
        let window = match *window {
            Some(known) => known,
            None => *window.insert(self.window().await),
        };
        if before <= window.trigger() {
            return Ok(Ok(()));
        }
        let mut stubbed = compaction::stub_results(messages, fixed, window.target(), false);
        let mut summarised = 0;
        let mut note = None;
        if size(messages) > window.target()
            && let Some(range) = compaction::summary_range(messages)
        {
            let turns = messages[range.clone()].to_vec();
            let summary = self.summarise(agent, job, &turns, window, parked).await?;
            let kept = compaction::note(&summary, &turns);
            if let ChatMessage::User { content } = &kept {
                note = Some(content.clone());
            }
            summarised = turns.len() as u32;
            compaction::replace_with_note(messages, range, kept);
        }
        if size(messages) > window.limit() {
            stubbed += compaction::stub_results(messages, fixed, window.target(), true);
        }
        let after = size(messages);
        // Nothing to stub or summarise (one huge first message): no
        // compaction happened, and none is recorded.
        if stubbed > 0 || summarised > 0 {
            self.recorder
                .record(EventKind::ContextCompacted(ContextCompacted {
                    agent: agent.clone(),
                    task: job.task.clone(),
                    context_tokens: window.context_tokens,
                    before_tokens: before,
                    after_tokens: after,
                    stubbed: stubbed as u32,
                    summarised,
                    note,
                }))
                .await?;
        }
        if after > window.limit() {
            let tried = if stubbed > 0 || summarised > 0 {
                " even after compaction"
            } else {
                ", and nothing in it can be compacted"
            };
            return Ok(Err(AgentFailed(format!(
                "the conversation does not fit {}'s context window of {} tokens{tried} \
                 (about {after} tokens with a reply of {}); set a larger \
                 context_tokens if the model has one, or a smaller max_reply_tokens",
                self.model, window.context_tokens, window.reply_tokens
            ))));
        }
        Ok(Ok(()))
    }

    /// Asks the agent's own model to summarise `turns`; a plain list of
    /// the calls made if it cannot.
    async fn summarise(
        &self,
        agent: &AgentId,
        job: &AgentJob,
        turns: &[ChatMessage],
        window: Window,
        parked: &mut Duration,
    ) -> EngineResult<String> {
        let budget = window
            .limit()
            .saturating_sub(compaction::text_tokens(compaction::SUMMARY_INSTRUCTIONS))
            .saturating_sub(u64::from(SUMMARY_TOKENS))
            / 2;
        let request = CompletionRequest {
            model: self.model.clone(),
            system: compaction::SUMMARY_INSTRUCTIONS.to_owned(),
            messages: vec![ChatMessage::User {
                content: format!(
                    "The conversation so far, oldest first:\n\n{}",
                    compaction::transcript(turns, budget)
                ),
            }],
            tools: Vec::new(),
            max_tokens: SUMMARY_TOKENS.min(self.reply.max_tokens),
            temperature: None,
            reasoning_effort: None,
            script: ScriptKey {
                role: job.role,
                task: job.task.clone(),
                attempt: job.attempt,
            },
        };
        match self.ask(agent, job, request, parked).await? {
            Ok(reply) => {
                self.record_usage(agent, job, reply.usage).await?;
                if reply.text.trim().is_empty() {
                    Ok(compaction::plain_summary(turns))
                } else {
                    Ok(reply.text)
                }
            }
            Err(Unanswered::Llm(e)) => {
                self.warn(
                    job,
                    format!("{agent}: the summary of earlier turns failed ({e}); keeping a list of the calls made"),
                )
                .await?;
                Ok(compaction::plain_summary(turns))
            }
            Err(Unanswered::GaveUp(_)) => Ok(compaction::plain_summary(turns)),
        }
    }
}
