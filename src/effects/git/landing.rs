//! Landing on mainline: merges computed in memory (a conflict never touches
//! mainline or any work tree), and mainline moved to them.

use git2::build::CheckoutBuilder;
use git2::{Oid, Repository};

use super::{Context, GitRepo, Result, conflicted_paths, dirty, signature};
use crate::domain::MergeOutcome;

impl GitRepo {
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
    pub(super) fn contains(repo: &Repository, head: Oid, commit: Oid) -> Result<bool> {
        Ok(head == commit
            || repo
                .graph_descendant_of(head, commit)
                .ctx(|| "comparing history".into())?)
    }

    /// Commits the three-way merge of `branch_oid` into `main_oid` (moving
    /// `update_ref` to it, if given), or returns the conflicted paths.
    pub(super) fn merge_commit(
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
    pub(super) fn mainline_checked_out_clean(
        &self,
        repo: &Repository,
        refname: &str,
    ) -> Result<bool> {
        let on_mainline = repo
            .head()
            .ok()
            .and_then(|h| h.name().map(str::to_owned))
            .is_some_and(|n| n == refname);
        Ok(on_mainline && dirty(repo, false)?.is_empty())
    }
}
