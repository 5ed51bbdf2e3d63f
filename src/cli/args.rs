//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "memofab",
    version,
    about = "A terminal cockpit for an autonomous software factory"
)]
pub struct Cli {
    /// The git repository to work in (default: the current directory).
    #[arg(long, global = true)]
    pub repo: Option<PathBuf>,
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Provider for every role of the cockpit's run, overriding the config
    /// (e.g. `scripted` for the demo model).
    #[arg(long)]
    pub provider: Option<String>,
    #[command(subcommand)]
    pub command: Option<Commands>,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// An extra config file, layered over the user's and the project's.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Keep the record in this PostgreSQL database (postgres://user@host/db)
    /// instead of the repository's SQLite file; overrides `[store] url`.
    #[arg(
        long,
        global = true,
        env = "MEMOFAB_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
    /// Test hook: exit abruptly after this many events are stored.
    #[arg(long, global = true, hide = true)]
    pub crash_after_events: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Detect the model providers this machine has and write
    /// .memofab/config.toml and a commented .memofab/policy.toml.
    Init(InitArgs),
    /// Run the embedded demo: a complete factory run on a fresh seed repository.
    Demo(DemoArgs),
    /// Run the factory on a requirement in this repository.
    Run(RunArgs),
    /// Continue a run that was interrupted.
    Resume(ResumeArgs),
    /// List past runs of this repository.
    Runs(RunsArgs),
    /// Approve a merge waiting at the gate (from another terminal).
    Approve(GateArgs),
    /// Reject a merge waiting at the gate; the task goes back for rework.
    Reject(RejectArgs),
    /// Grant one more budget's worth to a task that ran out, or to the run.
    RaiseBudget(RaiseBudgetArgs),
    /// Write a run's full record.
    Export(ExportArgs),
    /// Remove the worktrees and branches of finished runs (or of one).
    Clean(CleanArgs),
    /// Replay a past run in the cockpit, from its stored events.
    Replay(ReplayArgs),
    /// Follow a run recorded in the PostgreSQL store (--store), live, from
    /// any machine: decisions go to the shared inbox, for whichever
    /// process works the run. Leaving stops nothing.
    Attach(AttachArgs),
    /// Review recent runs and propose improvements to the factory's prompts and policy.
    Overseer(OverseerArgs),
    /// Check the configuration and reach every configured provider.
    Doctor,
    /// Measure memofab's own overhead (orchestration, store, cockpit, replay).
    Bench(BenchArgs),
    /// Run the factory as a daemon: the queues of every registered
    /// repository, with or without a terminal attached.
    Serve(ServeArgs),
    /// Register, list or unregister the repositories the daemon works in.
    Repo(RepoArgs),
    /// Put a requirement on a registered repository's queue (--repo PATH or
    /// NAME; default: the one here).
    Submit(SubmitArgs),
    /// List the daemon's queue; reorder or drop entries.
    Queue(QueueArgs),
    /// Serve the Model Context Protocol over stdio, for other agents and
    /// factories: submit requirements, read runs, decide gates.
    Mcp,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The run to follow (default: the latest run in the database).
    pub run: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Accept error reports (Sentry webhooks, plain JSON) over HTTP here,
    /// e.g. 127.0.0.1:8787 or localhost:8787.
    #[arg(long, value_parser = socket_address)]
    pub intake: Option<std::net::SocketAddr>,
    /// Accept reports without `[daemon] intake_secret`: anyone who reaches
    /// the address can queue work, so only a loopback address is allowed.
    #[arg(long, requires = "intake")]
    pub intake_insecure: bool,
}

/// `HOST:PORT`, the host an address or a name (`localhost`); the first
/// address it resolves to.
fn socket_address(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("{e}; give HOST:PORT, e.g. 127.0.0.1:8787"))?
        .next()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

#[derive(Debug, Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    pub action: RepoAction,
}

