//! How agents' commands (and the test step) are fenced in. Two mechanisms
//! give the same guarantees: **Landlock** (built in: the kernel's access
//! control, a seccomp filter for the network, and private user, mount and PID
//! namespaces for `/proc`) and **bubblewrap** (an external program doing the
//! same with bind mounts). Under either a command may write only its working
//! directory and a private temp dir, read the system, the toolchain paths the
//! config names and the repository's git data (read-only, so `git status`,
//! `git diff` and `git log` work), see no other process, and reach no network
//! unless allowed. `none` is only ever chosen explicitly.

mod bwrap;
mod fenced_command;
mod landlock;
mod namespaces;
mod seccomp;

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use fenced_command::{Fence, FenceError};

/// The mechanism in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// A plain child process: working directory, scrubbed environment and
    /// timeouts only.
    None,
    Landlock,
    Bwrap,
}

impl Mechanism {
    pub fn label(self) -> &'static str {
        match self {
            Mechanism::None => "none",
            Mechanism::Landlock => "landlock",
            Mechanism::Bwrap => "bwrap",
        }
    }
}

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// Landlock or bubblewrap, whichever works here; never silently none.
    Auto,
    Landlock,
    Bwrap,
    /// No isolation, only when a user writes it down.
    None,
}

/// The isolation every command of a run gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    pub mechanism: Mechanism,
    pub network: bool,
    /// Paths beyond the system a command may read (toolchains in the home
    /// directory, say). `~/` is expanded.
    pub readable: Vec<PathBuf>,
    /// The user's git data (the main repository's `.git`), as memofab
    /// opened it: commands read it, and read nothing a worktree's `.git`
    /// names. Set by whoever knows the repository ([`Isolation::with_git_data`]).
    pub git_data: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error(
        "no isolation works on this machine: Landlock {landlock} and bubblewrap {bwrap}. \
         Agents' commands would run with your rights. Install bubblewrap (`apt install bubblewrap`), \
         use a kernel with Landlock (5.13 or newer), or set `isolation = \"none\"` under [run] in \
         .memofab/config.toml to run without it deliberately"
    )]
    NoneAvailable { landlock: String, bwrap: String },
    #[error("run.isolation = \"landlock\" but Landlock does not work here: {0}")]
    Landlock(String),
    #[error("run.isolation = \"bwrap\" but bubblewrap does not work here: {0}")]
    Bwrap(String),
}

impl Isolation {
    /// No fencing: for tests of other things, or `isolation = "none"`.
    pub fn none() -> Self {
        Self {
            mechanism: Mechanism::None,
            network: true,
            readable: Vec::new(),
            git_data: None,
        }
    }

    /// The same isolation for commands in worktrees of the repository whose
    /// git data is at `common_dir`.
    pub fn with_git_data(mut self, common_dir: &std::path::Path) -> Self {
        self.git_data = Some(
            common_dir
                .canonicalize()
                .unwrap_or_else(|_| common_dir.to_owned()),
        );
        self
    }

    /// Resolves what the config asks for into what works here.
    pub fn choose(
        choice: Choice,
        network: bool,
        readable: Vec<PathBuf>,
    ) -> Result<Self, IsolationError> {
        let mechanism = resolve(choice, landlock_status(), bwrap_status())?;
        Ok(Self {
            mechanism,
            network: network || mechanism == Mechanism::None,
            readable: readable.into_iter().map(|p| expand_home(&p)).collect(),
            git_data: None,
        })
    }

    /// One line for `doctor`, the status bar and `run_started`.
    pub fn describe(&self) -> String {
        let network = if self.network {
            "network allowed"
        } else {
            "no network"
        };
        match self.mechanism {
            Mechanism::None => {
                "none (working directory, scrubbed environment and timeouts only)".to_owned()
            }
            Mechanism::Landlock => format!(
                "landlock (writes confined to the worktree, git read-only, private /proc, {network})"
            ),
            Mechanism::Bwrap => format!(
                "bwrap (writes confined to the worktree, git read-only, private /proc, {network})"
            ),
        }
    }

    /// A note for the agent when a failed command looks like it wanted the
    /// network it is not given.
    pub fn network_note(&self, failed_output: &str) -> Option<&'static str> {
        const SIGNS: [&str; 9] = [
            "Network is unreachable",
            "network is unreachable",
            "Could not resolve host",
            "Temporary failure in name resolution",
            "Name or service not known",
            "Operation not permitted (os error 1)",
            "Connection refused",
            "socket: Operation not permitted",
            "failed to lookup address",
        ];
        if self.network || !SIGNS.iter().any(|s| failed_output.contains(s)) {
            return None;
        }
        Some(
            "[memofab] this command ran without network access (run.allow_network = false); \
             work offline, or ask a human to allow the network",
        )
    }
}

/// What `choice` comes to, given whether each mechanism works here.
fn resolve(
    choice: Choice,
    landlock: &Result<(), String>,
    bwrap: &Result<(), String>,
) -> Result<Mechanism, IsolationError> {
    match choice {
        Choice::None => Ok(Mechanism::None),
        Choice::Landlock => landlock
            .as_ref()
            .map(|()| Mechanism::Landlock)
            .map_err(|e| IsolationError::Landlock(e.clone())),
        Choice::Bwrap => bwrap
            .as_ref()
            .map(|()| Mechanism::Bwrap)
            .map_err(|e| IsolationError::Bwrap(e.clone())),
        Choice::Auto => match (landlock, bwrap) {
            (Ok(()), _) => Ok(Mechanism::Landlock),
            (_, Ok(())) => Ok(Mechanism::Bwrap),
            (Err(landlock), Err(bwrap)) => Err(IsolationError::NoneAvailable {
                landlock: landlock.clone(),
                bwrap: bwrap.clone(),
            }),
        },
    }
}

