//! Task worktrees: linked checkouts under `.memofab/worktrees/`, one per
//! task branch, made, recycled for the next task, reset and removed. Worktree
//! changes take turns within the process (`worktree_turn`).

use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{
    BranchType, Repository, Status, StatusOptions, WorktreeAddOptions, WorktreePruneOptions,
};

use super::{Context, GitError, GitRepo, Result};
use crate::effects::beneath;

impl GitRepo {
    /// A linked worktree at `dir` on `branch`, creating the branch at
    /// `base_commit` if it does not exist. Idempotent: an existing worktree
    /// on the branch is kept as it is (see [`Self::fresh_worktree`]).
    pub fn add_worktree(&self, dir: &Path, branch: &str, base_commit: &str) -> Result<()> {
        // libgit2 checks "is this branch checked out elsewhere" by reading
        // every worktree's files; one being created at the same moment can
        // make that check fail spuriously. Worktree changes are rare and
        // quick, so they take turns.
        let _turn = worktree_turn();
        if let Ok(existing) = self.open_worktree(dir) {
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
        if !old_admin.join("gitdir").is_file() {
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
            new_admin.join("gitdir"),
            format!("{}\n", dir.join(".git").display()),
        )
        .ctx(|| format!("linking {}", new_admin.display()))?;

        let base = Self::commit_at(&repo, base_commit)?;
        repo.branch(branch, &base, true)
            .ctx(|| format!("creating branch {branch}"))?;
        let worktree = self.open_worktree_at(dir, &new_admin)?;
        worktree
            .cleanup_state()
            .ctx(|| "clearing merge state".into())?;
        // Like `git switch` and `git clean -fdx`: the files first, only
        // what differs from the index or from what it recorded (`switch`);
        // then HEAD.
        let target = worktree
            .find_commit(base.id())
            .ctx(|| format!("reading {base_commit}"))?;
        let tree = target.tree().ctx(|| format!("reading {base_commit}"))?;
        if self.switch_in_place(&worktree, dir, &tree)?.is_none() {
            self.unlink_planted(&worktree, dir, &tree, None)?;
            let mut checkout = CheckoutBuilder::new();
            checkout.force().remove_untracked(true).remove_ignored(true);
            worktree
                .checkout_tree(target.as_object(), Some(&mut checkout))
                .ctx(|| format!("checking out {branch} in {}", dir.display()))?;
        }
        worktree
            .set_head(&format!("refs/heads/{branch}"))
            .ctx(|| format!("switching {} to {branch}", dir.display()))?;
        Ok(())
    }

    /// Drops the registration and directory of `branch`'s worktree, complete
    /// or half made.
    pub(super) fn forget_worktree(repo: &Repository, branch: &str, dir: &Path) -> Result<()> {
        let name = worktree_name(branch);
        // The files first, beneath the repository and following no link (an
        // agent may have left links anywhere in them); libgit2's own removal
        // below looks each path up by name, and then has nothing left here.
        let base = repo.workdir().unwrap_or(dir);
        beneath::remove_all(base, dir)?;
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
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
        }
        Ok(())
    }

    pub(super) fn link_worktree(
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
        let repo = self.open_worktree(dir)?;
        let target = Self::commit_at(&repo, commit)?;
        repo.cleanup_state().ctx(|| "clearing merge state".into())?;
        let tree = target
            .tree()
            .ctx(|| format!("reading the tree of {commit}"))?;
        self.unlink_planted(&repo, dir, &tree, None)?;
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
        let worktree = self.beneath(dir)?;
        for entry in statuses
            .iter()
            .filter(|e| e.status().contains(Status::WT_NEW))
        {
            if let Some(rel) = entry.path() {
                // Reached beneath the worktree: a link is removed, itself.
                worktree.remove(Path::new(rel))?;
            }
        }
        Ok(())
    }

    /// Local branches whose names start with `prefix`, sorted.
    pub fn branches_under(&self, prefix: &str) -> Result<Vec<String>> {
        let repo = self.repo()?;
        let branches = repo
            .branches(Some(BranchType::Local))
            .ctx(|| "listing branches".into())?;
        let mut names = Vec::new();
        for branch in branches {
            let (branch, _) = branch.ctx(|| "listing branches".into())?;
            if let Some(name) = branch.name().ok().flatten()
                && name.starts_with(prefix)
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Deletes a local branch; `false` if there was none. A branch checked
    /// out in a worktree is refused (remove the worktree first).
    pub fn delete_branch(&self, branch: &str) -> Result<bool> {
        let repo = self.repo()?;
        let mut found = match repo.find_branch(branch, BranchType::Local) {
            Ok(found) => found,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(false),
            Err(e) => return Err(e).ctx(|| format!("reading branch {branch}")),
        };
        found.delete().ctx(|| format!("deleting branch {branch}"))?;
        Ok(true)
    }

    /// Removes a worktree's directory and registration; the branch stays.
    pub fn remove_worktree(&self, dir: &Path) -> Result<()> {
        let _turn = worktree_turn();
        let repo = self.repo()?;
        let names = repo.worktrees().ctx(|| "listing worktrees".into())?;
        let target = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        let mut registered = Vec::new();
        for name in names.iter().flatten() {
            if let Ok(wt) = repo.find_worktree(name) {
                let path = wt
                    .path()
                    .canonicalize()
                    .unwrap_or_else(|_| wt.path().to_owned());
                if path == target {
                    registered.push((name.to_owned(), wt));
                }
            }
        }
        // The files first, beneath the repository and following no link;
        // libgit2's removal looks paths up by name (a directory swapped for
        // a link meanwhile would be followed), and then finds nothing.
        beneath::remove_all(&self.root, dir)?;
        for (name, wt) in registered {
            let mut opts = WorktreePruneOptions::new();
            opts.valid(true).locked(true).working_tree(true);
            wt.prune(Some(&mut opts))
                .ctx(|| format!("removing worktree {name}"))?;
        }
        Ok(())
    }
}

/// Serialises worktree creation and removal within the process.
pub(super) fn worktree_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A filesystem-safe worktree name for a branch.
pub(super) fn worktree_name(branch: &str) -> String {
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
