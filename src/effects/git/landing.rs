//! Landing on mainline: merges computed in memory (a conflict never touches
//! mainline or any work tree), and mainline moved to them.

use git2::{Oid, Repository};

use super::checkout::{Advance, DirtyCheckout};
use super::{Context, GitRepo, Result, conflicted_paths, signature};
use crate::domain::MergeOutcome;

impl GitRepo {
    /// Merges `branch` onto `mainline`: computed without touching any work
    /// tree, then mainline (and a clean checkout of it) moves to the result.
    /// `Err` if the user's checkout of mainline has changes: nothing moved.
    pub fn merge_into_mainline(
        &self,
        mainline: &str,
        branch: &str,
        message: &str,
    ) -> Result<std::result::Result<MergeOutcome, DirtyCheckout>> {
        let repo = self.repo()?;
        let refname = format!("refs/heads/{mainline}");
        let branch_oid = Self::resolve(&repo, branch)?;
        // Mainline only moves under memofab's merge turn, unless a human
        // commits meanwhile: then the merge is computed again.
        loop {
            let main_oid = Self::resolve(&repo, mainline)?;
            if Self::contains(&repo, main_oid, branch_oid)? {
                return Ok(Ok(MergeOutcome::FastForward {
                    commit: main_oid.to_string(),
                }));
            }
            let fast_forward = repo
                .graph_descendant_of(branch_oid, main_oid)
                .ctx(|| "comparing history".into())?;
            let (to, outcome) = if fast_forward {
                let commit = branch_oid.to_string();
                (branch_oid, MergeOutcome::FastForward { commit })
            } else {
                match Self::merge_commit(&repo, main_oid, branch_oid, branch, message)? {
                    Ok(oid) => {
                        let commit = oid.to_string();
                        (oid, MergeOutcome::MergeCommit { commit })
                    }
                    Err(files) => return Ok(Ok(MergeOutcome::Conflict { files })),
                }
            };
            let log = format!("memofab: merge {branch}");
            match Self::move_mainline(&repo, &refname, main_oid, to, &log)? {
                Advance::Moved => return Ok(Ok(outcome)),
                Advance::Raced => continue,
                Advance::Blocked(dirty) => return Ok(Err(dirty)),
            }
        }
    }

    /// Whether the history of `head` already has `commit` in it.
    pub(super) fn contains(repo: &Repository, head: Oid, commit: Oid) -> Result<bool> {
        Ok(head == commit
            || repo
                .graph_descendant_of(head, commit)
                .ctx(|| "comparing history".into())?)
    }

    /// Commits the three-way merge of `branch_oid` into `main_oid`, on no
    /// branch, or returns the conflicted paths.
    pub(super) fn merge_commit(
        repo: &Repository,
        main_oid: Oid,
        branch_oid: Oid,
        branch: &str,
        message: &str,
    ) -> Result<std::result::Result<Oid, Vec<String>>> {
        let ours = repo
            .find_commit(main_oid)
            .ctx(|| "reading mainline".into())?;
        let theirs = repo
            .find_commit(branch_oid)
            .ctx(|| format!("reading {branch}"))?;
        let tree_id = match Self::quick_merge(repo, &ours, &theirs)? {
            Some(tree_id) => tree_id,
            None => {
                let mut index = repo
                    .merge_commits(&ours, &theirs, None)
                    .ctx(|| format!("merging {branch}"))?;
                if index.has_conflicts() {
                    return Ok(Err(conflicted_paths(&index)?));
                }
                index
                    .write_tree_to(repo)
                    .ctx(|| "writing the merged tree".into())?
            }
        };
        let tree = repo
            .find_tree(tree_id)
            .ctx(|| "reading the merged tree".into())?;
        let sig = signature()?;
        let oid = repo
            .commit(None, &sig, &sig, message, &tree, &[&ours, &theirs])
            .ctx(|| "committing the merge".into())?;
        Ok(Ok(oid))
    }

    /// The merged tree when no file needs its contents merged, computed
    /// tree by tree (`tree_merge`); `None` leaves it to libgit2.
    fn quick_merge(
        repo: &Repository,
        ours: &git2::Commit<'_>,
        theirs: &git2::Commit<'_>,
    ) -> Result<Option<Oid>> {
        // Criss-cross histories need a virtual base: libgit2 makes one.
        let bases = repo
            .merge_bases(ours.id(), theirs.id())
            .ctx(|| "finding the merge base".into())?;
        if bases.len() != 1 {
            return Ok(None);
        }
        let base = repo
            .find_commit(bases.first().copied().unwrap_or_else(Oid::zero))
            .ctx(|| "reading the merge base".into())?;
        let trees =
            [&base, ours, theirs].map(|c| c.tree().ctx(|| "reading a commit's tree".into()));
        let [base, ours, theirs] = trees;
        super::tree_merge::merge_trees(repo, &base?, &ours?, &theirs?)
    }
}
