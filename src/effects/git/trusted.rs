//! Opening a worktree memofab made, and only through what memofab made.
//!
//! Every byte inside a worktree was written by an agent's command, the
//! worktree's `.git` included: a `.git` naming the user's repository would
//! make a commit land on the user's `HEAD`, one naming a planted admin dir
//! whose `gitdir` points elsewhere would make a checkout write and delete
//! files there. So memofab never discovers a repository from a worktree
//! path. It finds the admin dir under the user's `.git/worktrees/` whose
//! `gitdir` names the worktree (the user's `.git` is trusted: fenced commands
//! only read it), checks it (a real directory, its `commondir` the user's
//! git data, its `HEAD` a branch of that worktree or detached), puts the
//! worktree's `.git` back to `gitdir: <admin>` whatever it had become, and
//! opens the admin dir itself with the work directory set explicitly.

use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{Repository, RepositoryOpenFlags};

use super::{Context, GitError, GitRepo, Result};

impl GitRepo {
    /// Opens the worktree at `dir` through its registration in the user's
    /// repository (see the module docs), or the user's checkout itself.
    /// Fails for any other directory.
    pub(super) fn open_worktree(&self, dir: &Path) -> Result<Repository> {
        // The user's own checkout is the repository memofab was started in.
        if dir.canonicalize().is_ok_and(|d| d == self.root) {
            return self.repo();
        }
        open_registered(&self.common_dir()?, dir)
    }

    /// Opens `dir` through the admin dir `admin`, without checking its
    /// `HEAD`: for a worktree being switched to another branch.
    pub(super) fn open_worktree_at(&self, dir: &Path, admin: &Path) -> Result<Repository> {
        let common = self.common_dir()?;
        open_through(&common, admin, dir)
    }

    /// The user's git data (the main repository's `.git`), real path.
    pub(super) fn common_dir(&self) -> Result<PathBuf> {
        let repo = self.repo()?;
        let common = repo.commondir();
        common
            .canonicalize()
            .ctx(|| format!("resolving {}", common.display()))
    }
}

/// Opens the worktree at `dir` through its registration in the repository
/// whose git data (real path) is `common`: for callers that hold the git
/// data rather than a [`GitRepo`] (an agent's tools, through the fence's
/// records). Fails if `dir` is not a worktree registered there.
pub fn open_registered(common: &Path, dir: &Path) -> Result<Repository> {
    let admin = admin_of(common, dir)?;
    check_head(&admin)?;
    open_through(common, &admin, dir)
}

/// Puts the `.git` of the worktree at `dir` back as memofab made it, if
/// `dir` is a worktree registered in the repository whose git data is at
/// `common`; does nothing for any other directory. For the fence, before a
/// command runs there: the command's own git then reads the right data.
pub fn restore_worktree_link(common: &Path, dir: &Path) -> std::io::Result<()> {
    match admin_of(common, dir) {
        Ok(admin) => write_link(dir, &admin),
        Err(_) => Ok(()),
    }
}

fn not_a_worktree(dir: &Path, why: &str) -> GitError {
    GitError::Io {
        context: format!("{} is not a worktree memofab made ({why})", dir.display()),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    }
}

/// The admin dir under `<common>/worktrees/` whose `gitdir` names `<dir>/.git`.
fn admin_of(common: &Path, dir: &Path) -> Result<PathBuf> {
    let real_dir = dir
        .canonicalize()
        .map_err(|_| not_a_worktree(dir, "it does not exist"))?;
    let registry = common.join("worktrees");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&registry).into_iter().flatten().flatten() {
        let admin = entry.path();
        // A link here is nothing libgit2 or memofab made.
        if !std::fs::symlink_metadata(&admin).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let Some(link) = read_small(&admin.join("gitdir")) else {
            continue;
        };
        let link = PathBuf::from(link.trim());
        let names_dir = link.file_name().is_some_and(|n| n == ".git")
            && link
                .parent()
                .and_then(|p| p.canonicalize().ok())
                .is_some_and(|p| p == real_dir);
        if names_dir {
            found.push(admin);
        }
    }
    let admin = match found.len() {
        1 => found.remove(0),
        0 => return Err(not_a_worktree(dir, "no registration names it")),
        _ => return Err(not_a_worktree(dir, "more than one registration names it")),
    };
    let commondir = read_small(&admin.join("commondir"))
        .ok_or_else(|| not_a_worktree(dir, "its registration has no commondir"))?;
    let points_home = admin
        .join(commondir.trim())
        .canonicalize()
        .is_ok_and(|c| c == common);
    if !points_home {
        return Err(not_a_worktree(dir, "its registration names other git data"));
    }
    Ok(admin)
}

