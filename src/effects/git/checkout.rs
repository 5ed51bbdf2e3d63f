//! The one place mainline moves, and the user's checkout with it.
//!
//! When the main work tree has mainline checked out, the branch is what
//! `git status` compares the index and the files against. Moving the ref
//! alone would leave a stale index that shows every merged change as a
//! staged reversion, ready for the next `commit -a`. So mainline moves only
//! together with the checkout, like a fast-forward, and only when the
//! checkout is clean; otherwise it stays where it is and the caller is told
//! which of the user's files are in the way.

use git2::build::CheckoutBuilder;
use git2::{CheckoutNotificationType, ErrorCode, Oid, Repository, Tree};

use super::{Context, GitRepo, Result, dirty};
use crate::effects::beneath::{Beneath, Kind};

/// Mainline is checked out in the main work tree with changes of the user's
/// (or files that the new commit would overwrite), so it was not moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyCheckout {
    pub files: Vec<String>,
}

/// What became of an attempt to move mainline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// Mainline (and a checkout of it) is at the new commit.
    Moved,
    /// Mainline was no longer where the move was computed from.
    Raced,
    /// The user's checkout of mainline is not clean; nothing moved.
    Blocked(DirtyCheckout),
}

impl GitRepo {
    /// Moves `refname` from `from` to `to` (compare-and-swap) and brings a
    /// checkout of it along. Every move of mainline goes through here.
    pub(super) fn move_mainline(
        repo: &Repository,
        refname: &str,
        from: Oid,
        to: Oid,
        log: &str,
    ) -> Result<Advance> {
        let current = repo
            .refname_to_id(refname)
            .ctx(|| format!("reading {refname}"))?;
        if current != from {
            return Ok(Advance::Raced);
        }
        if !checked_out(repo, refname) {
            return Self::swap_ref(repo, refname, from, to, log);
        }
        // The user's changes to tracked files, staged or not: the merged
        // files would be checked out around them and `git status` would
        // mix the two.
        let changed = dirty(repo, false)?;
        let (before, target) = (tree_at(repo, from)?, tree_at(repo, to)?);
        if !changed.is_empty() {
            if !half_moved(repo, &changed, &before, &target)? {
                return Ok(Advance::Blocked(DirtyCheckout { files: changed }));
            }
            // A process killed between writing the files and moving the
            // branch left exactly this move half done: finish it.
            check_out(repo, &target, true)?;
            return Self::swap_ref(repo, refname, from, to, log);
        }
        // The files first, like `git merge --ff`, from HEAD's tree (still
        // `from`). Safe mode: untracked files in the way are refused, and
        // nothing is written then.
        let in_the_way = check_out_changes(repo, &before, &target)?;
        if !in_the_way.is_empty() {
            return Ok(Advance::Blocked(DirtyCheckout { files: in_the_way }));
        }
        let moved = Self::swap_ref(repo, refname, from, to, log)?;
        if moved == Advance::Raced {
            // Someone moved the branch in between: give the files back.
            check_out(repo, &before, true)?;
        }
        Ok(moved)
    }

    fn swap_ref(
        repo: &Repository,
        refname: &str,
        from: Oid,
        to: Oid,
        log: &str,
    ) -> Result<Advance> {
        match repo.reference_matching(refname, to, true, from, log) {
            Ok(_) => Ok(Advance::Moved),
            Err(e) if e.code() == ErrorCode::Modified => Ok(Advance::Raced),
            Err(e) => Err(e).ctx(|| format!("moving {refname}")),
        }
    }
}

