//! Taking a run over in a clone that never saw it: the run's task branches
//! are rebuilt from the record, with the remote only as a source of objects.
//!
//! The record names each task's last commit; a commit id names its content,
//! so that commit, once fetched, is exactly the work the record describes.
//! The local branch is made at that commit and nowhere else: whatever the
//! remote's branch holds beyond it (or instead of it: a branch pushed over
//! by someone else) never becomes the task's.

use git2::{BranchType, Oid};

use super::{Context, GitError, GitRepo, Result};

/// What became of one task branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopted {
    /// This clone has the branch already (the run was begun here).
    Kept,
    /// The branch was made at the recorded commit.
    Made,
    /// The recorded commit is not to be had here, or is not the run's: the
    /// task's work cannot be carried on (why, for people).
    Refused(String),
}

impl GitRepo {
    /// Makes memofab's task `branch` at `recorded`, the commit the run's
    /// record says the task is at, if that commit is in this repository
    /// (fetched from the remote, typically) and descends from the run's
    /// `base`. A branch that exists already is kept as it is.
    pub fn adopt_task_branch(&self, branch: &str, recorded: &str, base: &str) -> Result<Adopted> {
        if !branch.starts_with("memofab/") {
            return Err(GitError::RevisionNotFound(branch.to_owned()));
        }
        let repo = self.repo()?;
        if repo.find_branch(branch, BranchType::Local).is_ok() {
            return Ok(Adopted::Kept);
        }
        let parse = |id: &str| Oid::from_str(id).map_err(|_| GitError::RevisionNotFound(id.into()));
        let (at, base) = (parse(recorded)?, parse(base)?);
        let Ok(commit) = repo.find_commit(at) else {
            return Ok(Adopted::Refused(format!(
                "its recorded commit {} is neither in this clone nor on the remote's branch {branch}",
                crate::domain::ids::short_commit(recorded)
            )));
        };
        if !Self::contains(&repo, at, base)? {
            return Ok(Adopted::Refused(format!(
                "its recorded commit {} does not descend from the run's base",
                crate::domain::ids::short_commit(recorded)
            )));
        }
        repo.branch(branch, &commit, false)
            .ctx(|| format!("creating branch {branch}"))?;
        Ok(Adopted::Made)
    }

    /// Whether `commit` (a full id) is a commit in this repository.
    pub fn has_commit(&self, commit: &str) -> Result<bool> {
        Ok(self
            .has_commits(&[commit])?
            .first()
            .copied()
            .unwrap_or(false))
    }

    /// [`Self::has_commit`] for each of `commits`, the repository opened once.
    pub fn has_commits(&self, commits: &[&str]) -> Result<Vec<bool>> {
        let repo = self.repo()?;
        Ok(commits
            .iter()
            .map(|c| Oid::from_str(c).is_ok_and(|oid| repo.find_commit(oid).is_ok()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_on(git: &GitRepo, parents: &[&str], file: &str) -> String {
        let repo = git2::Repository::open(git.root()).unwrap();
        let parents: Vec<git2::Commit> = parents
            .iter()
            .map(|p| repo.find_commit(Oid::from_str(p).unwrap()).unwrap())
            .collect();
        let mut tb = repo.treebuilder(None).unwrap();
        tb.insert(file, repo.blob(file.as_bytes()).unwrap(), 0o100644)
            .unwrap();
        let tree = repo.find_tree(tb.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(None, &sig, &sig, file, &tree, &refs)
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_branch_is_made_only_at_a_recorded_commit_of_the_runs_history() {
        let tmp = tempfile::tempdir().unwrap();
        let git = GitRepo::init_with_files(
            &tmp.path().join("r"),
            &[("a.txt".into(), b"a\n".to_vec())],
            "first",
        )
        .unwrap();
        let base = git.branch_head("main").unwrap();
        let work = commit_on(&git, &[&base], "work.txt");
        let unrelated = commit_on(&git, &[], "evil.txt");
        let missing = "1".repeat(40);

        assert_eq!(
            git.adopt_task_branch("memofab/r/t1", &work, &base).unwrap(),
            Adopted::Made
        );
        assert_eq!(git.branch_head("memofab/r/t1").unwrap(), work);
        // Made once; the branch this clone has is its own.
        assert_eq!(
            git.adopt_task_branch("memofab/r/t1", &unrelated, &base)
                .unwrap(),
            Adopted::Kept
        );
        assert_eq!(git.branch_head("memofab/r/t1").unwrap(), work);
        for refused in [&unrelated, &missing] {
            assert!(matches!(
                git.adopt_task_branch("memofab/r/t2", refused, &base)
                    .unwrap(),
                Adopted::Refused(_)
            ));
        }
        assert!(!git.branch_exists("memofab/r/t2").unwrap());
        assert!(git.adopt_task_branch("main", &work, &base).is_err());
        assert!(git.has_commit(&work).unwrap() && !git.has_commit(&missing).unwrap());
    }
}
