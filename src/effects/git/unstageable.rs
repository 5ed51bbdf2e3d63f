//! What staging cannot take, found from status alone before libgit2 stages
//! or hashes anything: a file over the size limit (a 200 GB sparse file
//! would keep libgit2 reading for minutes, and its blob would follow the
//! branch everywhere), and a directory holding a git repository of its own
//! (a `.git` an agent or a tool such as `git clone` left there: libgit2
//! refuses the whole staging for it, so one stray `.git` would cost the task
//! its commit with an error nobody can act on).

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use git2::{Repository, Status};
use rustix::fs::{AtFlags, Dir, FileType, statat};

use crate::effects::beneath::{Beneath, BeneathError};

use super::{Context, GitError, GitRepo, Result};

/// Largest file a task may commit unless the configuration says otherwise.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 5 * 1024 * 1024;

/// A changed file over the size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeFile {
    /// Relative to the worktree.
    pub path: String,
    /// Its apparent size (a sparse file's too), never a link's target's.
    pub bytes: u64,
}

/// Everything in a worktree that a commit would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unstageable {
    /// Changed or new files over `limit`.
    pub large: Vec<LargeFile>,
    /// Directories (relative, with a trailing `/`) that hold a `.git`.
    pub nested: Vec<String>,
    /// The size limit the files were measured against.
    pub limit: u64,
}

impl Unstageable {
    /// Whether a commit can take the worktree as it is.
    pub fn is_empty(&self) -> bool {
        self.large.is_empty() && self.nested.is_empty()
    }

    /// `Err` naming what is in the way, when anything is.
    fn into_result(self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(GitError::Unstageable(self))
        }
    }
}

