//! One engine per repository at a time. A pid file in `.memofab/` says who
//! is working; a new engine refuses to start while that process lives, and
//! when it does not (it was killed), cleans up the git locks it left.

use std::path::{Path, PathBuf};

use super::error::{EngineError, EngineResult};
use super::files::factory_dir;
use crate::effects::git::GitRepo;

pub struct EngineLock {
    path: PathBuf,
}

impl EngineLock {
    pub fn acquire(git: &GitRepo) -> EngineResult<Self> {
        let dir = factory_dir(git.root());
        std::fs::create_dir_all(&dir)
            .map_err(EngineError::io(format!("creating {}", dir.display())))?;
        let path = dir.join("engine.pid");
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            if pid != std::process::id() && alive(pid) {
                return Err(EngineError::Busy { pid });
            }
            // The previous engine died without cleaning up.
            let removed = git.clear_stale_locks()?;
            if !removed.is_empty() {
                tracing::warn!(
                    count = removed.len(),
                    "removed git locks left by a killed engine"
                );
            }
        }
        std::fs::write(&path, std::process::id().to_string())
            .map_err(EngineError::io(format!("writing {}", path.display())))?;
        Ok(Self { path })
    }

    /// Whether an engine is working in the repository at `repo` now.
    pub fn held(repo: &Path) -> bool {
        std::fs::read_to_string(factory_dir(repo).join("engine.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .is_some_and(alive)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EngineLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a process with this pid exists.
#[cfg(unix)]
#[allow(unsafe_code)]
fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks the pid; it touches no memory.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn alive(_pid: u32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_engine_blocks_a_second_one_and_a_dead_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let git =
            GitRepo::init_with_files(dir.path(), &[("a".into(), b"a".to_vec())], "seed").unwrap();
        let pid_file = factory_dir(git.root()).join("engine.pid");
        std::fs::create_dir_all(pid_file.parent().unwrap()).unwrap();

        // pid 1 is always alive.
        std::fs::write(&pid_file, "1").unwrap();
        let err = EngineLock::acquire(&git).err().unwrap();
        assert!(matches!(err, EngineError::Busy { pid: 1 }), "{err}");

        // A dead pid's stale ref lock is cleaned up.
        std::fs::write(&pid_file, "999999999").unwrap();
        let lock = git.root().join(".git/refs/heads/main.lock");
        std::fs::write(&lock, "").unwrap();
        let held = EngineLock::acquire(&git).unwrap();
        assert!(!lock.exists());
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            std::process::id().to_string()
        );
        drop(held);
        assert!(!pid_file.exists());
    }
}
