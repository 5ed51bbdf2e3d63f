//! Git for the merge queue: a merge of a task onto mainline is computed as a
//! commit that no branch points at, checked in a scratch worktree, and only
//! then does mainline move to it — compare-and-swap, so a mainline that moved
//! meanwhile is never overwritten. A landed merge that failed its post-merge
//! check is reverted with a new commit on top, never by rewriting history.

use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{Oid, Repository};

use super::checkout::{Advance, DirtyCheckout};
use super::{Context, GitRepo, Result, signature, worktree_turn};

/// What merging a task branch onto mainline would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeCandidate {
    /// Mainline already contains the branch: it landed before (perhaps by a
    /// process that died before recording it). `commit` is mainline's head.
    Landed {
        commit: String,
    },
    /// A merge commit of `onto` (mainline's head) and the branch, on no
    /// branch yet.
    Ready {
        onto: String,
        commit: String,
    },
    Conflict {
        files: Vec<String>,
    },
}

/// What became of reverting a landed merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    /// Mainline is at this revert commit.
    Reverted(String),
    /// Undoing the merge conflicts with what landed after it.
    Conflict,
    /// The user's checkout of mainline has changes; nothing moved.
    Blocked(DirtyCheckout),
}

impl GitRepo {
    /// Computes the merge of `branch` onto `mainline` as a commit without
    /// moving mainline. Always a real merge commit, even when mainline could
    /// fast-forward: its first parent is then the mainline it was verified
    /// on, which is what a revert goes back to.
    pub fn merge_candidate(
        &self,
        mainline: &str,
        branch: &str,
        message: &str,
    ) -> Result<MergeCandidate> {
        let repo = self.repo()?;
        let main_oid = Self::resolve(&repo, mainline)?;
        let branch_oid = Self::resolve(&repo, branch)?;
        if Self::contains(&repo, main_oid, branch_oid)? {
            return Ok(MergeCandidate::Landed {
                commit: Self::landing_commit(&repo, main_oid, branch_oid)?.to_string(),
            });
        }
        Ok(
            match Self::merge_commit(&repo, main_oid, branch_oid, branch, message)? {
                Ok(oid) => MergeCandidate::Ready {
                    onto: main_oid.to_string(),
                    commit: oid.to_string(),
                },
                Err(files) => MergeCandidate::Conflict { files },
            },
        )
    }

    /// The commit on `head`'s first-parent line that brought `branch` in:
    /// the oldest one whose history still contains it. Other merges may
    /// have landed on top since, and they are not this task's to revert.
    fn landing_commit(repo: &Repository, head: Oid, branch: Oid) -> Result<Oid> {
        let mut landing = head;
        loop {
            let commit = repo
                .find_commit(landing)
                .ctx(|| "walking mainline".into())?;
            let Ok(parent) = commit.parent_id(0) else {
                return Ok(landing);
            };
            let still_in = parent == branch
                || repo
                    .graph_descendant_of(parent, branch)
                    .ctx(|| "comparing history".into())?;
            if !still_in {
                return Ok(landing);
            }
            landing = parent;
        }
    }

    /// Checks `commit` out, detached, in the scratch worktree at `dir`
    /// (made on first use, registered as `scratch_branch`). Untracked files
    /// of the last check go; ignored ones (build caches) stay, so a check
    /// does not rebuild the world each time.
    pub fn check_out_scratch(&self, dir: &Path, scratch_branch: &str, commit: &str) -> Result<()> {
        // Never `Repository::open(dir)`: what a check ran there wrote its `.git`.
        let existing = self.open_worktree(dir).ok();
        let worktree = match existing {
            Some(worktree) => worktree,
            None => {
                let _turn = worktree_turn();
                let repo = self.repo()?;
                Self::forget_worktree(&repo, scratch_branch, dir)?;
                let base = Self::commit_at(&repo, commit)?;
                let branch_ref = repo
                    .branch(scratch_branch, &base, true)
                    .ctx(|| format!("creating branch {scratch_branch}"))?;
                Self::link_worktree(&repo, branch_ref, scratch_branch, dir)?;
                self.open_worktree(dir)?
            }
        };
        let target = Self::commit_at(&worktree, commit)?;
        worktree
            .cleanup_state()
            .ctx(|| "clearing merge state".into())?;
        let tree = target
            .tree()
            .ctx(|| format!("reading the tree of {commit}"))?;
        self.unlink_planted(&worktree, dir, &tree, None)?;
        let mut checkout = CheckoutBuilder::new();
        checkout.force().remove_untracked(true);
        worktree
            .checkout_tree(target.as_object(), Some(&mut checkout))
            .ctx(|| format!("checking out {commit} in {}", dir.display()))?;
        worktree
            .set_head_detached(target.id())
            .ctx(|| format!("detaching {} at {commit}", dir.display()))?;
        Ok(())
    }