/// A worktree's `HEAD` is detached (the scratch worktree) or on a branch
/// whose worktree name is the admin dir's: never mainline, never another's.
fn check_head(admin: &Path) -> Result<()> {
    let head = read_small(&admin.join("HEAD")).unwrap_or_default();
    let head = head.trim();
    let name = admin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let detached = head.len() >= 40 && head.chars().all(|c| c.is_ascii_hexdigit());
    let own_branch = head
        .strip_prefix("ref: refs/heads/")
        .is_some_and(|branch| super::worktrees::worktree_name(branch) == name);
    if detached || own_branch {
        Ok(())
    } else {
        Err(GitError::Io {
            context: format!(
                "the worktree registered as {name} has HEAD {head:?}, not its own branch"
            ),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })
    }
}

fn open_through(common: &Path, admin: &Path, dir: &Path) -> Result<Repository> {
    write_link(dir, admin).ctx(|| format!("restoring {}/.git", dir.display()))?;
    let repo = Repository::open_ext(
        admin,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&str>(),
    )
    .ctx(|| format!("opening the registration {}", admin.display()))?;
    let same_data = repo.commondir().canonicalize().is_ok_and(|c| c == common);
    if !same_data {
        return Err(not_a_worktree(dir, "its registration opens other git data"));
    }
    repo.set_workdir(dir, false)
        .ctx(|| format!("setting the work tree of {}", admin.display()))?;
    Ok(repo)
}

/// Makes `<dir>/.git` a plain file `gitdir: <admin>`, whatever it was (a
/// file naming elsewhere, a link, a directory): removed without following
/// links, then written anew.
fn write_link(dir: &Path, admin: &Path) -> std::io::Result<()> {
    let path = dir.join(".git");
    let wanted = format!("gitdir: {}\n", admin.display());
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => {
            if read_small(&path).is_some_and(|text| text == wanted) {
                return Ok(());
            }
            std::fs::remove_file(&path)?;
        }
        // `remove_dir_all` does not follow links inside.
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path)?,
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // `create_new`: whatever appears at the path meanwhile is not followed.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all(wanted.as_bytes())
}