/// Whether every changed path is one this very move changes, holding the
/// new content (or the start of it: a write cut off) in the work tree and
/// the old or new one in the index: the trace of a move killed half way
/// (files written, branch not yet moved), not a user's edit. Measured: a
/// demo killed at random moments left a landing's file cut off, and the
/// resumed run waited for the human to commit "their" changes.
fn half_moved(
    repo: &Repository,
    changed: &[String],
    before: &Tree<'_>,
    target: &Tree<'_>,
) -> Result<bool> {
    let index = repo.index().ctx(|| "reading the index".into())?;
    // The checkout's own path is the user's (a link to it included).
    let root = repo
        .workdir()
        .and_then(|dir| std::fs::canonicalize(dir).ok());
    let Some(checkout) = root.and_then(|dir| Beneath::open(&dir).ok()) else {
        return Ok(false);
    };
    let blob = |tree: &Tree<'_>, path: &str| {
        tree.get_path(std::path::Path::new(path))
            .ok()
            .map(|e| e.id())
    };
    for path in changed {
        let (old, new) = (blob(before, path), blob(target, path));
        if old == new {
            return Ok(false);
        }
        let new_blob = new.and_then(|id| repo.find_blob(id).ok());
        let bytes = match on_disk(&checkout, path, new_blob.as_ref()) {
            OnDisk::Absent => None,
            OnDisk::Bytes(bytes) => Some(bytes),
            OnDisk::NotOurs => return Ok(false),
        };
        let hashed = match &bytes {
            Some(bytes) => Some(
                Oid::hash_object(git2::ObjectType::Blob, bytes)
                    .ctx(|| format!("hashing {path}"))?,
            ),
            None => None,
        };
        // Killed while writing the file: the start of the new content.
        let torn = match (&bytes, &new_blob) {
            (Some(bytes), Some(blob)) => blob.content().starts_with(bytes),
            _ => false,
        };
        let staged = index.get_path(std::path::Path::new(path), 0).map(|e| e.id);
        if (hashed != new && !torn) || (staged != old && staged != new) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What stands at a changed path of the user's checkout.
enum OnDisk {
    Absent,
    /// A regular file no longer than the new content.
    Bytes(Vec<u8>),
    /// Anything else: a link (never followed: the tree landed may hold a
    /// link an agent committed, to `/dev/zero` say), a directory, a FIFO,
    /// a file longer than the new content, or one that cannot be read.
    NotOurs,
}

/// The file at `path` in `checkout`, read only as far as it can be the new
/// content `new` (or its start).
fn on_disk(checkout: &Beneath, path: &str, new: Option<&git2::Blob<'_>>) -> OnDisk {
    use std::io::Read;
    let rel = std::path::Path::new(path);
    match checkout.kind(rel) {
        Ok(None) => return OnDisk::Absent,
        Ok(Some(Kind::File)) => {}
        Ok(Some(_)) | Err(_) => return OnDisk::NotOurs,
    }
    let Some(new) = new else {
        return OnDisk::NotOurs;
    };
    let most = new.size() as u64;
    let mut bytes = Vec::new();
    match checkout
        .open_file(rel)
        .map(|file| file.take(most + 1).read_to_end(&mut bytes))
    {
        Ok(Ok(_)) if bytes.len() as u64 <= most => OnDisk::Bytes(bytes),
        _ => OnDisk::NotOurs,
    }
}

/// Whether the main work tree has `refname` checked out.
fn checked_out(repo: &Repository, refname: &str) -> bool {
    repo.head()
        .ok()
        .and_then(|h| h.name().map(str::to_owned))
        .is_some_and(|n| n == refname)
}

fn tree_at(repo: &Repository, commit: Oid) -> Result<Tree<'_>> {
    repo.find_commit(commit)
        .and_then(|c| c.tree())
        .ctx(|| format!("reading the tree of {commit}"))
}

