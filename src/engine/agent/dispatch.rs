//! The tool calls of one conversation: the job's tools in one registry,
//! each call recorded with its result, the small profile's guards applied
//! (repeated reads, whole-file rewrites that drop lines), a final call that
//! hands memofab's own words back refused, and the call that ends the
//! conversation told apart.

use super::own_words;
use super::repeated_reads::{Repeat, RepeatedReads};
use super::whole_writes::{Guard, WholeWrites, done_note, repaired_answer};
use super::{AgentId, AgentJob, AgentOutcome, AgentRunner};
use crate::domain::event::{ToolCalled, ToolResult};
use crate::domain::{EventKind, MessageAuthor};
use crate::engine::error::EngineResult;
use crate::engine::mcp_tools::McpTools;
use crate::engine::recorder::Recorder;
use crate::engine::tools::{
    Arguments, AskHuman, BuiltinTool, Call, Finish, Registry, ToolOutcome, WorktreeTool, WriteFile,
};
use crate::llm::{ChatMessage, ToolCall};

/// What the calls of one conversation share.
pub(super) struct Dispatch<'a> {
    /// The tools offered, in the order the model is sent them.
    pub registry: Registry<'a>,
    /// Tools not offered on the next turn (see [`RepeatedReads`]).
    pub withheld: Vec<String>,
    /// The call that ends the conversation, as the model is told it.
    pub finish_hint: String,
    reads: RepeatedReads,
    whole_writes: WholeWrites,
    small_model_guards: bool,
    job: &'a AgentJob,
}

/// One call's answer, and the arguments it was recorded with.
pub(super) struct Answered {
    pub ok: bool,
    pub text: String,
    pub arguments: serde_json::Value,
}

impl<'a> Dispatch<'a> {
    /// The job's tools: its worktree's (and `ask_human`), then the MCP
    /// servers', then its submit tool.
    pub fn new(
        recorder: &Recorder,
        agent: &AgentId,
        job: &'a AgentJob,
        mcp: &'a McpTools,
        small_model_guards: bool,
    ) -> Self {
        let mut registry = Registry::new();
        if let Some((toolbox, specs)) = &job.toolbox {
            for spec in specs {
                if let Some(tool) = BuiltinTool::named(&spec.name) {
                    registry.add(tool.on(toolbox));
                } else if spec.name == AskHuman::NAME {
                    let ask = AskHuman::new(recorder, agent, job.task.as_ref());
                    registry.add(Box::new(ask));
                } else {
                    tracing::warn!("{agent}: no tool is named {}; it is not offered", spec.name);
                }
            }
        }
        for tool in mcp.tools() {
            registry.add(Box::new(tool));
        }
        if let Some(submit) = &job.submit {
            registry.add(Box::new(submit));
        }
        let finish_hint = match &job.submit {
            Some(s) => format!("`{}`", s.spec.name),
            None => format!("`{}`", Finish::NAME),
        };
        Self {
            registry,
            withheld: Vec::new(),
            finish_hint,
            reads: RepeatedReads::default(),
            whole_writes: WholeWrites::default(),
            small_model_guards,
            job,
        }
    }
}

impl AgentRunner {
    /// Runs one call, recorded with its result: the answer for the model,
    /// and the outcome when the call ends the conversation.
    pub(super) async fn run_call(
        &self,
        agent: &AgentId,
        dispatch: &mut Dispatch<'_>,
        call: &ToolCall,
        messages: &[ChatMessage],
    ) -> EngineResult<(Answered, Option<AgentOutcome>)> {
        let given = Arguments::parse(&call.arguments);
        let arguments = given.recorded();
        self.recorder
            .record(EventKind::ToolCalled(ToolCalled {
                agent: agent.clone(),
                call_id: call.id.clone(),
                tool: call.name.clone(),
                arguments: arguments.clone(),
            }))
            .await?;
        let repeated = dispatch
            .small_model_guards
            .then(|| dispatch.reads.repeated(&call.name, &arguments))
            .flatten();
        let guarded = match dispatch.small_model_guards && repeated.is_none() {
            true => {
                let job = dispatch.job;
                dispatch
                    .whole_writes
                    .guard(job, &call.name, &arguments)
                    .await
            }
            false => None,
        };
        let (lost_lines, not_needed, repaired) = match guarded {
            Some(Guard::Refused(why)) => (Some(why), None, None),
            Some(Guard::AlreadyThere(answer)) => (None, Some(answer), None),
            Some(Guard::Repaired { path, content }) => (None, None, Some((path, content))),
            None => (None, None, None),
        };
        let echoed =
            own_words::refusal(dispatch.job, &call.name, &arguments, messages).or_else(|| {
                dispatch
                    .small_model_guards
                    .then(|| own_words::in_write(&call.name, &arguments, messages))
                    .flatten()
            });
        let (ok, text, done) = match (repeated, echoed.or(lost_lines), not_needed) {
            (Some(Repeat::Read { times, last }), _, _) => {
                dispatch.withheld = RepeatedReads::withheld_after(&call.name);
                let note = RepeatedReads::note(&call.name, times);
                self.say(agent, MessageAuthor::System, &note).await?;
                (true, last, None)
            }
            (Some(Repeat::Refused { times }), _, _) => {
                dispatch.withheld = RepeatedReads::withheld_after(&call.name);
                let answer = RepeatedReads::refusal(&call.name, times, &dispatch.finish_hint);
                (false, answer, None)
            }
            (None, Some(mut refused), _) => {
                if dispatch.small_model_guards
                    && let Some(note) = done_note(dispatch.job, &call.name, &arguments).await
                {
                    refused.push_str(&note);
                }
                dispatch.reads.answered(false, &refused);
                (false, refused, None)
            }
            (None, None, Some(text)) => {
                dispatch.reads.answered(true, &text);
                (true, text, None)
            }
            (None, None, None) if let Some((path, content)) = repaired => {
                self.say(
                    agent,
                    MessageAuthor::System,
                    &repair_note(&call.name, &path),
                )
                .await?;
                let write = serde_json::json!({ "path": path, "content": content }).to_string();
                let given = Arguments::parse(&write);
                let made = Call {
                    id: &call.id,
                    arguments: &given,
                };
                let outcome = dispatch
                    .registry
                    .call(WriteFile::NAME, made)
                    .await
                    .transpose()?;
                let (ok, wrote, done) = answer(WriteFile::NAME, outcome);
                let text = match ok {
                    true => repaired_answer(&path),
                    false => wrote,
                };
                dispatch.reads.not_as_sent();
                (ok, text, done)
            }
            (None, None, None) => {
                let made = Call {
                    id: &call.id,
                    arguments: &given,
                };
                let outcome = dispatch.registry.call(&call.name, made).await.transpose()?;
                let mut answered = answer(&call.name, outcome);
                if dispatch.small_model_guards
                    && answered.0
                    && let Some(note) = done_note(dispatch.job, &call.name, &arguments).await
                {
                    answered.1.push_str(&note);
                }
                dispatch.reads.answered(answered.0, &answered.1);
                answered
            }
        };
        self.recorder
            .record(EventKind::ToolResult(ToolResult {
                agent: agent.clone(),
                call_id: call.id.clone(),
                ok,
                output: text.clone(),
            }))
            .await?;
        Ok((
            Answered {
                ok,
                text,
                arguments,
            },
            done,
        ))
    }
}

