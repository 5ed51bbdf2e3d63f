//! The git layer, on libgit2 (git2). Every function opens the repository
//! afresh, so `GitRepo` is a cheap, `Send + Sync` handle that the engine can
//! use from `spawn_blocking`. Merges onto mainline are computed in memory: a
//! conflict never touches mainline or any work tree.

use std::path::{Path, PathBuf};

use git2::{
    BranchType, DiffFormat, ErrorCode, IndexAddOption, Oid, Repository, RepositoryInitOptions,
    Signature, Status, StatusOptions, Tree, TreeWalkMode, TreeWalkResult,
};

use crate::effects::beneath::{Beneath, BeneathError};

mod checkout;
mod commits;
mod landing;
mod merge_queue;
mod named_files;
mod planted_links;
mod remote;
mod remote_cli;
mod stats;
mod switch;
mod takeover;
mod tree_merge;
mod trusted;
mod unstageable;
mod worktrees;

pub use checkout::{Advance, DirtyCheckout};
pub use merge_queue::{MergeCandidate, Revert};
pub use remote::{Push, Remote, Unreachable};
pub use takeover::Adopted;
pub use trusted::restore_worktree_link;
pub use unstageable::{DEFAULT_MAX_FILE_BYTES, LargeFile, Unstageable, unstageable_in};
use worktrees::worktree_turn;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{path} is not inside a git repository")]
    NotARepository { path: PathBuf },
    #[error("the repository is bare; memofab needs a work tree")]
    Bare,
    #[error("the repository has no commits yet")]
    NoCommits,
    #[error("HEAD is detached; check out a branch")]
    DetachedHead,
    #[error("no branch or commit named {0:?}")]
    RevisionNotFound(String),
    #[error("{context}: {source}")]
    Git {
        context: String,
        source: git2::Error,
    },
    /// Something in a worktree a commit must not stage; nothing was staged.
    #[error("{0}")]
    Unstageable(Unstageable),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A file of a worktree that could not be reached beneath it.
    #[error(transparent)]
    Beneath(#[from] BeneathError),
}

type Result<T> = std::result::Result<T, GitError>;

/// Adds context to git2 errors.
trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, git2::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| GitError::Git {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| GitError::Io {
            context: context(),
            source,
        })
    }
}

/// A commit the factory made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub commit: String,
    pub files: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct GitRepo {
    root: PathBuf,
    /// Largest file `commit_all` stages; larger ones are refused unread.
    max_file_bytes: u64,
}

/// The most of a diff's text `diff` returns; the rest is counted, not kept.
const MAX_DIFF_TEXT: usize = 2 * 1024 * 1024;

fn signature() -> Result<Signature<'static>> {
    Signature::now("memofab", "memofab@localhost").ctx(|| "making a commit signature".into())
}

