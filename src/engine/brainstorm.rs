//! Brainstorming the requirement with the planner before planning starts:
//! the human sends a draft or a question from the cockpit's spec editor and
//! the planner answers in plain text. The conversation is recorded like any
//! other agent's; no tools, no blueprint yet.

use super::context::RunContext;
use super::error::EngineResult;
use crate::domain::{AgentId, AgentRole, EventKind, MessageAuthor};
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
        let (provider, model) = ctx.providers.get(AgentRole::Planner)?;
        if self.history.is_empty() {
            ctx.recorder
                .record(EventKind::AgentStarted {
                    agent: agent.clone(),
                    role: AgentRole::Planner,
                    task: None,
                    model: model.clone(),
                })
                .await?;
        }
        ctx.recorder
            .record(EventKind::AgentMessage {
                agent: agent.clone(),
                from: MessageAuthor::User,
                text: message.to_owned(),
            })
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
            script: ScriptKey {
                role: AgentRole::Planner,
                task: None,
                attempt: BRAINSTORM_ROUND,
            },
        };
        let recorder = &ctx.recorder;
        let reply = collect_completion(provider.stream(request), |text| {
            recorder.publish(EngineUpdate::Delta {
                agent: agent.clone(),
                text: text.to_owned(),
            });
        })
        .await;
        match reply {
            Ok(reply) => {
                ctx.recorder
                    .record(EventKind::TokensUsed {
                        agent: agent.clone(),
                        task: None,
                        cost_usd: crate::llm::pricing::cost_usd(
                            &crate::llm::pricing::price_table(&ctx.config),
                            &model,
                            &reply.usage,
                        ),
                        model,
                        usage: reply.usage,
                    })
                    .await?;
                ctx.recorder
                    .record(EventKind::AgentMessage {
                        agent,
                        from: MessageAuthor::Assistant,
                        text: reply.text.clone(),
                    })
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
                    .record(EventKind::Warning {
                        task: None,
                        message: format!("the planner could not brainstorm: {e}"),
                    })
                    .await?;
            }
        }
        Ok(())
    }
}
