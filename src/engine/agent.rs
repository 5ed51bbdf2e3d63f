//! One agent conversation: ask the model, run the tools it calls, feed the
//! results back, until it finishes or submits its result. Every message, tool
//! call, result and token count is recorded as an event; streaming text goes
//! to the front end only.

mod context_window;
mod own_words;
mod repeated_reads;
mod whole_writes;

pub(crate) use context_window::FALLBACK_CONTEXT_TOKENS;
use repeated_reads::RepeatedReads;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;

use super::error::EngineResult;
use super::mcp_tools::McpTools;
use super::prompts::Prompt;
use super::questions;
use super::recorder::Recorder;
use super::tools::{ToolBox, ToolOutcome};
use crate::domain::{AgentId, AgentRole, EventKind, MessageAuthor, TaskId};
use crate::llm::governor::{Admission, Governor, Limit, LimitKind, Park};
use crate::llm::text_calls::{TextReading, read_text_call};
use crate::llm::{
    ChatMessage, Completion, CompletionRequest, Delta, FinishReason, Interrupted, LlmError,
    LlmProvider, ReplyLimits, ScriptKey, ToolCall, ToolSpec, assemble,
};
use crate::protocol::EngineUpdate;

/// Garbled replies (cut streams, broken SSE) re-asked before giving up.
const MAX_GARBLED_RETRIES: u32 = 2;
/// Server errors inside a reply's stream sat out in a row before giving up
/// on a request (with the governor's growing back-off, about half a minute).
const MAX_SERVER_ERRORS: u32 = 5;
/// What a call past the reply's limit is answered.
pub const IGNORED_CALL: &str = "ignored: too many calls in one reply";

/// A tool that ends the conversation with a structured result, such as
/// `submit_blueprint`. `check` returns the problems to send back, if any.
pub struct SubmitTool {
    pub spec: ToolSpec,
    #[allow(clippy::type_complexity)]
    pub check: Box<dyn Fn(&serde_json::Value) -> Result<(), String> + Send + Sync>,
}

pub struct AgentJob {
    pub role: AgentRole,
    pub task: Option<TaskId>,
    /// Plan round or coding attempt.
    pub attempt: u32,
    pub prompt: Prompt,
    pub first_message: String,
    /// Workspace tools (read, write, run, ...), if the role has any.
    pub toolbox: Option<(Arc<ToolBox>, Vec<ToolSpec>)>,
    pub submit: Option<SubmitTool>,
}

/// How the model can call it a day.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentOutcome {
    /// `finish` was called.
    Finished { summary: String },
    /// The submit tool was called with arguments that passed its check.
    Submitted { arguments: serde_json::Value },
}

/// The agent stopped without a result. Recorded, and handled by the caller
/// like a rejected attempt; distinct from an engine failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct AgentFailed(pub String);

pub struct AgentRunner {
    pub recorder: Recorder,
    pub provider: Arc<dyn LlmProvider>,
    pub model: String,
    pub max_turns: u32,
    /// Model prices, to record what each reply cost.
    pub prices: Arc<std::collections::BTreeMap<String, crate::config::Price>>,
    /// The provider's quota governor, shared with every agent on it.
    pub governor: Arc<Governor>,
    /// The role's reply cap and how many tool calls one reply may run.
    pub reply: ReplyLimits,
    /// The run's shepherd, watching for stuck work.
    pub shepherd: Arc<super::shepherd::Desk>,
    /// Refuse a read repeated with nothing changed in between (the small
    /// profile: small models loop on one read). Off otherwise: after a
    /// compaction the earlier answer may no longer be in the conversation.
    pub cap_identical_reads: bool,
}

/// Why a model request gave no reply.
enum Unanswered {
    Llm(LlmError),
    /// Parked longer in total than the provider's `max_parked_secs`.
    GaveUp(AgentFailed),
}

impl AgentJob {
    /// Whether the job's tool list names `tool`.
    fn offers(&self, tool: &str) -> bool {
        self.toolbox
            .as_ref()
            .is_some_and(|(_, specs)| specs.iter().any(|s| s.name == tool))
    }

    pub fn id(&self) -> AgentId {
        match &self.task {
            Some(task) => AgentId::for_task(self.role, task, self.attempt),
            None => AgentId::for_run(self.role, self.attempt),
        }
    }
}