impl GitRepo {
    /// Opens the repository containing `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let repo = Repository::discover(path).map_err(|_| GitError::NotARepository {
            path: path.to_owned(),
        })?;
        let root = repo.workdir().ok_or(GitError::Bare)?.to_owned();
        let root = root.canonicalize().unwrap_or(root);
        Ok(Self {
            root,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        })
    }

    /// The same repository, committing no file larger than `bytes`.
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// Creates a repository in `dir` on branch `main` with `files` committed.
    pub fn init_with_files(dir: &Path, files: &[(String, Vec<u8>)], message: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        let mut opts = RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo =
            Repository::init_opts(dir, &opts).ctx(|| format!("git init in {}", dir.display()))?;
        for (rel, content) in files {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, content).ctx(|| format!("writing {}", path.display()))?;
            #[cfg(unix)]
            if rel.ends_with(".sh") || rel.starts_with("bin/") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .ctx(|| format!("making {} executable", path.display()))?;
            }
        }
        let mut index = repo.index().ctx(|| "reading the index".into())?;
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .ctx(|| "staging the seed files".into())?;
        index.write().ctx(|| "writing the index".into())?;
        let tree_id = index.write_tree().ctx(|| "writing the tree".into())?;
        let tree = repo.find_tree(tree_id).ctx(|| "reading the tree".into())?;
        let sig = signature()?;
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[])
            .ctx(|| "making the first commit".into())?;
        Self::open(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The worktree (or scratch checkout) at `dir`, for reading and writing
    /// its files without following links, reached from the repository's
    /// root when it is inside it.
    fn beneath(&self, dir: &Path) -> Result<Beneath> {
        Ok(Beneath::open_under(&self.root, dir)?)
    }

    fn repo(&self) -> Result<Repository> {
        Repository::open(&self.root).ctx(|| format!("opening {}", self.root.display()))
    }

    fn resolve(repo: &Repository, rev: &str) -> Result<Oid> {
        let object = repo
            .revparse_single(rev)
            .map_err(|_| GitError::RevisionNotFound(rev.to_owned()))?;
        let commit = object
            .peel_to_commit()
            .map_err(|_| GitError::RevisionNotFound(rev.to_owned()))?;
        Ok(commit.id())
    }

    fn commit_at<'r>(repo: &'r Repository, rev: &str) -> Result<git2::Commit<'r>> {
        repo.find_commit(Self::resolve(repo, rev)?)
            .ctx(|| format!("reading {rev}"))
    }

    fn tree_of<'r>(repo: &'r Repository, rev: &str) -> Result<Tree<'r>> {
        let oid = Self::resolve(repo, rev)?;
        repo.find_commit(oid)
            .and_then(|c| c.tree())
            .ctx(|| format!("reading the tree of {rev}"))
    }

    /// The branch checked out in the main work tree.
    pub fn current_branch(&self) -> Result<String> {
        let repo = self.repo()?;
        let head = match repo.head() {
            Ok(head) => head,
            Err(e) if e.code() == ErrorCode::UnbornBranch || e.code() == ErrorCode::NotFound => {
                return Err(GitError::NoCommits);
            }
            Err(e) => return Err(e).ctx(|| "reading HEAD".into()),
        };
        if !head.is_branch() {
            return Err(GitError::DetachedHead);
        }
        head.shorthand()
            .map(str::to_owned)
            .ok_or_else(|| GitError::RevisionNotFound("HEAD".into()))
    }

    /// Uncommitted changes in the main work tree (ignored files excluded).
    pub fn dirty_paths(&self) -> Result<Vec<String>> {
        let repo = self.repo()?;
        dirty(&repo, true)
    }

    pub fn branch_head(&self, rev: &str) -> Result<String> {
        let repo = self.repo()?;
        Ok(Self::resolve(&repo, rev)?.to_string())
    }

    pub fn branch_exists(&self, branch: &str) -> Result<bool> {
        let repo = self.repo()?;
        Ok(repo.find_branch(branch, BranchType::Local).is_ok())
    }

    /// Adds `pattern` to `.git/info/exclude` once.
    pub fn ensure_excluded(&self, pattern: &str) -> Result<()> {
        let repo = self.repo()?;
        let info = repo.commondir().join("info");
        std::fs::create_dir_all(&info).ctx(|| format!("creating {}", info.display()))?;
        let path = info.join("exclude");
        let existing = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        };
        if existing.lines().any(|l| l.trim() == pattern) {
            return Ok(());
        }
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(pattern);
        text.push('\n');
        std::fs::write(&path, text).ctx(|| format!("writing {}", path.display()))
    }

    pub fn merge_base(&self, a: &str, b: &str) -> Result<String> {
        let repo = self.repo()?;
        let (a, b) = (Self::resolve(&repo, a)?, Self::resolve(&repo, b)?);
        repo.merge_base(a, b)
            .map(|o| o.to_string())
            .ctx(|| "finding the merge base".into())
    }

    /// The unified diff from `base` to `head`, and the paths it changes.
    pub fn diff(&self, base: &str, head: &str) -> Result<(String, Vec<String>)> {
        let repo = self.repo()?;
        let (old, new) = (Self::tree_of(&repo, base)?, Self::tree_of(&repo, head)?);
        let diff = repo
            .diff_tree_to_tree(Some(&old), Some(&new), None)
            .ctx(|| "diffing".into())?;
        let mut patch = String::new();
        let mut left_out = 0usize;
        diff.print(DiffFormat::Patch, |_, _, line| {
            let origin = matches!(line.origin(), '+' | '-' | ' ');
            let len = usize::from(origin) + line.content().len();
            if left_out > 0 || patch.len() + len > MAX_DIFF_TEXT {
                left_out += len;
                return true;
            }
            if origin {
                patch.push(line.origin());
            }
            patch.push_str(&String::from_utf8_lossy(line.content()));
            true
        })
        .ctx(|| "formatting the diff".into())?;
        if left_out > 0 {
            patch.push_str(&format!(
                "\n[diff cut at {MAX_DIFF_TEXT} bytes: {left_out} more bytes; read the files for the rest]\n"
            ));
        }
        Ok((patch, changed_paths(&repo, &old, &new)?))
    }

    /// Removes lock files a killed process left behind (ref locks, index
    /// locks of the repository and its worktrees). Only safe when no other
    /// process is working on the repository; the engine's pid file ensures it.
    pub fn clear_stale_locks(&self) -> Result<Vec<PathBuf>> {
        let repo = self.repo()?;
        let common = repo.commondir().to_owned();
        let mut removed = Vec::new();
        let mut stack = vec![common.join("refs"), common.join("worktrees")];
        let mut candidates = vec![
            common.join("index.lock"),
            common.join("HEAD.lock"),
            common.join("packed-refs.lock"),
        ];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "lock") {
                    candidates.push(path);
                }
            }
        }
        for path in candidates {
            if path.exists() {
                std::fs::remove_file(&path)
                    .ctx(|| format!("removing stale lock {}", path.display()))?;
                removed.push(path);
            }
        }
        Ok(removed)
    }

    pub fn read_file_at(&self, rev: &str, path: &str) -> Result<Option<Vec<u8>>> {
        let repo = self.repo()?;
        let tree = Self::tree_of(&repo, rev)?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(entry) => entry,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx(|| format!("looking up {path}")),
        };
        let object = entry.to_object(&repo).ctx(|| format!("reading {path}"))?;
        Ok(object.as_blob().map(|b| b.content().to_vec()))
    }

    pub fn list_files_at(&self, rev: &str) -> Result<Vec<String>> {
        let repo = self.repo()?;
        let tree = Self::tree_of(&repo, rev)?;
        let mut files = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob) {
                files.push(format!("{dir}{}", entry.name().unwrap_or("")));
            }
            TreeWalkResult::Ok
        })
        .ctx(|| "listing files".into())?;
        files.sort();
        Ok(files)
    }

    /// Summary lines of the commits reachable from `rev`, newest first.
    pub fn log_messages(&self, rev: &str, limit: usize) -> Result<Vec<String>> {
        let repo = self.repo()?;
        let mut walk = repo.revwalk().ctx(|| "walking history".into())?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
            .ctx(|| "walking history".into())?;
        walk.push(Self::resolve(&repo, rev)?)
            .ctx(|| "walking history".into())?;
        let mut out = Vec::new();
        for oid in walk.take(limit) {
            let oid = oid.ctx(|| "walking history".into())?;
            let commit = repo.find_commit(oid).ctx(|| "reading a commit".into())?;
            out.push(commit.summary().unwrap_or("").to_owned());
        }
        Ok(out)
    }
}

