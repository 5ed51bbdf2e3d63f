//! The conversation loop: ask the model, read its reply, run its calls,
//! until it finishes, submits, is stopped by the shepherd or runs out of
//! turns.

use std::time::Duration;

use super::dispatch::Dispatch;
use super::{AgentFailed, AgentId, AgentJob, AgentOutcome, AgentRunner, IGNORED_CALL, Unanswered};
use crate::domain::MessageAuthor;
use crate::engine::error::EngineResult;
use crate::engine::mcp_tools::McpTools;
use crate::engine::shepherd::{Shepherd, Verdict};
use crate::llm::text_calls::{TextReading, read_text_call};
use crate::llm::{ChatMessage, CompletionRequest, FinishReason, LlmError, ScriptKey, ToolCall};

/// Garbled replies (cut streams, broken SSE) re-asked before giving up.
const MAX_GARBLED_RETRIES: u32 = 2;

impl AgentRunner {
    /// The shepherd's hook after each turn: a nudge joins the conversation;
    /// `Some` ends it.
    async fn shepherd_turn(
        &self,
        agent: &AgentId,
        shepherd: &mut Shepherd,
        messages: &mut Vec<ChatMessage>,
    ) -> EngineResult<Option<AgentFailed>> {
        match shepherd.turn_over(&self.recorder, agent).await? {
            Verdict::Continue => Ok(None),
            Verdict::Nudge(text) => {
                self.say(agent, MessageAuthor::User, &text).await?;
                messages.push(ChatMessage::User { content: text });
                Ok(None)
            }
            Verdict::Stop(why) => Ok(Some(AgentFailed(why))),
        }
    }

