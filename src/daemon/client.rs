//! The client side of the socket for one-shot requests (`submit` waking the
//! daemon, `queue` asking its status). The attached cockpit has its own.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::paths::DaemonPaths;
use super::protocol::{Reply, Request};

/// How long a one-shot request waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one request and reads one reply; `None` when no daemon listens.
pub fn request(paths: &DaemonPaths, request: &Request) -> Option<Reply> {
    let stream = UnixStream::connect(&paths.socket).ok()?;
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(TIMEOUT)).ok()?;
    let mut line = serde_json::to_string(request).ok()?;
    line.push('\n');
    (&stream).write_all(line.as_bytes()).ok()?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).ok()?;
    serde_json::from_str(&reply).ok()
}

/// Tells a running daemon the queue changed; a daemon that is not running
/// reads the queue when it starts, so nothing is lost either way.
pub fn wake(paths: &DaemonPaths) -> bool {
    request(paths, &Request::Wake).is_some()
}
