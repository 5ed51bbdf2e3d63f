//! The size of a change: lines added and removed per file, which files it
//! deletes or renames, and each new blob's size (and, for large ones,
//! whether it is text), for the gate's rules. Everything is read from the
//! commits' blobs, never from a work tree an agent could have changed.

use git2::{Delta, DiffFindOptions, FileMode, Oid, Patch, Repository};

use super::{Context, GitRepo, Result};
use crate::domain::risk::FileChange;

impl GitRepo {
    /// Per-file statistics of the change from `base` to `head`. Renames are
    /// detected, so a moved file is neither a deletion nor two files. Blobs
    /// over `sniff_over` bytes are read to tell text from binary.
    pub fn diff_stat(
        &self,
        base: &str,
        head: &str,
        sniff_over: Option<u64>,
    ) -> Result<Vec<FileChange>> {
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
            let deleted = delta.status() == Delta::Deleted;
            let renamed_from = match delta.status() {
                Delta::Renamed => delta
                    .old_file()
                    .path()
                    .map(|p| p.to_string_lossy().into_owned()),
                _ => None,
            };
            let new = delta.new_file();
            let is_blob = matches!(
                new.mode(),
                FileMode::Blob | FileMode::BlobExecutable | FileMode::Link
            );
            let (bytes, binary) = if deleted || !is_blob {
                (0, false)
            } else {
                blob_size_and_kind(&repo, new.id(), sniff_over)?
            };
            files.push(FileChange {
                path: path.to_string_lossy().into_owned(),
                renamed_from,
                added,
                removed,
                deleted,
                bytes,
                binary,
            });
        }
        Ok(files)
    }
}

/// A blob's size, from the object header, and whether it is binary: read
/// only when it is over `sniff_over` bytes. Text is UTF-8 without a NUL
/// byte, throughout: a few text bytes in front do not make a binary text.
fn blob_size_and_kind(repo: &Repository, id: Oid, sniff_over: Option<u64>) -> Result<(u64, bool)> {
    let odb = repo.odb().ctx(|| "opening the object database".into())?;
    let (size, _) = odb
        .read_header(id)
        .ctx(|| format!("reading the header of {id}"))?;
    let size = size as u64;
    let binary = match sniff_over {
        Some(limit) if size > limit => {
            let blob = repo.find_blob(id).ctx(|| format!("reading {id}"))?;
            let content = blob.content();
            content.contains(&0) || std::str::from_utf8(content).is_err()
        }
        _ => false,
    };
    Ok((size, binary))
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
        let mut stat = git.diff_stat(&base, "main", None).unwrap();
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
        assert_eq!(stat[1].renamed_from.as_deref(), Some("moved.txt"));
        assert_eq!((stat[0].bytes, stat[2].bytes), (8, 0));
    }

    #[test]
    fn large_blobs_are_sized_from_the_commit_and_sniffed_for_text() {
        let dir = tempfile::tempdir().unwrap();
        let git =
            GitRepo::init_with_files(dir.path(), &[("a".to_owned(), b"a\n".to_vec())], "seed")
                .unwrap();
        let base = git.branch_head("main").unwrap();
        let root = git.root().to_owned();
        // Text in front, a NUL byte far behind it.
        let mut binary = vec![b'x'; 20_000];
        binary.push(0);
        std::fs::write(root.join("blob.bin"), &binary).unwrap();
        std::fs::write(root.join("big.txt"), "line\n".repeat(5_000)).unwrap();
        std::fs::write(root.join("small.bin"), [0u8, 1, 2]).unwrap();
        git.commit_all(&root, "blobs").unwrap();
        // The work tree no longer says anything about what was committed.
        std::fs::write(root.join("blob.bin"), "now text").unwrap();
        let stat = git.diff_stat(&base, "main", Some(10_000)).unwrap();
        let got: Vec<(&str, u64, bool)> = stat
            .iter()
            .map(|f| (f.path.as_str(), f.bytes, f.binary))
            .collect();
        assert_eq!(
            got,
            [
                ("big.txt", 25_000, false),
                ("blob.bin", 20_001, true),
                ("small.bin", 3, false),
            ]
        );
    }
}