/// Every file of a worktree that differs from its HEAD, new ones named one
/// by one (untracked directories entered), ignored ones and submodules left
/// out: what staging everything would look at.
fn file_statuses(repo: &Repository) -> Result<git2::Statuses<'_>> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    repo.statuses(Some(&mut opts))
        .ctx(|| "reading status".into())
}

fn dirty(repo: &Repository, include_untracked: bool) -> Result<Vec<String>> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(include_untracked)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut opts))
        .ctx(|| "reading status".into())?;
    Ok(statuses
        .iter()
        .filter(|s| s.status() != Status::CURRENT && !s.status().contains(Status::IGNORED))
        .filter_map(|s| s.path().map(str::to_owned))
        .collect())
}

fn changed_paths(repo: &Repository, old: &Tree<'_>, new: &Tree<'_>) -> Result<Vec<String>> {
    let diff = repo
        .diff_tree_to_tree(Some(old), Some(new), None)
        .ctx(|| "diffing".into())?;
    let mut paths: Vec<String> = diff
        .deltas()
        .filter_map(|d| {
            d.new_file()
                .path()
                .or_else(|| d.old_file().path())
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect();
    paths.dedup();
    Ok(paths)
}

fn conflicted_paths(index: &git2::Index) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for conflict in index.conflicts().ctx(|| "reading conflicts".into())? {
        let conflict = conflict.ctx(|| "reading a conflict".into())?;
        let entry = conflict.our.or(conflict.their).or(conflict.ancestor);
        if let Some(entry) = entry {
            files.push(String::from_utf8_lossy(&entry.path).into_owned());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}
