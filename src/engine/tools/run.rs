//! `run`: a shell command in the worktree, fenced, under the deny-list.

use crate::domain::tool_names;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::worktree_tool::{WorktreeTool, spec};
use super::{ToolBox, ToolOutcome, fail};
use crate::effects::process::{CommandSpec, run_command};
use crate::llm::ToolSpec;

pub struct Run;

#[derive(Deserialize)]
pub struct RunArgs {
    command: String,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

impl WorktreeTool for Run {
    const NAME: &'static str = tool_names::RUN;
    type Args = RunArgs;

    fn spec() -> ToolSpec {
        spec(
            Self::NAME,
            "Run a shell command in the repository root, e.g. the tests. Returns exit code and output.",
            json!({"type": "object", "properties": {
                "command": {"type": "string"}, "timeout_secs": {"type": "integer"}
            }, "required": ["command"]}),
        )
    }

    fn run(toolbox: ToolBox, args: RunArgs) -> BoxFuture<'static, ToolOutcome> {
        Box::pin(async move { run(&toolbox, args).await })
    }
}

async fn run(toolbox: &ToolBox, args: RunArgs) -> ToolOutcome {
    let limits = toolbox.limits();
    if let Some(denied) = crate::engine::deny_list::denied(&args.command, &limits.deny_commands) {
        return fail(format!(
            "commands containing {denied:?} are not allowed here; the factory commits and merges for you"
        ));
    }
    let timeout = args
        .timeout_secs
        .map(Duration::from_secs)
        .unwrap_or(limits.command_timeout)
        .min(limits.command_timeout);
    let spec = CommandSpec {
        command: args.command.clone(),
        cwd: toolbox.root().to_owned(),
        timeout,
        output_cap: limits.output_cap,
        extra_env: Vec::new(),
        isolation: limits.isolation.clone(),
    };
    match run_command(&spec).await {
        Ok(out) => {
            let status = match (out.timed_out, out.exit_code) {
                (true, _) => format!("timed out after {}s and was killed", timeout.as_secs()),
                (false, Some(code)) => format!("exit code {code}"),
                (false, None) => "killed by a signal".to_owned(),
            };
            let mut text = format!("$ {}\n{status}\n{}", args.command, out.output);
            if !out.success()
                && let Some(note) = limits.isolation.network_note(&out.output)
            {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(note);
            }
            ToolOutcome::Output {
                ok: out.success(),
                text,
            }
        }
        Err(e) => fail(e.to_string()),
    }
}