impl AgentRunner {
    /// Runs the conversation. `Ok(Err(_))` is an agent that gave no result;
    /// `Err(_)` is the engine failing (the store, say).
    /// A conversation the shepherd stops as stuck is carried on by a fresh
    /// agent, told what failed, as a new attempt of the task.
    pub async fn run(&self, mut job: AgentJob) -> EngineResult<Result<AgentOutcome, AgentFailed>> {
        let first_message = job.first_message.clone();
        if let Some(note) = super::shepherd::note_for(&self.recorder, &job) {
            job.first_message = format!("{first_message}\n{note}\n");
        }
        loop {
            let agent = job.id();
            self.recorder
                .record(EventKind::AgentStarted {
                    agent: agent.clone(),
                    role: job.role,
                    task: job.task.clone(),
                    model: self.model.clone(),
                })
                .await?;
            let toolbox = job.toolbox.as_ref().map(|(toolbox, _)| toolbox);
            let mcp = McpTools::start(&self.recorder, &agent, toolbox).await?;
            self.say(&agent, MessageAuthor::User, &job.first_message)
                .await?;

            let mut shepherd = super::shepherd::Shepherd::new(self.shepherd.clone(), &job);
            let result = self.converse(&agent, &job, &mcp, &mut shepherd).await;
            // The servers stop with the agent, before its work is committed.
            mcp.shutdown().await;
            let result = result?;
            let (ok, summary) = match &result {
                Ok(AgentOutcome::Finished { summary }) => (true, summary.clone()),
                Ok(AgentOutcome::Submitted { arguments }) => (true, submitted_summary(arguments)),
                Err(failed) => (false, failed.0.clone()),
            };
            self.recorder
                .record(EventKind::AgentFinished { agent, ok, summary })
                .await?;
            let next_attempt = job
                .task
                .as_ref()
                .and_then(|t| super::shepherd::attempt_of(&self.recorder, t));
            match (shepherd.restart.take(), next_attempt) {
                (Some(summary), Some(attempt)) => {
                    job.attempt = attempt;
                    job.first_message = format!("{first_message}\n{summary}");
                }
                _ => return Ok(result),
            }
        }
    }

    /// The shepherd's hook after each turn: a nudge joins the conversation;
    /// `Some` ends it.
    async fn shepherd_turn(
        &self,
        agent: &AgentId,
        shepherd: &mut super::shepherd::Shepherd,
        messages: &mut Vec<ChatMessage>,
    ) -> EngineResult<Option<AgentFailed>> {
        use super::shepherd::Verdict;
        match shepherd.turn_over(&self.recorder, agent).await? {
            Verdict::Continue => Ok(None),
            Verdict::Nudge(text) => {
                self.say(agent, MessageAuthor::User, &text).await?;
                messages.push(ChatMessage::User { content: text });
                Ok(None)
            }
            Verdict::Stop(failed) => Ok(Some(failed)),
        }
    }

