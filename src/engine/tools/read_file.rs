//! `read_file`: a text file of the worktree, or a page of its lines.

use crate::domain::tool_names;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::toolbox::refusal;
use super::worktree_tool::{WorktreeTool, spec};
use super::{ToolBox, ToolOutcome, fail, ok};
use crate::effects::beneath::BeneathError;
use crate::effects::file_fence::Access;
use crate::llm::ToolSpec;

/// Bytes of text one read answers at most.
const MAX_READ_BYTES: usize = 100_000;
/// Bytes of a file `read_file` and `edit_file` read at most, however large
/// (or sparse) the file is: what lies beyond is never read.
pub(super) const MAX_READ_FILE_BYTES: u64 = 8 * 1024 * 1024;

pub struct ReadFile;

#[derive(Deserialize)]
pub struct ReadArgs {
    path: String,
    #[serde(default)]
    offset_line: Option<usize>,
    #[serde(default)]
    max_lines: Option<usize>,
}

impl WorktreeTool for ReadFile {
    const NAME: &'static str = tool_names::READ_FILE;
    type Args = ReadArgs;

    fn spec() -> ToolSpec {
        spec(
            Self::NAME,
            "Read a text file of the repository. Paths are relative to the repository root.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "offset_line": {"type": "integer", "description": "First line to return, from 1."},
                "max_lines": {"type": "integer", "description": "Most lines to return; 0 or absent: to the end."}
            }, "required": ["path"]}),
        )
    }

    fn run(toolbox: ToolBox, args: ReadArgs) -> BoxFuture<'static, ToolOutcome> {
        Box::pin(async move { toolbox.blocking(move |tb| read_file(tb, args)).await })
    }
}

fn read_file(toolbox: &ToolBox, args: ReadArgs) -> ToolOutcome {
    let sandbox = toolbox.sandbox();
    let path = match sandbox.resolve(&args.path, Access::Read) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let rel = sandbox.relative(&path).unwrap_or_default();
    let (bytes, whole) = match toolbox.read_beneath(&rel, &args.path, MAX_READ_FILE_BYTES) {
        Ok(read) => read,
        Err(BeneathError::NotFound { .. }) => {
            return fail(format!(
                "{} does not exist; list_files shows what does",
                args.path
            ));
        }
        Err(BeneathError::IsADirectory { .. }) => {
            return fail(format!("{} is a directory; use list_files", args.path));
        }
        Err(e) => return fail(refusal("read", &args.path, e)),
    };
    if bytes.contains(&0) {
        return fail(format!("{} is a binary file", args.path));
    }
    let text = String::from_utf8_lossy(&bytes);
    let beyond = if whole {
        ""
    } else {
        "\n[... the file is larger than the 8 MiB read_file reads; the rest cannot be read ...]"
    };
    let start = args.offset_line.unwrap_or(1).max(1) - 1;
    // Zero lines is no limit: an empty "success" reads as an empty file
    // (a reviewer once approved a file it had not seen that way).
    let take = args.max_lines.filter(|&n| n > 0).unwrap_or(usize::MAX);
    let selected: Vec<&str> = text.split_inclusive('\n').skip(start).take(take).collect();
    if selected.is_empty() {
        return if text.is_empty() {
            ok(format!("[{} is empty]", args.path))
        } else {
            fail(past_the_end(&args.path, &text, start + 1))
        };
    }
    let mut out = selected.concat();
    if out.len() > MAX_READ_BYTES {
        let mut cut = MAX_READ_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("\n[... file continues; read more with offset_line/max_lines ...]");
    } else {
        out.push_str(beyond);
    }
    ok(out)
}

/// Lines of the file shown when `offset_line` is past its end.
const SHOWN_AT_THE_END: usize = 20;

/// The answer to a read that starts past the file's end, with the file's
/// last lines: a planner wrote "README.md:10" as an acceptance criterion of
/// a 3-line file, and the 1.5B agents after it read from line 10, told only
/// that it was past the end, until they gave up without having seen the
/// file.
fn past_the_end(path: &str, text: &str, offset: usize) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let from = lines.len().saturating_sub(SHOWN_AT_THE_END);
    let mut tail = lines[from..].concat();
    if tail.chars().count() > 4_000 {
        return format!(
            "{path} has {} lines; offset_line {offset} is past its end",
            lines.len()
        );
    }
    if tail.ends_with('\n') {
        tail.pop();
    }
    format!(
        "{path} has {} lines; offset_line {offset} is past its end. Lines {} to {} of it are:\n```\n{tail}\n```",
        lines.len(),
        from + 1,
        lines.len()
    )
}
