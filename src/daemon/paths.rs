//! Where the daemon keeps its state: one per user and machine.
//!
//! `MEMOFAB_HOME` puts everything in one directory (tests, or a second
//! factory beside the first); otherwise the queue lives in the XDG state
//! directory and the socket in the XDG runtime directory.

use std::path::{Path, PathBuf};

use super::error::{DaemonError, DaemonResult};

/// The environment variable that puts the daemon's files in one directory.
pub const HOME_VAR: &str = "MEMOFAB_HOME";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonPaths {
    /// The queue and the registered repositories (SQLite).
    pub queue: PathBuf,
    /// Held (flock) by the one daemon that serves.
    pub lock: PathBuf,
    /// The daemon listens here; clients connect.
    pub socket: PathBuf,
    /// The daemon's log.
    pub log_dir: PathBuf,
}

impl DaemonPaths {
    /// The paths for this user, from the environment.
    pub fn from_env() -> DaemonResult<Self> {
        if let Some(home) = std::env::var_os(HOME_VAR).filter(|v| !v.is_empty()) {
            return Ok(Self::in_dir(Path::new(&home)));
        }
        let dirs = directories::ProjectDirs::from("dev", "memofab", "memofab")
            .ok_or(DaemonError::NoHome)?;
        let state = dirs
            .state_dir()
            .unwrap_or_else(|| dirs.data_local_dir())
            .to_owned();
        let runtime = dirs
            .runtime_dir()
            .map_or_else(|| state.clone(), Path::to_owned);
        Ok(Self {
            queue: state.join("queue.sqlite"),
            lock: state.join("daemon.lock"),
            socket: runtime.join("daemon.sock"),
            log_dir: state,
        })
    }

    /// Everything in one directory.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            queue: dir.join("queue.sqlite"),
            lock: dir.join("daemon.lock"),
            socket: dir.join("daemon.sock"),
            log_dir: dir.to_owned(),
        }
    }

    /// Creates the directories the files live in, private to the user.
    pub fn create_dirs(&self) -> DaemonResult<()> {
        for file in [&self.queue, &self.lock, &self.socket] {
            if let Some(dir) = file.parent() {
                create_private_dir(dir)?;
            }
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> DaemonResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(DaemonError::io(format!("creating {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_directory_holds_everything() {
        let paths = DaemonPaths::in_dir(Path::new("/tmp/x"));
        assert_eq!(paths.socket, Path::new("/tmp/x/daemon.sock"));
        assert_eq!(paths.queue.parent(), Some(Path::new("/tmp/x")));
    }
}
