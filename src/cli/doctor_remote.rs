//! `memofab doctor`'s checks of `[mainline] remote`: the remote exists in the
//! repository, answers (`git ls-remote`), has mainline, and takes a push
//! where that can be asked without pushing (a dry run: over HTTP and SSH
//! the server checks push rights when it is connected to). Each line says
//! what to fix.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::domain::ids::short_commit;
use crate::effects::git::{GitRepo, Push};

/// One line of the report: passed, what, detail.
pub type Finding = (bool, String, String);

/// The findings for the configured remote; none without one.
pub fn check(config: &Config, repo: &Path) -> Vec<Finding> {
    let Some(name) = config.mainline.remote.clone() else {
        return Vec::new();
    };
    let what = format!("remote {name}");
    let fail = |detail: String| vec![(false, what.clone(), detail)];
    let Ok(git) = GitRepo::open(repo) else {
        return fail("not in a git repository".into());
    };
    let listed = git2::Repository::open(git.root())
        .ok()
        .is_some_and(|r| r.find_remote(&name).is_ok());
    if !listed {
        return fail(format!(
            "mainline.remote = {name:?}, but the repository has no such remote: add it with `git remote add {name} <url>`"
        ));
    }
    let mainline = match config.project.mainline.clone() {
        Some(branch) => branch,
        None => match git.current_branch() {
            Ok(branch) => branch,
            Err(e) => return fail(format!("cannot tell mainline's branch: {e}")),
        },
    };
    let timeout = Duration::from_secs(config.mainline.timeout_secs);
    let remote = match git.remote(&name, timeout) {
        Ok(remote) => remote,
        Err(e) => return fail(e.to_string()),
    };
    let mut findings = Vec::new();
    match remote.head(&mainline) {
        Ok(Ok(Some(head))) => findings.push((
            true,
            what.clone(),
            format!("reachable; its {mainline} is at {}", short_commit(&head)),
        )),
        Ok(Ok(None)) => {
            return fail(format!(
                "reachable, but it has no branch {mainline}: push it once (`git push {name} {mainline}`)"
            ));
        }
        Ok(Err(unreachable)) => {
            return fail(format!(
                "cannot reach it: {}; check its URL (`git remote -v`) and that `git ls-remote {name}` works for you (credentials, SSH agent)",
                one_line(&unreachable.reason)
            ));
        }
        Err(e) => return fail(e.to_string()),
    }
    // The local branch as the source: a verdict on it (even "not a fast
    // forward") means the server took the push connection.
    let source = format!("refs/heads/{mainline}");
    let rights = match remote.can_push(&mainline, &source) {
        Ok(Push::Pushed | Push::Stale) => (
            true,
            format!(
                "a dry-run push to {mainline} was accepted (a server reached by path is not asked about rights)"
            ),
        ),
        Ok(Push::Refused { reason }) => (
            false,
            format!(
                "a dry-run push to {mainline} was refused: {}; memofab lands by pushing, so it needs push rights there",
                one_line(&reason)
            ),
        ),
        Err(e) => (false, e.to_string()),
    };
    findings.push((rights.0, what, rights.1));
    findings
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(remote: &str) -> Config {
        let mut config = Config::default();
        config.mainline.remote = Some(remote.into());
        config
    }

    #[test]
    fn a_missing_unreachable_or_reachable_remote_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        GitRepo::init_with_files(&dir, &[("a".into(), b"a\n".to_vec())], "first").unwrap();
        assert!(check(&Config::default(), &dir).is_empty());

        let missing = check(&config("origin"), &dir);
        assert_eq!(missing.len(), 1);
        assert!(!missing[0].0);

        let repo = git2::Repository::open(&dir).unwrap();
        let bare = tmp.path().join("remote.git");
        repo.remote("origin", &bare.display().to_string()).unwrap();
        let unreachable = check(&config("origin"), &dir);
        assert_eq!(unreachable.iter().map(|f| f.0).collect::<Vec<_>>(), [false]);

        git2::Repository::init_bare(&bare).unwrap();
        let status = std::process::Command::new("git")
            .args(["push", "-q", "origin", "main"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(status.success());
        let fine = check(&config("origin"), &dir);
        assert_eq!(fine.iter().map(|f| f.0).collect::<Vec<_>>(), [true, true]);
    }
}
