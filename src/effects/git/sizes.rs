//! The apparent sizes of a worktree's changed and new files, read from
//! their metadata alone: a file over the limit is refused before libgit2
//! hashes it (a 200 GB sparse file would keep it reading for minutes, and
//! its blob would follow the branch everywhere).

use std::path::Path;

use git2::{Repository, StatusOptions};

use super::{Context, GitRepo, Result};

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

/// `files` and `limit` in a sentence: what a refusal says.
pub fn describe_large_files(files: &[LargeFile], limit: u64) -> String {
    let named: Vec<String> = files
        .iter()
        .map(|f| format!("{} ({} bytes)", f.path, f.bytes))
        .collect();
    format!(
        "{} over the {limit}-byte limit on a committed file (run.max_file_bytes): {}",
        if files.len() == 1 {
            "a file is"
        } else {
            "files are"
        },
        named.join(", ")
    )
}

impl GitRepo {
    /// Changed or new files of the worktree at `dir` larger than this
    /// repository's file limit, sizes from metadata only.
    pub fn large_changes(&self, dir: &Path) -> Result<Vec<LargeFile>> {
        let repo = self.open_worktree(dir)?;
        large_changes(&repo, dir, self.max_file_bytes)
    }
}

/// Changed or new files of the worktree at `dir`, registered in the
/// repository whose git data is `common`, larger than `limit`. Opened
/// through memofab's registration, never by the worktree's own `.git`.
pub fn large_changes_in(common: &Path, dir: &Path, limit: u64) -> Result<Vec<LargeFile>> {
    let repo = super::trusted::open_registered(common, dir)?;
    large_changes(&repo, dir, limit)
}

/// Changed or new files (what `add_all` would stage) of the worktree at
/// `dir` larger than `limit`. Status compares sizes before it reads a
/// file, and never reads a new one, so nothing here hashes a large file.
pub(super) fn large_changes(repo: &Repository, dir: &Path, limit: u64) -> Result<Vec<LargeFile>> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut opts))
        .ctx(|| "reading status".into())?;
    let mut large = Vec::new();
    for entry in statuses.iter() {
        let Some(path) = entry.path() else { continue };
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
    Ok(large)
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
            super::super::GitError::TooLarge { files, limit } => {
                assert_eq!(limit, 1000);
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
        assert_eq!(git.large_changes(root).unwrap().len(), 1);
        std::fs::write(root.join("small.txt"), vec![b'x'; 1000]).unwrap();
        assert!(git.large_changes(root).unwrap().is_empty());
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
        assert!(git.large_changes(root).unwrap().is_empty());
    }
}
