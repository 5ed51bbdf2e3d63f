//! Commits in a task worktree: the coder's work, and mainline merged in
//! (with conflict markers left for the coder when it does not merge clean).

use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{IndexAddOption, Oid, Repository};

use crate::effects::beneath::{Beneath, Kind};

use super::{CommitInfo, Context, GitRepo, Result, changed_paths, conflicted_paths, signature};

impl GitRepo {
    /// Stages every change in the worktree and commits it. Makes a merge
    /// commit when a merge is in progress. `None` when there is nothing to commit.
    pub fn commit_all(&self, dir: &Path, message: &str) -> Result<Option<CommitInfo>> {
        let repo = self.open_worktree(dir)?;
        // Looked at before libgit2 stages anything: a huge file is refused
        // unhashed, a repository inside refused before it fails the staging.
        super::unstageable::check(&repo, dir, self.max_file_bytes)?;
        let mut index = repo.index().ctx(|| "reading the index".into())?;
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .ctx(|| "staging changes".into())?;
        index
            .update_all(["*"], None)
            .ctx(|| "staging deletions".into())?;
        index.write().ctx(|| "writing the index".into())?;
        let tree_id = index.write_tree().ctx(|| "writing the tree".into())?;
        let head = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .ctx(|| "reading the worktree's HEAD".into())?;
        let merge_heads = merge_heads(&repo)?;
        if tree_id == head.tree_id() && merge_heads.is_empty() {
            return Ok(None);
        }
        let tree = repo
            .find_tree(tree_id)
            .ctx(|| "reading the new tree".into())?;
        let mut parents = vec![head.clone()];
        for oid in &merge_heads {
            parents.push(
                repo.find_commit(*oid)
                    .ctx(|| "reading the merged commit".into())?,
            );
        }
        let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let sig = signature()?;
        let oid = repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parent_refs)
            .ctx(|| "committing".into())?;
        repo.cleanup_state().ctx(|| "clearing merge state".into())?;
        let head_tree = head.tree().ctx(|| "reading the old tree".into())?;
        let files = changed_paths(&repo, &head_tree, &tree)?;
        Ok(Some(CommitInfo {
            commit: oid.to_string(),
            files,
        }))
    }

    /// Merges mainline into the task worktree at `dir`. A clean merge is
    /// committed at once; conflicts are left in the files with markers (and
    /// MERGE_HEAD set) and their paths returned.
    pub fn merge_mainline_into_worktree(&self, dir: &Path, mainline: &str) -> Result<Vec<String>> {
        let repo = self.open_worktree(dir)?;
        if repo.state() == git2::RepositoryState::Merge {
            // Already merging (a human or an agent is resolving): report what
            // is still conflicted rather than merge again.
            let index = repo.index().ctx(|| "reading the index".into())?;
            return conflicted_paths(&index);
        }
        let main_oid = Self::resolve(&repo, mainline)?;
        let head_oid = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map(|c| c.id())
            .ctx(|| "reading the worktree's HEAD".into())?;
        let up_to_date = head_oid == main_oid
            || repo
                .graph_descendant_of(head_oid, main_oid)
                .ctx(|| "comparing history".into())?;
        if up_to_date {
            return Ok(Vec::new());
        }
        let (main_tree, head_tree) = (
            Self::commit_at(&repo, mainline)?
                .tree()
                .ctx(|| "reading mainline's tree".into())?,
            repo.head()
                .and_then(|h| h.peel_to_tree())
                .ctx(|| "reading the worktree's tree".into())?,
        );
        self.unlink_planted(&repo, dir, &main_tree, Some(&head_tree))?;
        let annotated = repo
            .find_annotated_commit(main_oid)
            .ctx(|| "reading mainline".into())?;
        let mut checkout = CheckoutBuilder::new();
        checkout.allow_conflicts(true).conflict_style_diff3(true);
        repo.merge(&[&annotated], None, Some(&mut checkout))
            .ctx(|| format!("merging {mainline} into {}", dir.display()))?;
        let index = repo.index().ctx(|| "reading the index".into())?;
        if index.has_conflicts() {
            return conflicted_paths(&index);
        }
        self.commit_all(dir, &format!("Merge {mainline} into the task branch"))?;
        Ok(Vec::new())
    }

    /// Files of the worktree at `dir` that differ from its HEAD (changed,
    /// new or deleted), each named, not their directories.
    pub fn worktree_changes(&self, dir: &Path) -> Result<Vec<String>> {
        let repo = self.open_worktree(dir)?;
        Ok(super::file_statuses(&repo)?
            .iter()
            .filter(|s| s.status() != git2::Status::CURRENT)
            .filter_map(|s| s.path().map(str::to_owned))
            .collect())
    }

    /// Puts `paths` of the worktree at `dir` back as they are in `commit`
    /// (deleting those it does not have). Returns the paths that differed.
    /// Every path is reached beneath the worktree without following a link:
    /// a link an agent planted where a directory belongs is removed, itself,
    /// and the file written inside the worktree, never where it pointed.
    pub fn restore_files(&self, dir: &Path, commit: &str, paths: &[String]) -> Result<Vec<String>> {
        let repo = self.open_worktree(dir)?;
        let tree = Self::commit_at(&repo, commit)?
            .tree()
            .ctx(|| format!("reading the tree of {commit}"))?;
        let worktree = self.beneath(dir)?;
        let mut restored = Vec::new();
        for rel in paths {
            let wanted = match tree.get_path(Path::new(rel)) {
                Ok(entry) => Some((
                    repo.find_blob(entry.id())
                        .ctx(|| format!("reading {rel} at {commit}"))?
                        .content()
                        .to_vec(),
                    file_mode(entry.filemode()),
                )),
                Err(e) if e.code() == git2::ErrorCode::NotFound => None,
                Err(e) => return Err(e).ctx(|| format!("looking up {rel} at {commit}")),
            };
            let rel_path = Path::new(rel);
            // A link, a directory or a FIFO in its place is never the same.
            let same = match (&wanted, worktree.kind(rel_path)?) {
                (None, None) => true,
                (Some((bytes, _)), Some(Kind::File)) => holds_exactly(&worktree, rel_path, bytes),
                _ => false,
            };
            if same {
                continue;
            }
            match &wanted {
                Some((bytes, mode)) => worktree.put(rel_path, bytes, Some(*mode))?,
                None => {
                    worktree.remove(rel_path)?;
                }
            }
            restored.push(rel.clone());
        }
        Ok(restored)
    }
}

/// The permission bits a tree entry's file gets in a work tree.
fn file_mode(filemode: i32) -> u32 {
    if filemode == i32::from(git2::FileMode::BlobExecutable) {
        0o755
    } else {
        0o644
    }
}

/// Whether the regular file at `rel` holds exactly `wanted`. Sizes are
/// compared first, so a huge file an agent put in the place of a small one
/// is never read.
fn holds_exactly(worktree: &Beneath, rel: &Path, wanted: &[u8]) -> bool {
    use std::io::Read;
    let Ok(file) = worktree.open_file(rel) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(wanted.len() as u64) {
        return false;
    }
    let mut on_disk = Vec::with_capacity(wanted.len());
    file.take(wanted.len() as u64 + 1)
        .read_to_end(&mut on_disk)
        .is_ok_and(|_| on_disk == wanted)
}

/// The commits being merged in, if a merge is in progress (`MERGE_HEAD`).
fn merge_heads(repo: &Repository) -> Result<Vec<Oid>> {
    if repo.state() != git2::RepositoryState::Merge {
        return Ok(Vec::new());
    }
    let path = repo.path().join("MERGE_HEAD");
    let text = std::fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Oid::from_str(l.trim()).ctx(|| format!("reading {}", path.display())))
        .collect()
}
