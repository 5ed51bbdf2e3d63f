//! Landlock, the kernel's unprivileged access control (Linux ≥ 5.13), called
//! through its three system calls. The rules are built as plain data in the
//! parent; [`Ruleset::enforce`] runs in the forked child before `exec`, so it
//! only makes system calls: no allocation, no locks.

use std::ffi::CString;
use std::io;
use std::path::Path;

// Filesystem rights (include/uapi/linux/landlock.h), by the ABI that added them.
const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
/// ABI 2: linking or renaming a file into another directory.
const REFER: u64 = 1 << 13;
/// ABI 3.
const TRUNCATE: u64 = 1 << 14;
/// ABI 5.
const IOCTL_DEV: u64 = 1 << 15;
/// ABI 6: scopes. Abstract unix sockets and signals outside the sandbox.
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: i32 = 1;

/// Rights that apply to a regular file (the rest only make sense on directories).
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// What a rule lets the sandboxed command do beneath a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Read files, list directories, run programs.
    Read,
    /// Read and write one device file such as `/dev/null`.
    ReadWriteFile,
    /// Everything, creating and removing included.
    Full,
}

impl Grant {
    fn rights(self) -> u64 {
        match self {
            Grant::Read => EXECUTE | READ_FILE | READ_DIR,
            Grant::ReadWriteFile => READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV,
            Grant::Full => u64::MAX,
        }
    }
}

/// The Landlock ABI version this kernel speaks; 0 when it has none.
pub fn abi_version() -> i32 {
    #[allow(unsafe_code)]
    // SAFETY: with a null attribute, size 0 and the VERSION flag the call only
    // returns a number; it reads and writes no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(version).unwrap_or(0).max(0)
}

fn handled_fs(abi: i32) -> u64 {
    let mut rights = EXECUTE
        | WRITE_FILE
        | READ_FILE
        | READ_DIR
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_CHAR
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | MAKE_FIFO
        | MAKE_BLOCK
        | MAKE_SYM;
    if abi >= 2 {
        rights |= REFER;
    }
    if abi >= 3 {
        rights |= TRUNCATE;
    }
    if abi >= 5 {
        rights |= IOCTL_DEV;
    }
    rights
}

/// A set of path rules, ready to be enforced in a child process.
#[derive(Debug)]
pub struct Ruleset {
    abi: i32,
    handled: u64,
    rules: Vec<(CString, u64)>,
}

impl Ruleset {
    pub fn new(abi: i32) -> Self {
        Self {
            abi,
            handled: handled_fs(abi),
            rules: Vec::new(),
        }
    }

    /// Adds `grant` beneath `path`. Paths that cannot be named as C strings
    /// are skipped (nothing is granted); missing paths are skipped when the
    /// rules are enforced.
    pub fn allow(&mut self, path: &Path, grant: Grant) {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(c) = CString::new(path.as_os_str().as_bytes()) {
            self.rules.push((c, grant.rights() & self.handled));
        }
    }

    /// Restricts the calling process and its future children to the rules.
    /// Runs between `fork` and `exec`: system calls only.
    pub fn enforce(&self) -> io::Result<()> {
        let attr = RulesetAttr {
            handled_access_fs: self.handled,
            handled_access_net: 0,
            scoped: if self.abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        // Older kernels know a shorter attribute; tell each the size it knows.
        let size = match self.abi {
            ..=3 => 8usize,
            4 | 5 => 16,
            _ => std::mem::size_of::<RulesetAttr>(),
        };
        #[allow(unsafe_code)]
        // SAFETY: `attr` is a live, properly laid-out landlock_ruleset_attr of
        // at least `size` bytes; the kernel only reads it.
        let ruleset = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        };
        if ruleset < 0 {
            return Err(io::Error::last_os_error());
        }
        let ruleset = ruleset as libc::c_int;
        let result = self.add_rules(ruleset).and_then(|()| restrict(ruleset));
        close(ruleset);
        result
    }

    fn add_rules(&self, ruleset: libc::c_int) -> io::Result<()> {
        for (path, rights) in &self.rules {
            #[allow(unsafe_code)]
            // SAFETY: `path` is a NUL-terminated string we own.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if fd < 0 {
                // A path this machine does not have (say /lib32) grants nothing.
                continue;
            }
            let rights = if is_dir(fd) {
                *rights
            } else {
                *rights & FILE_RIGHTS
            };
            let rule = PathBeneathAttr {
                allowed_access: rights,
                parent_fd: fd,
            };
            #[allow(unsafe_code)]
            // SAFETY: `rule` is a live landlock_path_beneath_attr; the kernel
            // only reads it. `ruleset` and `fd` are open descriptors of ours.
            let added = unsafe {
                libc::syscall(
                    libc::SYS_landlock_add_rule,
                    ruleset,
                    RULE_PATH_BENEATH,
                    &rule as *const PathBeneathAttr,
                    0u32,
                )
            };
            let error = io::Error::last_os_error();
            close(fd);
            if added < 0 {
                return Err(error);
            }
        }
        Ok(())
    }
}

fn restrict(ruleset: libc::c_int) -> io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: prctl and landlock_restrict_self take integers only.
    let done = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) == 0
    };
    if done {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn is_dir(fd: libc::c_int) -> bool {
    #[allow(unsafe_code)]
    // SAFETY: fstat writes into the zeroed `stat` we pass and nothing else.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat) == 0 && (stat.st_mode & libc::S_IFMT) == libc::S_IFDIR
    }
}

fn close(fd: libc::c_int) {
    #[allow(unsafe_code)]
    // SAFETY: `fd` is a descriptor this module opened and no one else uses.
    unsafe {
        libc::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_abis_handle_more_rights() {
        assert_eq!(handled_fs(1) & REFER, 0);
        assert_ne!(handled_fs(2) & REFER, 0);
        assert_eq!(handled_fs(4) & IOCTL_DEV, 0);
        assert_ne!(handled_fs(7) & IOCTL_DEV, 0);
    }

    #[test]
    fn grants_never_exceed_what_the_abi_handles() {
        let mut rules = Ruleset::new(1);
        rules.allow(Path::new("/tmp"), Grant::Full);
        assert_eq!(rules.rules[0].1, handled_fs(1));
        rules.allow(Path::new("/usr"), Grant::Read);
        assert_eq!(rules.rules[1].1, EXECUTE | READ_FILE | READ_DIR);
    }
}