#[derive(Debug, Subcommand)]
pub enum RepoAction {
    /// Register a repository with the daemon.
    Add {
        /// The repository (any path inside it).
        path: PathBuf,
        /// Its short name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the registered repositories.
    List,
    /// Unregister a repository (by name or path); its queued entries are dropped.
    Remove {
        // Not called `repo`: that id is the global `--repo` option's, and
        // clap panics on two arguments with one id.
        /// Its name (`memofab repo list`) or a path inside it.
        #[arg(value_name = "REPO")]
        which: String,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// File holding the requirement.
    #[arg(long, conflicts_with = "requirement_text")]
    pub requirement: Option<PathBuf>,
    /// The requirement itself.
    #[arg(long)]
    pub requirement_text: Option<String>,
    /// Higher runs first (default 0); equal priorities run in the order submitted.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i64,
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Also list finished and dropped entries.
    #[arg(long)]
    pub all: bool,
    #[command(subcommand)]
    pub action: Option<QueueAction>,
}

#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Change a queued entry's priority (higher runs first).
    Move {
        /// The entry, as `memofab queue` lists it (q12).
        entry: String,
        /// Its new priority; higher runs first.
        #[arg(long, allow_negative_numbers = true)]
        priority: i64,
    },
    /// Take a queued entry off the queue (a running one is cancelled in its cockpit).
    Drop {
        /// The entry, as `memofab queue` lists it (q12).
        entry: String,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite existing files without asking.
    #[arg(long)]
    pub force: bool,
    /// Where to look for an Ollama server.
    #[arg(
        long,
        env = "MEMOFAB_OLLAMA_URL",
        default_value = "http://127.0.0.1:11434"
    )]
    pub ollama_url: String,
    /// Where to look for a llama.cpp server.
    #[arg(
        long,
        env = "MEMOFAB_LLAMACPP_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub llamacpp_url: String,
    /// The model profile to write: `small` (short prompts and replies, no
    /// tester agents) or `standard`; `auto` picks `small` for a local server
    /// serving a model under ~7B parameters.
    #[arg(long, value_enum, default_value = "auto")]
    pub profile: ProfileChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileChoice {
    Auto,
    Standard,
    Small,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Sections to run (default: all of them).
    #[arg(value_enum)]
    pub sections: Vec<BenchSection>,
    /// Small workloads: every code path in seconds, figures not comparable.
    #[arg(long)]
    pub quick: bool,
    /// Also open replay on a 5,000,000-event run (minutes more, ~3 GiB).
    #[arg(long, conflicts_with = "quick")]
    pub huge: bool,
    /// Where to build the benchmark repositories and stores (default: a new
    /// temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchSection {
    Orchestration,
    Store,
    Render,
    Replay,
    /// Merge conflicts with and without write-set scheduling.
    WriteSets,
    /// Billed input tokens of a long coder conversation with and without
    /// prompt caching and compaction (a local fake Anthropic server).
    Tokens,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print events as JSON lines instead of opening the cockpit.
    #[arg(long)]
    pub headless: bool,
    /// Where to create the demo repository (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Milliseconds between streamed words, so the demo can be watched.
    #[arg(long)]
    pub pace_ms: Option<u64>,
    /// Approve gated merges without a human.
    #[arg(long)]
    pub auto_approve: bool,
    /// A scenario file to run instead of the embedded one.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print events as JSON lines instead of opening the cockpit; gates and
    /// budgets are then decided with `memofab approve`/`reject`/`raise-budget`.
    #[arg(long)]
    pub headless: bool,
    /// File holding the requirement.
    #[arg(long, conflicts_with = "requirement_text")]
    pub requirement: Option<PathBuf>,
    /// The requirement itself.
    #[arg(long)]
    pub requirement_text: Option<String>,
    /// Provider for every role, overriding the config (e.g. `scripted`).
    #[arg(long)]
    pub provider: Option<String>,
    /// Scenario file for the scripted provider (implies `--provider scripted`).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Approve merges the policy holds at the gate without a human.
    #[arg(long)]
    pub auto_approve: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Every run in the store, of every repository sharing it (PostgreSQL).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run id (see `memofab runs`); the latest interrupted run if omitted.
    pub run: Option<String>,
    /// Print events as JSON lines instead of opening the cockpit.
    #[arg(long)]
    pub headless: bool,
}

#[derive(Debug, Args)]
pub struct OverseerArgs {
    /// How far back to look: e.g. 24h, 30m, 7d, or `all`.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Provider for the overseer agent, overriding the config (e.g. `scripted`).
    #[arg(long)]
    pub provider: Option<String>,
    #[command(subcommand)]
    pub action: Option<OverseerAction>,
}

#[derive(Debug, Subcommand)]
pub enum OverseerAction {
    /// Apply one proposal of a report (the human's approval is recorded).
    Apply {
        /// The report's id, as printed by `memofab overseer`.
        report: String,
        /// The proposal's number in the report.
        proposal: u32,
    },
    /// List the stored reports.
    List,
    /// Print a stored report.
    Show { report: String },
    /// Review a report's proposals in the terminal; `a` approves one.
    Review { report: String },
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The run id (see `memofab runs`); if omitted, the runs browser to pick
    /// one from, or with `--at`, the latest run.
    pub run: Option<String>,
    /// Open at an event number (`120`) or a time into the run (`90s`, `2m`).
    #[arg(long)]
    pub at: Option<String>,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    pub run: String,
    pub task: String,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// The run; every finished run if omitted. A run not over is never touched.
    pub run: Option<String>,
}

#[derive(Debug, Args)]
pub struct RaiseBudgetArgs {
    pub run: String,
    /// The task waiting over budget; without it, the run's budget.
    pub task: Option<String>,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    pub run: String,
    pub task: String,
    /// What the coder should change.
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Markdown,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub run: String,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: ExportFormat,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_remove_takes_a_name_beside_the_global_repo_option() {
        let cli =
            Cli::try_parse_from(["memofab", "--repo", "/x", "repo", "remove", "shop"]).unwrap();
        let Some(Commands::Repo(RepoArgs {
            action: RepoAction::Remove { which },
        })) = cli.command
        else {
            panic!("not repo remove: {:?}", cli.command);
        };
        assert_eq!(which, "shop");
        assert_eq!(cli.repo, Some(PathBuf::from("/x")));
    }

    #[test]
    fn the_intake_takes_an_address_or_a_host_name() {
        for (arg, port) in [("127.0.0.1:8787", 8787), ("localhost:9", 9), ("[::1]:0", 0)] {
            let cli = Cli::try_parse_from(["memofab", "serve", "--intake", arg]).unwrap();
            let Some(Commands::Serve(ServeArgs {
                intake: Some(addr), ..
            })) = cli.command
            else {
                panic!("{arg}: {:?}", cli.command);
            };
            assert_eq!(addr.port(), port, "{arg}");
            assert!(addr.ip().is_loopback(), "{arg}");
        }
        assert!(Cli::try_parse_from(["memofab", "serve", "--intake", "8787"]).is_err());
    }
}
