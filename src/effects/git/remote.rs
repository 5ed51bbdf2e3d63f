//! Mainline on a git remote (`[mainline] remote`): reading the remote's head
//! of mainline, and landing on it by a compare-and-swap push.
//!
//! A landing pushes the verified merge with `--force-with-lease=<ref>:<old>`
//! and `--atomic`, `<old>` being the remote head the merge was computed on:
//! the remote's ref moves only if it is still there, and never backwards.
//! Every call goes through [`super::remote_cli`] (the git CLI on the user's
//! git data, with a cleared environment and no hooks).

use std::path::PathBuf;
use std::time::Duration;

use super::remote_cli::{Ran, run_git};
use super::{GitError, GitRepo, Result};

/// The user's repository's view of one remote.
#[derive(Debug, Clone)]
pub struct Remote {
    git_dir: PathBuf,
    name: String,
    timeout: Duration,
}

/// What became of a push of mainline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// The remote's mainline is at the pushed commit.
    Pushed,
    /// The remote's mainline is no longer where the merge was computed on:
    /// someone else pushed. Merge again on the new head.
    Stale,
    /// The remote refused for another reason (no rights, a hook declined,
    /// unreachable), in the server's and git's words.
    Refused { reason: String },
}

/// The remote could not be read, in git's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub reason: String,
}

impl GitRepo {
    /// The remote `name` of this repository, reached through the user's own
    /// git data (see [`super::remote_cli`]).
    pub fn remote(&self, name: &str, timeout: Duration) -> Result<Remote> {
        Ok(Remote {
            git_dir: self.common_dir()?,
            name: name.to_owned(),
            timeout,
        })
    }

    /// The tree of `rev`: two merges with the same tree need one check.
    pub fn tree_id(&self, rev: &str) -> Result<String> {
        let repo = self.repo()?;
        Ok(Self::tree_of(&repo, rev)?.id().to_string())
    }

    /// Moves the local `mainline` (and a clean checkout of it) forward to
    /// `commit`, which is on the remote's mainline, if the local branch is
    /// behind it. `Ok(Some(why))` if it stays where it is: the local branch
    /// has commits the remote does not, or the user's checkout has changes.
    pub fn follow_remote(&self, mainline: &str, commit: &str) -> Result<Option<String>> {
        let repo = self.repo()?;
        let to = Self::resolve(&repo, commit)?;
        let refname = format!("refs/heads/{mainline}");
        loop {
            let from = Self::resolve(&repo, &refname)?;
            if from == to {
                return Ok(None);
            }
            if !Self::contains(&repo, to, from)? {
                return Ok(Some(format!(
                    "your local {mainline} has commits the remote's does not; it stays where it is"
                )));
            }
            let log = "memofab: follow the remote's mainline";
            match Self::move_mainline(&repo, &refname, from, to, log)? {
                super::Advance::Moved => return Ok(None),
                super::Advance::Raced => continue,
                super::Advance::Blocked(dirty) => {
                    return Ok(Some(format!(
                        "your checkout of {mainline} has changes ({}); it stays where it is",
                        dirty.files.join(", ")
                    )));
                }
            }
        }
    }
}

impl Remote {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn git(&self, args: &[&str]) -> Result<Ran> {
        run_git(&self.git_dir, args, self.timeout)
    }

    /// Where the remote's `branch` is now (`git ls-remote`), `None` if it
    /// has no such branch.
    pub fn head(&self, branch: &str) -> Result<std::result::Result<Option<String>, Unreachable>> {
        let refname = branch_ref(branch)?;
        let ran = self.git(&["ls-remote", "--heads", "--", &self.name, &refname])?;
        if !ran.success {
            return Ok(Err(Unreachable {
                reason: failure(&ran, "git ls-remote"),
            }));
        }
        Ok(Ok(ran.stdout.lines().find_map(|line| {
            let (oid, name) = line.split_once('\t')?;
            (name == refname).then(|| oid.to_owned())
        })))
    }

    /// Fetches the remote's `branch` into `refs/remotes/<remote>/<branch>`
    /// and returns the commit it is at, `None` if the remote has no such
    /// branch.
    pub fn fetch(&self, branch: &str) -> Result<std::result::Result<Option<String>, Unreachable>> {
        let refname = branch_ref(branch)?;
        let tracking = format!("refs/remotes/{}/{branch}", self.name);
        let refspec = format!("+{refname}:{tracking}");
        let ran = self.git(&[
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--",
            &self.name,
            &refspec,
        ])?;
        if !ran.success {
            if ran.stderr.contains("couldn't find remote ref") {
                return Ok(Ok(None));
            }
            return Ok(Err(Unreachable {
                reason: failure(&ran, "git fetch"),
            }));
        }
        let repo = git2::Repository::open_bare(&self.git_dir).map_err(|source| GitError::Git {
            context: "opening the git data".into(),
            source,
        })?;
        let oid = repo
            .refname_to_id(&tracking)
            .map_err(|source| GitError::Git {
                context: format!("reading {tracking}"),
                source,
            })?;
        Ok(Ok(Some(oid.to_string())))
    }

