//! A private PID namespace with its own `/proc`, so a command sees no process
//! but its own descendants: not memofab, not the user's shell, not their
//! environments (`/proc/PID/environ` holds API keys, and running as root
//! `PR_SET_DUMPABLE` does not hide it).
//!
//! `unshare(CLONE_NEWPID)` only moves the caller's *next* child into the new
//! namespace, so the spawned process forks once more: the middle process
//! waits and exits with the command's status; the command, PID 1 of the new
//! namespace, mounts a fresh `/proc` before it `exec`s. Everything here runs
//! between `fork` and `exec`: system calls only, on data prepared beforehand.

// This module is the thin layer over the system calls; each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;

/// Identity maps for the new user namespace: the command keeps our uid/gid.
#[derive(Debug)]
pub struct Namespaces {
    uid_map: CString,
    gid_map: CString,
    /// Directories covered by an empty tmpfs in the command's mount namespace.
    hidden: Vec<CString>,
    nest: Option<Nest>,
}

/// A worktree nested in the user's repository (`<repo>/.memofab/worktrees/…`)
/// is shown alone: the repository's checkout (its `Cargo.toml`, its
/// `package.json`, the store) is covered by an empty tmpfs, with the worktree
/// and the git data mounted back at their own paths. Tools that look upwards
/// for a workspace root then find nothing of the user's checkout, neither
/// readable nor, under Landlock, a file they may not read.
#[derive(Debug)]
pub struct Nest {
    root: CString,
    worktree: CString,
    git_dir: CString,
    /// Empty directories outside everything the command may touch, to hold
    /// the worktree and git data while the root is covered.
    stash_worktree: CString,
    stash_git: CString,
    /// Directories to make in the tmpfs, parents first.
    skeleton: Vec<CString>,
}

impl Nest {
    /// `None` unless both `worktree` and `git_dir` lie strictly beneath `root`.
    pub fn prepare(
        root: &std::path::Path,
        worktree: &std::path::Path,
        git_dir: &std::path::Path,
        stash: &std::path::Path,
    ) -> Option<Nest> {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &std::path::Path| CString::new(p.as_os_str().as_bytes()).ok();
        if worktree == root || !worktree.starts_with(root) || !git_dir.starts_with(root) {
            return None;
        }
        let mut skeleton = Vec::new();
        for target in [worktree, git_dir] {
            let mut dirs: Vec<&std::path::Path> =
                target.ancestors().take_while(|a| *a != root).collect();
            dirs.reverse();
            for dir in dirs {
                let dir = c(dir)?;
                if !skeleton.contains(&dir) {
                    skeleton.push(dir);
                }
            }
        }
        let stash_worktree = stash.join("worktree");
        let stash_git = stash.join("git");
        std::fs::create_dir_all(&stash_worktree).ok()?;
        std::fs::create_dir_all(&stash_git).ok()?;
        Some(Nest {
            root: c(root)?,
            worktree: c(worktree)?,
            git_dir: c(git_dir)?,
            stash_worktree: c(&stash_worktree)?,
            stash_git: c(&stash_git)?,
            skeleton,
        })
    }

    fn mount(&self) -> io::Result<()> {
        let bind = |from: &CString, to: &CString| {
            check(unsafe {
                libc::mount(
                    from.as_ptr(),
                    to.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            })
        };
        bind(&self.worktree, &self.stash_worktree)?;
        bind(&self.git_dir, &self.stash_git)?;
        check(unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                self.root.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755".as_ptr().cast(),
            )
        })?;
        for dir in &self.skeleton {
            if unsafe { libc::mkdir(dir.as_ptr(), 0o755) } != 0
                && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
            {
                return Err(io::Error::last_os_error());
            }
        }
        bind(&self.stash_worktree, &self.worktree)?;
        bind(&self.stash_git, &self.git_dir)?;
        // Nothing stays reachable through the stash.
        for stash in [&self.stash_worktree, &self.stash_git] {
            check(unsafe { libc::umount2(stash.as_ptr(), libc::MNT_DETACH) })?;
        }
        // The working directory was the worktree under the covered root.
        check(unsafe { libc::chdir(self.worktree.as_ptr()) })
    }
}

/// Where local daemons keep their sockets (docker, dbus, X11). Landlock does
/// not govern connecting to a unix socket by path, so without the network
/// these are covered up.
const SOCKET_DIRS: [&str; 2] = ["/run", "/tmp/.X11-unix"];

impl Namespaces {
    /// `hide_sockets`: cover the local daemons' socket directories, except
    /// one that holds `cwd`.
    pub fn prepare(hide_sockets: bool, cwd: &std::path::Path) -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self {
            uid_map: CString::new(format!("{uid} {uid} 1\n")).unwrap_or_default(),
            gid_map: CString::new(format!("{gid} {gid} 1\n")).unwrap_or_default(),
            hidden: SOCKET_DIRS
                .iter()
                .filter(|_| hide_sockets)
                .filter(|dir| !cwd.starts_with(dir) && std::path::Path::new(dir).is_dir())
                .filter_map(|dir| CString::new(*dir).ok())
                .collect(),
            nest: None,
        }
    }

    /// Shows a nested worktree alone (see [`Nest`]).
    pub fn with_nest(mut self, nest: Option<Nest>) -> Self {
        self.nest = nest;
        self
    }

    /// Enters new user, mount and PID namespaces and forks; returns in the
    /// child (PID 1 there, with a fresh `/proc`). The middle process never
    /// returns: it exits with the child's status.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY (every block below): plain system calls taking integers and
        // pointers to NUL-terminated strings that live in this module or in
        // `self`; between fork and exec nothing else runs in this process.
        check(unsafe {
            libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID)
        })?;
        write_file(c"/proc/self/setgroups", c"deny")?;
        write_file(c"/proc/self/uid_map", &self.uid_map)?;
        write_file(c"/proc/self/gid_map", &self.gid_map)?;
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(io::Error::last_os_error());
        }
        if child > 0 {
            wait_and_exit(child);
        }
        // The command dies with the middle process (killed when dropped), and
        // with it, as PID 1, everything it started. (Our parent is outside
        // our PID namespace, so `getppid` cannot tell whether it is gone
        // already; the kill of the whole process group on a timeout still
        // reaches us then.)
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
        // Our mounts stay ours: nothing propagates back to the host.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })?;
        check(unsafe {
            libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        })?;
        for dir in &self.hidden {
            check(unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    dir.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                )
            })?;
        }
        if let Some(nest) = &self.nest {
            nest.mount()?;
        }
        Ok(())
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn write_file(path: &std::ffi::CStr, data: &std::ffi::CStr) -> io::Result<()> {
    let bytes = data.to_bytes();
    // SAFETY: `path` and `bytes` are live for the calls; write reads
    // `bytes.len()` bytes from it.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let error = io::Error::last_os_error();
        libc::close(fd);
        if written != bytes.len() as isize {
            return Err(error);
        }
    }
    Ok(())
}

/// The middle process: hold no descriptor (the spawner waits for the exec
/// status pipe to close), wait for the command, exit as it did.
fn wait_and_exit(child: libc::pid_t) -> ! {
    // SAFETY: close_range, waitpid and _exit take integers and a pointer to a
    // local; none returns into Rust code that could observe a torn state.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..1024 {
                libc::close(fd);
            }
        }
        let mut status: libc::c_int = 0;
        loop {
            let waited = libc::waitpid(child, &mut status, 0);
            if waited == child {
                break;
            }
            if waited < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(127);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            libc::_exit(128 + libc::WTERMSIG(status));
        }
        libc::_exit(127)
    }
}
