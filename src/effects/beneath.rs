//! Files beneath a directory, reached without following any link.
//!
//! Every byte of a worktree was written by an agent that may be hostile: a
//! directory can be a symbolic link to `.memofab/` or to the user's home, or
//! become one between two of memofab's calls. So every file memofab itself
//! reads, writes or removes inside a worktree is reached here, from a file
//! descriptor of the worktree, one component at a time in the kernel:
//! `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS`, or `openat(O_NOFOLLOW)` per component on kernels
//! without it. Nothing is checked on a path and then opened by name: what is
//! checked is the descriptor that is then used.
//!
//! Invariants: an absolute path or one with `..` is refused before any
//! system call; no link is followed in any component, the last included; a
//! link is removed as itself, never its target; a directory tree is emptied
//! through descriptors opened with `O_NOFOLLOW`, so a link inside it is
//! removed, not descended into; only regular files are read (a FIFO would
//! block memofab for good); writes go to a fresh temp file in the resolved
//! directory, renamed over the name (see [`Beneath::write`]).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Deeper trees are refused rather than removed: each level holds a
/// descriptor and a stack frame, and an agent can nest directories without end.
pub const MAX_DEPTH: usize = 256;

/// How often an operation is retried when an agent's process keeps changing
/// the entry under it (a directory swapped for a link, a file added to a
/// directory being removed).
const RACE_RETRIES: usize = 4;

