//! Runs shell commands for agents and the test step: in the worktree, with a
//! scrubbed environment, a wall-clock timeout that kills the whole process
//! group, and captured output capped to a head and a tail.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::isolation::{Fence, FenceError};
pub use super::isolation::{Isolation, scrubbed_env};

mod head_tail;
pub use head_tail::{HeadTail, Kept, join_capped};

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

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
    #[error("cannot fence `{command}`: {source}")]
    Fence { command: String, source: FenceError },
    #[error("waiting for `{command}`: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
}

pub async fn run_command(spec: &CommandSpec) -> Result<CommandOutput, ProcessError> {
    let started = Instant::now();
    // The fence owns the command's private temp dir: keep it until the end.
    let fence = Fence::new(&spec.isolation, &spec.cwd).map_err(|source| ProcessError::Fence {
        command: spec.command.clone(),
        source,
    })?;
    let mut command = Command::from(fence.std_command(&spec.command));
    command
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
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // Both pipes are drained while waiting, so a chatty command cannot block
    // on a full pipe; each keeps only its head and tail, so memofab holds at
    // most the cap whatever the command prints.
    let mut out = HeadTail::new(spec.output_cap);
    let mut err = HeadTail::new(spec.output_cap);
    let work = async {
        tokio::join!(
            child.wait(),
            drain(stdout, &mut out),
            drain(stderr, &mut err)
        )
        .0
    };
    let (status, timed_out) = match tokio::time::timeout(spec.timeout, work).await {
        Ok(status) => (Some(status), false),
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            (None, true)
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
    let (output, truncated) = join_capped(out.into_kept(), err.into_kept(), spec.output_cap);
    Ok(CommandOutput {
        exit_code,
        timed_out,
        output,
        truncated,
        duration: started.elapsed(),
    })
}

/// Reads `pipe` to its end into `sink`, a chunk at a time.
async fn drain(pipe: Option<impl AsyncRead + Unpin>, sink: &mut HeadTail) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut chunk = vec![0; READ_CHUNK];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => sink.push(&chunk[..n]),
        }
    }
}

/// Keeps the head and the tail of `bytes` within `cap` bytes, lossily decoded.
pub(crate) fn cap(bytes: &[u8], cap: usize) -> (String, bool) {
    let mut sink = HeadTail::new(cap);
    sink.push(bytes);
    join_capped(sink.into_kept(), Kept::default(), cap)
}