/// A small text file's content, not through a link; `None` otherwise.
fn read_small(path: &Path) -> Option<String> {
    const MAX: u64 = 4096;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository on `main` with one commit, and a worktree `wt` on
    /// branch `memofab/r/t`.
    fn setup() -> (tempfile::TempDir, GitRepo, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let repo_dir = tmp.path().join("repo");
        let git =
            GitRepo::init_with_files(&repo_dir, &[("a.txt".into(), b"a\n".to_vec())], "first")
                .unwrap();
        let head = git.branch_head("main").unwrap();
        let wt = repo_dir.join(".memofab/worktrees/r/t");
        git.fresh_worktree(&wt, "memofab/r/t", &head).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep.txt"), "outside\n").unwrap();
        (tmp, git, wt, outside)
    }

    fn main_state(git: &GitRepo) -> (String, Vec<u8>) {
        let index = std::fs::read(git.root().join(".git/index")).unwrap();
        (git.branch_head("main").unwrap(), index)
    }

    /// Commits a new file in the worktree and checks it landed on the task
    /// branch, with main and the user's index untouched.
    fn commit_lands_on_the_task_branch(git: &GitRepo, wt: &Path) {
        let before = main_state(git);
        std::fs::write(wt.join("work.txt"), "work\n").unwrap();
        let info = git.commit_all(wt, "work").unwrap().unwrap();
        assert_eq!(git.branch_head("memofab/r/t").unwrap(), info.commit);
        assert_eq!(main_state(git), before);
        let text = std::fs::read_to_string(wt.join(".git")).unwrap();
        assert!(text.starts_with("gitdir: ") && text.contains("worktrees"));
    }

    #[test]
    fn a_git_file_naming_the_users_repository_is_put_back() {
        let (_tmp, git, wt, _outside) = setup();
        let user_git = git.root().join(".git");
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", user_git.display())).unwrap();
        commit_lands_on_the_task_branch(&git, &wt);
    }

    #[test]
    fn a_git_symlink_is_removed_not_followed() {
        let (_tmp, git, wt, outside) = setup();
        std::fs::write(outside.join("target"), "gitdir: /\n").unwrap();
        std::fs::remove_file(wt.join(".git")).unwrap();
        std::os::unix::fs::symlink(outside.join("target"), wt.join(".git")).unwrap();
        commit_lands_on_the_task_branch(&git, &wt);
        assert_eq!(
            std::fs::read_to_string(outside.join("target")).unwrap(),
            "gitdir: /\n"
        );
    }

    #[test]
    fn a_git_directory_is_replaced_and_what_it_links_to_survives() {
        let (_tmp, git, wt, outside) = setup();
        std::fs::remove_file(wt.join(".git")).unwrap();
        std::fs::create_dir_all(wt.join(".git")).unwrap();
        std::os::unix::fs::symlink(&outside, wt.join(".git/out")).unwrap();
        commit_lands_on_the_task_branch(&git, &wt);
        assert_eq!(
            std::fs::read_to_string(outside.join("keep.txt")).unwrap(),
            "outside\n"
        );
    }

    #[test]
    fn a_planted_admin_dir_naming_an_outside_work_tree_is_ignored() {
        let (_tmp, git, wt, outside) = setup();
        // A fake registration inside the worktree, its `gitdir` outside.
        let fake = wt.join("fake-admin");
        std::fs::create_dir_all(&fake).unwrap();
        std::fs::write(fake.join("gitdir"), format!("{}/.git\n", outside.display())).unwrap();
        let common = git.root().join(".git");
        std::fs::write(fake.join("commondir"), format!("{}\n", common.display())).unwrap();
        std::fs::write(fake.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", fake.display())).unwrap();
        git.reset_worktree(&wt, "main").unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("keep.txt")).unwrap(),
            "outside\n"
        );
        assert!(!outside.join("a.txt").exists());
    }

    #[test]
    fn a_registration_naming_outside_or_on_mainline_is_refused() {
        let (_tmp, git, wt, outside) = setup();
        let admin = git.root().join(".git/worktrees/memofab-r-t");
        assert!(admin.is_dir());
        // HEAD on mainline: a commit would move it.
        std::fs::write(admin.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(wt.join("work.txt"), "work\n").unwrap();
        let before = main_state(&git);
        assert!(git.commit_all(&wt, "work").is_err());
        assert_eq!(main_state(&git), before);
        // `gitdir` naming another directory: the worktree is not found.
        std::fs::write(admin.join("HEAD"), "ref: refs/heads/memofab/r/t\n").unwrap();
        std::fs::write(
            admin.join("gitdir"),
            format!("{}/.git\n", outside.display()),
        )
        .unwrap();
        assert!(git.commit_all(&wt, "work").is_err());
        assert_eq!(main_state(&git), before);
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    }

    #[test]
    fn the_fence_link_is_restored_only_for_registered_worktrees() {
        let (_tmp, git, wt, outside) = setup();
        let common = git.common_dir().unwrap();
        std::fs::write(wt.join(".git"), "gitdir: /\n").unwrap();
        restore_worktree_link(&common, &wt).unwrap();
        let text = std::fs::read_to_string(wt.join(".git")).unwrap();
        assert!(text.contains("worktrees/memofab-r-t"), "{text}");
        std::fs::write(outside.join(".git"), "gitdir: /\n").unwrap();
        restore_worktree_link(&common, &outside).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join(".git")).unwrap(),
            "gitdir: /\n"
        );
    }
}