/// Set once `openat2` turned out not to exist (ENOSYS): then every path is
/// walked per component.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("{path:?} is not a plain relative path (it is absolute, empty or has `..`)")]
    NotRelative { path: String },
    #[error("{path:?} goes through a symbolic link")]
    Symlink { path: String },
    #[error("{path:?} does not exist")]
    NotFound { path: String },
    #[error("{path:?} is a directory")]
    IsADirectory { path: String },
    #[error("{path:?} is not a regular file")]
    NotAFile { path: String },
    #[error("{path:?}: a file stands where a directory should be")]
    NotADirectory { path: String },
    #[error("{path:?} is nested more than {MAX_DEPTH} directories deep")]
    TooDeep { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, BeneathError>;

/// What stands at a name, the name itself (a link is a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// A directory, and every path beneath it reached without following links.
#[derive(Debug)]
pub struct Beneath {
    root: OwnedFd,
    shown: PathBuf,
    /// `false` in tests of the per-component walk.
    try_openat2: bool,
}

impl Beneath {
    /// The directory at `root`, which must not itself be a link (the
    /// directories above it may be: they are the user's choice).
    pub fn open(root: &Path) -> Result<Self> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(root, flags, Mode::empty()).map_err(|e| {
            // O_DIRECTORY | O_NOFOLLOW on a link says ENOTDIR: say which.
            let link = root.symlink_metadata().is_ok_and(|m| m.is_symlink());
            let e = if link { Errno::LOOP } else { e };
            classify(e, &root.display().to_string())
        })?;
        Ok(Self::from_fd(fd, root))
    }

    /// The directory `dir`, reached beneath the trusted directory `base`
    /// when it is inside it (a worktree beneath the repository: no link is
    /// followed from the repository down), else as [`Beneath::open`] does.
    pub fn open_under(base: &Path, dir: &Path) -> Result<Self> {
        match dir.strip_prefix(base) {
            Ok(rest) if rest.components().next().is_some() => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                let base_fd = rustix::fs::open(base, flags, Mode::empty())
                    .map_err(|e| classify(e, &base.display().to_string()))?;
                let fd = Self::from_fd(base_fd, base).open_dir(rest)?;
                Ok(Self::from_fd(fd, dir))
            }
            _ => Self::open(dir),
        }
    }

    fn from_fd(root: OwnedFd, shown: &Path) -> Self {
        Self {
            root,
            shown: shown.to_owned(),
            try_openat2: true,
        }
    }

    /// The path the root was opened at, for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// The directory at `rel` (the root itself for an empty path).
    pub fn open_dir(&self, rel: &Path) -> Result<OwnedFd> {
        let parts = parts(rel)?;
        self.resolve(&parts, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| self.explain(e, &parts, rel))
    }

    /// The regular file at `rel`, open for reading. A directory, FIFO,
    /// socket or device is refused without blocking.
    pub fn open_file(&self, rel: &Path) -> Result<File> {
        let parts = parts(rel)?;
        let fd = self
            .resolve(&parts, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())
            .map_err(|e| self.explain(e, &parts, rel))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| classify(e, &shown(rel)))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Ok(File::from(fd)),
            FileType::Directory => Err(BeneathError::IsADirectory { path: shown(rel) }),
            _ => Err(BeneathError::NotAFile { path: shown(rel) }),
        }
    }

    /// The bytes of the regular file at `rel`.
    pub fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_file(rel)?
            .read_to_end(&mut bytes)
            .map_err(|source| io_error(rel, source))?;
        Ok(bytes)
    }

    /// What stands at `rel`, if anything (nothing, too, when a directory on
    /// the way is missing, a file or a link).
    pub fn kind(&self, rel: &Path) -> Result<Option<Kind>> {
        let (parent, name) = match self.parent_of(rel) {
            Ok(found) => found,
            Err(
                BeneathError::NotFound { .. }
                | BeneathError::NotADirectory { .. }
                | BeneathError::Symlink { .. },
            ) => return Ok(None),
            Err(e) => return Err(e),
        };
        kind_at(&parent, name.as_c_str()).map_err(|e| classify(e, &shown(rel)))
    }

    /// Makes the directories of `rel` that are missing. A link or file in
    /// the way is refused.
    pub fn create_dirs(&self, rel: &Path) -> Result<OwnedFd> {
        self.make_dirs(&parts(rel)?, false, rel)
    }

    /// Writes `bytes` as the regular file at `rel`, making the directories
    /// on the way; a link in any component, the last included, is refused,
    /// and so is a directory at `rel`. `mode` gives the permission bits; by
    /// default a file keeps its own, and a new one gets 0644.
    ///
    /// The bytes go to a new temp file in the directory already resolved,
    /// which is then renamed over the name, rather than into the file opened
    /// with `O_TRUNC`: the file at the name may have other names (a hard
    /// link) anywhere on the file system, and writing into it would change
    /// them all, while a rename replaces only this name. Readers never see
    /// half a file, either.
    pub fn write(&self, rel: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
        let parts = parts(rel)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(BeneathError::IsADirectory { path: shown(rel) });
        };
        let dir = self.make_dirs(dirs, false, rel)?;
        // Refused for the message; one planted after this look is replaced
        // by the rename, still never written through.
        match kind_at(&dir, *name).map_err(|e| classify(e, &shown(rel)))? {
            Some(Kind::Dir) => Err(BeneathError::IsADirectory { path: shown(rel) }),
            Some(Kind::Symlink) => Err(BeneathError::Symlink { path: shown(rel) }),
            _ => replace_file(&dir, name, bytes, mode, rel),
        }
    }

    /// Puts `bytes` at `rel` whatever stands there or on the way: a link or
    /// file where a directory belongs, or a link or directory at `rel`
    /// itself, is removed first (the link, never its target). For putting
    /// back files an agent must not change.
    pub fn put(&self, rel: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
        let parts = parts(rel)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(BeneathError::IsADirectory { path: shown(rel) });
        };
        let dir = self.make_dirs(dirs, true, rel)?;
        for _ in 0..RACE_RETRIES {
            match kind_at(&dir, *name).map_err(|e| classify(e, &shown(rel)))? {
                Some(Kind::Dir) => {
                    remove_entry(&dir, *name, rel, 0)?;
                }
                _ => return replace_file(&dir, name, bytes, mode, rel),
            }
        }
        Err(BeneathError::IsADirectory { path: shown(rel) })
    }

    /// Removes whatever stands at `rel`: a file, a link (itself), or a
    /// directory with everything in it. `false` if there was nothing there
    /// beneath the root (a directory on the way missing, or a link).
    pub fn remove(&self, rel: &Path) -> Result<bool> {
        let (parent, name) = match self.parent_of(rel) {
            Ok(found) => found,
            Err(
                BeneathError::NotFound { .. }
                | BeneathError::NotADirectory { .. }
                | BeneathError::Symlink { .. },
            ) => return Ok(false),
            Err(e) => return Err(e),
        };
        remove_entry(&parent, name.as_c_str(), rel, 0)
    }

    /// The directory holding `rel`, and `rel`'s last component.
    fn parent_of(&self, rel: &Path) -> Result<(OwnedFd, CString)> {
        let parts = parts(rel)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(BeneathError::NotRelative { path: shown(rel) });
        };
        let dir = self
            .resolve(dirs, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| self.explain(e, dirs, rel))?;
        Ok((dir, cstring(name, rel)?))
    }

    /// The typed error for a failed lookup of `parts`. The kernel says
    /// ENOTDIR, not ELOOP, for a link opened with `O_DIRECTORY | O_NOFOLLOW`;
    /// the components are looked at again (after the fact, for the message
    /// only) to tell a link from a file in the way.
    fn explain(&self, errno: Errno, parts: &[&OsStr], rel: &Path) -> BeneathError {
        if errno == Errno::NOTDIR && self.has_link(parts) {
            return classify(Errno::LOOP, &shown(rel));
        }
        classify(errno, &shown(rel))
    }

    fn has_link(&self, parts: &[&OsStr]) -> bool {
        let Ok(mut dir) = rustix::fs::openat(&self.root, c".", dir_flags(), Mode::empty()) else {
            return false;
        };
        for part in parts {
            match kind_at(&dir, *part) {
                Ok(Some(Kind::Symlink)) => return true,
                Ok(Some(Kind::Dir)) => {}
                _ => return false,
            }
            match rustix::fs::openat(&dir, *part, dir_flags(), Mode::empty()) {
                Ok(next) => dir = next,
                Err(_) => return false,
            }
        }
        false
    }

    /// Opens `parts` beneath the root with `flags`, following no link.
    fn resolve(&self, parts: &[&OsStr], flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if parts.is_empty() {
            return rustix::fs::openat(&self.root, c".", flags, mode);
        }
        if self.try_openat2 && !NO_OPENAT2.load(Ordering::Relaxed) {
            let joined = join(parts);
            let how =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.root, joined.as_os_str(), flags, mode, how) {
                Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // A rename raced the lookup (EAGAIN), or a seccomp filter
                // refuses the call (EPERM): the walk answers for itself.
                Err(Errno::AGAIN | Errno::PERM) => {}
                done => return done,
            }
        }
        let Some((last, dirs)) = parts.split_last() else {
            return rustix::fs::openat(&self.root, c".", flags, mode);
        };
        let mut dir: Option<OwnedFd> = None;
        for part in dirs {
            let at = dir.as_ref().map_or(self.root.as_fd(), AsFd::as_fd);
            dir = Some(rustix::fs::openat(at, *part, dir_flags(), Mode::empty())?);
        }
        let at = dir.as_ref().map_or(self.root.as_fd(), AsFd::as_fd);
        rustix::fs::openat(at, *last, flags, mode)
    }

    /// Opens the directories `parts`, making those missing. What stands in
    /// the way (a link, a file) is removed when `replace`, else refused.
    fn make_dirs(&self, parts: &[&OsStr], replace: bool, rel: &Path) -> Result<OwnedFd> {
        let fail = |e| classify(e, &shown(rel));
        let mut dir =
            rustix::fs::openat(&self.root, c".", dir_flags(), Mode::empty()).map_err(fail)?;
        for part in parts {
            let mut opened = None;
            for _ in 0..RACE_RETRIES {
                match rustix::fs::openat(&dir, *part, dir_flags(), Mode::empty()) {
                    Ok(fd) => {
                        opened = Some(fd);
                        break;
                    }
                    Err(Errno::NOENT) => {
                        match rustix::fs::mkdirat(&dir, *part, Mode::from_raw_mode(0o755)) {
                            Ok(()) | Err(Errno::EXIST) => {}
                            Err(e) => return Err(fail(e)),
                        }
                    }
                    Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                        if !replace {
                            let link = kind_at(&dir, *part) == Ok(Some(Kind::Symlink));
                            return Err(fail(if link { Errno::LOOP } else { e }));
                        }
                        remove_entry(&dir, *part, rel, 0)?;
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
            dir = opened.ok_or_else(|| BeneathError::NotADirectory { path: shown(rel) })?;
        }
        Ok(dir)
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The normal components of `rel`: an absolute path, `..` or a Windows
/// prefix is refused, `.` dropped.
fn parts(rel: &Path) -> Result<Vec<&OsStr>> {
    let mut parts = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(BeneathError::NotRelative { path: shown(rel) });
            }
        }
    }
    Ok(parts)
}

