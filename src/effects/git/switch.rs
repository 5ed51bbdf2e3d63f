//! Switching a recycled worktree to another commit in time proportional to
//! what differs, like `git switch` followed by `git clean -fdx`.
//!
//! libgit2's checkout with `remove_untracked` looks up every file of the
//! work tree by its full path and decides about each. Here the work tree is
//! walked once through directory descriptors (`openat` without following
//! links, `fstatat` of each name), on a few threads like git's preloaded
//! index: what the index does not know is removed, itself, never through a
//! link, and so is a tracked file whose `lstat` no longer matches its index
//! entry (or is racily clean). libgit2 then checks out only the paths
//! missing now and the ones where the index differs from the target tree.
//! Anything unusual (conflicts, submodules, sparse or intent-to-add
//! entries) is left to the full checkout.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{Index, Repository, Tree};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::{Context, GitRepo, Result};
use crate::effects::beneath::MAX_DEPTH;

/// The file modes an index entry can have that a plain checkout writes.
const FILE: u32 = 0o100644;
const EXECUTABLE: u32 = 0o100755;
const SYMLINK: u32 = 0o120000;

/// Index entry flags that need the full checkout's care.
const ASSUME_VALID: u16 = 0x8000;
const INTENT_TO_ADD: u16 = 0x2000;
const SKIP_WORKTREE: u16 = 0x4000;

/// What a clean checkout of an index entry looks like to `lstat`.
#[derive(Debug, Clone, Copy)]
struct Recorded {
    mode: u32,
    size: u32,
    ino: u32,
    mtime: (i32, u32),
    ctime: (i32, u32),
}

/// The worktree's index, by path, and the directories its entries are in.
struct Tracked {
    files: HashMap<Vec<u8>, Recorded>,
    dirs: HashSet<Vec<u8>>,
    /// When the index was written: an entry modified at or after it may have
    /// changed within the same timestamp (racily clean).
    written: (i32, u32),
}

impl GitRepo {
    /// Brings the worktree `repo` at `dir` to exactly `target`'s tree, index
    /// included, untracked and ignored files removed. `false` when the index
    /// holds something only the full checkout handles; then nothing was
    /// changed (the caller does the full checkout). Otherwise the paths it
    /// checked out.
    pub(super) fn switch_in_place(
        &self,
        repo: &Repository,
        dir: &Path,
        target: &Tree<'_>,
    ) -> Result<Option<Vec<Vec<u8>>>> {
        let index = repo.index().ctx(|| "reading the index".into())?;
        let Some(tracked) = Tracked::read(repo, &index)? else {
            return Ok(None);
        };
        let worktree = self.beneath(dir)?;
        let root = worktree.open_dir(Path::new(""))?;
        let Walked { extra, found } = walk_parallel(root, &tracked, dir)?;
        let mut stale = Vec::new();
        for rel in &extra {
            worktree.remove(Path::new(std::ffi::OsStr::from_bytes(rel)))?;
        }
        // Tracked entries the walk did not find are missing: written again.
        if found.len() != tracked.files.len() {
            let found: HashSet<&[u8]> = found.iter().map(Vec::as_slice).collect();
            stale.extend(
                tracked
                    .files
                    .keys()
                    .filter(|p| !found.contains(p.as_slice()))
                    .cloned(),
            );
        }
        // Where the index differs from the target: what `git switch` writes.
        let diff = repo
            .diff_tree_to_index(Some(target), Some(&index), None)
            .ctx(|| "comparing the index with the target".into())?;
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(path) = file.path_bytes() {
                    stale.push(path.to_vec());
                }
            }
        }
        // A tracked link where the target has a directory would be followed
        // by the checkout on the way to the files in it: remove it first.
        for path in &stale {
            for (end, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
                let parent = &path[..end];
                if tracked.files.get(parent).is_some_and(|r| r.mode == SYMLINK) {
                    worktree.remove(Path::new(std::ffi::OsStr::from_bytes(parent)))?;
                }
            }
        }
        stale.sort();
        stale.dedup();
        if stale.is_empty() {
            // An empty path list would mean every path to libgit2.
            return Ok(Some(stale));
        }
        let mut checkout = CheckoutBuilder::new();
        checkout.force().disable_pathspec_match(true);
        for path in &stale {
            checkout.path(path.as_slice());
        }
        repo.checkout_tree(target.as_object(), Some(&mut checkout))
            .ctx(|| format!("checking out in {}", dir.display()))?;
        Ok(Some(stale))
    }
}

