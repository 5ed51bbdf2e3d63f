//! The git layer, on libgit2 (git2). Every function opens the repository
//! afresh, so `GitRepo` is a cheap, `Send + Sync` handle that the engine can
//! use from `spawn_blocking`. Merges onto mainline are computed in memory: a
//! conflict never touches mainline or any work tree.

use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{
    BranchType, DiffFormat, ErrorCode, IndexAddOption, Oid, Repository, RepositoryInitOptions,
    Signature, Status, StatusOptions, Tree, TreeWalkMode, TreeWalkResult, WorktreeAddOptions,
    WorktreePruneOptions,
};

use crate::domain::MergeOutcome;

mod merge_queue;
pub use merge_queue::MergeCandidate;

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
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
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
}

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
        Ok(Self { root })
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

    /// A linked worktree at `dir` on `branch`, creating the branch at
    /// `base_commit` if it does not exist. Idempotent: an existing worktree
    /// on the branch is kept as it is (see [`Self::fresh_worktree`]).
    pub fn add_worktree(&self, dir: &Path, branch: &str, base_commit: &str) -> Result<()> {
        // libgit2 checks "is this branch checked out elsewhere" by reading
        // every worktree's files; one being created at the same moment can
        // make that check fail spuriously. Worktree changes are rare and
        // quick, so they take turns.
        let _turn = worktree_turn();
        if let Ok(existing) = Repository::open(dir) {
            let on_branch = existing
                .head()
                .ok()
                .and_then(|h| h.shorthand().map(str::to_owned))
                .is_some_and(|b| b == branch);
            if on_branch {
                return Ok(());
            }
        }
        let repo = self.repo()?;
        Self::forget_worktree(&repo, branch, dir)?;
        let branch_ref = match repo.find_branch(branch, BranchType::Local) {
            Ok(b) => b,
            Err(_) => {
                let base = Self::commit_at(&repo, base_commit)?;
                repo.branch(branch, &base, false)
                    .ctx(|| format!("creating branch {branch}"))?
            }
        };
        Self::link_worktree(&repo, branch_ref, branch, dir)
    }

    /// A new worktree at `dir` with `branch` at `base_commit`, whatever was
    /// there before. For a task whose worktree was never recorded as made: a
    /// process killed while making it can leave a half checked-out directory
    /// and a branch at an older base, and neither may be built on.
    pub fn fresh_worktree(&self, dir: &Path, branch: &str, base_commit: &str) -> Result<()> {
        let _turn = worktree_turn();
        let repo = self.repo()?;
        Self::forget_worktree(&repo, branch, dir)?;
        let base = Self::commit_at(&repo, base_commit)?;
        let branch_ref = repo
            .branch(branch, &base, true)
            .ctx(|| format!("creating branch {branch}"))?;
        Self::link_worktree(&repo, branch_ref, branch, dir)
    }

    /// Turns the worktree of a finished task (`from_dir` on `from_branch`)
    /// into a new one at `dir` on `branch`, starting at `base_commit`.
    /// Checking out a large repository costs seconds; moving a checkout that
    /// is nearly right costs the files that differ. Untracked and ignored
    /// files go too: the next task's tests must see only what is committed.
    /// If this fails half-way, the caller makes a fresh worktree, which
    /// clears whatever was left.
    pub fn recycle_worktree(
        &self,
        from_dir: &Path,
        from_branch: &str,
        dir: &Path,
        branch: &str,
        base_commit: &str,
    ) -> Result<()> {
        let _turn = worktree_turn();
        let repo = self.repo()?;
        Self::forget_worktree(&repo, branch, dir)?;
        let admin_root = repo.commondir().join("worktrees");
        let (old_admin, new_admin) = (
            admin_root.join(worktree_name(from_branch)),
            admin_root.join(worktree_name(branch)),
        );
        if !old_admin.join("gitdir").is_file() || !from_dir.join(".git").is_file() {
            return Err(GitError::Io {
                context: format!("{} is not a linked worktree", from_dir.display()),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        // What `git worktree move` does, plus a rename of the registration
        // so it is named after the new branch like any other.
        std::fs::rename(from_dir, dir)
            .ctx(|| format!("moving {} to {}", from_dir.display(), dir.display()))?;
        std::fs::rename(&old_admin, &new_admin)
            .ctx(|| format!("renaming {}", old_admin.display()))?;
        std::fs::write(
            dir.join(".git"),
            format!("gitdir: {}\n", new_admin.display()),
        )
        .ctx(|| format!("linking {}", dir.display()))?;
        std::fs::write(
            new_admin.join("gitdir"),
            format!("{}\n", dir.join(".git").display()),
        )
        .ctx(|| format!("linking {}", new_admin.display()))?;

        let base = Self::commit_at(&repo, base_commit)?;
        repo.branch(branch, &base, true)
            .ctx(|| format!("creating branch {branch}"))?;
        let worktree =
            Repository::open(dir).ctx(|| format!("opening worktree {}", dir.display()))?;
        worktree
            .cleanup_state()
            .ctx(|| "clearing merge state".into())?;
        // Like `git switch`: the files first, against the old HEAD, so only
        // what differs is written; then HEAD.
        let target = worktree
            .find_commit(base.id())
            .ctx(|| format!("reading {base_commit}"))?;
        let mut checkout = CheckoutBuilder::new();
        checkout.force().remove_untracked(true).remove_ignored(true);
        worktree
            .checkout_tree(target.as_object(), Some(&mut checkout))
            .ctx(|| format!("checking out {branch} in {}", dir.display()))?;
        worktree
            .set_head(&format!("refs/heads/{branch}"))
            .ctx(|| format!("switching {} to {branch}", dir.display()))?;
        Ok(())
    }

    /// Drops the registration and directory of `branch`'s worktree, complete
    /// or half made.
    fn forget_worktree(repo: &Repository, branch: &str, dir: &Path) -> Result<()> {
        let name = worktree_name(branch);
        if let Ok(stale) = repo.find_worktree(&name) {
            let mut opts = WorktreePruneOptions::new();
            opts.valid(true).locked(true).working_tree(true);
            stale
                .prune(Some(&mut opts))
                .ctx(|| format!("pruning stale worktree {name}"))?;
        }
        // A registration killed half-way is not a worktree to libgit2, but its
        // directory still blocks a new one of the same name.
        let admin = repo.commondir().join("worktrees").join(&name);
        if admin.exists() {
            std::fs::remove_dir_all(&admin)
                .ctx(|| format!("removing leftover {}", admin.display()))?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).ctx(|| format!("removing leftover {}", dir.display()))?;
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
        }
        Ok(())
    }

    fn link_worktree(
        repo: &Repository,
        branch_ref: git2::Branch<'_>,
        branch: &str,
        dir: &Path,
    ) -> Result<()> {
        let reference = branch_ref.into_reference();
        let mut opts = WorktreeAddOptions::new();
        opts.reference(Some(&reference));
        repo.worktree(&worktree_name(branch), dir, Some(&opts))
            .ctx(|| format!("adding worktree {} for {branch}", dir.display()))?;
        Ok(())
    }

    /// Hard-resets a worktree to `commit`, deletes untracked files and
    /// forgets any merge in progress.
    pub fn reset_worktree(&self, dir: &Path, commit: &str) -> Result<()> {
        let repo = Repository::open(dir).ctx(|| format!("opening worktree {}", dir.display()))?;
        let target = Self::commit_at(&repo, commit)?;
        repo.cleanup_state().ctx(|| "clearing merge state".into())?;
        let mut checkout = CheckoutBuilder::new();
        checkout.force().remove_untracked(true);
        repo.reset(
            target.as_object(),
            git2::ResetType::Hard,
            Some(&mut checkout),
        )
        .ctx(|| format!("resetting {} to {commit}", dir.display()))?;
        // A hard reset keeps untracked files; an interrupted attempt's new
        // files must go too.
        let mut opts = StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let statuses = repo
            .statuses(Some(&mut opts))
            .ctx(|| "reading status".into())?;
        for entry in statuses
            .iter()
            .filter(|e| e.status().contains(Status::WT_NEW))
        {
            if let Some(rel) = entry.path() {
                let path = dir.join(rel);
                std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Stages every change in the worktree and commits it. Makes a merge
    /// commit when a merge is in progress. `None` when there is nothing to commit.
    pub fn commit_all(&self, dir: &Path, message: &str) -> Result<Option<CommitInfo>> {
        let repo = Repository::open(dir).ctx(|| format!("opening worktree {}", dir.display()))?;
        let mut index = repo.index().ctx(|| "reading the index".into())?;
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .ctx(|| "staging changes".into())?;
        index
            .update_all(["*"], None)
            .ctx(|| "staging deletions".into())?;
        index.write().ctx(|| "writing the index".into())?;
        let tree_id = index.write_tree().ctx(|| "writing the tree".into())?;
        let head = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .ctx(|| "reading the worktree's HEAD".into())?;
        let merge_heads = merge_heads(&repo)?;
        if tree_id == head.tree_id() && merge_heads.is_empty() {
            return Ok(None);
        }
        let tree = repo
            .find_tree(tree_id)
            .ctx(|| "reading the new tree".into())?;
        let mut parents = vec![head.clone()];
        for oid in &merge_heads {
            parents.push(
                repo.find_commit(*oid)
                    .ctx(|| "reading the merged commit".into())?,
            );
        }
        let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let sig = signature()?;
        let oid = repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parent_refs)
            .ctx(|| "committing".into())?;
        repo.cleanup_state().ctx(|| "clearing merge state".into())?;
        let head_tree = head.tree().ctx(|| "reading the old tree".into())?;
        let files = changed_paths(&repo, &head_tree, &tree)?;
        Ok(Some(CommitInfo {
            commit: oid.to_string(),
            files,
        }))
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
        diff.print(DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                patch.push(line.origin());
            }
            patch.push_str(&String::from_utf8_lossy(line.content()));
            true
        })
        .ctx(|| "formatting the diff".into())?;
        Ok((patch, changed_paths(&repo, &old, &new)?))
    }

    /// Merges `branch` onto `mainline` without touching any work tree first.
    pub fn merge_into_mainline(
        &self,
        mainline: &str,
        branch: &str,
        message: &str,
    ) -> Result<MergeOutcome> {
        let repo = self.repo()?;
        let main_oid = Self::resolve(&repo, mainline)?;
        let branch_oid = Self::resolve(&repo, branch)?;
        if Self::contains(&repo, main_oid, branch_oid)? {
            return Ok(MergeOutcome::FastForward {
                commit: main_oid.to_string(),
            });
        }
        let refname = format!("refs/heads/{mainline}");
        // Decide before moving the ref: afterwards the tree looks changed.
        let refresh_checkout = self.mainline_checked_out_clean(&repo, &refname)?;
        let fast_forward = repo
            .graph_descendant_of(branch_oid, main_oid)
            .ctx(|| "comparing history".into())?;
        let outcome = if fast_forward {
            repo.reference(
                &refname,
                branch_oid,
                true,
                &format!("memofab: fast-forward {branch}"),
            )
            .ctx(|| format!("moving {mainline}"))?;
            MergeOutcome::FastForward {
                commit: branch_oid.to_string(),
            }
        } else {
            match Self::merge_commit(&repo, main_oid, branch_oid, branch, message, Some(&refname))?
            {
                Ok(oid) => MergeOutcome::MergeCommit {
                    commit: oid.to_string(),
                },
                Err(files) => return Ok(MergeOutcome::Conflict { files }),
            }
        };
        if refresh_checkout {
            let mut checkout = CheckoutBuilder::new();
            checkout.force();
            repo.checkout_head(Some(&mut checkout))
                .ctx(|| "updating the main work tree".into())?;
        }
        Ok(outcome)
    }

    /// Whether the history of `head` already has `commit` in it.
    fn contains(repo: &Repository, head: Oid, commit: Oid) -> Result<bool> {
        Ok(head == commit
            || repo
                .graph_descendant_of(head, commit)
                .ctx(|| "comparing history".into())?)
    }

    /// Commits the three-way merge of `branch_oid` into `main_oid` (moving
    /// `update_ref` to it, if given), or returns the conflicted paths.
    fn merge_commit(
        repo: &Repository,
        main_oid: Oid,
        branch_oid: Oid,
        branch: &str,
        message: &str,
        update_ref: Option<&str>,
    ) -> Result<std::result::Result<Oid, Vec<String>>> {
        let ours = repo
            .find_commit(main_oid)
            .ctx(|| "reading mainline".into())?;
        let theirs = repo
            .find_commit(branch_oid)
            .ctx(|| format!("reading {branch}"))?;
        let mut index = repo
            .merge_commits(&ours, &theirs, None)
            .ctx(|| format!("merging {branch}"))?;
        if index.has_conflicts() {
            return Ok(Err(conflicted_paths(&index)?));
        }
        let tree_id = index
            .write_tree_to(repo)
            .ctx(|| "writing the merged tree".into())?;
        let tree = repo
            .find_tree(tree_id)
            .ctx(|| "reading the merged tree".into())?;
        let sig = signature()?;
        let oid = repo
            .commit(update_ref, &sig, &sig, message, &tree, &[&ours, &theirs])
            .ctx(|| "committing the merge".into())?;
        Ok(Ok(oid))
    }

    /// Whether the main work tree has `refname` checked out with no changes,
    /// so it can follow mainline without clobbering anything.
    fn mainline_checked_out_clean(&self, repo: &Repository, refname: &str) -> Result<bool> {
        let on_mainline = repo
            .head()
            .ok()
            .and_then(|h| h.name().map(str::to_owned))
            .is_some_and(|n| n == refname);
        Ok(on_mainline && dirty(repo, false)?.is_empty())
    }

    /// Merges mainline into the task worktree at `dir`. A clean merge is
    /// committed at once; conflicts are left in the files with markers (and
    /// MERGE_HEAD set) and their paths returned.
    pub fn merge_mainline_into_worktree(&self, dir: &Path, mainline: &str) -> Result<Vec<String>> {
        let repo = Repository::open(dir).ctx(|| format!("opening worktree {}", dir.display()))?;
        if repo.state() == git2::RepositoryState::Merge {
            // Already merging (a human or an agent is resolving): report what
            // is still conflicted rather than merge again.
            let index = repo.index().ctx(|| "reading the index".into())?;
            return conflicted_paths(&index);
        }
        let main_oid = Self::resolve(&repo, mainline)?;
        let head_oid = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map(|c| c.id())
            .ctx(|| "reading the worktree's HEAD".into())?;
        let up_to_date = head_oid == main_oid
            || repo
                .graph_descendant_of(head_oid, main_oid)
                .ctx(|| "comparing history".into())?;
        if up_to_date {
            return Ok(Vec::new());
        }
        let annotated = repo
            .find_annotated_commit(main_oid)
            .ctx(|| "reading mainline".into())?;
        let mut checkout = CheckoutBuilder::new();
        checkout.allow_conflicts(true).conflict_style_diff3(true);
        repo.merge(&[&annotated], None, Some(&mut checkout))
            .ctx(|| format!("merging {mainline} into {}", dir.display()))?;
        let index = repo.index().ctx(|| "reading the index".into())?;
        if index.has_conflicts() {
            return conflicted_paths(&index);
        }
        self.commit_all(dir, &format!("Merge {mainline} into the task branch"))?;
        Ok(Vec::new())
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

    /// Removes a worktree's directory and registration; the branch stays.
    pub fn remove_worktree(&self, dir: &Path) -> Result<()> {
        let _turn = worktree_turn();
        let repo = self.repo()?;
        let names = repo.worktrees().ctx(|| "listing worktrees".into())?;
        let target = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        for name in names.iter().flatten() {
            if let Ok(wt) = repo.find_worktree(name) {
                let path = wt
                    .path()
                    .canonicalize()
                    .unwrap_or_else(|_| wt.path().to_owned());
                if path == target {
                    let mut opts = WorktreePruneOptions::new();
                    opts.valid(true).locked(true).working_tree(true);
                    wt.prune(Some(&mut opts))
                        .ctx(|| format!("removing worktree {name}"))?;
                }
            }
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).ctx(|| format!("removing {}", dir.display()))?;
        }
        Ok(())
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

/// The commits being merged in, if a merge is in progress (`MERGE_HEAD`).
fn merge_heads(repo: &Repository) -> Result<Vec<Oid>> {
    if repo.state() != git2::RepositoryState::Merge {
        return Ok(Vec::new());
    }
    let path = repo.path().join("MERGE_HEAD");
    let text = std::fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Oid::from_str(l.trim()).ctx(|| format!("reading {}", path.display())))
        .collect()
}

/// Serialises worktree creation and removal within the process.
fn worktree_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A filesystem-safe worktree name for a branch.
fn worktree_name(branch: &str) -> String {
    branch
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
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
