//! Links an agent planted where a checkout is about to write. On a
//! case-sensitive file system libgit2 checks a directory on the way to a file
//! with `stat`, not `lstat`: a link standing where the tree has a directory
//! is followed, and the file written wherever it points (measured by
//! `checkouts_never_write_through_a_planted_link` in tests/all/git_effects.rs,
//! libgit2 1.9). So before every checkout into a worktree, such links are
//! removed, themselves, beneath the worktree.

use std::path::Path;

use git2::{ObjectType, Repository, Tree};

use super::{Context, GitRepo, Result};
use crate::effects::beneath::Kind;

impl GitRepo {
    /// Removes every link in the worktree at `dir` that stands where `tree`
    /// has a directory, except one `keep` has there as a link too (tracked:
    /// libgit2 removes what its baseline has before writing). Returns the
    /// paths removed.
    pub(super) fn unlink_planted(
        &self,
        repo: &Repository,
        dir: &Path,
        tree: &Tree<'_>,
        keep: Option<&Tree<'_>>,
    ) -> Result<Vec<String>> {
        let worktree = self.beneath(dir)?;
        let mut removed = Vec::new();
        let mut pending = vec![(String::new(), tree.clone())];
        while let Some((prefix, tree)) = pending.pop() {
            for entry in tree.iter() {
                let Some(name) = entry.name() else { continue };
                if entry.kind() != Some(ObjectType::Tree) {
                    continue;
                }
                let path = if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}/{name}")
                };
                match worktree.kind(Path::new(&path))? {
                    Some(Kind::Dir) => {
                        let sub = repo
                            .find_tree(entry.id())
                            .ctx(|| format!("reading tree {path}"))?;
                        pending.push((path, sub));
                    }
                    Some(Kind::Symlink) if !tracked_link(keep, &path) => {
                        worktree.remove(Path::new(&path))?;
                        removed.push(path);
                    }
                    _ => {}
                }
            }
        }
        Ok(removed)
    }
}

/// Whether `tree` has a link at `path`.
fn tracked_link(tree: Option<&Tree<'_>>, path: &str) -> bool {
    const SYMLINK_MODE: i32 = 0o120000;
    tree.and_then(|t| t.get_path(Path::new(path)).ok())
        .is_some_and(|e| e.filemode() == SYMLINK_MODE)
}
