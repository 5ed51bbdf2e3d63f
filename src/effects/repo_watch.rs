//! Notices changes to the user's repository that memofab did not make: refs
//! moved or added, hooks planted, config rewritten (a remote, `hooksPath`).
//! Agents' commands cannot write there (the fence makes git data read-only),
//! so a change means a hole in the fence, or a human at work; either way the
//! run stops until someone looks. Mainline is watched like any other ref:
//! during a run it moves only by memofab's landings, which the [`Guard`] is
//! told about; any other move of it is a change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What each watched item looked like: name → digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(BTreeMap<String, String>);

/// Refs memofab itself moves: its task and verification branches, and the
/// stash a human may use to clear the checkout. Not mainline: see [`Guard`].
fn is_ours(name: &str) -> bool {
    name.starts_with("refs/heads/memofab/")
        || name.starts_with("refs/heads/memofab-verify/")
        || name == "refs/stash"
}

/// The reference fingerprint of a run, and mainline as memofab's own
/// landings left it.
#[derive(Debug, Clone)]
pub struct Guard {
    reference: Fingerprint,
    mainline_item: String,
    /// A landing is moving mainline right now: its ref is not compared until
    /// the landing says where it put it.
    landing: bool,
    /// `refs/remotes/<remote>/` of the remote mainline lives on: memofab's
    /// fetches and pushes move them (as the user's own do), and nothing
    /// lands from them without a fetch.
    remote_refs: Option<String>,
}

impl Guard {
    /// `reference` taken at the run's start (or resume): mainline may have
    /// moved between runs, by a human; from here on only by a landing.
    pub fn new(reference: Fingerprint, mainline: &str) -> Self {
        Self {
            reference,
            mainline_item: format!("ref refs/heads/{mainline}"),
            landing: false,
            remote_refs: None,
        }
    }

    /// Mainline lives on the remote `remote`: its remote-tracking refs are
    /// not watched.
    pub fn with_remote(mut self, remote: Option<&str>) -> Self {
        self.remote_refs = remote.map(|r| format!("ref refs/remotes/{r}/"));
        self
    }

    /// A human accepted the repository as it is now.
    pub fn rebaseline(&mut self, now: Fingerprint) {
        self.reference = now;
    }

    /// A human accepted mainline as it is in `now` (they committed on it to
    /// release a landing held for their checkout); the rest stays watched.
    pub fn accept_mainline(&mut self, now: &Fingerprint) {
        match now.0.get(&self.mainline_item) {
            Some(at) => self
                .reference
                .0
                .insert(self.mainline_item.clone(), at.clone()),
            None => self.reference.0.remove(&self.mainline_item),
        };
    }

    /// A landing starts moving mainline.
    pub fn landing_starts(&mut self) {
        self.landing = true;
    }

    /// The landing is over: mainline is at `landed` if it moved it (a
    /// compare-and-swap from where it was), else where it was before.
    pub fn landing_ends(&mut self, landed: Option<&str>) {
        if let Some(commit) = landed {
            self.reference
                .0
                .insert(self.mainline_item.clone(), commit.to_owned());
        }
        self.landing = false;
    }

    /// What changed from the reference to `now`, one line each.
    pub fn changes(&self, now: &Fingerprint) -> Vec<String> {
        if !self.landing && self.remote_refs.is_none() {
            return self.reference.changes(now);
        }
        let skip = |f: &Fingerprint| {
            let mut items = f.0.clone();
            if self.landing {
                items.remove(&self.mainline_item);
            }
            if let Some(prefix) = &self.remote_refs {
                items.retain(|item, _| !item.starts_with(prefix.as_str()));
            }
            Fingerprint(items)
        };
        skip(&self.reference).changes(&skip(now))
    }
}

/// The user's git data: the main repository's `.git`, also from a worktree.
pub fn common_dir(repo_root: &Path) -> PathBuf {
    git2::Repository::open(repo_root)
        .map(|r| r.commondir().to_owned())
        .unwrap_or_else(|_| repo_root.join(".git"))
}

impl Fingerprint {
    /// Reads the repository whose git data is at `git_dir` (its `.git`).
    /// `_mainline` is watched like any other ref (see [`Guard`]).
    pub fn take(git_dir: &Path, _mainline: &str) -> Fingerprint {
        let mut items = BTreeMap::new();
        refs(git_dir, &mut items);
        for file in [
            "config",
            "config.worktree",
            "info/attributes",
            "info/exclude",
        ] {
            if let Some(digest) = digest_file(&git_dir.join(file)) {
                items.insert(format!("file .git/{file}"), digest);
            }
        }
        for hook in list_dir(&git_dir.join("hooks")) {
            let name = hook
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let digest = digest_file(&hook).unwrap_or_else(|| "unreadable".into());
            items.insert(format!("hook .git/hooks/{name}"), digest);
        }
        Fingerprint(items)
    }

    /// What changed from `self` to `now`, one line each.
    pub fn changes(&self, now: &Fingerprint) -> Vec<String> {
        let mut changes = Vec::new();
        for (item, before) in &self.0 {
            match now.0.get(item) {
                None => changes.push(format!("{item} was removed")),
                Some(after) if after != before => changes.push(format!("{item} changed")),
                Some(_) => {}
            }
        }
        for item in now.0.keys().filter(|k| !self.0.contains_key(*k)) {
            changes.push(format!("{item} was added"));
        }
        changes
    }
}

