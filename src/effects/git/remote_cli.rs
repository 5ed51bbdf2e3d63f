//! Runs the git CLI against the user's own git data for talking to a remote.
//!
//! The git CLI, not libgit2, because it is what the user's `git push` is:
//! their credential helpers, SSH agent, `url.*.insteadOf`, proxies and
//! `pushurl` all apply, and memofab stores no secret of its own. What may
//! steer it is only what the user controls:
//! - `--git-dir` is the user's common dir (the main repository's `.git`),
//!   never a worktree: a worktree's `.git`, `config.worktree` or hooks were
//!   written by an agent. The git data itself is read-only to agents (the
//!   fence) and watched (the repository guard).
//! - The environment is cleared down to what reaches the user's
//!   credentials and network (an inherited `GIT_DIR`, `GIT_CONFIG_*` or
//!   `GIT_EXEC_PATH` would point git elsewhere), and prompts are off.
//! - Hooks are off (`core.hooksPath=/dev/null`, `--no-verify`): memofab
//!   verified the merge itself, and a hook would run in the user's checkout.
//! - A wall-clock timeout kills git and what it started (ssh) together.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Context, Result};

/// The variables passed through to git: how the user reaches their remote
/// (credentials, agent, proxies, certificates), and nothing that redirects
/// git itself.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "XDG_CONFIG_HOME",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
    "GIT_CONFIG_GLOBAL",
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "DISPLAY",
    "KRB5CCNAME",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Bytes of git's output kept: enough for a server's explanation.
const OUTPUT_CAP: usize = 16 * 1024;

/// What one git command did.
#[derive(Debug, Clone)]
pub(super) struct Ran {
    pub success: bool,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `git --git-dir=<git_dir> <args>` as described in the module docs.
pub(super) fn run_git(git_dir: &Path, args: &[&str], timeout: Duration) -> Result<Ran> {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("git");
    command
        .env_clear()
        .envs(environment(|k| std::env::var_os(k)))
        .arg("--git-dir")
        .arg(git_dir)
        .args(["-c", "core.hooksPath=/dev/null"])
        .args(args)
        .current_dir(git_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout takes ssh down with it.
        .process_group(0);
    let shown = format!("git {}", args.join(" "));
    let mut child = command.spawn().ctx(|| format!("starting {shown}"))?;
    let readers = [
        child.stdout.take().map(|o| drain(Box::new(o))),
        child.stderr.take().map(|e| drain(Box::new(e))),
    ];
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().ctx(|| format!("waiting for {shown}"))? {
            break (Some(status), false);
        }
        if Instant::now() >= deadline {
            crate::effects::process::kill_group(child.id());
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let [stdout, stderr] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
    Ok(Ran {
        success: status.is_some_and(|s| s.success()),
        timed_out,
        stdout,
        stderr,
    })
}

/// The environment git gets: [`PASSED_ENV`] from `ours`, C messages (they
/// are parsed), and no prompt (nobody is there to answer).
fn environment(
    ours: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Vec<(String, std::ffi::OsString)> {
    let mut env: Vec<(String, std::ffi::OsString)> = PASSED_ENV
        .iter()
        .filter_map(|k| ours(k).map(|v| ((*k).to_owned(), v)))
        .collect();
    for (k, v) in [
        ("LC_ALL", "C"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GCM_INTERACTIVE", "never"),
    ] {
        env.push((k.to_owned(), v.into()));
    }
    env
}

/// Reads a pipe to its end on a thread, keeping the first [`OUTPUT_CAP`]
/// bytes; the rest is read and dropped so git never blocks on a full pipe.
fn drain(mut pipe: Box<dyn Read + Send>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (mut kept, mut buf) = (Vec::new(), [0_u8; 8192]);
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = OUTPUT_CAP.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_that_would_redirect_git_are_not_passed_credentials_are() {
        let ours = |k: &str| {
            matches!(
                k,
                "GIT_DIR"
                    | "GIT_WORK_TREE"
                    | "GIT_CONFIG_COUNT"
                    | "GIT_CONFIG_PARAMETERS"
                    | "GIT_EXEC_PATH"
                    | "SSH_AUTH_SOCK"
                    | "HOME"
            )
            .then(|| std::ffi::OsString::from(format!("value of {k}")))
        };
        let env = environment(ours);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"SSH_AUTH_SOCK") && names.contains(&"HOME"));
        assert!(names.contains(&"GIT_TERMINAL_PROMPT"));
        for redirecting in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_CONFIG_COUNT",
            "GIT_CONFIG_PARAMETERS",
            "GIT_EXEC_PATH",
        ] {
            assert!(!names.contains(&redirecting), "{redirecting} passed");
        }
    }

    #[test]
    fn a_command_past_its_timeout_is_killed() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("r.git");
        git2::Repository::init_bare(&repo).unwrap();
        // An alias that sleeps: `!` aliases run through the shell.
        git2::Repository::open(&repo)
            .unwrap()
            .config()
            .unwrap()
            .set_str("alias.nap", "!sleep 30")
            .unwrap();
        let started = Instant::now();
        let ran = run_git(&repo, &["nap"], Duration::from_millis(300)).unwrap();
        assert!(ran.timed_out && !ran.success);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