    /// Pushes `commit` to the remote's `branch` only if that is still at
    /// `expected` (`None`: only if it does not exist).
    pub fn push_mainline(
        &self,
        branch: &str,
        expected: Option<&str>,
        commit: &str,
    ) -> Result<Push> {
        let refname = branch_ref(branch)?;
        let lease = format!("--force-with-lease={refname}:{}", expected.unwrap_or(""));
        let refspec = format!("{commit}:{refname}");
        let ran = self.git(&[
            "push",
            "--porcelain",
            "--atomic",
            "--no-verify",
            &lease,
            "--",
            &self.name,
            &refspec,
        ])?;
        let push = outcome(&ran, &refname);
        if let Push::Refused { .. } = &push {
            // A refusal while the ref moved (a server that checks the old
            // value itself, or a push in between) is a race all the same.
            if let Ok(Ok(now)) = self.head(branch)
                && now.as_deref() != expected
            {
                return Ok(Push::Stale);
            }
        }
        Ok(push)
    }

    /// Pushes a task branch of memofab's own (`memofab/...`) as it is now.
    pub fn push_task_branch(&self, branch: &str) -> Result<std::result::Result<(), Unreachable>> {
        if !branch.starts_with("memofab/") {
            return Err(bad_branch(branch));
        }
        let refname = branch_ref(branch)?;
        let refspec = format!("+{refname}:{refname}");
        let ran = self.git(&[
            "push",
            "--porcelain",
            "--no-verify",
            "--",
            &self.name,
            &refspec,
        ])?;
        Ok(match outcome(&ran, &refname) {
            Push::Pushed => Ok(()),
            Push::Stale => Err(Unreachable {
                reason: "the remote's branch moved".into(),
            }),
            Push::Refused { reason } => Err(Unreachable { reason }),
        })
    }

    /// Whether a push to `branch` would be accepted, where the remote lets
    /// that be asked without changing anything (`git push --dry-run` of the
    /// commit it is already at: over HTTP and SSH that needs push rights).
    pub fn can_push(&self, branch: &str, commit: &str) -> Result<Push> {
        let refname = branch_ref(branch)?;
        let refspec = format!("{commit}:{refname}");
        let ran = self.git(&[
            "push",
            "--dry-run",
            "--porcelain",
            "--no-verify",
            "--",
            &self.name,
            &refspec,
        ])?;
        Ok(outcome(&ran, &refname))
    }
}

fn bad_branch(branch: &str) -> GitError {
    GitError::RevisionNotFound(branch.to_owned())
}

/// `refs/heads/<branch>`, if that is a valid name.
fn branch_ref(branch: &str) -> Result<String> {
    let refname = format!("refs/heads/{branch}");
    if branch.starts_with('-') || !git2::Reference::is_valid_name(&refname) {
        return Err(bad_branch(branch));
    }
    Ok(refname)
}

/// Reads `git push --porcelain`: one line per ref, `<flag>\t<from>:<to>\t
/// <summary>`, `!` for a rejected ref.
fn outcome(ran: &Ran, refname: &str) -> Push {
    if ran.success {
        return Push::Pushed;
    }
    let line = ran.stdout.lines().find_map(|line| {
        let mut fields = line.split('\t');
        let (flag, spec, summary) = (fields.next()?, fields.next()?, fields.next()?);
        spec.ends_with(&format!(":{refname}"))
            .then(|| (flag.to_owned(), summary.to_owned()))
    });
    if let Some((flag, summary)) = &line
        && flag == "!"
        && ["stale info", "fetch first", "non-fast-forward"]
            .iter()
            .any(|s| summary.contains(s))
    {
        return Push::Stale;
    }
    let mut reason = failure(ran, "git push");
    if let Some((_, summary)) = line
        && !reason.contains(&summary)
    {
        reason = format!("{summary}: {reason}");
    }
    Push::Refused { reason }
}