/// What a refusal says: each problem with what to do about it.
impl fmt::Display for Unstageable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.large.is_empty() {
            let named: Vec<String> = self
                .large
                .iter()
                .map(|l| format!("{} ({} bytes)", l.path, l.bytes))
                .collect();
            parts.push(format!(
                "{} over the {}-byte limit on a committed file (run.max_file_bytes): {} \
                 (delete them, make them smaller, or keep them out of the repository)",
                if self.large.len() == 1 {
                    "a file is"
                } else {
                    "files are"
                },
                self.limit,
                named.join(", ")
            ));
        }
        if !self.nested.is_empty() {
            let named: Vec<String> = self.nested.iter().map(|d| format!("{d}.git")).collect();
            parts.push(format!(
                "a git repository of its own is inside the worktree ({}); a task commits \
                 files, not repositories (delete that .git, or the directory)",
                named.join(", ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

impl GitRepo {
    /// What in the worktree at `dir` a commit would refuse, sizes measured
    /// against this repository's file limit.
    pub fn unstageable(&self, dir: &Path) -> Result<Unstageable> {
        let repo = self.open_worktree(dir)?;
        find(&repo, dir, self.max_file_bytes)
    }
}

/// What a commit of the worktree at `dir`, registered in the repository
/// whose git data is `common`, would refuse. Opened through memofab's
/// registration, never by the worktree's own `.git`.
pub fn unstageable_in(common: &Path, dir: &Path, limit: u64) -> Result<Unstageable> {
    let repo = super::trusted::open_registered(common, dir)?;
    find(&repo, dir, limit)
}

/// `Err(GitError::Unstageable)` when a commit of the worktree at `dir`
/// would stage something it must not.
pub(super) fn check(repo: &Repository, dir: &Path, limit: u64) -> Result<()> {
    find(repo, dir, limit)?.into_result()
}

/// What `add_all` would stage and must not. Status compares sizes before
/// it reads a file and never reads a new one, so nothing here hashes a
/// large file.
fn find(repo: &Repository, dir: &Path, limit: u64) -> Result<Unstageable> {
    let statuses = super::file_statuses(repo)?;
    let mut large = Vec::new();
    for entry in statuses.iter() {
        let Some(path) = entry.path() else { continue };
        if path.ends_with('/') && entry.status().contains(Status::WT_NEW) {
            continue; // a repository inside: `nested_repositories` names it
        }
        let Ok(meta) = std::fs::symlink_metadata(dir.join(path)) else {
            continue; // deleted
        };
        if meta.len() > limit {
            large.push(LargeFile {
                path: path.to_owned(),
                bytes: meta.len(),
            });
        }
    }
    Ok(Unstageable {
        large,
        nested: nested_repositories(repo, dir)?,
        limit,
    })
}

/// Directories below the root of the worktree at `dir` (relative, with a
/// trailing `/`) that hold an entry named `.git`, in the parts git does not
/// ignore. Found by walking, not from status: libgit2 reports some (`sub/`,
/// then refuses to stage it) and silently leaves out others (a `.git` file
/// naming no repository hides its whole directory); neither may pass
/// unsaid. Each directory is opened beneath the worktree, never through a
/// link, so one swapped for a link while walking is passed over, not entered.
fn nested_repositories(repo: &Repository, dir: &Path) -> Result<Vec<String>> {
    let worktree = Beneath::open(dir)?;
    let mut nested = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let listing = || format!("listing {}", rel.display());
        let fd = match worktree.open_dir(&rel) {
            Ok(fd) => fd,
            Err(
                BeneathError::Symlink { .. }
                | BeneathError::NotADirectory { .. }
                | BeneathError::NotFound { .. },
            ) if !rel.as_os_str().is_empty() => continue,
            Err(e) => return Err(e.into()),
        };
        for entry in Dir::read_from(&fd)
            .map_err(std::io::Error::from)
            .ctx(listing)?
        {
            let entry = entry.map_err(std::io::Error::from).ctx(listing)?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            if name == ".git" {
                if !rel.as_os_str().is_empty() {
                    nested.push(format!("{}/", rel.display()));
                }
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => statat(&fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileType::from_raw_mode(st.st_mode))
                    .map_err(std::io::Error::from)
                    .ctx(listing)?,
                known => known,
            };
            if kind != FileType::Directory {
                continue;
            }
            let child = rel.join(name);
            // libgit2 takes a trailing `/` as "check as a directory".
            let mut as_dir = child.clone().into_os_string();
            as_dir.push("/");
            let ignored = repo
                .is_path_ignored(Path::new(&as_dir))
                .ctx(|| format!("reading the ignore rules for {}", child.display()))?;
            if !ignored {
                pending.push(child);
            }
        }
    }
    nested.sort();
    Ok(nested)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with_worktree() -> (tempfile::TempDir, GitRepo) {
        let dir = tempfile::tempdir().unwrap();
        let git = GitRepo::init_with_files(
            dir.path(),
            &[("small.txt".into(), b"small\n".to_vec())],
            "init",
        )
        .unwrap()
        .with_max_file_bytes(1000);
        (dir, git)
    }

    #[test]
    fn a_sparse_giant_is_refused_and_nothing_is_committed() {
        let (dir, git) = repo_with_worktree();
        let root = dir.path();
        let head = git.branch_head("main").unwrap();
        std::fs::write(root.join("ok.txt"), "fine\n").unwrap();
        let giant = std::fs::File::create(root.join("giant.bin")).unwrap();
        // Big enough that hashing it would show; sparse, so it costs no disk.
        giant.set_len(3 << 30).unwrap();
        let started = std::time::Instant::now();
        let refused = git.commit_all(root, "change").unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        match refused {
            GitError::Unstageable(Unstageable {
                large: files,
                limit,
                nested,
            }) => {
                assert_eq!(limit, 1000);
                assert!(nested.is_empty());
                assert_eq!(
                    files,
                    [LargeFile {
                        path: "giant.bin".into(),
                        bytes: 3 << 30
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(git.branch_head("main").unwrap(), head);
        // The index was not written: nothing is staged.
        let repo = Repository::open(root).unwrap();
        let index = repo.index().unwrap();
        assert!(index.get_path(Path::new("ok.txt"), 0).is_none());
        assert!(index.get_path(Path::new("giant.bin"), 0).is_none());
    }

    #[test]
    fn a_tracked_file_grown_over_the_limit_is_refused_a_small_change_is_not() {
        let (dir, git) = repo_with_worktree();
        let root = dir.path();
        std::fs::write(root.join("small.txt"), vec![b'x'; 1001]).unwrap();
        assert_eq!(git.unstageable(root).unwrap().large.len(), 1);
        std::fs::write(root.join("small.txt"), vec![b'x'; 1000]).unwrap();
        assert!(git.unstageable(root).unwrap().is_empty());
        assert!(git.commit_all(root, "change").unwrap().is_some());
    }

    #[test]
    fn a_link_is_measured_not_its_target() {
        let (dir, git) = repo_with_worktree();
        let root = dir.path();
        let outside = tempfile::tempdir().unwrap();
        let big = outside.path().join("big");
        std::fs::write(&big, vec![b'x'; 5000]).unwrap();
        std::os::unix::fs::symlink(&big, root.join("link")).unwrap();
        assert!(git.unstageable(root).unwrap().is_empty());
    }

    /// Every shape of a `.git` an agent can leave below the root: a real
    /// repository, a garbage `.git` file, a `gitdir:` file naming the
    /// user's own repository, one deep in a new directory.
    #[test]
    fn a_repository_inside_is_refused_and_nothing_is_staged() {
        let cases: [(&str, &[(&str, &str)]); 4] = [
            (
                "sub/",
                &[
                    ("sub/.git/HEAD", "ref: refs/heads/main\n"),
                    ("sub/f.txt", "f\n"),
                ],
            ),
            ("sub/", &[("sub/.git", "nonsense\n"), ("sub/f.txt", "f\n")]),
            (
                "vendor/lib/",
                &[
                    ("vendor/x.txt", "x\n"),
                    ("vendor/lib/.git", "gitdir: ../../..\n"),
                ],
            ),
            ("sub/", &[("sub/.git", "gitdir: /\n"), ("sub/f.txt", "f\n")]),
        ];
        for (nested, files) in cases {
            let (dir, git) = repo_with_worktree();
            let root = dir.path();
            let head = git.branch_head("main").unwrap();
            std::fs::write(root.join("ok.txt"), "fine\n").unwrap();
            for (path, content) in files {
                let path = root.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
            match git.commit_all(root, "change").unwrap_err() {
                GitError::Unstageable(found) => {
                    assert_eq!(found.nested, [nested], "{files:?}");
                    assert!(found.large.is_empty());
                }
                other => panic!("{files:?}: {other:?}"),
            }
            assert_eq!(git.branch_head("main").unwrap(), head);
            let index = Repository::open(root).unwrap().index().unwrap();
            assert!(index.get_path(Path::new("ok.txt"), 0).is_none());
            // Removed, the same worktree commits.
            let dotgit = root.join(nested).join(".git");
            if dotgit.is_dir() {
                std::fs::remove_dir_all(&dotgit).unwrap();
            } else {
                std::fs::remove_file(&dotgit).unwrap();
            }
            let info = git.commit_all(root, "change").unwrap().unwrap();
            assert!(info.files.contains(&"ok.txt".to_owned()), "{info:?}");
        }
    }

    /// A `.git` planted in a directory the branch tracks is refused too (no
    /// `.git` below the root ever passes), and never makes its tracked files
    /// look deleted; one in an ignored directory is not looked for.
    #[test]
    fn a_git_file_in_a_tracked_directory_is_refused_one_in_an_ignored_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let git = GitRepo::init_with_files(
            dir.path(),
            &[
                ("src/a.rs".into(), b"a\n".to_vec()),
                ("src/b.rs".into(), b"b\n".to_vec()),
                (".gitignore".into(), b"/target/\n".to_vec()),
            ],
            "init",
        )
        .unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("target/dep")).unwrap();
        std::fs::write(root.join("target/dep/.git"), "gitdir: /nowhere\n").unwrap();
        std::fs::write(root.join("src/.git"), "gitdir: /nowhere\n").unwrap();
        std::fs::write(root.join("src/a.rs"), "changed\n").unwrap();
        let found = git.unstageable(root).unwrap();
        assert_eq!(found.nested, ["src/"]);
        assert!(git.commit_all(root, "change").is_err());
        std::fs::remove_file(root.join("src/.git")).unwrap();
        let info = git.commit_all(root, "change").unwrap().unwrap();
        assert_eq!(info.files, ["src/a.rs"]);
        let repo = Repository::open(root).unwrap();
        let tree = repo.head().unwrap().peel_to_tree().unwrap();
        assert!(tree.get_path(Path::new("src/b.rs")).is_ok());
    }

    /// A link to a directory that holds a `.git` is not followed.
    #[test]
    fn a_link_to_a_repository_is_not_followed() {
        let (dir, git) = repo_with_worktree();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join(".git"), "x\n").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("elsewhere")).unwrap();
        assert!(git.unstageable(dir.path()).unwrap().nested.is_empty());
    }
}