    pub(super) async fn converse(
        &self,
        agent: &AgentId,
        job: &AgentJob,
        mcp: &McpTools,
        shepherd: &mut Shepherd,
    ) -> EngineResult<Result<AgentOutcome, AgentFailed>> {
        let mut dispatch = Dispatch::new(&self.recorder, agent, job, mcp, self.small_model_guards);
        let tools = dispatch.registry.specs();
        let mut messages = vec![ChatMessage::User {
            content: job.first_message.clone(),
        }];
        let mut garbled = 0;
        let mut turns = 0;
        let mut parked = Duration::ZERO;
        let mut window = None;
        while turns < self.max_turns {
            if let Err(failed) = self
                .fit_window(agent, job, &mut messages, &tools, &mut window, &mut parked)
                .await?
            {
                return Ok(Err(failed));
            }
            let request = CompletionRequest {
                model: self.model.clone(),
                system: job.prompt.text.clone(),
                messages: messages.clone(),
                // A call just refused as a repeat is not offered for one
                // turn (nor other reads, after a read): a small model asked
                // for one call per reply then cannot write it a fifth time
                // (the reply's grammar comes from the tools).
                tools: tools
                    .iter()
                    .filter(|t| !dispatch.withheld.contains(&t.name))
                    .cloned()
                    .collect(),
                max_tokens: self.reply.max_tokens,
                temperature: self.reply.temperature,
                reasoning_effort: self.reply.reasoning_effort,
                script: ScriptKey {
                    role: job.role,
                    task: job.task.clone(),
                    attempt: job.attempt,
                },
            };
            dispatch.withheld.clear();
            let mut reply = match self.ask(agent, job, request, &mut parked).await? {
                Ok(reply) => reply,
                Err(Unanswered::Llm(e)) if e.is_garbled() && garbled < MAX_GARBLED_RETRIES => {
                    garbled += 1;
                    self.warn(job, format!("{agent}: {e}; asking again"))
                        .await?;
                    continue;
                }
                Err(Unanswered::Llm(e)) => return Ok(Err(AgentFailed(llm_failure(&e)))),
                Err(Unanswered::GaveUp(failed)) => return Ok(Err(failed)),
            };
            turns += 1;
            self.record_usage(agent, job, reply.usage).await?;
            // A task's agent pauses as soon as a budget is spent, keeping
            // its conversation; planning only counts towards the run's.
            if let Some(task) = &job.task
                && !crate::engine::budget_pause::wait_for_budget(&self.recorder, task).await?
            {
                return Ok(Err(AgentFailed(
                    "stopped while waiting for more budget".to_owned(),
                )));
            }
            if !reply.reasoning.trim().is_empty() {
                self.say(agent, MessageAuthor::Thinking, &reply.reasoning)
                    .await?;
            }
            let reading = if reply.tool_calls.is_empty() && self.provider.reads_text_tool_calls() {
                read_text_call(&reply.text, &tools, &format!("text_call_{turns}"))
            } else {
                TextReading::Prose
            };
            let (text_call, unreadable) = match reading {
                TextReading::Call(found) => (Some(found), None),
                TextReading::Unreadable(why) => (None, Some(why)),
                TextReading::Prose => (None, None),
            };
            if let Some(found) = &text_call {
                reply.text.clone_from(&found.rest);
                reply.tool_calls = vec![found.call.clone()];
            }
            if !reply.text.is_empty() {
                self.say(agent, MessageAuthor::Assistant, &reply.text)
                    .await?;
            }
            if let Some(found) = &text_call {
                let note = format!(
                    "The reply wrote a call of {} as text; it is run as that tool call.",
                    found.call.name
                );
                self.say(agent, MessageAuthor::System, &note).await?;
            }
            messages.push(ChatMessage::Assistant {
                content: reply.text.clone(),
                tool_calls: reply.tool_calls.clone(),
            });
            if reply.tool_calls.is_empty() {
                let nudge = no_call_nudge(
                    unreadable.as_deref(),
                    reply.finish == FinishReason::Length,
                    self.reply.max_tokens,
                    &dispatch.finish_hint,
                );
                self.say(agent, MessageAuthor::User, &nudge).await?;
                messages.push(ChatMessage::User { content: nudge });
                shepherd.no_call();
                if let Some(failed) = self.shepherd_turn(agent, shepherd, &mut messages).await? {
                    return Ok(Err(failed));
                }
                continue;
            }
            let taken = reply.tool_calls.len().min(self.reply.max_tool_calls.max(1));
            let (run, ignored) = reply.tool_calls.split_at(taken);
            if !ignored.is_empty() {
                self.warn(
                    job,
                    format!(
                        "{agent}: the reply made {} tool calls; the first {taken} run, the rest \
                         are answered \"{IGNORED_CALL}\"",
                        reply.tool_calls.len()
                    ),
                )
                .await?;
            }
            for call in run {
                let (output, done) = self.run_call(agent, &mut dispatch, call, &messages).await?;
                if let Some(outcome) = done {
                    return Ok(Ok(outcome));
                }
                shepherd.tool_result(&call.name, &output.arguments, output.ok, &output.text);
                messages.push(ChatMessage::ToolResult {
                    call_id: call.id.clone(),
                    content: output.text,
                    is_error: !output.ok,
                });
            }
            // Every call gets an answer, or the next request is invalid.
            messages.extend(ignored.iter().map(|call: &ToolCall| ChatMessage::ToolResult {
                call_id: call.id.clone(),
                content: format!(
                    "{IGNORED_CALL} (at most {taken} run); call it again if it is still needed."
                ),
                is_error: true,
            }));
            if let Some(failed) = self.shepherd_turn(agent, shepherd, &mut messages).await? {
                return Ok(Err(failed));
            }
        }
        Ok(Err(AgentFailed(format!(
            "no result after {} turns (the limit is run.max_agent_turns)",
            self.max_turns
        ))))
    }
}

/// What a reply without a call is answered: what was wrong with the JSON
/// it wrote, or that it was cut, so a small model can correct itself
/// rather than be told the same thing until it runs out of turns.
fn no_call_nudge(
    unreadable: Option<&str>,
    cut: bool,
    max_tokens: u32,
    finish_hint: &str,
) -> String {
    let mut nudge = String::new();
    if let Some(why) = unreadable {
        nudge.push_str(&format!(
            "Your reply wrote JSON that could not be run as a tool call: {why}. "
        ));
    }
    if cut {
        nudge.push_str(&format!(
            "Your reply was cut at the limit of {max_tokens} tokens before it ended. \
             Keep replies short: one tool call, no repeated text. "
        ));
    }
    nudge.push_str(&format!(
        "Please continue by calling a tool. When you are done, call {finish_hint}."
    ));
    nudge
}

fn llm_failure(e: &LlmError) -> String {
    format!("the model could not be used: {e}")
}

/// The summary recorded for a submitted result.
pub(super) fn submitted_summary(arguments: &serde_json::Value) -> String {
    if let Some(approved) = arguments.get("approved").and_then(|v| v.as_bool()) {
        return if approved {
            "approved".into()
        } else {
            "changes requested".into()
        };
    }
    if let Some(tasks) = arguments.get("tasks").and_then(|v| v.as_array()) {
        return format!("submitted a blueprint of {} tasks", tasks.len());
    }
    "submitted".into()
}