    async fn converse(
        &self,
        agent: &AgentId,
        job: &AgentJob,
        mcp: &McpTools,
        shepherd: &mut super::shepherd::Shepherd,
    ) -> EngineResult<Result<AgentOutcome, AgentFailed>> {
        let mut tools: Vec<ToolSpec> = job
            .toolbox
            .as_ref()
            .map(|(_, specs)| specs.clone())
            .unwrap_or_default();
        tools.extend(mcp.specs().iter().cloned());
        if let Some(submit) = &job.submit {
            tools.push(submit.spec.clone());
        }
        let finish_hint = match &job.submit {
            Some(s) => format!("`{}`", s.spec.name),
            None => "`finish`".to_owned(),
        };
        let mut messages = vec![ChatMessage::User {
            content: job.first_message.clone(),
        }];
        let mut garbled = 0;
        let mut reads = RepeatedReads::default();
        let mut whole_writes = whole_writes::WholeWrites::default();
        let mut withheld: Vec<String> = Vec::new();
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
                    .filter(|t| !withheld.contains(&t.name))
                    .cloned()
                    .collect(),
                max_tokens: self.reply.max_tokens,
                temperature: None,
                reasoning_effort: self.reply.reasoning_effort,
                script: ScriptKey {
                    role: job.role,
                    task: job.task.clone(),
                    attempt: job.attempt,
                },
            };
            withheld.clear();
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
                && !super::budget_pause::wait_for_budget(&self.recorder, task).await?
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
                    &finish_hint,
                );
                self.say(agent, MessageAuthor::User, &nudge).await?;
                messages.push(ChatMessage::User { content: nudge });
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
                let parsed: Result<serde_json::Value, _> = serde_json::from_str(&call.arguments);
                let arguments = parsed
                    .as_ref()
                    .cloned()
                    .unwrap_or_else(|_| json!(call.arguments));
                self.recorder
                    .record(EventKind::ToolCalled {
                        agent: agent.clone(),
                        call_id: call.id.clone(),
                        tool: call.name.clone(),
                        arguments: arguments.clone(),
                    })
                    .await?;
                let repeated = self
                    .cap_identical_reads
                    .then(|| reads.repeated(&call.name, &arguments))
                    .flatten();
                if repeated.is_some() {
                    withheld = RepeatedReads::withheld_after(&call.name);
                }
                // The small profile's guard on whole-file rewrites.
                let lost_lines = match self.cap_identical_reads && repeated.is_none() {
                    true => whole_writes.refusal(job, &call.name, &arguments).await,
                    false => None,
                };
                let (ok, output, done) = if let Some(times) = repeated {
                    (
                        false,
                        RepeatedReads::answer(&call.name, times, &finish_hint),
                        None,
                    )
                } else if let Some(refused) =
                    own_words::refusal(job, &call.name, &arguments, &messages)
                {
                    (false, refused, None)
                } else if let Some(refused) = lost_lines {
                    (false, refused, None)
                } else if call.name == questions::ASK_HUMAN && job.offers(questions::ASK_HUMAN) {
                    let (ok, output) = questions::ask(
                        &self.recorder,
                        agent,
                        &call.id,
                        job.task.as_ref(),
                        parsed.as_ref().ok(),
                    )
                    .await?;
                    (ok, output, None)
                } else {
                    self.execute(job, mcp, &call.name, &call.arguments, parsed)
                        .await
                };
                if !ok && repeated.is_none() {
                    reads.failed();
                }
                self.recorder
                    .record(EventKind::ToolResult {
                        agent: agent.clone(),
                        call_id: call.id.clone(),
                        ok,
                        output: output.clone(),
                    })
                    .await?;
                if let Some(outcome) = done {
                    return Ok(Ok(outcome));
                }
                shepherd.tool_result(&call.name, &arguments, ok, &output);
                messages.push(ChatMessage::ToolResult {
                    call_id: call.id.clone(),
                    content: output,
                    is_error: !ok,
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

    /// Sends one request under the provider's governor. A rate or usage
    /// limit parks the agent until it passes and the same request is sent
    /// again: limits never fail an agent, unless it has been parked for
    /// longer in total than the provider allows (`parked` adds up).
    async fn ask(
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
                    .record(EventKind::ReplyBrokenOff {
                        agent: agent.clone(),
                        task: job.task.clone(),
                        attempt: server_errors,
                        reason: limit.message.clone(),
                    })
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
                .record(EventKind::AgentParked {
                    agent: agent.clone(),
                    task: job.task.clone(),
                    provider: provider.clone(),
                    until_ms: park.until_ms,
                    reason: park.reason.clone(),
                })
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
            .record(EventKind::AgentUnparked {
                agent: agent.clone(),
            })
            .await?;
        Ok(None)
    }

    async fn record_usage(
        &self,
        agent: &AgentId,
        job: &AgentJob,
        usage: crate::domain::TokenUsage,
    ) -> EngineResult<()> {
        self.recorder
            .record(EventKind::TokensUsed {
                agent: agent.clone(),
                task: job.task.clone(),
                model: self.model.clone(),
                usage,
                cost_usd: crate::llm::pricing::cost_usd(&self.prices, &self.model, &usage),
            })
            .await?;
        Ok(())
    }

    async fn limit_changed(&self, limit: u32) -> EngineResult<()> {
        self.recorder
            .record(EventKind::ProviderLimitChanged {
                provider: self.governor.name().to_owned(),
                limit,
                ceiling: self.governor.ceiling(),
            })
            .await?;
        Ok(())
    }

    /// Runs one tool call: `(ok, output for the model, final outcome)`.
    async fn execute(
        &self,
        job: &AgentJob,
        mcp: &McpTools,
        name: &str,
        raw: &str,
        parsed: Result<serde_json::Value, serde_json::Error>,
    ) -> (bool, String, Option<AgentOutcome>) {
        if let Some(submit) = job.submit.as_ref().filter(|s| s.spec.name == name) {
            let arguments = match parsed {
                Ok(v) => v,
                Err(e) => {
                    return (
                        false,
                        format!(
                            "The arguments of {name} are not valid JSON ({e}). Send them again as one JSON object."
                        ),
                        None,
                    );
                }
            };
            return match (submit.check)(&arguments) {
                Ok(()) => (
                    true,
                    "Accepted.".to_owned(),
                    Some(AgentOutcome::Submitted { arguments }),
                ),
                Err(problems) => (
                    false,
                    format!(
                        "{name} was not accepted. Fix these problems and call {name} again:\n{problems}"
                    ),
                    None,
                ),
            };
        }
        match &job.toolbox {
            Some((toolbox, specs)) if specs.iter().any(|s| s.name == name) => {
                match toolbox.call(name, raw).await {
                    ToolOutcome::Output { ok, text } => (ok, text, None),
                    ToolOutcome::Finish { summary } => (
                        true,
                        "Finished.".to_owned(),
                        Some(AgentOutcome::Finished { summary }),
                    ),
                }
            }
            _ if mcp.offers(name) => {
                let (ok, output) = mcp.call(name, raw).await;
                (ok, output, None)
            }
            _ => (
                false,
                format!(
                    "There is no tool named {name:?} for this role. Use one of the tools offered."
                ),
                None,
            ),
        }
    }

    async fn say(&self, agent: &AgentId, from: MessageAuthor, text: &str) -> EngineResult<()> {
        self.recorder
            .record(EventKind::AgentMessage {
                agent: agent.clone(),
                from,
                text: text.to_owned(),
            })
            .await?;
        Ok(())
    }

    async fn warn(&self, job: &AgentJob, message: String) -> EngineResult<()> {
        self.recorder
            .record(EventKind::Warning {
                task: job.task.clone(),
                message,
            })
            .await?;
        Ok(())
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

fn submitted_summary(arguments: &serde_json::Value) -> String {
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

/// `submit_review`: the verdict of the plan reviewer and the code reviewer.
pub fn review_tool() -> SubmitTool {
    SubmitTool {
        spec: ToolSpec {
            name: "submit_review".into(),
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