fn join(parts: &[&OsStr]) -> PathBuf {
    parts.iter().collect()
}

fn cstring(name: &OsStr, rel: &Path) -> Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| BeneathError::NotRelative { path: shown(rel) })
}

fn shown(rel: &Path) -> String {
    rel.display().to_string()
}

fn io_error(rel: &Path, source: std::io::Error) -> BeneathError {
    BeneathError::Io {
        path: shown(rel),
        source,
    }
}

/// The typed error for a failed system call on `path`.
fn classify(errno: Errno, path: &str) -> BeneathError {
    let path = path.to_owned();
    match errno {
        // ELOOP: a link where none may be; EXDEV: a lookup that would have
        // left the root, which only a link can make.
        Errno::LOOP | Errno::XDEV => BeneathError::Symlink { path },
        Errno::NOENT => BeneathError::NotFound { path },
        Errno::NOTDIR => BeneathError::NotADirectory { path },
        Errno::ISDIR => BeneathError::IsADirectory { path },
        other => BeneathError::Io {
            path,
            source: other.into(),
        },
    }
}

/// What stands at `name` in `dir`, not following a link.
fn kind_at<P: rustix::path::Arg>(dir: &OwnedFd, name: P) -> rustix::io::Result<Option<Kind>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        })),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to a fresh temp file in `dir` and renames it over `name`
/// (replacing a file or link there, never writing through it).
fn replace_file(
    dir: &OwnedFd,
    name: &OsStr,
    bytes: &[u8],
    mode: Option<u32>,
    rel: &Path,
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let fail = |e| classify(e, &shown(rel));
    let mode = match mode {
        Some(mode) => mode,
        None => match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {
                stat.st_mode & 0o777
            }
            _ => 0o644,
        },
    };
    let create =
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut made = None;
    for _ in 0..16 {
        let temp = format!(
            ".memofab-write-{}-{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        match rustix::fs::openat(dir, temp.as_str(), create, Mode::from_raw_mode(0o600)) {
            Ok(fd) => {
                made = Some((temp, fd));
                break;
            }
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(fail(e)),
        }
    }
    let Some((temp, fd)) = made else {
        return Err(fail(Errno::EXIST));
    };
    let written = write_all(fd, bytes, mode)
        .map_err(|source| io_error(rel, source))
        .and_then(|()| rustix::fs::renameat(dir, temp.as_str(), dir, name).map_err(fail));
    if written.is_err() {
        let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
    }
    written
}

