//! bubblewrap's arguments for one command: the system read-only, a private
//! /tmp, /dev and /proc, the home directory hidden but for the readable
//! paths, the repository's git data read-only, the working directory
//! writable, every namespace new (the network too unless allowed).

use std::ffi::OsString;
use std::path::Path;

pub struct Plan<'a> {
    pub cwd: &'a Path,
    pub network: bool,
    pub readable: &'a [std::path::PathBuf],
    pub git_common_dir: Option<&'a Path>,
    /// The user's checkout the working directory is nested in: covered, so
    /// only the worktree and the git data show.
    pub repository_root: Option<&'a Path>,
    pub home: Option<&'a Path>,
}

pub fn args(plan: &Plan<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |parts: &[&std::ffi::OsStr]| args.extend(parts.iter().map(|p| p.to_os_string()));
    push(&[
        "--die-with-parent".as_ref(),
        "--unshare-all".as_ref(),
        "--ro-bind".as_ref(),
        "/".as_ref(),
        "/".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
    ]);
    if plan.network {
        push(&["--share-net".as_ref()]);
    } else {
        // System daemons' sockets (docker, dbus) live here.
        push(&["--tmpfs".as_ref(), "/run".as_ref()]);
    }
    if let Some(home) = plan.home.filter(|h| h.is_dir() && *h != Path::new("/")) {
        push(&["--tmpfs".as_ref(), home.as_os_str()]);
    }
    if let Some(root) = plan.repository_root {
        push(&["--tmpfs".as_ref(), root.as_os_str()]);
    }
    // The store and log of every run, with every transcript.
    if let Some(store) = plan
        .git_common_dir
        .and_then(Path::parent)
        .map(|repo| repo.join(".memofab"))
        .filter(|dir| dir.is_dir())
    {
        push(&["--tmpfs".as_ref(), store.as_os_str()]);
    }
    for path in plan.readable {
        push(&["--ro-bind-try".as_ref(), path.as_os_str(), path.as_os_str()]);
    }
    if let Some(git) = plan.git_common_dir {
        push(&["--ro-bind".as_ref(), git.as_os_str(), git.as_os_str()]);
    }
    push(&[
        "--bind".as_ref(),
        plan.cwd.as_os_str(),
        plan.cwd.as_os_str(),
        "--chdir".as_ref(),
        plan.cwd.as_os_str(),
    ]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(args: &[OsString], word: &str, path: &Path) -> usize {
        args.windows(2)
            .position(|w| w[0] == word && w[1] == path.as_os_str())
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn hides_come_before_the_paths_they_would_cover() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".memofab/worktrees/r/t")).unwrap();
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let cwd = repo.join(".memofab/worktrees/r/t");
        let git = repo.join(".git");
        let args = args(&Plan {
            cwd: &cwd,
            network: false,
            readable: &[],
            git_common_dir: Some(&git),
            repository_root: None,
            home: Some(dir.path()),
        });
        let hide_home = position(&args, "--tmpfs", dir.path());
        let hide_store = position(&args, "--tmpfs", &repo.join(".memofab"));
        let git_bind = position(&args, "--ro-bind", &git);
        let cwd_bind = position(&args, "--bind", &cwd);
        assert!(hide_home < hide_store && hide_store < git_bind && git_bind < cwd_bind);
        assert!(!args.iter().any(|a| a == "--share-net"));
    }
}
