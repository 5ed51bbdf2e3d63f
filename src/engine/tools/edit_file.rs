//! `edit_file`: replace one exact occurrence of a text in a file (or, when
//! there is none, the one occurrence that differs only in blank lines and
//! trailing spaces: see [`super::loose_edit`]).

use crate::domain::tool_names;
use std::path::Path;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::loose_edit::{NoLooseMatch, loose_edit};
use super::read_file::MAX_READ_FILE_BYTES;
use super::toolbox::refusal;
use super::worktree_tool::{WorktreeTool, spec};
use super::{ToolBox, ToolOutcome, fail, ok};
use crate::effects::beneath::BeneathError;
use crate::effects::file_fence::Access;
use crate::llm::ToolSpec;

pub struct EditFile;

#[derive(Deserialize)]
pub struct EditArgs {
    path: String,
    old: String,
    new: String,
}

impl WorktreeTool for EditFile {
    const NAME: &'static str = tool_names::EDIT_FILE;
    type Args = EditArgs;

    fn spec() -> ToolSpec {
        spec(
            Self::NAME,
            "Replace the exact text `old` with `new` in a file; `old` must occur exactly once.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}
            }, "required": ["path", "old", "new"]}),
        )
    }

    fn run(toolbox: ToolBox, args: EditArgs) -> BoxFuture<'static, ToolOutcome> {
        Box::pin(async move { toolbox.blocking(move |tb| edit_file(tb, args)).await })
    }
}

fn edit_file(toolbox: &ToolBox, args: EditArgs) -> ToolOutcome {
    if args.old.is_empty() {
        return fail("`old` is empty; give the exact text to replace, or use write_file");
    }
    let sandbox = toolbox.sandbox();
    let path = match sandbox.resolve(&args.path, Access::Write) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    if let Err(refused) = toolbox.check_new(&path, &args.path) {
        return refused;
    }
    // Read and written at the path as named, following no link.
    let rel = match sandbox.normalize(&args.path) {
        Ok(rel) => rel,
        Err(e) => return fail(e.to_string()),
    };
    let text = match toolbox.read_beneath(&rel, &args.path, MAX_READ_FILE_BYTES) {
        Ok((_, false)) => {
            return fail(format!(
                "{} is larger than the 8 MiB edit_file works on",
                args.path
            ));
        }
        Ok((bytes, true)) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => return fail(format!("{} is not UTF-8 text", args.path)),
        },
        Err(BeneathError::NotFound { .. }) => {
            return fail(format!(
                "{} does not exist; create it with write_file",
                args.path
            ));
        }
        Err(e) => return fail(refusal("edit", &args.path, e)),
    };
    let (updated, loosely) = match text.matches(&args.old).count() {
        1 => (text.replacen(&args.old, &args.new, 1), false),
        0 => match loose_edit(&text, &args.old, &args.new) {
            Ok(edit) => (edit.updated, true),
            Err(NoLooseMatch::Ambiguous(n)) => {
                return fail(format!(
                    "`old` does not occur in {} as written, and occurs {n} times when blank lines \
                     are not counted; include more surrounding lines so it matches exactly once",
                    args.path
                ));
            }
            Err(NoLooseMatch::Absent | NoLooseMatch::Blank) => {
                return fail(format!(
                    "`old` does not occur in {}; read the file and copy the text exactly, whitespace included",
                    args.path
                ));
            }
        },
        n => {
            return fail(format!(
                "`old` occurs {n} times in {}; include more surrounding lines so it matches exactly once",
                args.path
            ));
        }
    };
    let written = toolbox
        .worktree()
        .and_then(|w| w.write(Path::new(&rel), updated.as_bytes(), None));
    match written {
        Ok(()) => {
            toolbox.note_write(&path);
            ok(match loosely {
                false => format!("edited {}", args.path),
                true => format!(
                    "edited {} (`old` matched once when blank lines are not counted; the file's \
                     blank lines were kept)",
                    args.path
                ),
            })
        }
        Err(e) => fail(refusal("write", &args.path, e)),
    }
}