/// What the server and git said about a failure: the server's `remote:`
/// lines and git's own `error:`/`fatal:` lines, else the last lines.
fn failure(ran: &Ran, what: &str) -> String {
    if ran.timed_out {
        return format!("{what} timed out");
    }
    let said: Vec<&str> = ran
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("remote:") || l.starts_with("error:") || l.starts_with("fatal:"))
        .filter(|l| l.trim_start_matches("remote:").trim() != "")
        .collect();
    let lines: Vec<&str> = if said.is_empty() {
        let all: Vec<&str> = ran
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        all[all.len().saturating_sub(5)..].to_vec()
    } else {
        said
    };
    if lines.is_empty() {
        format!("{what} failed")
    } else {
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A repository on `main` and a bare clone of it as remote `origin`.
    fn setup() -> (tempfile::TempDir, GitRepo, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let git = GitRepo::init_with_files(
            &tmp.path().join("repo"),
            &[("a.txt".into(), b"a\n".to_vec())],
            "first",
        )
        .unwrap();
        let bare = tmp.path().join("remote.git");
        git2::Repository::init_bare(&bare).unwrap();
        let repo = git2::Repository::open(git.root()).unwrap();
        repo.remote("origin", &bare.display().to_string()).unwrap();
        let remote = git.remote("origin", Duration::from_secs(60)).unwrap();
        let head = git.branch_head("main").unwrap();
        assert_eq!(
            remote.push_mainline("main", None, &head).unwrap(),
            Push::Pushed
        );
        (tmp, git, bare)
    }

    fn next_commit(git: &GitRepo, parent: &str, file: &str) -> String {
        let repo = git2::Repository::open(git.root()).unwrap();
        let parent = repo
            .find_commit(git2::Oid::from_str(parent).unwrap())
            .unwrap();
        let blob = repo.blob(file.as_bytes()).unwrap();
        let mut tb = repo.treebuilder(Some(&parent.tree().unwrap())).unwrap();
        tb.insert(file, blob, 0o100644).unwrap();
        let tree = repo.find_tree(tb.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        repo.commit(None, &sig, &sig, file, &tree, &[&parent])
            .unwrap()
            .to_string()
    }

    fn remote_main(bare: &Path) -> String {
        let repo = git2::Repository::open_bare(bare).unwrap();
        repo.refname_to_id("refs/heads/main").unwrap().to_string()
    }

    #[test]
    fn a_push_lands_only_where_the_merge_was_computed() {
        let (_tmp, git, bare) = setup();
        let remote = git.remote("origin", Duration::from_secs(60)).unwrap();
        let base = git.branch_head("main").unwrap();
        let ours = next_commit(&git, &base, "ours.txt");
        let theirs = next_commit(&git, &base, "theirs.txt");
        assert_eq!(
            remote.push_mainline("main", Some(&base), &theirs).unwrap(),
            Push::Pushed
        );
        // Ours was computed on `base`; the remote moved on: refused, unmoved.
        assert_eq!(
            remote.push_mainline("main", Some(&base), &ours).unwrap(),
            Push::Stale
        );
        assert_eq!(remote_main(&bare), theirs);
        assert_eq!(remote.fetch("main").unwrap(), Ok(Some(theirs.clone())));
        assert_eq!(remote.head("main").unwrap(), Ok(Some(theirs)));
        assert_eq!(remote.head("nope").unwrap(), Ok(None));
    }

    #[test]
    fn a_hook_refusal_comes_back_with_the_servers_reason_and_our_hooks_never_run() {
        let (tmp, git, bare) = setup();
        use std::os::unix::fs::PermissionsExt;
        let hook = bare.join("hooks/pre-receive");
        std::fs::write(
            &hook,
            "#!/bin/sh\necho 'main is frozen for the release' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A pre-push hook in the user's repository would run on a plain push.
        let marker = tmp.path().join("pre-push-ran");
        let ours = git.root().join(".git/hooks/pre-push");
        std::fs::write(&ours, format!("#!/bin/sh\ntouch '{}'\n", marker.display())).unwrap();
        std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o755)).unwrap();

        let remote = git.remote("origin", Duration::from_secs(60)).unwrap();
        let base = git.branch_head("main").unwrap();
        let next = next_commit(&git, &base, "n.txt");
        match remote.push_mainline("main", Some(&base), &next).unwrap() {
            Push::Refused { reason } => assert!(reason.contains("frozen"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(remote_main(&bare), base);
        assert!(!marker.exists(), "the user's pre-push hook ran");
    }

    #[test]
    fn an_unreachable_remote_says_why() {
        let (tmp, git, _bare) = setup();
        let repo = git2::Repository::open(git.root()).unwrap();
        let gone = tmp.path().join("gone.git");
        repo.remote("gone", &gone.display().to_string()).unwrap();
        let remote = git.remote("gone", Duration::from_secs(60)).unwrap();
        assert!(remote.head("main").unwrap().is_err());
        assert!(remote.fetch("main").unwrap().is_err());
        let head = git.branch_head("main").unwrap();
        assert!(matches!(
            remote.push_mainline("main", Some(&head), &head).unwrap(),
            Push::Refused { .. }
        ));
        assert!(remote.head("-x").is_err(), "an option is no branch");
    }
}
