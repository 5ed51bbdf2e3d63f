//! The size of a change: lines added and removed per file, and which files
//! it deletes, for the gate's blast-radius and deleted-tests rules.

use git2::{Delta, DiffFindOptions, Patch};

use super::{Context, GitRepo, Result};
use crate::domain::risk::FileChange;

impl GitRepo {
    /// Per-file statistics of the change from `base` to `head`. Renames are
    /// detected, so a moved file is neither a deletion nor two files.
    pub fn diff_stat(&self, base: &str, head: &str) -> Result<Vec<FileChange>> {
        let repo = self.repo()?;
        let (old, new) = (Self::tree_of(&repo, base)?, Self::tree_of(&repo, head)?);
        let mut diff = repo
            .diff_tree_to_tree(Some(&old), Some(&new), None)
            .ctx(|| "diffing".into())?;
        diff.find_similar(Some(DiffFindOptions::new().renames(true)))
            .ctx(|| "finding renames".into())?;
        let mut files = Vec::with_capacity(diff.deltas().len());
        for (i, delta) in diff.deltas().enumerate() {
            let Some(path) = delta.new_file().path().or_else(|| delta.old_file().path()) else {
                continue;
            };
            // Binary files have no lines; they still count as a file.
            let (added, removed) = match Patch::from_diff(&diff, i)
                .ctx(|| "reading a patch".into())?
            {
                Some(patch) => {
                    let (_, added, removed) = patch.line_stats().ctx(|| "counting lines".into())?;
                    (added, removed)
                }
                None => (0, 0),
            };
            files.push(FileChange {
                path: path.to_string_lossy().into_owned(),
                added,
                removed,
                deleted: delta.status() == Delta::Deleted,
            });
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_deletions_and_renames() {
        let dir = tempfile::tempdir().unwrap();
        let seed = [
            ("keep.txt".to_owned(), b"a\nb\nc\n".to_vec()),
            ("tests/old_test.sh".to_owned(), b"x\ny\n".to_vec()),
            ("moved.txt".to_owned(), b"1\n2\n3\n4\n5\n6\n7\n8\n".to_vec()),
        ];
        let git = GitRepo::init_with_files(dir.path(), &seed, "seed").unwrap();
        let base = git.branch_head("main").unwrap();
        let root = git.root().to_owned();
        std::fs::write(root.join("keep.txt"), "a\nB\nc\nd\n").unwrap();
        std::fs::remove_file(root.join("tests/old_test.sh")).unwrap();
        std::fs::rename(root.join("moved.txt"), root.join("renamed.txt")).unwrap();
        git.commit_all(&root, "change").unwrap();
        let mut stat = git.diff_stat(&base, "main").unwrap();
        stat.sort_by(|a, b| a.path.cmp(&b.path));
        let got: Vec<(&str, usize, usize, bool)> = stat
            .iter()
            .map(|f| (f.path.as_str(), f.added, f.removed, f.deleted))
            .collect();
        assert_eq!(
            got,
            [
                ("keep.txt", 2, 1, false),
                ("renamed.txt", 0, 0, false),
                ("tests/old_test.sh", 0, 2, true),
            ]
        );
    }
}