    /// Moves `mainline` from `from` to `to`, only if it is still at `from`
    /// ([`Advance::Raced`] otherwise: the caller computes a new candidate),
    /// and only with the user's checkout of it, if any (see [`Advance`]).
    pub fn advance_mainline(&self, mainline: &str, from: &str, to: &str) -> Result<Advance> {
        let repo = self.repo()?;
        let refname = format!("refs/heads/{mainline}");
        let (from_oid, to_oid) = (Self::resolve(&repo, from)?, Self::resolve(&repo, to)?);
        Self::move_mainline(
            &repo,
            &refname,
            from_oid,
            to_oid,
            "memofab: land a verified merge",
        )
    }

    /// Commits, on top of mainline, the undoing of the landed `merge_commit`:
    /// mainline's tree with the merge's changes taken back (a three-way merge
    /// towards the merge's first parent, so later commits survive).
    pub fn revert_on_mainline(
        &self,
        mainline: &str,
        merge_commit: &str,
        message: &str,
    ) -> Result<Revert> {
        let repo = self.repo()?;
        let refname = format!("refs/heads/{mainline}");
        let merge = Self::commit_at(&repo, merge_commit)?;
        loop {
            let head = Self::commit_at(&repo, mainline)?;
            let Some(oid) = Self::revert_commit(&repo, &head, &merge, merge_commit, message)?
            else {
                return Ok(Revert::Conflict);
            };
            let log = "memofab: revert a merge that failed its post-merge check";
            match Self::move_mainline(&repo, &refname, head.id(), oid, log)? {
                Advance::Moved => return Ok(Revert::Reverted(oid.to_string())),
                // A human committed meanwhile: revert on top of that.
                Advance::Raced => continue,
                Advance::Blocked(dirty) => return Ok(Revert::Blocked(dirty)),
            }
        }
    }

    /// Commits, on top of `head` and on no branch, the undoing of the landed
    /// `merge_commit`; `None` if undoing it conflicts with what came after.
    /// For a remote's mainline, which moves only by a push of it.
    pub fn revert_commit_on(
        &self,
        head: &str,
        merge_commit: &str,
        message: &str,
    ) -> Result<Option<String>> {
        let repo = self.repo()?;
        let merge = Self::commit_at(&repo, merge_commit)?;
        let head = Self::commit_at(&repo, head)?;
        Ok(
            Self::revert_commit(&repo, &head, &merge, merge_commit, message)?
                .map(|oid| oid.to_string()),
        )
    }

    /// `head`'s tree with `merge`'s changes taken back (a three-way merge
    /// towards the merge's first parent, so later commits survive),
    /// committed on top of `head`; `None` on a conflict.
    fn revert_commit(
        repo: &Repository,
        head: &git2::Commit<'_>,
        merge: &git2::Commit<'_>,
        merge_commit: &str,
        message: &str,
    ) -> Result<Option<Oid>> {
        let before = merge
            .parent(0)
            .ctx(|| format!("reading the first parent of {merge_commit}"))?;
        let (ancestor, ours, theirs) = (
            merge.tree().ctx(|| "reading the merge's tree".into())?,
            head.tree().ctx(|| "reading mainline's tree".into())?,
            before.tree().ctx(|| "reading the tree before".into())?,
        );
        let mut index = repo
            .merge_trees(&ancestor, &ours, &theirs, None)
            .ctx(|| format!("reverting {merge_commit}"))?;
        if index.has_conflicts() {
            return Ok(None);
        }
        let tree_id = index
            .write_tree_to(repo)
            .ctx(|| "writing the reverted tree".into())?;
        let tree = repo
            .find_tree(tree_id)
            .ctx(|| "reading the reverted tree".into())?;
        let sig = signature()?;
        let oid = repo
            .commit(None, &sig, &sig, message, &tree, &[head])
            .ctx(|| "committing the revert".into())?;
        Ok(Some(oid))
    }

    /// Puts a reverted change back on its task branch: a commit on top of
    /// `onto` (mainline after the revert) with the tree `merge_commit` had.
    /// Without it the branch would still be "in" mainline's history, and a
    /// later merge would silently leave the reverted change out.
    pub fn reapply_on_branch(
        &self,
        branch: &str,
        merge_commit: &str,
        onto: &str,
        message: &str,
    ) -> Result<String> {
        let repo = self.repo()?;
        let tree = Self::tree_of(&repo, merge_commit)?;
        let parent = Self::commit_at(&repo, onto)?;
        let sig = signature()?;
        let oid = repo
            .commit(None, &sig, &sig, message, &tree, &[&parent])
            .ctx(|| "committing the reapplied change".into())?;
        // Not `Repository::branch`: it refuses to move a branch that a
        // worktree has checked out, and the task's worktree has.
        repo.reference(
            &format!("refs/heads/{branch}"),
            oid,
            true,
            "memofab: reapply after a revert",
        )
        .ctx(|| format!("moving {branch}"))?;
        Ok(oid.to_string())
    }
}
