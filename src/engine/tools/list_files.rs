//! `list_files`: a directory of the worktree, or all beneath it.

use crate::domain::tool_names;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::worktree_tool::{WorktreeTool, spec};
use super::{ToolBox, ToolOutcome, fail, ok};
use crate::effects::file_fence::Access;
use crate::llm::ToolSpec;

/// Entries one listing shows at most.
const MAX_LIST_ENTRIES: usize = 500;

pub struct ListFiles;

#[derive(Deserialize)]
pub struct ListArgs {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    recursive: Option<bool>,
}

impl WorktreeTool for ListFiles {
    const NAME: &'static str = tool_names::LIST_FILES;
    type Args = ListArgs;

    fn spec() -> ToolSpec {
        spec(
            Self::NAME,
            "List a directory (default: the repository root). Directories end with '/'.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "recursive": {"type": "boolean"}
            }}),
        )
    }

    fn run(toolbox: ToolBox, args: ListArgs) -> BoxFuture<'static, ToolOutcome> {
        Box::pin(async move { toolbox.blocking(move |tb| list_files(tb, args)).await })
    }
}

fn list_files(toolbox: &ToolBox, args: ListArgs) -> ToolOutcome {
    let sandbox = toolbox.sandbox();
    let rel = args.path.unwrap_or_else(|| ".".into());
    let dir = match sandbox.resolve(&rel, Access::Read) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    if !dir.is_dir() {
        return fail(format!("{rel} is not a directory"));
    }
    let mut entries = Vec::new();
    let truncated = toolbox.walk(
        &dir,
        args.recursive.unwrap_or(false),
        &mut |path, is_dir| {
            let mut shown = sandbox.relative(path).unwrap_or_default();
            if is_dir {
                shown.push('/');
            }
            entries.push(shown);
            entries.len() < MAX_LIST_ENTRIES
        },
    );
    entries.sort();
    let mut text = entries.join("\n");
    if truncated {
        text.push_str(&format!(
            "\n[... more than {MAX_LIST_ENTRIES} entries; list a subdirectory ...]"
        ));
    }
    if text.is_empty() {
        text = format!("{rel} is empty");
    }
    ok(text)
}
