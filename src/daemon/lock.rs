//! One daemon per user: an exclusive `flock` on `daemon.lock`. The kernel
//! drops it when the process ends, however it ends (kill -9 included), so a
//! dead daemon never blocks the next. The holder writes its pid in the file,
//! for the refusal a second `memofab serve` prints.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::error::{DaemonError, DaemonResult};

/// Held while the daemon serves; released on drop.
#[derive(Debug)]
pub struct DaemonLock {
    // Kept open: closing it releases the lock.
    _file: File,
}

impl DaemonLock {
    /// Takes the lock at `path`, or says which process holds it.
    pub fn acquire(path: &Path) -> DaemonResult<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let shown = path.display().to_string();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(DaemonError::io(format!("opening {shown}")))?;
        if !try_lock(&file).map_err(DaemonError::io(format!("locking {shown}")))? {
            let mut text = String::new();
            // The holder may not have written its pid yet: then it is unknown.
            let _ = file.read_to_string(&mut text);
            return Err(DaemonError::AlreadyServing {
                pid: text.trim().parse().ok(),
            });
        }
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            write!(file, "{}", std::process::id())?;
            file.flush()
        };
        write_pid(&mut file).map_err(DaemonError::io(format!("writing {shown}")))?;
        Ok(Self { _file: file })
    }
}

/// `Ok(false)` when another process holds the lock.
#[allow(unsafe_code)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor we own; it touches no memory of ours.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.lock");
        let held = DaemonLock::acquire(&path).unwrap();
        // flock locks belong to the open file: a second open is refused
        // even within one process.
        match DaemonLock::acquire(&path) {
            Err(DaemonError::AlreadyServing { pid }) => {
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        drop(held);
        DaemonLock::acquire(&path).unwrap();
    }
}