/// Checks `target` out in the main work tree from `before` (HEAD's tree,
/// the index clean against it): only the paths the two trees differ in, as
/// `git merge` does, rather than a look at every file of the work tree (the
/// caller has just read its status). Safe, as [`check_out`]; a limited
/// checkout that fails (an untracked file where the target has a directory
/// on a path's way) is done again in full, which says what is in the way.
fn check_out_changes(
    repo: &Repository,
    before: &Tree<'_>,
    target: &Tree<'_>,
) -> Result<Vec<String>> {
    let diff = repo
        .diff_tree_to_tree(Some(before), Some(target), None)
        .ctx(|| "comparing mainline's trees".into())?;
    let mut paths = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path_bytes() {
                paths.push(path.to_vec());
            }
        }
    }
    paths.sort();
    paths.dedup();
    if paths.is_empty() {
        // An empty path list would mean every path to libgit2.
        return Ok(Vec::new());
    }
    let mut refused = Vec::new();
    let result = {
        let mut checkout = CheckoutBuilder::new();
        checkout
            .safe()
            .disable_pathspec_match(true)
            .notify_on(CheckoutNotificationType::CONFLICT)
            .notify(|_, path, _, _, _| {
                if let Some(path) = path {
                    refused.push(path.to_string_lossy().into_owned());
                }
                true
            });
        for path in &paths {
            checkout.path(path.as_slice());
        }
        repo.checkout_tree(target.as_object(), Some(&mut checkout))
    };
    match result {
        Ok(()) => Ok(Vec::new()),
        Err(e) if e.code() == ErrorCode::Conflict && !refused.is_empty() => {
            refused.sort();
            refused.dedup();
            Ok(refused)
        }
        Err(_) => check_out(repo, target, false),
    }
}

/// Checks `target` out in the main work tree, index included, from HEAD's
/// tree. Returns the paths a safe checkout refused to touch (then nothing
/// was written); `force` restores the tree whatever the files hold.
fn check_out(repo: &Repository, target: &Tree<'_>, force: bool) -> Result<Vec<String>> {
    let mut refused = Vec::new();
    let result = {
        let mut checkout = CheckoutBuilder::new();
        if force {
            checkout.force();
        } else {
            checkout.safe();
        }
        checkout
            .notify_on(CheckoutNotificationType::CONFLICT)
            .notify(|_, path, _, _, _| {
                if let Some(path) = path {
                    refused.push(path.to_string_lossy().into_owned());
                }
                true
            });
        repo.checkout_tree(target.as_object(), Some(&mut checkout))
    };
    match result {
        Ok(()) => Ok(Vec::new()),
        Err(e) if e.code() == ErrorCode::Conflict && !refused.is_empty() => {
            refused.sort();
            refused.dedup();
            Ok(refused)
        }
        Err(e) => Err(e).ctx(|| "updating the main work tree".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with `main` checked out at A (`f` = "old"), and a commit
    /// B (`f` = "new") that main does not have yet.
    fn repo() -> (tempfile::TempDir, Repository, Oid, Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        let commit = |content: &str, parents: &[&git2::Commit<'_>]| {
            let blob = repo.blob(content.as_bytes()).unwrap();
            let mut tb = repo.treebuilder(None).unwrap();
            tb.insert("f", blob, 0o100644).unwrap();
            let tree = repo.find_tree(tb.write().unwrap()).unwrap();
            repo.commit(None, &sig, &sig, "c", &tree, parents).unwrap()
        };
        let a = commit("old\n", &[]);
        let b = commit("new\n", &[&repo.find_commit(a).unwrap()]);
        repo.reference("refs/heads/main", a, true, "init").unwrap();
        repo.set_head("refs/heads/main").unwrap();
        repo.checkout_head(Some(CheckoutBuilder::new().force()))
            .unwrap();
        (dir, repo, a, b)
    }

    #[test]
    fn a_move_killed_after_the_files_were_written_is_finished() {
        let (dir, repo, a, b) = repo();
        // The files of B are on disk, the index and the branch still at A.
        std::fs::write(dir.path().join("f"), "new\n").unwrap();
        let moved = GitRepo::move_mainline(&repo, "refs/heads/main", a, b, "land").unwrap();
        assert_eq!(moved, Advance::Moved);
        assert_eq!(repo.refname_to_id("refs/heads/main").unwrap(), b);
        assert!(dirty(&repo, true).unwrap().is_empty(), "a clean checkout");
    }

    #[test]
    fn a_users_own_edit_holds_the_move() {
        let (dir, repo, a, b) = repo();
        std::fs::write(dir.path().join("f"), "the user's\n").unwrap();
        let moved = GitRepo::move_mainline(&repo, "refs/heads/main", a, b, "land").unwrap();
        assert!(matches!(moved, Advance::Blocked(_)));
        assert_eq!(repo.refname_to_id("refs/heads/main").unwrap(), a);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f")).unwrap(),
            "the user's\n"
        );
    }
}