/// Every ref but memofab's own, name → its commit (or, for a symbolic
/// ref, what it names), as git reads them: a loose ref file wins over the
/// same name in `packed-refs`. Read from the files rather than through
/// libgit2, whose iteration opens every loose ref, memofab's task branches
/// included: one a task, so every check took longer as a run went on. Their
/// directories are not entered here. Lock files are git's own updates in
/// progress, not refs.
fn refs(git_dir: &Path, items: &mut BTreeMap<String, String>) {
    let mut pending = vec![("refs".to_owned(), git_dir.join("refs"))];
    while let Some((name, dir)) = pending.pop() {
        for path in list_dir(&dir) {
            let Some(leaf) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let full = format!("{name}/{leaf}");
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if !is_ours(&format!("{full}/")) {
                    pending.push((full, path));
                }
                continue;
            }
            if leaf.ends_with(".lock") || is_ours(&full) {
                continue;
            }
            let target = match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let text = text.trim();
                    text.strip_prefix("ref:").map_or(text, str::trim).to_owned()
                }
                Err(_) => "unreadable".to_owned(),
            };
            items.insert(format!("ref {full}"), target);
        }
    }
    let packed = std::fs::read_to_string(git_dir.join("packed-refs")).unwrap_or_default();
    for line in packed.lines() {
        if line.starts_with('#') || line.starts_with('^') {
            continue;
        }
        let Some((oid, name)) = line.split_once(' ') else {
            continue;
        };
        if !is_ours(name) {
            items
                .entry(format!("ref {name}"))
                .or_insert_with(|| oid.to_owned());
        }
    }
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|read| read.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Size, permissions and an FNV-1a hash of the content: enough to notice
/// an edit, not a cryptographic claim.
fn digest_file(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).ok()?;
        return Some(format!("symlink to {}", target.display()));
    }
    if !meta.is_file() {
        return Some(format!("mode {:o}", meta.permissions().mode()));
    }
    let bytes = std::fs::read(path).ok()?;
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    Some(format!(
        "{} bytes, mode {:o}, {hash:016x}",
        bytes.len(),
        meta.permissions().mode()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        repo.commit(Some("refs/heads/main"), &sig, &sig, "init", &tree, &[])
            .unwrap();
        let git = dir.path().join(".git");
        (dir, git)
    }

    #[test]
    fn mainline_moves_only_by_a_landing() {
        let (_dir, git) = repo();
        let mut guard = Guard::new(Fingerprint::take(&git, "main"), "main");
        let repo = git2::Repository::open(&git).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        let parent = repo.find_commit(repo.refname_to_id("refs/heads/main").unwrap());
        let parent = parent.unwrap();
        let tree = parent.tree().unwrap();
        let next = repo
            .commit(None, &sig, &sig, "next", &tree, &[&parent])
            .unwrap();
        // A landing: not a change while it moves, nor after it says so.
        guard.landing_starts();
        repo.reference("refs/heads/main", next, true, "landing")
            .unwrap();
        assert!(guard.changes(&Fingerprint::take(&git, "main")).is_empty());
        guard.landing_ends(Some(&next.to_string()));
        assert!(guard.changes(&Fingerprint::take(&git, "main")).is_empty());
        // Anything else that moves it is.
        repo.reference("refs/heads/main", parent.id(), true, "sneaky")
            .unwrap();
        let changes = guard.changes(&Fingerprint::take(&git, "main"));
        assert_eq!(changes, vec!["ref refs/heads/main changed".to_owned()]);
        // A landing that did not move it does not accept the sneaky move.
        guard.landing_starts();
        guard.landing_ends(None);
        assert_eq!(guard.changes(&Fingerprint::take(&git, "main")).len(), 1);
        // A human who releases a held landing accepts mainline, only it.
        std::fs::write(git.join("hooks/post-commit"), "#!/bin/sh\n").unwrap();
        guard.accept_mainline(&Fingerprint::take(&git, "main"));
        let changes = guard.changes(&Fingerprint::take(&git, "main"));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].contains("hooks/post-commit"));
    }

    #[test]
    fn the_mainline_remotes_tracking_refs_are_not_watched_other_refs_are() {
        let (_dir, git) = repo();
        let repo = git2::Repository::open(&git).unwrap();
        let head = repo.refname_to_id("refs/heads/main").unwrap();
        let guard = Guard::new(Fingerprint::take(&git, "main"), "main").with_remote(Some("origin"));
        repo.reference("refs/remotes/origin/main", head, true, "fetch")
            .unwrap();
        assert!(guard.changes(&Fingerprint::take(&git, "main")).is_empty());
        repo.reference("refs/remotes/other/main", head, true, "fetch")
            .unwrap();
        let changes = guard.changes(&Fingerprint::take(&git, "main"));
        assert_eq!(
            changes,
            vec!["ref refs/remotes/other/main was added".to_owned()]
        );
    }

    #[test]
    fn hooks_config_and_foreign_refs_are_noticed_ours_are_not() {
        let (_dir, git) = repo();
        let before = Fingerprint::take(&git, "main");
        let repo = git2::Repository::open(&git).unwrap();
        let head = repo.refname_to_id("refs/heads/main").unwrap();
        repo.reference("refs/heads/memofab/r/a", head, true, "ours")
            .unwrap();
        assert!(before.changes(&Fingerprint::take(&git, "main")).is_empty());

        std::fs::write(git.join("hooks/post-commit"), "#!/bin/sh\ncurl evil\n").unwrap();
        repo.reference("refs/heads/sneaky", head, true, "theirs")
            .unwrap();
        repo.remote("evil", "http://127.0.0.1:1/x").unwrap();
        let changes = before.changes(&Fingerprint::take(&git, "main"));
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(changes.iter().any(|c| c.contains("hooks/post-commit")));
        assert!(changes.iter().any(|c| c.contains("refs/heads/sneaky")));
        assert!(changes.iter().any(|c| c.contains(".git/config")));
    }
}