fn write_all(fd: OwnedFd, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    file.flush()
}

/// Removes the entry `name` of `dir`: a file or link by unlinking it, a
/// directory by emptying it through a descriptor opened without following
/// links, then removing it. `false` if there was nothing.
fn remove_entry<P>(dir: &OwnedFd, name: P, rel: &Path, depth: usize) -> Result<bool>
where
    P: rustix::path::Arg + Copy,
{
    if depth > MAX_DEPTH {
        return Err(BeneathError::TooDeep { path: shown(rel) });
    }
    let fail = |e| classify(e, &shown(rel));
    for _ in 0..RACE_RETRIES {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => return Ok(true),
            Err(Errno::NOENT) => return Ok(false),
            // A directory (Linux says EISDIR where POSIX allows EPERM).
            Err(Errno::ISDIR) => {}
            Err(e) => return Err(fail(e)),
        }
        let sub = match rustix::fs::openat(dir, name, dir_flags(), Mode::empty()) {
            Ok(sub) => sub,
            Err(Errno::NOENT) => return Ok(false),
            // Swapped for a link or a file meanwhile: unlink that.
            Err(Errno::LOOP | Errno::NOTDIR) => continue,
            Err(e) => return Err(fail(e)),
        };
        empty_dir(&sub, rel, depth)?;
        match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) => return Ok(true),
            Err(Errno::NOENT) => return Ok(false),
            // Something was added meanwhile: go again.
            Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOTDIR) => continue,
            Err(e) => return Err(fail(e)),
        }
    }
    Err(fail(Errno::BUSY))
}

fn empty_dir(dir: &OwnedFd, rel: &Path, depth: usize) -> Result<()> {
    let fail = |e| classify(e, &shown(rel));
    let mut names = Vec::new();
    for entry in Dir::read_from(dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    for name in &names {
        remove_entry(dir, name.as_c_str(), rel, depth + 1)?;
    }
    Ok(())
}

/// Removes `path` and everything in it, reached beneath `base` when it is
/// inside it (no link followed from `base` down), else beneath its own
/// parent; a link at `path` is removed itself. `false` if nothing was there.
pub fn remove_all(base: &Path, path: &Path) -> Result<bool> {
    let (root, rel) = match path.strip_prefix(base) {
        Ok(rest) if rest.components().next().is_some() => (base, rest),
        _ => match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => (parent, Path::new(name)),
            _ => return Err(BeneathError::NotRelative { path: shown(path) }),
        },
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(root, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(classify(e, &root.display().to_string())),
    };
    Beneath::from_fd(fd, root).remove(rel)
}

#[cfg(test)]
#[path = "beneath_tests.rs"]
mod tests;
