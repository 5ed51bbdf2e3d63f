//! The command line: parses arguments and runs one command. This is the
//! binary's edge, so errors are `anyhow` with context for the human.

mod args;
mod attach;
mod bench;
pub mod demo;
mod doctor;
mod doctor_remote;
mod headless;
mod init;
mod overseer;
mod queue;
mod records;
mod serve;
mod signals;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;

pub use args::{Cli, Commands};

use crate::config::Config;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A run keeps going when its JSON-lines reader goes away (the printer
    // just stops); listing commands end quietly instead.
    let runs_the_factory = matches!(
        cli.command,
        None | Some(
            Commands::Demo(_) | Commands::Run(_) | Commands::Resume(_) | Commands::Serve(_)
        )
    );
    if !runs_the_factory {
        restore_default_sigpipe();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("memofab: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // Dropping the runtime would wait for every blocking task, and one may
    // be libgit2 hashing a huge file for minutes after a stop signal: give
    // them a moment, then leave them (the process's exit ends them).
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("memofab: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// How long blocking work may go on after the command's work is done.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The error and its causes on one line, like `{:#}`, but without a cause
/// the line already ends with: our error types print their source in their
/// own message, and `{:#}` would print it twice.
fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let repo = cli.repo.clone().unwrap_or_else(|| PathBuf::from("."));
    // The bench measures SQLite in its own directory, and a PostgreSQL
    // store only when given one, as a table of its own.
    if !matches!(cli.command, Some(Commands::Bench(_))) {
        select_store(&cli.global, &repo)?;
    }
    match cli.command {
        Some(Commands::Init(args)) => init::run(&repo, args).await,
        Some(Commands::Demo(args)) => demo::run(&cli.global, args).await,
        Some(Commands::Run(args)) => headless::run(&cli.global, &repo, args).await,
        Some(Commands::Resume(args)) => headless::resume(&cli.global, &repo, args).await,
        Some(Commands::Runs(args)) => records::runs(&cli.global, &repo, &args),
        Some(Commands::Approve(args)) => records::approve(&repo, args),
        Some(Commands::Reject(args)) => records::reject(&repo, args),
        Some(Commands::RaiseBudget(args)) => records::raise_budget(&repo, args),
        Some(Commands::Export(args)) => records::export(&repo, args),
        Some(Commands::Clean(args)) => records::clean(&repo, args),
        Some(Commands::Doctor) => doctor::run(&cli.global, &repo).await,
        Some(Commands::Replay(args)) => headless::replay(&cli.global, &repo, args).await,
        Some(Commands::Attach(args)) => attach::through_store(&cli.global, &repo, args).await,
        Some(Commands::Overseer(mut args)) => {
            // `memofab --provider scripted overseer` means the same.
            args.provider = args.provider.or(cli.provider);
            overseer::run(&cli.global, &repo, args).await
        }
        Some(Commands::Bench(args)) => bench::run(args, cli.global.store.clone()).await,
        Some(Commands::Repo(args)) => queue::repo(args),
        Some(Commands::Submit(args)) => queue::submit(&repo, args),
        Some(Commands::Queue(args)) => queue::queue(args, cli.repo.as_deref()),
        Some(Commands::Serve(args)) => serve::run(&cli.global, args).await,
        Some(Commands::Mcp) => mcp().await,
        None => {
            // A repository the daemon serves: follow its run there.
            let root = open_repo(&repo)?;
            match attach::connect(&root).await? {
                Some(attachment) => attach::run(&cli.global, attachment).await,
                None => {
                    headless::cockpit_new_run(&cli.global, &repo, cli.provider.as_deref()).await
                }
            }
        }
    }
}

/// `memofab mcp`: serves MCP on stdin/stdout; stdout carries nothing else,
/// logs go to the daemon's log directory.
async fn mcp() -> Result<ExitCode> {
    let paths = crate::daemon::DaemonPaths::from_env()?;
    paths.create_dirs()?;
    init_logging(&paths.log_dir);
    // Only the user's own file: a project's config is what its agents write.
    let files: Vec<_> = crate::config::Config::user_file().into_iter().collect();
    let allow_approve = crate::config::Config::load(&files)?.mcp.allow_approve;
    crate::mcp_server::serve_stdio(paths, allow_approve).await?;
    Ok(ExitCode::SUCCESS)
}

/// Like other command-line tools, end quietly when the reader of our output
/// goes away (`memofab runs | head`) instead of panicking on a closed pipe.
#[cfg(unix)]
#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    // SAFETY: called first thing in main, before any thread starts; setting
    // a signal's disposition to the default touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_default_sigpipe() {}

/// Hint for every "this is not a repository" error.
const NEEDS_A_REPO: &str = "run memofab inside a git repository, or `git init` first";

/// The repository memofab was pointed at, canonical, after read-only checks
/// that it is a git work tree with a first commit (runs branch from it).
pub(crate) fn open_repo(repo: &Path) -> Result<PathBuf> {
    use crate::effects::git::{GitError, GitRepo};
    let Ok(path) = std::fs::canonicalize(repo) else {
        bail!("{} does not exist; {NEEDS_A_REPO}", repo.display());
    };
    let git = match GitRepo::open(&path) {
        Ok(git) => git,
        Err(GitError::NotARepository { .. }) => {
            bail!(
                "{} is not inside a git repository; {NEEDS_A_REPO}",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    match git.current_branch() {
        Err(GitError::NoCommits) => bail!(
            "the repository {} has no commits yet; make a first commit (`git commit --allow-empty -m init` will do): memofab branches from it",
            git.root().display()
        ),
        // A detached HEAD is refused by the run's own checks, with advice.
        Ok(_) | Err(GitError::DetachedHead) => Ok(path),
        Err(e) => Err(e).with_context(|| format!("reading HEAD of {}", git.root().display())),
    }
}

/// The cockpit draws on stdout and reads keys from the terminal: say so and
/// how to do without one, before a run or a demo repository is created.
pub(crate) fn require_terminal(what: &str, instead: &str) -> Result<()> {
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        bail!("{what} needs a terminal, and standard input or output is not one here; {instead}");
    }
    Ok(())
}

/// What to do without a terminal, for commands that start or continue a run.
pub(crate) const HEADLESS_INSTEAD: &str =
    "add --headless to print the run's events as JSON lines instead";

/// The requirement of `run` and `submit`: from `--requirement FILE` or
/// `--requirement-text TEXT`, never empty.
pub(crate) fn read_requirement(file: Option<&Path>, text: Option<&str>) -> Result<String> {
    let requirement = match (file, text) {
        (Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("reading the requirement from {}", file.display()))?,
        (None, Some(text)) => text.to_owned(),
        (None, None) => {
            bail!("give the requirement with --requirement FILE or --requirement-text TEXT")
        }
    };
    if requirement.trim().is_empty() {
        bail!("the requirement is empty");
    }
    Ok(requirement)
}

/// Where this process keeps the record: `--store` (or `MEMOFAB_STORE_URL`),
/// else the config's `[store] url`, else each repository's SQLite file.
/// Chosen once, before any store opens.
fn select_store(global: &args::GlobalArgs, repo: &Path) -> Result<()> {
    use crate::effects::store::postgres;
    let url = match &global.store {
        Some(url) => Some(url.clone()),
        // A config that does not load is reported by the command itself.
        None => load_config(repo, global.config.as_deref())
            .ok()
            .and_then(|c| c.store.url),
    };
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(());
    };
    if !postgres::url::is_postgres(&url) {
        bail!(
            "--store {}: give a PostgreSQL URL (postgres://user@host:5432/database)",
            postgres::url::redacted(&url)
        );
    }
    postgres::select(&url);
    Ok(())
}

/// Loads config for a project: defaults, user file, project file, `--config`.
pub(crate) fn load_config(repo: &Path, extra: Option<&Path>) -> Result<Config> {
    Ok(Config::for_repo(repo, extra)?)
}

/// Logs go to a file so they never garble the TUI or the JSON lines on stdout.
pub(crate) fn init_logging(dir: &Path) {
    use tracing_subscriber::EnvFilter;
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("memofab.log"))
    else {
        return;
    };
    let filter = EnvFilter::try_from_env("MEMOFAB_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("listening at {addr}: {source}")]
    struct Listening {
        addr: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn an_error_line_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let error = anyhow::Error::new(Listening {
            addr: "127.0.0.1:8787",
            source: io,
        })
        .context("serving");
        assert_eq!(
            error_line(&error),
            "serving: listening at 127.0.0.1:8787: Address already in use"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_line(&plain), "outer: inner");
    }
}
