//! Who is at the other end of the socket. The socket is private to the user
//! (0600), but agents' commands run as the user too, inside the fence; an
//! agent that reached the socket could approve its own gate or stop every
//! run. Fenced commands live in namespaces of their own (Landlock's fence
//! and bubblewrap both make new user, mount and PID namespaces), so a peer
//! whose namespaces are not the daemon's is refused, whatever path it used.

use std::path::PathBuf;

/// The namespaces a peer must share with the daemon.
const NAMESPACES: [&str; 3] = ["user", "mnt", "pid"];

/// Why a peer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Accepts a connecting process only if it runs as the daemon's user in the
/// daemon's own namespaces.
pub fn check(stream: &tokio::net::UnixStream) -> Result<(), Refused> {
    let cred = stream
        .peer_cred()
        .map_err(|e| Refused(format!("cannot tell who connected: {e}")))?;
    let uid = current_uid();
    if cred.uid() != uid {
        return Err(Refused(format!(
            "uid {} is not the daemon's user",
            cred.uid()
        )));
    }
    // A pid of 0: the peer's PID namespace is not below ours.
    let pid = cred
        .pid()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| Refused("a process outside the daemon's PID namespace".into()))?;
    same_namespaces(&format!("/proc/{pid}/ns"))
}

/// Compares the namespaces under `peer` (a `/proc/PID/ns` directory) with
/// the daemon's; anything unreadable counts as different.
fn same_namespaces(peer: &str) -> Result<(), Refused> {
    for ns in NAMESPACES {
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok();
        let theirs: Option<PathBuf> = std::fs::read_link(format!("{peer}/{ns}")).ok();
        if ours.is_none() || ours != theirs {
            return Err(Refused(format!(
                "a process in another {ns} namespace (inside a sandbox, such as an agent's command)"
            )));
        }
    }
    Ok(())
}

#[allow(unsafe_code)]
fn current_uid() -> u32 {
    // SAFETY: getuid(2) has no failure mode and touches no memory of ours.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_in_the_daemons_own_namespaces_is_accepted() {
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        assert_eq!(check(&a), Ok(()));
    }

    #[test]
    fn a_peer_whose_namespaces_cannot_be_read_is_refused() {
        assert!(same_namespaces("/proc/self/ns").is_ok());
        assert!(same_namespaces("/nonexistent/ns").is_err());
    }
}
