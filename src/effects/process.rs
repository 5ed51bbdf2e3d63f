//! Runs shell commands for agents and the test step: in the worktree, with a
//! scrubbed environment, a wall-clock timeout that kills the whole process
//! group, and captured output capped to a head and a tail.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Variables a command may inherit; everything else (API keys, tokens) is dropped.
const INHERITED_ENV: [&str; 8] = [
    "PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "TMPDIR", "SHELL",
];

#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Run with `sh -c`.
    pub command: String,
    pub cwd: PathBuf,
    pub timeout: Duration,
    pub output_cap: usize,
    pub extra_env: Vec<(String, String)>,
    pub isolation: Isolation,
}

/// How strongly a command is fenced in, beyond its working directory,
/// scrubbed environment and timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A plain child process.
    None,
    /// bubblewrap: the whole file system read-only except the working
    /// directory and a private /tmp, new namespaces, no network unless allowed.
    Bwrap { network: bool },
}

impl Isolation {
    pub fn describe(self) -> &'static str {
        match self {
            Isolation::None => "none (working directory, scrubbed environment and timeouts only)",
            Isolation::Bwrap { network: false } => {
                "bubblewrap (read-only system, writable worktree, no network)"
            }
            Isolation::Bwrap { network: true } => {
                "bubblewrap (read-only system, writable worktree, network allowed)"
            }
        }
    }
}

/// Whether bubblewrap is installed and works here (user namespaces can be
/// disabled even where the binary exists). Checked once.
pub fn bwrap_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::process::Command::new("bwrap")
            .args([
                "--ro-bind",
                "/",
                "/",
                "--unshare-all",
                "--die-with-parent",
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutput {
    /// `None` when killed by a signal (a timeout, say).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Standard output, then standard error, capped.
    pub output: String,
    pub truncated: bool,
    pub duration: Duration,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("waiting for `{command}`: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
}

/// The environment a command gets: the allow-list from ours, plus markers.
pub fn scrubbed_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = INHERITED_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
    env.push(("CI".into(), "1".into()));
    env
}

pub async fn run_command(spec: &CommandSpec) -> Result<CommandOutput, ProcessError> {
    let started = Instant::now();
    let mut command = match spec.isolation {
        Isolation::None => Command::new("sh"),
        Isolation::Bwrap { network } => {
            let mut c = Command::new("bwrap");
            let cwd = spec.cwd.as_os_str();
            c.args([
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--tmpfs",
                "/tmp",
            ])
            .arg("--bind")
            .arg(cwd)
            .arg(cwd)
            .arg("--chdir")
            .arg(cwd)
            .args(["--unshare-all", "--die-with-parent"]);
            if network {
                c.arg("--share-net");
            }
            c.arg("sh");
            c
        }
    };
    command
        .arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(scrubbed_env())
        .envs(spec.extra_env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
        command: spec.command.clone(),
        source,
    })?;
    let pid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    // Read both pipes while waiting, so a chatty command cannot block on a full pipe.
    let read_out = async {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let work = async { tokio::join!(child.wait(), read_out, read_err) };
    let (status, out, err, timed_out) = match tokio::time::timeout(spec.timeout, work).await {
        Ok((status, out, err)) => (Some(status), out, err, false),
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            (None, Vec::new(), Vec::new(), true)
        }
    };
    let exit_code = match status {
        Some(Ok(status)) => status.code(),
        Some(Err(source)) => {
            return Err(ProcessError::Wait {
                command: spec.command.clone(),
                source,
            });
        }
        None => {
            let _ = child.wait().await;
            None
        }
    };
    let mut combined = out;
    if !err.is_empty() {
        if !combined.is_empty() && !combined.ends_with(b"\n") {
            combined.push(b'\n');
        }
        combined.extend_from_slice(&err);
    }
    let (output, truncated) = cap(&combined, spec.output_cap);
    Ok(CommandOutput {
        exit_code,
        timed_out,
        output,
        truncated,
        duration: started.elapsed(),
    })
}

/// Keeps the head and the tail of `bytes` within `cap` bytes, lossily decoded.
fn cap(bytes: &[u8], cap: usize) -> (String, bool) {
    if bytes.len() <= cap {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    let head = cap / 2;
    let tail = cap - head;
    let omitted = bytes.len() - head - tail;
    let text = format!(
        "{}\n[... {omitted} bytes omitted ...]\n{}",
        String::from_utf8_lossy(&bytes[..head]),
        String::from_utf8_lossy(&bytes[bytes.len() - tail..])
    );
    (text, true)
}

/// Kills the process group led by `pid`, so grandchildren die too.
#[cfg(unix)]
#[allow(unsafe_code)]
fn kill_group(pid: u32) {
    let Ok(pgid) = i32::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
    // negative pid addresses the process group the child leads.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill_group(_pid: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str, timeout_ms: u64) -> CommandSpec {
        CommandSpec {
            command: command.into(),
            cwd: std::env::temp_dir(),
            timeout: Duration::from_millis(timeout_ms),
            output_cap: 1000,
            extra_env: vec![("EXTRA".into(), "yes".into())],
            isolation: Isolation::None,
        }
    }

    #[tokio::test]
    async fn exit_codes_and_output_are_reported() {
        let ok = run_command(&spec("echo out; echo err >&2", 5000))
            .await
            .unwrap();
        assert!(ok.success());
        assert_eq!(ok.output, "out\nerr\n");
        let bad = run_command(&spec("exit 3", 5000)).await.unwrap();
        assert_eq!(bad.exit_code, Some(3));
        assert!(!bad.success());
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-survived");
        let mut s = spec(
            &format!("(sleep 2; touch {}) & sleep 30", marker.display()),
            300,
        );
        s.cwd = dir.path().to_owned();
        let started = Instant::now();
        let out = run_command(&s).await.unwrap();
        assert!(out.timed_out);
        assert_eq!(out.exit_code, None);
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the grandchild was not killed");
    }

    #[tokio::test]
    async fn output_is_capped_head_and_tail() {
        let out = run_command(&spec("seq 1 5000", 5000)).await.unwrap();
        assert!(out.truncated);
        assert!(out.output.starts_with("1\n2\n"));
        assert!(out.output.trim_end().ends_with("5000"));
        assert!(out.output.contains("bytes omitted"));
    }

    #[tokio::test]
    async fn bubblewrap_confines_writes_to_the_working_directory() {
        if !bwrap_available() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI installs bubblewrap (.ci/run)"
            );
            eprintln!("skipping: bubblewrap is not available");
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("escaped");
        let mut s = spec(
            &format!("touch inside && touch {} ; echo done", target.display()),
            5000,
        );
        s.cwd = work.path().to_owned();
        s.isolation = Isolation::Bwrap { network: false };
        let out = run_command(&s).await.unwrap();
        assert!(out.output.contains("done"), "{}", out.output);
        assert!(work.path().join("inside").exists());
        assert!(!target.exists(), "a write outside the worktree got through");
    }

    #[tokio::test]
    async fn environment_is_scrubbed() {
        // Cargo sets these for the test process; a command must not see them.
        let out = run_command(&spec("echo \"[$CARGO_PKG_NAME][$EXTRA][$CI]\"", 5000))
            .await
            .unwrap();
        assert_eq!(out.output.trim(), "[][yes][1]");
    }
}