impl Tracked {
    /// `None` if an entry needs the full checkout.
    fn read(repo: &Repository, index: &Index) -> Result<Option<Tracked>> {
        if index.has_conflicts() {
            return Ok(None);
        }
        let mut files = HashMap::with_capacity(index.len());
        let mut dirs = HashSet::new();
        for entry in index.iter() {
            let plain = matches!(entry.mode, FILE | EXECUTABLE | SYMLINK);
            let flagged = entry.flags & ASSUME_VALID != 0
                || entry.flags_extended & (INTENT_TO_ADD | SKIP_WORKTREE) != 0;
            if !plain || flagged {
                return Ok(None);
            }
            let mut end = entry.path.len();
            while let Some(slash) = entry.path[..end].iter().rposition(|b| *b == b'/') {
                if !dirs.insert(entry.path[..slash].to_vec()) {
                    break;
                }
                end = slash;
            }
            files.insert(
                entry.path,
                Recorded {
                    mode: entry.mode,
                    size: entry.file_size,
                    ino: entry.ino,
                    mtime: (entry.mtime.seconds(), entry.mtime.nanoseconds()),
                    ctime: (entry.ctime.seconds(), entry.ctime.nanoseconds()),
                },
            );
        }
        let index_file = repo.path().join("index");
        let written = match rustix::fs::stat(&index_file) {
            Ok(st) => (st.st_mtime as i32, st.st_mtime_nsec as u32),
            // No index file: every entry counts as racy.
            Err(_) => (i32::MIN, 0),
        };
        Ok(Some(Tracked {
            files,
            dirs,
            written,
        }))
    }

    /// Whether `st` is what the checkout of `recorded` left, for certain.
    fn unchanged(&self, recorded: &Recorded, st: &Stat) -> bool {
        let mode_ok = match recorded.mode {
            SYMLINK => true,
            EXECUTABLE => st.st_mode & 0o100 != 0,
            _ => st.st_mode & 0o100 == 0,
        };
        let mtime = (st.st_mtime as i32, st.st_mtime_nsec as u32);
        mode_ok
            && st.st_size as u32 == recorded.size
            && st.st_ino as u32 == recorded.ino
            && mtime == recorded.mtime
            && (st.st_ctime as i32, st.st_ctime_nsec as u32) == recorded.ctime
            && recorded.mtime < self.written
    }
}

/// Whether what stands in the work tree is what an entry of `mode` checks
/// out as: a link for a link, a regular file for a file.
fn same_kind(mode: u32, kind: FileType) -> bool {
    match mode {
        SYMLINK => kind == FileType::Symlink,
        _ => kind == FileType::RegularFile,
    }
}

/// What a walk of the work tree found: names to remove (`extra`: what the
/// index does not track, and tracked files that may differ from their
/// entry; the caller removes them, a link itself, and the checkout writes
/// the tracked ones again as missing), and every tracked file seen as its
/// index entry recorded it (`found`).
#[derive(Default)]
struct Walked {
    extra: Vec<Vec<u8>>,
    found: Vec<Vec<u8>>,
}

/// Directories still to list, and how many are being listed.
struct Queue {
    pending: Vec<(OwnedFd, Vec<u8>)>,
    busy: usize,
    failed: bool,
}

/// Walks the work tree from `root` (the worktree's directory) on a few
/// threads, as git's preloaded index does: the time goes into `lstat`, and
/// each directory's names are looked at by one thread.
fn walk_parallel(root: OwnedFd, tracked: &Tracked, shown: &Path) -> Result<Walked> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let queue = std::sync::Mutex::new(Queue {
        pending: vec![(root, Vec::new())],
        busy: 0,
        failed: false,
    });
    let wake = std::sync::Condvar::new();
    let results: Vec<Result<Walked>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| walk_worker(&queue, &wake, tracked, shown)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(super::GitError::Io {
                        context: format!("walking {}", shown.display()),
                        source: std::io::Error::other("a walking thread panicked"),
                    })
                })
            })
            .collect()
    });
    let mut all = Walked::default();
    for result in results {
        let part = result?;
        all.extra.extend(part.extra);
        all.found.extend(part.found);
    }
    Ok(all)
}