/// What the transcript says of a refused call run, sent again, as the
/// write its refusal suggested.
fn repair_note(tool: &str, path: &str) -> String {
    format!(
        "{tool} sent again as it was refused: run as the write_file of {path} its refusal \
         suggested (the file's lines kept, the new lines where the task says)."
    )
}

/// `(ok, output for the model, final outcome)` of a call's outcome; `None`
/// is a tool the role is not offered.
fn answer(name: &str, outcome: Option<ToolOutcome>) -> (bool, String, Option<AgentOutcome>) {
    match outcome {
        Some(ToolOutcome::Output { ok, text }) => (ok, text, None),
        Some(ToolOutcome::Finish { summary }) => (
            true,
            "Finished.".to_owned(),
            Some(AgentOutcome::Finished { summary }),
        ),
        Some(ToolOutcome::Submitted { arguments }) => (
            true,
            "Accepted.".to_owned(),
            Some(AgentOutcome::Submitted { arguments }),
        ),
        None => (
            false,
            format!("There is no tool named {name:?} for this role. Use one of the tools offered."),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::domain::event::RunStarted;
    use crate::domain::policy::Policy;
    use crate::domain::{AgentRole, RunId, RunSettings};
    use crate::effects::file_fence::Sandbox;
    use crate::effects::process::Isolation;
    use crate::effects::store::Store;
    use crate::engine::agent::review_tool;
    use crate::engine::prompts::Prompt;
    use crate::engine::tools::{ToolBox, ToolLimits, ToolSet};

    fn recorder() -> Recorder {
        let (updates, _) = tokio::sync::mpsc::unbounded_channel();
        Recorder::start(
            Store::open_in_memory().unwrap(),
            RunId::from("r"),
            EventKind::RunStarted(RunStarted {
                requirement: String::new(),
                repo: String::new(),
                mainline: "main".into(),
                base_commit: String::new(),
                settings: RunSettings::default(),
            }),
            updates,
        )
        .unwrap()
    }

    fn job(dir: &std::path::Path, specs: Vec<crate::llm::ToolSpec>, review: bool) -> AgentJob {
        let limits = ToolLimits {
            command_timeout: Duration::from_secs(5),
            output_cap: 4096,
            deny_commands: Vec::new(),
            isolation: Isolation::none(),
            max_file_bytes: crate::effects::git::DEFAULT_MAX_FILE_BYTES,
        };
        let sandbox = Sandbox::new(dir, Policy::protected_only()).unwrap();
        AgentJob {
            role: AgentRole::Coder,
            task: None,
            attempt: 1,
            prompt: Prompt {
                text: String::new(),
                source: String::new(),
            },
            first_message: String::new(),
            toolbox: Some((Arc::new(ToolBox::new(sandbox, limits)), specs)),
            submit: review.then(review_tool),
        }
    }

    /// The list a model is sent is the job's worktree tools as the role
    /// names them, then the MCP tools, then the submit tool: in the order,
    /// and with the specs, the roles built before the registry.
    #[test]
    fn the_tools_offered_are_the_jobs_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = recorder();
        let agent = AgentId::for_run(AgentRole::Coder, 1);
        let mcp = McpTools::none();
        let mut coder_specs = ToolBox::specs(ToolSet::Coder);
        coder_specs.push(AskHuman::spec());
        let coder = job(dir.path(), coder_specs.clone(), false);
        let offered = Dispatch::new(&recorder, &agent, &coder, &mcp, false);
        assert_eq!(offered.registry.specs(), coder_specs);
        assert_eq!(offered.finish_hint, "`finish`");

        let reviewer = job(dir.path(), ToolBox::specs(ToolSet::ReadOnly), true);
        let offered = Dispatch::new(&recorder, &agent, &reviewer, &mcp, false);
        let mut expected = ToolBox::specs(ToolSet::ReadOnly);
        expected.push(review_tool().spec);
        assert_eq!(offered.registry.specs(), expected);
        assert_eq!(offered.finish_hint, "`submit_review`");
    }
}
