//! `write_file`: create or overwrite a file of the worktree.

use crate::domain::tool_names;
use std::path::Path;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::toolbox::refusal;
use super::worktree_tool::{WorktreeTool, spec};
use super::{ToolBox, ToolOutcome, fail, ok};
use crate::effects::file_fence::Access;
use crate::llm::ToolSpec;

pub struct WriteFile;

#[derive(Deserialize)]
pub struct WriteArgs {
    path: String,
    content: String,
}

impl WorktreeTool for WriteFile {
    const NAME: &'static str = tool_names::WRITE_FILE;
    type Args = WriteArgs;

    fn spec() -> ToolSpec {
        spec(
            Self::NAME,
            "Create or overwrite a file with the given content.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"}, "content": {"type": "string"}
            }, "required": ["path", "content"]}),
        )
    }

    fn run(toolbox: ToolBox, args: WriteArgs) -> BoxFuture<'static, ToolOutcome> {
        Box::pin(async move { toolbox.blocking(move |tb| write_file(tb, args)).await })
    }
}

fn write_file(toolbox: &ToolBox, args: WriteArgs) -> ToolOutcome {
    let sandbox = toolbox.sandbox();
    let path = match sandbox.resolve(&args.path, Access::Write) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    if let Err(refused) = toolbox.check_new(&path, &args.path) {
        return refused;
    }
    // Written at the path as named, beneath the worktree: a link in any
    // component (even one that stays inside) is refused, not followed.
    let written = sandbox.normalize(&args.path).map_err(|e| e.to_string());
    let written = written.and_then(|rel| {
        toolbox
            .worktree()
            .and_then(|w| w.write(Path::new(&rel), args.content.as_bytes(), None))
            .map_err(|e| refusal("write", &args.path, e))
    });
    match written {
        Ok(()) => {
            toolbox.note_write(&path);
            ok(format!(
                "wrote {} ({} bytes)",
                args.path,
                args.content.len()
            ))
        }
        Err(e) => fail(e),
    }
}
