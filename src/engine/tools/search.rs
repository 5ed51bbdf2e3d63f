//! `search`: the lines of the worktree's files holding a text or a regex.

use crate::domain::tool_names;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::worktree_tool::{WorktreeTool, spec};
use super::{ToolBox, ToolOutcome, fail, ok};
use crate::effects::beneath::Beneath;
use crate::effects::file_fence::Access;
use crate::llm::ToolSpec;

const MAX_SEARCH_HITS: usize = 200;
const MAX_SEARCH_FILE_BYTES: u64 = 2_000_000;
/// Files one search looks through at most.
const MAX_SEARCH_FILES: usize = 20_000;

pub struct Search;

#[derive(Deserialize)]
pub struct SearchArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    regex: Option<bool>,
}

impl WorktreeTool for Search {
    const NAME: &'static str = tool_names::SEARCH;
    type Args = SearchArgs;

    fn spec() -> ToolSpec {
        spec(
            Self::NAME,
            "Search file contents for a substring (or a regex with regex=true). Returns path:line: text.",
            json!({"type": "object", "properties": {
                "pattern": {"type": "string"},
                "path": {"type": "string", "description": "Directory or file to search in."},
                "regex": {"type": "boolean"}
            }, "required": ["pattern"]}),
        )
    }

    fn run(toolbox: ToolBox, args: SearchArgs) -> BoxFuture<'static, ToolOutcome> {
        Box::pin(async move { toolbox.blocking(move |tb| search(tb, args)).await })
    }
}

fn search(toolbox: &ToolBox, args: SearchArgs) -> ToolOutcome {
    if args.pattern.is_empty() {
        return fail("the search pattern is empty");
    }
    let matcher: Box<dyn Fn(&str) -> bool> = if args.regex.unwrap_or(false) {
        match regex::Regex::new(&args.pattern) {
            Ok(re) => Box::new(move |line| re.is_match(line)),
            Err(e) => return fail(format!("invalid regex: {e}")),
        }
    } else {
        let needle = args.pattern.clone();
        Box::new(move |line| line.contains(&needle))
    };
    let sandbox = toolbox.sandbox();
    let rel = args.path.unwrap_or_else(|| ".".into());
    let start = match sandbox.resolve(&rel, Access::Read) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let mut files = Vec::new();
    if start.is_file() {
        files.push(start);
    } else {
        toolbox.walk(&start, true, &mut |path, is_dir| {
            if !is_dir {
                files.push(path.to_owned());
            }
            files.len() < MAX_SEARCH_FILES
        });
    }
    let worktree = toolbox.worktree().ok();
    let mut hits = Vec::new();
    'files: for file in files {
        // Each file found passes the same checks as a named one: no
        // symlink or hard link to somewhere else.
        let shown = sandbox.relative(&file).unwrap_or_default();
        if sandbox.resolve(&shown, Access::Read).is_err() {
            continue;
        }
        // Opened beneath the worktree following no link; a FIFO is
        // skipped, not waited on.
        let Some(bytes) = worktree.as_ref().and_then(|w| searchable(w, &shown)) else {
            continue;
        };
        if bytes.contains(&0) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if matcher(line) {
                hits.push(format!("{shown}:{}: {}", n + 1, line.trim_end()));
                if hits.len() >= MAX_SEARCH_HITS {
                    hits.push(format!(
                        "[... stopped at {MAX_SEARCH_HITS} matches; narrow the search ...]"
                    ));
                    break 'files;
                }
            }
        }
    }
    if hits.is_empty() {
        ok(format!("no matches for {:?}", args.pattern))
    } else {
        ok(hits.join("\n"))
    }
}

/// The bytes of a file `search` may look in: a regular file with one name,
/// not too big, opened beneath the worktree.
fn searchable(worktree: &Beneath, rel: &str) -> Option<Vec<u8>> {
    let file = worktree.open_file(Path::new(rel)).ok()?;
    let meta = file.metadata().ok()?;
    if meta.len() > MAX_SEARCH_FILE_BYTES || meta.nlink() > 1 {
        return None;
    }
    // The size it said when opened is all that is read, should it grow.
    let mut bytes = Vec::new();
    file.take(MAX_SEARCH_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    (bytes.len() as u64 <= MAX_SEARCH_FILE_BYTES).then_some(bytes)
}
