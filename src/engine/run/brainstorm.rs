//! Brainstorming the requirement with the planner before planning starts:
//! the human sends a draft or a question from the cockpit's spec editor and
//! the planner answers in plain text. The conversation is recorded like any
//! other agent's; no tools, no blueprint yet.

use crate::domain::event::{AgentMessage, AgentStarted, ProviderLimitChanged, TokensUsed, Warning};
use crate::domain::{AgentId, AgentRole, EventKind, MessageAuthor};
use crate::engine::context::{Binding, RunContext};
use crate::engine::error::EngineResult;
use crate::llm::governor::{Admission, Limit};
use crate::llm::{ChatMessage, CompletionRequest, ScriptKey, collect_completion};
use crate::protocol::EngineUpdate;

/// The scripted provider's "round" for brainstorming, before plan round 1.
pub const BRAINSTORM_ROUND: u32 = 0;

const INSTRUCTION: &str = "The human is still shaping the requirement and has not asked for a blueprint yet. \
Answer in a few short paragraphs: ask the questions that matter, point out gaps and risks, suggest \
how to phrase acceptance criteria. Do not plan tasks yet.";

/// The brainstorm conversation so far.
#[derive(Debug, Default)]
pub struct Brainstorm {
    history: Vec<ChatMessage>,
}

impl Brainstorm {
    pub fn agent() -> AgentId {
        AgentId::new("planner:brainstorm")
    }

    /// Sends the human's message and records the planner's answer. A model
    /// failure is recorded as a warning; brainstorming is optional.
    pub async fn ask(&mut self, ctx: &RunContext, message: &str) -> EngineResult<()> {
        let agent = Self::agent();
        let Binding {
            provider,
            model,
            governor,
        } = ctx.providers.binding(AgentRole::Planner)?;
        if self.history.is_empty() {
            ctx.recorder
                .record(EventKind::AgentStarted(AgentStarted {
                    agent: agent.clone(),
                    role: AgentRole::Planner,
                    task: None,
                    model: model.clone(),
                }))
                .await?;
        }
        ctx.recorder
            .record(EventKind::AgentMessage(AgentMessage {
                agent: agent.clone(),
                from: MessageAuthor::User,
                text: message.to_owned(),
            }))
            .await?;
        self.history.push(ChatMessage::User {
            content: message.to_owned(),
        });
        let prompt = ctx.prompts.load(AgentRole::Planner);
        let request = CompletionRequest {
            model: model.clone(),
            system: format!("{}\n\n{INSTRUCTION}", prompt.text),
            messages: self.history.clone(),
            tools: Vec::new(),
            max_tokens: 2048,
            temperature: None,
            reasoning_effort: None,
            script: ScriptKey {
                role: AgentRole::Planner,
                task: None,
                attempt: BRAINSTORM_ROUND,
            },
        };
        // A human is waiting for the answer: while the provider is parked,
        // say so at once rather than sit out the park.
        let permit = match governor.admit().await {
            Admission::Go(permit) => permit,
            Admission::Parked(park) => {
                self.history.pop();
                ctx.recorder
                    .record(EventKind::Warning(Warning {
                        task: None,
                        message: format!(
                            "the planner could not brainstorm now ({}); ask again in {}s",
                            park.reason,
                            park.until
                                .saturating_duration_since(tokio::time::Instant::now())
                                .as_secs()
                                .max(1)
                        ),
                    }))
                    .await?;
                return Ok(());
            }
        };
        let recorder = &ctx.recorder;
        let reply = collect_completion(provider.stream(request), |text| {
            recorder.publish(EngineUpdate::Delta {
                agent: agent.clone(),
                text: text.to_owned(),
            });
        })
        .await;
        // Tell the governor how it went, so a limit here parks the agents too.
        let new_limit = match &reply {
            Ok(_) => permit.succeeded(),
            Err(e) => match Limit::of(e) {
                Some(limit) => permit.limited(&limit).new_limit,
                None => {
                    drop(permit);
                    None
                }
            },
        };
        if let Some(limit) = new_limit {
            ctx.recorder
                .record(EventKind::ProviderLimitChanged(ProviderLimitChanged {
                    provider: governor.name().to_owned(),
                    limit,
                    ceiling: governor.ceiling(),
                }))
                .await?;
        }
        match reply {
            Ok(reply) => {
                ctx.recorder
                    .record(EventKind::TokensUsed(TokensUsed {
                        agent: agent.clone(),
                        task: None,
                        cost_usd: crate::llm::pricing::cost_usd(&ctx.prices, &model, &reply.usage),
                        model,
                        usage: reply.usage,
                    }))
                    .await?;
                ctx.recorder
                    .record(EventKind::AgentMessage(AgentMessage {
                        agent,
                        from: MessageAuthor::Assistant,
                        text: reply.text.clone(),
                    }))
                    .await?;
                self.history.push(ChatMessage::Assistant {
                    content: reply.text,
                    tool_calls: Vec::new(),
                });
            }
            Err(e) => {
                // Keep the history answerable: drop the unanswered question.
                self.history.pop();
                ctx.recorder
                    .record(EventKind::Warning(Warning {
                        task: None,
                        message: format!("the planner could not brainstorm: {e}"),
                    }))
                    .await?;
            }
        }
        Ok(())
    }
}
