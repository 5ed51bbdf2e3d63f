//! The tools agents work with: read, write, edit, list, search, run, finish.
//! Every path goes through the [`Sandbox`]; every failure becomes a message
//! the model can act on, never an error that stops the run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::config::McpServerConfig;
use crate::effects::beneath::{Beneath, BeneathError};
use crate::effects::file_fence::{Access, Sandbox, SandboxError, is_protected_name};
use crate::effects::git::{describe_large_files, large_changes_in};
use crate::effects::process::{CommandSpec, Isolation, run_command};
use crate::llm::ToolSpec;

const MAX_READ_BYTES: usize = 100_000;
const MAX_LIST_ENTRIES: usize = 500;
const MAX_SEARCH_HITS: usize = 200;
const MAX_SEARCH_FILE_BYTES: u64 = 2_000_000;
/// Files one search looks through at most.
const MAX_SEARCH_FILES: usize = 20_000;
/// Entries read from one directory at most, for listing or searching.
const MAX_DIR_ENTRIES_READ: usize = 20_000;
/// Bytes of a file `read_file` and `edit_file` read at most, however large
/// (or sparse) the file is: what lies beyond is never read.
const MAX_READ_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Which tools a role gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSet {
    /// Everything: reading, writing, running commands, finishing.
    Coder,
    /// Reading only: for planners and reviewers.
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    Output { ok: bool, text: String },
    Finish { summary: String },
}

#[derive(Debug, Clone)]
pub struct ToolLimits {
    pub command_timeout: Duration,
    pub output_cap: usize,
    pub deny_commands: Vec<String>,
    pub isolation: Isolation,
    /// `finish` is refused while a changed file is larger (`run.max_file_bytes`).
    pub max_file_bytes: u64,
}

pub struct ToolBox {
    sandbox: Sandbox,
    limits: ToolLimits,
    written: Mutex<BTreeSet<String>>,
    /// Writes may only create files, or change those this toolbox wrote
    /// (the tester's: it adds tests and never changes the project's files).
    new_files_only: bool,
    /// MCP servers whose tools the agent is given (`mcp_tools`), started
    /// in this toolbox's worktree and fence.
    mcp_servers: BTreeMap<String, McpServerConfig>,
}

fn fail(text: impl Into<String>) -> ToolOutcome {
    ToolOutcome::Output {
        ok: false,
        text: text.into(),
    }
}

fn ok(text: impl Into<String>) -> ToolOutcome {
    ToolOutcome::Output {
        ok: true,
        text: text.into(),
    }
}

#[derive(Deserialize)]
struct ReadArgs {
    path: String,
    #[serde(default)]
    offset_line: Option<usize>,
    #[serde(default)]
    max_lines: Option<usize>,
}

#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct EditArgs {
    path: String,
    old: String,
    new: String,
}

#[derive(Deserialize)]
struct ListArgs {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    recursive: Option<bool>,
}

#[derive(Deserialize)]
struct SearchArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    regex: Option<bool>,
}

#[derive(Deserialize)]
struct RunArgs {
    command: String,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

#[derive(Deserialize)]
struct FinishArgs {
    #[serde(default)]
    summary: String,
}

impl ToolBox {
    pub fn new(sandbox: Sandbox, limits: ToolLimits) -> Self {
        Self {
            sandbox,
            limits,
            written: Mutex::new(BTreeSet::new()),
            new_files_only: false,
            mcp_servers: BTreeMap::new(),
        }
    }

    /// The same toolbox, with the tools of these MCP servers.
    pub fn with_mcp_servers(mut self, servers: BTreeMap<String, McpServerConfig>) -> Self {
        self.mcp_servers = servers;
        self
    }

    pub fn mcp_servers(&self) -> &BTreeMap<String, McpServerConfig> {
        &self.mcp_servers
    }

    /// The worktree the tools work in.
    pub fn root(&self) -> &Path {
        self.sandbox.root()
    }

    pub fn limits(&self) -> &ToolLimits {
        &self.limits
    }

    /// Why writing `text`, read as a path in the worktree, would be refused
    /// (protected, denied by the policy, or locked), if it would: what the
    /// arguments of MCP tools are checked against.
    pub fn refused_write(&self, text: &str) -> Option<String> {
        let rel = Path::new(text)
            .strip_prefix(self.sandbox.root())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| text.to_owned());
        match self.sandbox.resolve(&rel, Access::Write) {
            Err(
                e @ (SandboxError::Denied { .. }
                | SandboxError::Locked(_)
                | SandboxError::Git(_)
                | SandboxError::Factory(_)),
            ) => Some(e.to_string()),
            _ => None,
        }
    }

    /// The same toolbox, writing only new files and `own` ones (files it
    /// wrote in an earlier round).
    pub fn new_files_only(mut self, own: &[String]) -> Self {
        self.new_files_only = true;
        if let Ok(written) = self.written.get_mut() {
            written.extend(own.iter().cloned());
        }
        self
    }