/// Variables a command may inherit; everything else (API keys, tokens) is dropped.
const INHERITED_ENV: [&str; 8] = [
    "PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "TMPDIR", "SHELL",
];

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

/// Test support: a mechanism forced as a test asks for it. In CI (where
/// `.ci/run` installs bubblewrap) an unavailable mechanism fails the test
/// instead of skipping it.
#[doc(hidden)]
pub mod testing {
    use super::*;

    pub fn forced(mechanism: Mechanism) -> Option<Isolation> {
        let choice = match mechanism {
            Mechanism::None => Choice::None,
            Mechanism::Landlock => Choice::Landlock,
            Mechanism::Bwrap => Choice::Bwrap,
        };
        match Isolation::choose(choice, false, Vec::new()) {
            Ok(isolation) => Some(isolation),
            Err(e) if std::env::var_os("CI").is_some() => panic!("{e}"),
            Err(e) => {
                eprintln!("skipping {}: {e}", mechanism.label());
                None
            }
        }
    }
}

/// `~/x` → `$HOME/x`.
pub fn expand_home(path: &std::path::Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

/// Whether Landlock, with private namespaces, confines a command here:
/// tried once for real with `true`.
pub fn landlock_status() -> &'static Result<(), String> {
    static STATUS: OnceLock<Result<(), String>> = OnceLock::new();
    STATUS.get_or_init(|| {
        let abi = landlock::abi_version();
        if abi < 1 {
            return Err("the kernel has no Landlock (5.13 or newer, with the LSM enabled)".into());
        }
        probe(Mechanism::Landlock)
    })
}

/// Whether bubblewrap is installed and can create its namespaces here.
pub fn bwrap_status() -> &'static Result<(), String> {
    static STATUS: OnceLock<Result<(), String>> = OnceLock::new();
    STATUS.get_or_init(|| probe(Mechanism::Bwrap))
}

/// Whether this machine lets us make user, mount and PID namespaces (some
/// distributions forbid unprivileged user namespaces). Without them Landlock
/// still confines files and network, but `/proc` is not readable at all.
pub fn pid_namespace_status() -> &'static Result<(), String> {
    static STATUS: OnceLock<Result<(), String>> = OnceLock::new();
    STATUS.get_or_init(|| {
        use std::os::unix::process::CommandExt;
        let namespaces = namespaces::Namespaces::prepare(false, std::path::Path::new("/"));
        let mut command = std::process::Command::new("true");
        #[allow(unsafe_code)]
        // SAFETY: `enter` only makes system calls on data prepared above.
        unsafe {
            command.pre_exec(move || namespaces.enter());
        }
        match command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("a test process failed ({status})")),
            Err(e) => Err(e.to_string()),
        }
    })
}

pub(crate) fn pid_namespaces_work() -> bool {
    pid_namespace_status().is_ok()
}

fn probe(mechanism: Mechanism) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("no temp dir to try it in: {e}"))?;
    let isolation = Isolation {
        mechanism,
        network: false,
        readable: Vec::new(),
        git_data: None,
    };
    let fence = Fence::new(&isolation, dir.path()).map_err(|e| e.to_string())?;
    let mut command = fence.std_command("echo ok > probe");
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "not installed".to_owned(),
            _ => e.to_string(),
        })?;
    let wrote = std::fs::read_to_string(dir.path().join("probe")).unwrap_or_default();
    if output.status.success() && wrote.trim() == "ok" {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(match stderr.trim() {
            "" => format!("a test command failed ({})", output.status),
            text => text.lines().next().unwrap_or(text).to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_never_comes_to_none() {
        let works = Ok(());
        let broken: Result<(), String> = Err("no".into());
        assert_eq!(
            resolve(Choice::Auto, &works, &broken).ok(),
            Some(Mechanism::Landlock)
        );
        assert_eq!(
            resolve(Choice::Auto, &broken, &works).ok(),
            Some(Mechanism::Bwrap)
        );
        assert!(matches!(
            resolve(Choice::Auto, &broken, &broken),
            Err(IsolationError::NoneAvailable { .. })
        ));
        assert!(resolve(Choice::Landlock, &broken, &works).is_err());
        assert!(resolve(Choice::Bwrap, &works, &broken).is_err());
        assert_eq!(
            resolve(Choice::None, &broken, &broken).ok(),
            Some(Mechanism::None)
        );
    }

    #[test]
    fn a_refused_network_is_explained_only_when_the_network_is_off() {
        let mut fenced = Isolation::none();
        fenced.mechanism = Mechanism::Landlock;
        fenced.network = false;
        assert!(
            fenced
                .network_note("bash: socket: Operation not permitted")
                .is_some()
        );
        assert!(fenced.network_note("assertion failed").is_none());
        fenced.network = true;
        assert!(
            fenced
                .network_note("bash: socket: Operation not permitted")
                .is_none()
        );
    }
}
