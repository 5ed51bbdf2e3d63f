//! One command's fence: which paths it may read and write, its private temp
//! dir, and the process (with Landlock's pre-exec confinement or bubblewrap's
//! arguments) that runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::landlock::{Grant, Ruleset};
use super::namespaces::{Namespaces, Nest};
use super::{Isolation, Mechanism, bwrap, landlock, seccomp};

/// System paths every fenced command may read (those a machine lacks are skipped).
const SYSTEM_READABLE: [&str; 10] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys",
];

/// Device files a command may read and write. Not /dev as a whole: running as
/// root, that would include the raw disks.
const DEVICES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("cannot make a private temp dir for the command: {0}")]
    TempDir(std::io::Error),
    #[error("cannot restore the worktree's .git before the command: {0}")]
    GitLink(std::io::Error),
}

#[derive(Debug)]
pub struct Fence {
    mechanism: Mechanism,
    network: bool,
    cwd: PathBuf,
    /// The private temp dir (Landlock and none); bubblewrap mounts its own.
    tmp: Option<tempfile::TempDir>,
    /// Read-only paths beyond the system: the config's and toolchains on PATH.
    readable: Vec<PathBuf>,
    /// The user's git data, from memofab's own records (never from a `.git`
    /// inside the working directory: an agent writes those).
    git_common_dir: Option<PathBuf>,
    /// Empty directories the Landlock mechanism parks mounts in, outside
    /// everything the command may touch.
    stash: Option<tempfile::TempDir>,
}

impl Fence {
    pub fn new(isolation: &Isolation, cwd: &Path) -> Result<Self, FenceError> {
        if let Some(common) = &isolation.git_data {
            // The command's own git reads what memofab registered, not what
            // the last command left in `.git`.
            crate::effects::git::restore_worktree_link(common, cwd).map_err(FenceError::GitLink)?;
        }
        let tmp = match isolation.mechanism {
            Mechanism::Bwrap => None,
            _ => Some(
                tempfile::Builder::new()
                    .prefix("memofab-cmd-")
                    .tempdir()
                    .map_err(FenceError::TempDir)?,
            ),
        };
        let stash = match isolation.mechanism {
            Mechanism::Landlock => Some(
                tempfile::Builder::new()
                    .prefix("memofab-stash-")
                    .tempdir()
                    .map_err(FenceError::TempDir)?,
            ),
            _ => None,
        };
        let mut readable = isolation.readable.clone();
        readable.extend(path_dirs());
        Ok(Self {
            stash,
            mechanism: isolation.mechanism,
            network: isolation.network,
            // Mount points and Landlock rules want the real path.
            cwd: cwd.canonicalize().unwrap_or_else(|_| cwd.to_owned()),
            tmp,
            readable,
            git_common_dir: isolation.git_data.clone(),
        })
    }

    /// Variables the fenced command gets on top of the scrubbed environment.
    pub fn env(&self) -> Vec<(String, String)> {
        let tmp = match &self.tmp {
            Some(dir) => dir.path().display().to_string(),
            None => "/tmp".to_owned(),
        };
        vec![
            // Caches (pip, go, npm's XDG-aware tools) go to the private temp
            // dir: the home directory is not writable in the fence.
            ("XDG_CACHE_HOME".into(), format!("{tmp}/.cache")),
            ("TMPDIR".into(), tmp),
            // Git data is read-only: don't try to refresh the index on `status`.
            ("GIT_OPTIONAL_LOCKS".into(), "0".into()),
            // The user's ~/.gitconfig is not readable in the fence; don't look.
            ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
        ]
    }

    /// `sh -c shell_command`, fenced. The caller sets the environment, stdio
    /// and process group.
    pub fn std_command(&self, shell_command: &str) -> Command {
        let mut command = match self.mechanism {
            Mechanism::None => Command::new("sh"),
            Mechanism::Bwrap => {
                let mut c = Command::new("bwrap");
                c.args(bwrap::args(&bwrap::Plan {
                    cwd: &self.cwd,
                    network: self.network,
                    readable: &self.readable,
                    git_common_dir: self.git_common_dir.as_deref(),
                    repository_root: self.repository_root().as_deref(),
                    home: std::env::var_os("HOME").map(PathBuf::from).as_deref(),
                }));
                c.arg("sh");
                c
            }
            Mechanism::Landlock => {
                let mut c = Command::new("sh");
                self.confine_with_landlock(&mut c);
                c
            }
        };
        command
            .arg("-c")
            .arg(shell_command)
            .current_dir(&self.cwd)
            .env_clear()
            .envs(super::scrubbed_env())
            .envs(self.env());
        command
    }

    fn confine_with_landlock(&self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        let nest = self.repository_root().and_then(|root| {
            let git = self.git_common_dir.as_deref()?;
            Nest::prepare(&root, &self.cwd, git, self.stash.as_ref()?.path())
        });
        let namespaces = super::pid_namespaces_work()
            .then(|| Namespaces::prepare(!self.network, &self.cwd).with_nest(nest));
        let mut rules = Ruleset::new(landlock::abi_version());
        for path in SYSTEM_READABLE {
            rules.allow(Path::new(path), Grant::Read);
        }
        if namespaces.is_some() {
            // Our own /proc, showing only the command's processes.
            rules.allow(Path::new("/proc"), Grant::Read);
        }
        for device in DEVICES {
            rules.allow(Path::new(device), Grant::ReadWriteFile);
        }
        for path in &self.readable {
            rules.allow(path, Grant::Read);
        }
        if let Some(git) = &self.git_common_dir {
            rules.allow(git, Grant::Read);
        }
        rules.allow(&self.cwd, Grant::Full);
        if let Some(tmp) = &self.tmp {
            rules.allow(tmp.path(), Grant::Full);
        }
        let filter = (!self.network).then(seccomp::no_network_filter);
        let confine = move || {
            if let Some(namespaces) = &namespaces {
                namespaces.enter()?;
            }
            rules.enforce()?;
            if let Some(filter) = &filter {
                seccomp::install(filter)?;
            }
            Ok(())
        };
        #[allow(unsafe_code)]
        // SAFETY: `confine` runs in the forked child before exec and only
        // makes system calls on data prepared here (see the modules it calls).
        unsafe {
            command.pre_exec(confine);
        }
    }

    /// The user's checkout the working directory is nested in, if it is:
    /// the parent of the git data, when the worktree lies beneath it.
    fn repository_root(&self) -> Option<PathBuf> {
        let git = self.git_common_dir.as_deref()?;
        let root = git.parent()?;
        (git.file_name()? == ".git" && self.cwd.starts_with(root) && self.cwd != root)
            .then(|| root.to_owned())
    }
}

/// Directories on PATH, so toolchains installed in a home directory (cargo,
/// pyenv) keep working. The home directory itself and `/` are never added.
fn path_dirs() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .filter(|p| p.is_absolute() && p != Path::new("/"))
                .filter(|p| Some(p) != home.as_ref())
                .collect()
        })
        .unwrap_or_default()
}