/// Kills the process group led by `pid`, so grandchildren die too.
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn kill_group(pid: u32) {
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
pub(crate) fn kill_group(_pid: u32) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::isolation::Mechanism;

    fn spec(command: &str, timeout_ms: u64) -> CommandSpec {
        CommandSpec {
            command: command.into(),
            cwd: std::env::temp_dir(),
            timeout: Duration::from_millis(timeout_ms),
            output_cap: 1000,
            extra_env: vec![("EXTRA".into(), "yes".into())],
            isolation: Isolation::none(),
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
        let mut fences = vec![Isolation::none()];
        for mechanism in [Mechanism::Landlock, Mechanism::Bwrap] {
            fences.extend(crate::effects::isolation::testing::forced(mechanism));
        }
        for isolation in fences {
            let dir = tempfile::tempdir().unwrap();
            let marker = dir.path().join("grandchild-survived");
            let mut s = spec(
                &format!("(sleep 2; touch {}) & sleep 30", marker.display()),
                300,
            );
            s.cwd = dir.path().to_owned();
            s.isolation = isolation.clone();
            let started = Instant::now();
            let out = run_command(&s).await.unwrap();
            assert!(out.timed_out, "{:?}", isolation.mechanism);
            assert_eq!(out.exit_code, None);
            assert!(started.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(2500)).await;
            assert!(
                !marker.exists(),
                "{:?}: the grandchild was not killed",
                isolation.mechanism
            );
        }
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
    async fn a_flood_is_drained_to_the_end_and_counted() {
        let out = run_command(&spec("yes | head -c 200000000; echo tail-end >&2", 60_000))
            .await
            .unwrap();
        assert!(out.success(), "{out:?}");
        assert!(out.output.len() < 1100, "{}", out.output.len());
        // 200 MB of `y\n`, then `tail-end\n`; 1000 kept.
        assert!(
            out.output.contains(&format!(
                "[... {} bytes omitted ...]",
                200_000_000 + 9 - 1000
            )),
            "{}",
            out.output
        );
        assert!(out.output.ends_with("tail-end\n"), "{}", out.output);
    }

    #[tokio::test]
    async fn a_command_that_times_out_keeps_what_it_printed() {
        let out = run_command(&spec("echo before; sleep 30", 500))
            .await
            .unwrap();
        assert!(out.timed_out);
        assert_eq!(out.output, "before\n");
    }

    #[tokio::test]
    async fn fenced_commands_write_only_their_working_directory() {
        for mechanism in [Mechanism::Landlock, Mechanism::Bwrap] {
            let Some(isolation) = crate::effects::isolation::testing::forced(mechanism) else {
                continue;
            };
            let work = tempfile::tempdir().unwrap();
            let outside = tempfile::tempdir().unwrap();
            let target = outside.path().join("escaped");
            let mut s = spec(
                &format!(
                    "touch inside; touch \"$TMPDIR/scratch\" && echo tmp-ok; touch {} ; echo done",
                    target.display()
                ),
                5000,
            );
            s.cwd = work.path().to_owned();
            s.isolation = isolation;
            let out = run_command(&s).await.unwrap();
            assert!(out.output.contains("done"), "{mechanism:?}: {}", out.output);
            assert!(
                out.output.contains("tmp-ok"),
                "{mechanism:?}: {}",
                out.output
            );
            assert!(work.path().join("inside").exists(), "{mechanism:?}");
            assert!(
                !target.exists(),
                "{mechanism:?}: a write outside got through"
            );
        }
    }

    /// A worktree nested in the user's checkout sees its own files and the
    /// git data, nothing else of the checkout (tools looking upwards for a
    /// workspace root, cargo say, must not find the user's).
    #[tokio::test]
    async fn a_nested_worktree_is_shown_alone_with_read_only_git() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(args)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        std::fs::create_dir_all(&repo).unwrap();
        git(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("Cargo.toml"), "[workspace]\n").unwrap();
        git(&["add", "."]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "init",
        ]);
        git(&[
            "worktree",
            "add",
            "-q",
            ".memofab/worktrees/r/t",
            "-b",
            "memofab/r/t",
        ]);
        let worktree = repo.join(".memofab/worktrees/r/t");
        for mechanism in [Mechanism::Landlock, Mechanism::Bwrap] {
            let Some(isolation) = crate::effects::isolation::testing::forced(mechanism) else {
                continue;
            };
            let mut s = spec(
                &format!(
                    "test -e {} && echo root-visible; test -e Cargo.toml && echo own-visible; \
                     git log --oneline | wc -l; git update-ref -d refs/heads/main; true",
                    repo.join("Cargo.toml").display()
                ),
                10_000,
            );
            s.cwd = worktree.clone();
            // The git data is what memofab knows, not what `.git` says: a
            // `gitdir: /` left by the last command grants nothing.
            s.isolation = isolation.with_git_data(&repo.join(".git"));
            std::fs::write(worktree.join(".git"), "gitdir: /\n").unwrap();
            s.command.push_str(&format!(
                "; cat {} && echo secret-visible",
                dir.path().join("secret").display()
            ));
            std::fs::write(dir.path().join("secret"), "s").unwrap();
            let out = run_command(&s).await.unwrap();
            assert!(
                !out.output.contains("secret-visible"),
                "{mechanism:?}: {}",
                out.output
            );
            assert!(
                !out.output.contains("root-visible"),
                "{mechanism:?}: {}",
                out.output
            );
            assert!(
                out.output.contains("own-visible"),
                "{mechanism:?}: {}",
                out.output
            );
            assert!(
                out.output.contains("1\n"),
                "{mechanism:?}: git log: {}",
                out.output
            );
            assert!(repo.join(".git/refs/heads/main").exists(), "{mechanism:?}");
        }
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