/// One thread of [`walk_parallel`]: takes directories until none is left
/// and none is being listed (which could add more).
fn walk_worker(
    queue: &std::sync::Mutex<Queue>,
    wake: &std::sync::Condvar,
    tracked: &Tracked,
    shown: &Path,
) -> Result<Walked> {
    let lock = || queue.lock().unwrap_or_else(|p| p.into_inner());
    let mut walked = Walked::default();
    loop {
        let job = {
            let mut q = lock();
            loop {
                if q.failed {
                    return Ok(walked);
                }
                if let Some(job) = q.pending.pop() {
                    q.busy += 1;
                    break job;
                }
                if q.busy == 0 {
                    return Ok(walked);
                }
                q = wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut subdirs = Vec::new();
        let listed = list_dir(job, tracked, &mut walked, &mut subdirs, shown);
        let mut q = lock();
        q.busy -= 1;
        q.failed |= listed.is_err();
        q.pending.extend(subdirs);
        wake.notify_all();
        drop(q);
        listed?;
    }
}

/// Looks at every name in one directory (`fd`, at `prefix` in the work
/// tree); tracked subdirectories go to `subdirs`, opened without
/// following a link.
fn list_dir(
    (fd, prefix): (OwnedFd, Vec<u8>),
    tracked: &Tracked,
    walked: &mut Walked,
    subdirs: &mut Vec<(OwnedFd, Vec<u8>)>,
    shown: &Path,
) -> Result<()> {
    let listing = |rel: &[u8]| {
        format!(
            "listing {}/{}",
            shown.display(),
            String::from_utf8_lossy(rel)
        )
    };
    let depth = prefix.iter().filter(|b| **b == b'/').count();
    if depth > MAX_DEPTH {
        walked.extra.push(prefix);
        return Ok(());
    }
    let mut names = Vec::new();
    for entry in Dir::read_from(&fd)
        .map_err(std::io::Error::from)
        .ctx(|| listing(&prefix))?
    {
        let entry = entry
            .map_err(std::io::Error::from)
            .ctx(|| listing(&prefix))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." || (prefix.is_empty() && name == b".git") {
            continue;
        }
        names.push(entry.file_name().to_owned());
    }
    for name in names {
        let mut rel = prefix.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.to_bytes());
        let st = match rustix::fs::statat(&fd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone meanwhile: a tracked one is then missing.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(std::io::Error::from(e)).ctx(|| listing(&rel)),
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::Directory && tracked.dirs.contains(&rel) {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(&fd, name.as_c_str(), flags, Mode::empty()) {
                Ok(sub) => subdirs.push((sub, rel)),
                // Swapped for a link or a file meanwhile: it goes.
                Err(Errno::LOOP | Errno::NOTDIR) => walked.extra.push(rel),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(std::io::Error::from(e)).ctx(|| listing(&rel)),
            }
            continue;
        }
        match tracked.files.get(&rel) {
            // libgit2 takes a file whose `lstat` matches the index but for
            // its change time as unchanged, and would leave an edit of the
            // same size with its modification time put back: such a file
            // (or a racily clean one) is removed, and so written again.
            Some(recorded)
                if same_kind(recorded.mode, kind) && tracked.unchanged(recorded, &st) =>
            {
                walked.found.push(rel);
            }
            // Untracked or ignored; a directory, link or FIFO in a file's
            // place; a link or file in a directory's place. What is tracked
            // there is then missing, and written again.
            _ => walked.extra.push(rel),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A repository whose `main` has `a.txt` and `d/b.txt`, `d/c.txt`, and a
    /// worktree on `t` one commit further (`d/b.txt` changed); returns the
    /// repository, the worktree, and main's commit.
    fn setup(root: &Path) -> (GitRepo, std::path::PathBuf, String) {
        let files: Vec<(String, Vec<u8>)> = ["a.txt", "d/b.txt", "d/c.txt"]
            .iter()
            .map(|p| (p.to_string(), format!("{p}\n").into_bytes()))
            .collect();
        let git = GitRepo::init_with_files(&root.join("repo"), &files, "seed").unwrap();
        let base = git.branch_head("main").unwrap();
        let wt = git.root().join(".memofab/worktrees/t");
        git.fresh_worktree(&wt, "t", &base).unwrap();
        write(&wt, "d/b.txt", "changed\n");
        git.commit_all(&wt, "change").unwrap().unwrap();
        (git, wt, base)
    }

    fn switch(git: &GitRepo, wt: &Path, commit: &str) -> Option<Vec<String>> {
        let repo = git.open_worktree(wt).unwrap();
        let tree = repo
            .find_commit(git2::Oid::from_str(commit).unwrap())
            .unwrap()
            .tree()
            .unwrap();
        git.switch_in_place(&repo, wt, &tree).unwrap().map(|paths| {
            paths
                .into_iter()
                .map(|p| String::from_utf8(p).unwrap())
                .collect()
        })
    }

    fn clean(wt: &Path) -> bool {
        let repo = Repository::open(wt).unwrap();
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true).include_ignored(true);
        repo.statuses(Some(&mut opts)).unwrap().is_empty()
    }

    /// An edit of the same size with its modification time put back: only
    /// its change time tells.
    fn sneaky_edit(path: &Path) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        let mtime = file.metadata().unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let text = std::fs::read(path).unwrap();
        std::fs::write(path, vec![b'Z'; text.len()]).unwrap();
        file.set_modified(mtime).unwrap();
    }

    #[test]
    fn a_recycle_undoes_an_edit_that_kept_size_and_modification_time() {
        let tmp = tempfile::tempdir().unwrap();
        let (git, wt, base) = setup(tmp.path());
        sneaky_edit(&wt.join("a.txt"));
        let next = git.root().join(".memofab/worktrees/next");
        git.recycle_worktree(&wt, "t", &next, "next", &base)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(next.join("a.txt")).unwrap(),
            "a.txt\n"
        );
        assert!(clean(&next));
    }

    #[test]
    fn only_what_differs_is_checked_out() {
        let tmp = tempfile::tempdir().unwrap();
        let (git, wt, base) = setup(tmp.path());
        sneaky_edit(&wt.join("a.txt"));
        write(&wt, "untracked/deep/u.txt", "u");
        write(&wt, "d/new.txt", "n");
        std::fs::write(git.root().join(".git/info/exclude"), "*.o\n").unwrap();
        write(&wt, "d/build.o", "ignored");
        let paths = switch(&git, &wt, &base).unwrap();
        assert_eq!(paths, ["a.txt", "d/b.txt"]);
        assert_eq!(
            std::fs::read_to_string(wt.join("a.txt")).unwrap(),
            "a.txt\n"
        );
        assert_eq!(
            std::fs::read_to_string(wt.join("d/b.txt")).unwrap(),
            "d/b.txt\n"
        );
        for gone in ["untracked", "d/new.txt", "d/build.o"] {
            assert!(!wt.join(gone).exists(), "{gone}");
        }
        // The files and the index are the target's (HEAD moves after).
        let repo = git.open_worktree(&wt).unwrap();
        repo.set_head_detached(git2::Oid::from_str(&base).unwrap())
            .unwrap();
        assert!(clean(&wt));
        // Nothing differs any more: at most a file just written, as racily
        // clean (the file system's clock may not have moved since).
        let again = switch(&git, &wt, &base).unwrap();
        assert!(again.iter().all(|p| p == "d/b.txt"), "{again:?}");
        assert!(clean(&wt));
    }

    #[cfg(unix)]
    #[test]
    fn links_are_removed_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (git, wt, base) = setup(tmp.path());
        let outside = tmp.path().join("outside");
        write(&outside, "b.txt", "precious\n");
        write(&outside, "keep/x", "x");
        // A link where the tree has a directory, one where it has a file,
        // and an untracked one to a directory outside.
        std::fs::remove_dir_all(wt.join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, wt.join("d")).unwrap();
        std::fs::remove_file(wt.join("a.txt")).unwrap();
        std::os::unix::fs::symlink(outside.join("b.txt"), wt.join("a.txt")).unwrap();
        std::os::unix::fs::symlink(outside.join("keep"), wt.join("stray")).unwrap();
        switch(&git, &wt, &base).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("b.txt")).unwrap(),
            "precious\n"
        );
        assert!(outside.join("keep/x").exists());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 2);
        assert!(!wt.join("stray").exists() && !wt.join("a.txt").is_symlink());
        assert!(std::fs::symlink_metadata(wt.join("d")).unwrap().is_dir());
        assert_eq!(
            std::fs::read_to_string(wt.join("d/c.txt")).unwrap(),
            "d/c.txt\n"
        );
        let repo = git.open_worktree(&wt).unwrap();
        repo.set_head_detached(git2::Oid::from_str(&base).unwrap())
            .unwrap();
        assert!(clean(&wt));
    }

    #[test]
    fn a_conflicted_index_is_left_to_the_full_checkout() {
        let tmp = tempfile::tempdir().unwrap();
        let (git, wt, base) = setup(tmp.path());
        let repo = git.open_worktree(&wt).unwrap();
        let mut index = repo.index().unwrap();
        let mut entry = index.get_path(Path::new("a.txt"), 0).unwrap();
        entry.flags |= 1 << 12; // stage 1
        index.add(&entry).unwrap();
        index.write().unwrap();
        assert!(switch(&git, &wt, &base).is_none());
    }
}
