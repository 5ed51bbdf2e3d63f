//! Files found by name anywhere in a commit's tree (the project instruction
//! files), read from the commit rather than a work tree so no agent's
//! uncommitted edit can change what is read.

use std::path::{Component, Path, PathBuf};

use git2::{ObjectType, Repository, Tree, TreeWalkMode, TreeWalkResult};

use super::{Context, GitRepo, Result};
use crate::domain::instructions::{
    INSTRUCTION_FILE_NAMES, InstructionFile, MAX_INSTRUCTION_BYTES, pick_instruction_files,
};

/// Git's mode for a symbolic link.
const SYMLINK_MODE: i32 = 0o120000;

impl GitRepo {
    /// Each directory's project instruction file at `rev`, root first.
    pub fn instruction_files_at(&self, rev: &str) -> Result<Vec<InstructionFile>> {
        // No more than all of them together may show.
        let found = self.files_named_at(rev, &INSTRUCTION_FILE_NAMES, MAX_INSTRUCTION_BYTES + 1)?;
        let picked = pick_instruction_files(found.iter().map(|(path, _)| path.as_str()));
        Ok(picked
            .into_iter()
            .filter_map(|path| {
                let (_, content) = found.iter().find(|(p, _)| p == path)?;
                Some(InstructionFile {
                    path: path.to_owned(),
                    text: String::from_utf8_lossy(content).into_owned(),
                })
            })
            .collect())
    }

    /// The repository's `core.hooksPath`, as configured (local, global or
    /// system config), if set: hooks there run on a developer's commit.
    pub fn hooks_path(&self) -> Result<Option<String>> {
        let repo = self.repo()?;
        let config = repo.config().ctx(|| "reading the git config".into())?;
        Ok(config.get_string("core.hooksPath").ok())
    }

    /// Every file at `rev` whose name is one of `names`, with its content cut
    /// at `max_bytes`. A symbolic link (`CLAUDE.md -> AGENTS.md`) is read as
    /// the file it points to inside the tree; one pointing outside, or at
    /// nothing, is skipped.
    pub fn files_named_at(
        &self,
        rev: &str,
        names: &[&str],
        max_bytes: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let repo = self.repo()?;
        let tree = Self::tree_of(&repo, rev)?;
        let mut found = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            let name = entry.name().unwrap_or("");
            if entry.kind() == Some(ObjectType::Blob) && names.contains(&name) {
                found.push((format!("{dir}{name}"), entry.filemode(), entry.id()));
            }
            TreeWalkResult::Ok
        })
        .ctx(|| format!("looking for {} at {rev}", names.join(", ")))?;
        let mut files = Vec::new();
        for (path, mode, id) in found {
            let blob = repo.find_blob(id).ctx(|| format!("reading {path}"))?;
            let content = if mode == SYMLINK_MODE {
                match link_target(&repo, &tree, &path, blob.content()) {
                    Some(content) => content,
                    None => continue,
                }
            } else {
                blob.content().to_vec()
            };
            let mut content = content;
            content.truncate(max_bytes);
            files.push((path, content));
        }
        Ok(files)
    }
}

/// The content of the regular file a link at `path` points to, if it is in
/// `tree`.
fn link_target(repo: &Repository, tree: &Tree<'_>, path: &str, target: &[u8]) -> Option<Vec<u8>> {
    let target = std::str::from_utf8(target).ok()?;
    let dir = Path::new(path).parent().unwrap_or(Path::new(""));
    let mut resolved = PathBuf::new();
    for part in dir.join(target).components() {
        match part {
            Component::Normal(p) => resolved.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !resolved.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    let entry = tree.get_path(&resolved).ok()?;
    if entry.filemode() == SYMLINK_MODE {
        return None;
    }
    let blob = entry.to_object(repo).ok()?.into_blob().ok()?;
    Some(blob.content().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_files_are_read_from_the_commit_and_links_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let git = GitRepo::init_with_files(
            dir.path(),
            &[
                ("AGENTS.md".into(), b"root".to_vec()),
                ("src/x/AGENTS.md".into(), b"x".to_vec()),
                ("src/x/main.rs".into(), b"fn main() {}".to_vec()),
            ],
            "init",
        )
        .unwrap();
        // A link committed beside them, and an edit never committed.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("../AGENTS.md", dir.path().join("src/CLAUDE.md")).unwrap();
            std::os::unix::fs::symlink("/etc/passwd", dir.path().join("src/x/CLAUDE.md")).unwrap();
            let repo = Repository::open(dir.path()).unwrap();
            let mut index = repo.index().unwrap();
            index.add_path(Path::new("src/CLAUDE.md")).unwrap();
            index.add_path(Path::new("src/x/CLAUDE.md")).unwrap();
            index.write().unwrap();
            let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
            let head = repo.head().unwrap().peel_to_commit().unwrap();
            let sig = git2::Signature::now("t", "t@t").unwrap();
            repo.commit(Some("HEAD"), &sig, &sig, "links", &tree, &[&head])
                .unwrap();
        }
        std::fs::write(dir.path().join("AGENTS.md"), "edited").unwrap();

        let mut got = git
            .files_named_at("main", &["AGENTS.md", "CLAUDE.md"], 3)
            .unwrap();
        got.sort();
        let mut want = vec![
            ("AGENTS.md".to_owned(), b"roo".to_vec()),
            ("src/x/AGENTS.md".to_owned(), b"x".to_vec()),
        ];
        if cfg!(unix) {
            want.push(("src/CLAUDE.md".to_owned(), b"roo".to_vec()));
            want.sort();
        }
        assert_eq!(got, want);
    }
}