    /// Refuses a write to an existing file that is not the toolbox's own,
    /// when only new files may be written.
    fn check_new(&self, path: &Path, shown: &str) -> Result<(), ToolOutcome> {
        if !self.new_files_only || std::fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
        let own = self.sandbox.relative(path).is_some_and(|rel| {
            self.written
                .lock()
                .map(|w| w.contains(&rel))
                .unwrap_or(false)
        });
        if own {
            Ok(())
        } else {
            Err(fail(format!(
                "{shown} already exists, and you may only add new files: put your tests in a new file"
            )))
        }
    }

    pub fn specs(set: ToolSet) -> Vec<ToolSpec> {
        let spec = |name: &str, description: &str, parameters: serde_json::Value| ToolSpec {
            name: name.into(),
            description: description.into(),
            parameters,
        };
        let mut specs = vec![
            spec(
                "read_file",
                "Read a text file of the repository. Paths are relative to the repository root.",
                json!({"type": "object", "properties": {
                    "path": {"type": "string"},
                    "offset_line": {"type": "integer", "description": "First line to return, from 1."},
                    "max_lines": {"type": "integer", "description": "Most lines to return; 0 or absent: to the end."}
                }, "required": ["path"]}),
            ),
            spec(
                "list_files",
                "List a directory (default: the repository root). Directories end with '/'.",
                json!({"type": "object", "properties": {
                    "path": {"type": "string"},
                    "recursive": {"type": "boolean"}
                }}),
            ),
            spec(
                "search",
                "Search file contents for a substring (or a regex with regex=true). Returns path:line: text.",
                json!({"type": "object", "properties": {
                    "pattern": {"type": "string"},
                    "path": {"type": "string", "description": "Directory or file to search in."},
                    "regex": {"type": "boolean"}
                }, "required": ["pattern"]}),
            ),
        ];
        if set == ToolSet::Coder {
            specs.extend([
                spec(
                    "write_file",
                    "Create or overwrite a file with the given content.",
                    json!({"type": "object", "properties": {
                        "path": {"type": "string"}, "content": {"type": "string"}
                    }, "required": ["path", "content"]}),
                ),
                spec(
                    "edit_file",
                    "Replace the exact text `old` with `new` in a file; `old` must occur exactly once.",
                    json!({"type": "object", "properties": {
                        "path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}
                    }, "required": ["path", "old", "new"]}),
                ),
                spec(
                    "run",
                    "Run a shell command in the repository root, e.g. the tests. Returns exit code and output.",
                    json!({"type": "object", "properties": {
                        "command": {"type": "string"}, "timeout_secs": {"type": "integer"}
                    }, "required": ["command"]}),
                ),
                spec(
                    "finish",
                    "Finish the task. Summarise what you changed and how you checked it.",
                    json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}),
                ),
            ]);
        }
        specs
    }

    /// Repository-relative paths written so far: the observed write-set.
    pub fn written_paths(&self) -> Vec<String> {
        self.written
            .lock()
            .map(|w| w.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub async fn call(&self, name: &str, arguments: &str) -> ToolOutcome {
        let raw = if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        };
        match name {
            "read_file" => match parse::<ReadArgs>(name, raw) {
                Ok(a) => self.read_file(a),
                Err(e) => e,
            },
            "write_file" => match parse::<WriteArgs>(name, raw) {
                Ok(a) => self.write_file(a),
                Err(e) => e,
            },
            "edit_file" => match parse::<EditArgs>(name, raw) {
                Ok(a) => self.edit_file(a),
                Err(e) => e,
            },
            "list_files" => match parse::<ListArgs>(name, raw) {
                Ok(a) => self.list_files(a),
                Err(e) => e,
            },
            "search" => match parse::<SearchArgs>(name, raw) {
                Ok(a) => self.search(a),
                Err(e) => e,
            },
            "run" => match parse::<RunArgs>(name, raw) {
                Ok(a) => self.run(a).await,
                Err(e) => e,
            },
            "finish" => match parse::<FinishArgs>(name, raw) {
                Ok(a) => self.finish(a),
                Err(e) => e,
            },
            other => fail(format!(
                "There is no tool named {other:?}. Available: read_file, write_file, edit_file, list_files, search, run, finish."
            )),
        }
    }

    fn read_file(&self, args: ReadArgs) -> ToolOutcome {
        let path = match self.sandbox.resolve(&args.path, Access::Read) {
            Ok(p) => p,
            Err(e) => return fail(e.to_string()),
        };
        let rel = self.sandbox.relative(&path).unwrap_or_default();
        let (bytes, whole) = match self.read_beneath(&rel, &args.path, MAX_READ_FILE_BYTES) {
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
                fail(format!(
                    "{} has {} lines; offset_line {} is past its end",
                    args.path,
                    text.split_inclusive('\n').count(),
                    start + 1
                ))
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

    /// The worktree, for the file tools' reads and writes: every path is
    /// opened beneath it following no link.
    fn worktree(&self) -> Result<Beneath, BeneathError> {
        Beneath::open(self.sandbox.root())
    }

    /// The first `cap` bytes of the regular file at `rel` (link-free, as the
    /// sandbox resolved it), and whether that is all of it, read beneath the
    /// worktree: a link swapped in since the sandbox looked, a FIFO, or a
    /// file with another name is refused. Reads `cap + 1` bytes at most,
    /// however large the file says it is.
    fn read_beneath(
        &self,
        rel: &str,
        shown: &str,
        cap: u64,
    ) -> Result<(Vec<u8>, bool), BeneathError> {
        let file = self.worktree()?.open_file(Path::new(rel))?;
        let io = |source| BeneathError::Io {
            path: shown.to_owned(),
            source,
        };
        // Checked on what was opened: its other names may be anywhere.
        if file.metadata().map_err(io)?.nlink() > 1 {
            return Err(io(std::io::Error::other(
                SandboxError::HardLink(shown.to_owned()).to_string(),
            )));
        }
        let mut bytes = Vec::new();
        file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
        let whole = bytes.len() as u64 <= cap;
        bytes.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
        Ok((bytes, whole))
    }

    /// Finishes, unless a changed file is over the size limit: it would be
    /// refused at commit, so the agent is told now, while it can remove it.
    fn finish(&self, args: FinishArgs) -> ToolOutcome {
        let limit = self.limits.max_file_bytes;
        // Through the registration the fence's records name, never the
        // worktree's own `.git`; without them (no repository) the commit
        // still measures and refuses.
        let Some(common) = self.limits.isolation.git_data.as_deref() else {
            return ToolOutcome::Finish {
                summary: args.summary,
            };
        };
        match large_changes_in(common, self.sandbox.root(), limit) {
            Ok(large) if large.is_empty() => ToolOutcome::Finish {
                summary: args.summary,
            },
            Ok(large) => fail(format!(
                "Not finished: {}. Nothing is committed while they are there: delete them \
                 (or make them smaller, or keep them out of the repository), then call finish again.",
                describe_large_files(&large, limit)
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

    fn note_write(&self, path: &Path) {
        if let (Some(rel), Ok(mut written)) = (self.sandbox.relative(path), self.written.lock()) {
            written.insert(rel);
        }
    }

    fn write_file(&self, args: WriteArgs) -> ToolOutcome {
        let path = match self.sandbox.resolve(&args.path, Access::Write) {
            Ok(p) => p,
            Err(e) => return fail(e.to_string()),
        };
        if let Err(refused) = self.check_new(&path, &args.path) {
            return refused;
        }
        // Written at the path as named, beneath the worktree: a link in any
        // component (even one that stays inside) is refused, not followed.
        let written = self
            .sandbox
            .normalize(&args.path)
            .map_err(|e| e.to_string());
        let written = written.and_then(|rel| {
            self.worktree()
                .and_then(|w| w.write(Path::new(&rel), args.content.as_bytes(), None))
                .map_err(|e| refusal("write", &args.path, e))
        });
        match written {
            Ok(()) => {
                self.note_write(&path);
                ok(format!(
                    "wrote {} ({} bytes)",
                    args.path,
                    args.content.len()
                ))
            }
            Err(e) => fail(e),
        }
    }

    fn edit_file(&self, args: EditArgs) -> ToolOutcome {
        if args.old.is_empty() {
            return fail("`old` is empty; give the exact text to replace, or use write_file");
        }
        let path = match self.sandbox.resolve(&args.path, Access::Write) {
            Ok(p) => p,
            Err(e) => return fail(e.to_string()),
        };
        if let Err(refused) = self.check_new(&path, &args.path) {
            return refused;
        }
        // Read and written at the path as named, following no link.
        let rel = match self.sandbox.normalize(&args.path) {
            Ok(rel) => rel,
            Err(e) => return fail(e.to_string()),
        };
        let text = match self.read_beneath(&rel, &args.path, MAX_READ_FILE_BYTES) {
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
        match text.matches(&args.old).count() {
            1 => {
                let updated = text.replacen(&args.old, &args.new, 1);
                let written = self
                    .worktree()
                    .and_then(|w| w.write(Path::new(&rel), updated.as_bytes(), None));
                match written {
                    Ok(()) => {
                        self.note_write(&path);
                        ok(format!("edited {}", args.path))
                    }
                    Err(e) => fail(refusal("write", &args.path, e)),
                }
            }
            0 => fail(format!(
                "`old` does not occur in {}; read the file and copy the text exactly, whitespace included",
                args.path
            )),
            n => fail(format!(
                "`old` occurs {n} times in {}; include more surrounding lines so it matches exactly once",
                args.path
            )),
        }
    }

    fn list_files(&self, args: ListArgs) -> ToolOutcome {
        let rel = args.path.unwrap_or_else(|| ".".into());
        let dir = match self.sandbox.resolve(&rel, Access::Read) {
            Ok(p) => p,
            Err(e) => return fail(e.to_string()),
        };
        if !dir.is_dir() {
            return fail(format!("{rel} is not a directory"));
        }
        let mut entries = Vec::new();
        let truncated = self.walk(
            &dir,
            args.recursive.unwrap_or(false),
            &mut |path, is_dir| {
                let mut shown = self.sandbox.relative(path).unwrap_or_default();
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

    /// Walks `dir` (skipping `.git`), calling `visit` until it returns false.
    /// Returns whether the walk was cut short.
    fn walk(
        &self,
        dir: &Path,
        recursive: bool,
        visit: &mut dyn FnMut(&Path, bool) -> bool,
    ) -> bool {
        let mut stack = vec![dir.to_owned()];
        while let Some(current) = stack.pop() {
            let Ok(read) = std::fs::read_dir(&current) else {
                continue;
            };
            // A directory of millions of entries is read in part, not whole.
            let mut children: Vec<_> = read
                .flatten()
                .take(MAX_DIR_ENTRIES_READ)
                .map(|e| e.path())
                .collect();
            children.sort();
            for child in children {
                if child
                    .file_name()
                    .is_some_and(|n| is_protected_name(&n.to_string_lossy()))
                {
                    continue;
                }
                // Do not follow symlinks out of the worktree.
                let meta = match std::fs::symlink_metadata(&child) {
                    Ok(m) => m,
                    Err(_) => continue,
                };
                let is_dir = meta.is_dir();
                if !visit(&child, is_dir) {
                    return true;
                }
                if is_dir && recursive {
                    stack.push(child);
                }
            }
        }
        false
    }

    fn search(&self, args: SearchArgs) -> ToolOutcome {
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
        let rel = args.path.unwrap_or_else(|| ".".into());
        let start = match self.sandbox.resolve(&rel, Access::Read) {
            Ok(p) => p,
            Err(e) => return fail(e.to_string()),
        };
        let mut files = Vec::new();
        if start.is_file() {
            files.push(start);
        } else {
            self.walk(&start, true, &mut |path, is_dir| {
                if !is_dir {
                    files.push(path.to_owned());
                }
                files.len() < MAX_SEARCH_FILES
            });
        }
        let worktree = self.worktree().ok();
        let mut hits = Vec::new();
        'files: for file in files {
            // Each file found passes the same checks as a named one: no
            // symlink or hard link to somewhere else.
            let shown = self.sandbox.relative(&file).unwrap_or_default();
            if self.sandbox.resolve(&shown, Access::Read).is_err() {
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

    async fn run(&self, args: RunArgs) -> ToolOutcome {
        if let Some(denied) = super::deny_list::denied(&args.command, &self.limits.deny_commands) {
            return fail(format!(
                "commands containing {denied:?} are not allowed here; the factory commits and merges for you"
            ));
        }
        let timeout = args
            .timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(self.limits.command_timeout)
            .min(self.limits.command_timeout);
        let spec = CommandSpec {
            command: args.command.clone(),
            cwd: self.sandbox.root().to_owned(),
            timeout,
            output_cap: self.limits.output_cap,
            extra_env: Vec::new(),
            isolation: self.limits.isolation.clone(),
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
                    && let Some(note) = self.limits.isolation.network_note(&out.output)
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

/// What the agent is told when `path` could not be read or written beneath
/// its worktree.
fn refusal(doing: &str, path: &str, error: BeneathError) -> String {
    match error {
        BeneathError::Symlink { .. } => format!(
            "{path} goes through a symbolic link, which the file tools do not follow; name the file it points to instead"
        ),
        BeneathError::IsADirectory { .. } => format!("{path} is a directory"),
        BeneathError::NotADirectory { .. } => {
            format!("cannot {doing} {path}: a file stands where a directory of its path should be")
        }
        BeneathError::NotAFile { .. } => {
            format!("{path} is not a regular file (a pipe, socket or device)")
        }
        BeneathError::Io { source, .. } => format!("cannot {doing} {path}: {source}"),
        other => format!("cannot {doing} {path}: {other}"),
    }
}

fn parse<T: DeserializeOwned>(tool: &str, raw: &str) -> Result<T, ToolOutcome> {
    serde_json::from_str(raw).map_err(|e| {
        fail(format!(
            "the arguments of {tool} could not be read ({e}); send one JSON object matching the tool's schema"
        ))
    })
}

#[cfg(test)]
mod tests;
