//! The worktree an agent's tools work in: its sandbox, its limits, and what
//! was written there. The file tools' shared steps live here: reading and
//! writing beneath the worktree following no link, walking it, and the
//! answers for what was refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ToolOutcome, fail};
use crate::config::McpServerConfig;
use crate::effects::beneath::{Beneath, BeneathError};
use crate::effects::file_fence::{Access, Sandbox, SandboxError, is_protected_name};
use crate::effects::process::Isolation;

/// Entries read from one directory at most, for listing or searching.
const MAX_DIR_ENTRIES_READ: usize = 20_000;

#[derive(Debug, Clone)]
pub struct ToolLimits {
    pub command_timeout: Duration,
    pub output_cap: usize,
    pub deny_commands: Vec<String>,
    pub isolation: Isolation,
    /// `finish` is refused while a changed file is larger (`run.max_file_bytes`).
    pub max_file_bytes: u64,
}

/// One agent's worktree and the state its tools share. Cheap to clone: the
/// clones are the same toolbox, which the blocking work of a call takes.
#[derive(Clone)]
pub struct ToolBox {
    inner: Arc<Workspace>,
}

struct Workspace {
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

impl Clone for Workspace {
    fn clone(&self) -> Self {
        let written = self.written.lock().map(|w| w.clone()).unwrap_or_default();
        Self {
            sandbox: self.sandbox.clone(),
            limits: self.limits.clone(),
            written: Mutex::new(written),
            new_files_only: self.new_files_only,
            mcp_servers: self.mcp_servers.clone(),
        }
    }
}

impl ToolBox {
    pub fn new(sandbox: Sandbox, limits: ToolLimits) -> Self {
        Self {
            inner: Arc::new(Workspace {
                sandbox,
                limits,
                written: Mutex::new(BTreeSet::new()),
                new_files_only: false,
                mcp_servers: BTreeMap::new(),
            }),
        }
    }

    /// The same toolbox, with the tools of these MCP servers.
    pub fn with_mcp_servers(mut self, servers: BTreeMap<String, McpServerConfig>) -> Self {
        Arc::make_mut(&mut self.inner).mcp_servers = servers;
        self
    }

    /// The same toolbox, writing only new files and `own` ones (files it
    /// wrote in an earlier round).
    pub fn new_files_only(mut self, own: &[String]) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.new_files_only = true;
        if let Ok(written) = inner.written.get_mut() {
            written.extend(own.iter().cloned());
        }
        self
    }

    pub fn mcp_servers(&self) -> &BTreeMap<String, McpServerConfig> {
        &self.inner.mcp_servers
    }

    /// The worktree the tools work in.
    pub fn root(&self) -> &Path {
        self.inner.sandbox.root()
    }

    pub fn limits(&self) -> &ToolLimits {
        &self.inner.limits
    }

    pub(super) fn sandbox(&self) -> &Sandbox {
        &self.inner.sandbox
    }

    /// Runs `work` on this toolbox on a blocking thread: file IO never
    /// holds up the async ones.
    pub(super) async fn blocking<F>(&self, work: F) -> ToolOutcome
    where
        F: FnOnce(&ToolBox) -> ToolOutcome + Send + 'static,
    {
        let toolbox = self.clone();
        tokio::task::spawn_blocking(move || work(&toolbox))
            .await
            .unwrap_or_else(|e| fail(format!("the tool stopped before it answered: {e}")))
    }

    /// Why writing `text`, read as a path in the worktree, would be refused
    /// (protected, denied by the policy, or locked), if it would: what the
    /// arguments of MCP tools are checked against.
    pub fn refused_write(&self, text: &str) -> Option<String> {
        let sandbox = self.sandbox();
        let rel = Path::new(text)
            .strip_prefix(sandbox.root())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| text.to_owned());
        match sandbox.resolve(&rel, Access::Write) {
            Err(
                e @ (SandboxError::Denied { .. }
                | SandboxError::Locked(_)
                | SandboxError::Git(_)
                | SandboxError::Factory(_)),
            ) => Some(e.to_string()),
            _ => None,
        }
    }

    /// Refuses a write to an existing file that is not the toolbox's own,
    /// when only new files may be written.
    pub(super) fn check_new(&self, path: &Path, shown: &str) -> Result<(), ToolOutcome> {
        if !self.inner.new_files_only || std::fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
        let own = self.sandbox().relative(path).is_some_and(|rel| {
            self.inner
                .written
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

    /// Repository-relative paths written so far: the observed write-set.
    pub fn written_paths(&self) -> Vec<String> {
        self.inner
            .written
            .lock()
            .map(|w| w.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn note_write(&self, path: &Path) {
        if let (Some(rel), Ok(mut written)) =
            (self.sandbox().relative(path), self.inner.written.lock())
        {
            written.insert(rel);
        }
    }

    /// The worktree, for the file tools' reads and writes: every path is
    /// opened beneath it following no link.
    pub(super) fn worktree(&self) -> Result<Beneath, BeneathError> {
        Beneath::open(self.sandbox().root())
    }

    /// The first `cap` bytes of the regular file at `rel` (link-free, as the
    /// sandbox resolved it), and whether that is all of it, read beneath the
    /// worktree: a link swapped in since the sandbox looked, a FIFO, or a
    /// file with another name is refused. Reads `cap + 1` bytes at most,
    /// however large the file says it is.
    pub(super) fn read_beneath(
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

    /// Walks `dir` (skipping `.git`), calling `visit` until it returns false.
    /// Returns whether the walk was cut short.
    pub(super) fn walk(
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
}

/// What the agent is told when `path` could not be read or written beneath
/// its worktree.
pub(super) fn refusal(doing: &str, path: &str, error: BeneathError) -> String {
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
