//! `finish`: the coder's and tester's end of the conversation.

use crate::domain::tool_names;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::worktree_tool::{WorktreeTool, spec};
use super::{ToolBox, ToolOutcome, fail};
use crate::effects::git::unstageable_in;
use crate::llm::ToolSpec;

pub struct Finish;

#[derive(Deserialize)]
pub struct FinishArgs {
    #[serde(default)]
    summary: String,
}

impl WorktreeTool for Finish {
    const NAME: &'static str = tool_names::FINISH;
    type Args = FinishArgs;

    fn spec() -> ToolSpec {
        spec(
            Self::NAME,
            "Finish the task. Summarise what you changed and how you checked it.",
            json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}),
        )
    }

    fn run(toolbox: ToolBox, args: FinishArgs) -> BoxFuture<'static, ToolOutcome> {
        Box::pin(async move { toolbox.blocking(move |tb| finish(tb, args)).await })
    }
}

/// Finishes, unless the worktree holds what a commit would refuse (a file
/// over the size limit, a repository inside): the agent is told now, while
/// it can remove it.
fn finish(toolbox: &ToolBox, args: FinishArgs) -> ToolOutcome {
    let limits = toolbox.limits();
    let limit = limits.max_file_bytes;
    // Through the registration the fence's records name, never the
    // worktree's own `.git`; without them (no repository) the commit
    // still measures and refuses.
    let Some(common) = limits.isolation.git_data.as_deref() else {
        return ToolOutcome::Finish {
            summary: args.summary,
        };
    };
    match unstageable_in(common, toolbox.root(), limit) {
        Ok(found) if found.is_empty() => ToolOutcome::Finish {
            summary: args.summary,
        },
        Ok(found) => fail(format!(
            "Not finished: {found}. Nothing is committed while that is so: fix it, then \
             call finish again."
        )),
        // The commit measures again and refuses; nothing is lost by
        // letting a check that could not run pass here.
        Err(e) => {
            tracing::warn!("measuring changed files at finish: {e}");
            ToolOutcome::Finish {
                summary: args.summary,
            }
        }
    }
}
