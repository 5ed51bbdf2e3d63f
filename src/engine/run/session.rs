//! Starting and resuming runs: the checks a repository must pass, where the
//! store and worktrees live, and wiring the recorder, context and orchestrator
//! together.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::orchestrator::{Orchestrator, Steering};
use super::takeover;
use crate::config::Config;
use crate::domain::event::RunStarted;
use crate::domain::policy::{Policy, PolicyFile};
use crate::domain::{EventKind, RunId, RunSettings, RunState};
use crate::effects::git::{GitError, GitRepo};
use crate::effects::store::Store;
use crate::engine::context::{AgentSlots, ProviderSet, RunContext};
use crate::engine::engine_lock::EngineLock;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::prompts::Prompts;
use crate::engine::recorder::{CrashAfter, Recorder};
use crate::protocol::{Command, EngineUpdate};

pub use crate::engine::files::{FACTORY_DIR, factory_dir, store_path, stored_state};

/// The project's policy (`.memofab/policy.toml`), or only the built-in
/// protections if there is none.
pub fn load_policy(repo: &Path) -> EngineResult<Policy> {
    let path = factory_dir(repo).join("policy.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let file: PolicyFile = toml::from_str(&text).map_err(|e| {
                EngineError::Invalid(format!(
                    "invalid policy: {}",
                    crate::toml_file::located(&path.display().to_string(), &text, &e)
                ))
            })?;
            Ok(Policy::new(&file)?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::protected_only()),
        Err(e) => Err(EngineError::io(format!("reading {}", path.display()))(e)),
    }
}

/// Everything needed to start a run.
pub struct RunRequest {
    pub repo: PathBuf,
    pub requirement: String,
    pub config: Config,
    pub providers: ProviderSet,
    /// Names the provider in the run's settings, e.g. `scripted`.
    pub provider_label: String,
    pub scenario: Option<String>,
    pub auto_approve: bool,
    /// Wait for the human to submit the requirement before planning.
    pub await_spec: bool,
    pub steering: Steering,
    pub crash_after: Option<u64>,
    /// The run's id, when the caller recorded it before the start (the
    /// daemon's queue does, so that a kill at any point can be resumed);
    /// a fresh one otherwise.
    pub run_id: Option<RunId>,
    /// The daemon's agent budget shared across runs, if any.
    pub agent_slots: Option<AgentSlots>,
}

/// Opens the repository and checks it can host a run.
pub fn preflight(repo: &Path) -> EngineResult<(GitRepo, String)> {
    let not_ready = |e| {
        match e {
        GitError::NotARepository { path } => EngineError::Preflight(format!(
            "{} is not inside a git repository; run memofab inside a git repository, or `git init` first",
            path.display()
        )),
        GitError::NoCommits => EngineError::Preflight(
            "the repository has no commits yet; make a first commit (memofab branches from mainline)".into(),
        ),
        GitError::DetachedHead => EngineError::Preflight(
            "HEAD is detached; check out the branch memofab should merge onto".into(),
        ),
        other => EngineError::Git(other),
    }
    };
    let git = GitRepo::open(repo).map_err(not_ready)?;
    git.ensure_excluded("/.memofab/")?;
    let branch = git.current_branch().map_err(not_ready)?;
    let dirty = git.dirty_paths()?;
    if !dirty.is_empty() {
        let shown: Vec<&str> = dirty.iter().take(10).map(String::as_str).collect();
        let more = dirty.len().saturating_sub(shown.len());
        return Err(EngineError::Preflight(format!(
            "the work tree has uncommitted changes ({}{}); commit or stash them so merges onto {branch} cannot clobber them",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )));
    }
    Ok((git, branch))
}

fn context(
    recorder: Recorder,
    git: GitRepo,
    config: Config,
    providers: ProviderSet,
    mainline: String,
    settings: &RunSettings,
    steering: Steering,
) -> EngineResult<RunContext> {
    // Probed once per process: the same answer the run was started with.
    let repo = git.root().to_owned();
    let common_dir = crate::effects::repo_watch::common_dir(&repo);
    // The fence reads the user's git data from here, never from whatever a
    // worktree's `.git` names.
    let isolation = config.run.isolation()?.with_git_data(&common_dir);
    let base_commit = recorder.with_state(|s| s.base_commit.clone());
    let instructions = git.instruction_files_at(&base_commit)?;
    Ok(RunContext {
        // Taken before any task can land, resumed ones included.
        // Mainline's baseline too: from here on it moves only by a landing.
        repo_watch: std::sync::Mutex::new(
            crate::effects::repo_watch::Guard::new(
                crate::effects::repo_watch::Fingerprint::take(&common_dir, &mainline),
                &mainline,
            )
            .with_remote(config.mainline.remote.as_deref()),
        ),
        policy: load_policy(&repo)?,
        prompts: Prompts::for_repo(&repo).with_profile(config.run.profile),
        instructions,
        worktrees: factory_dir(&repo).join("worktrees"),
        test_command: settings.test_command.clone(),
        auto_approve: settings.auto_approve,
        // A daemon's run waits for a cockpit to attach, as a cockpit's does.
        humans: steering != Steering::Headless,
        isolation,
        prices: Arc::new(crate::llm::pricing::price_table(&config)),
        merge_lock: tokio::sync::Mutex::new(()),
        slot_freed: tokio::sync::Notify::new(),
        spare_worktrees: std::sync::Mutex::new(Vec::new()),
        shepherd: crate::engine::shepherd::Desk::with_advice(
            config.shepherd.clone(),
            recorder.with_store(|store| crate::engine::shepherd::overseer_advice(store)),
        ),
        recorder,
        git: git.with_max_file_bytes(config.run.max_file_bytes),
        config,
        providers,
        mainline,
        // The daemon's budget, if any, is set by the caller.
        agent_slots: None,
    })
}

pub use crate::engine::context::{check_requirement, check_requirement_with};

/// Starts a new run and drives it to its end.
pub async fn start(
    request: RunRequest,
    updates: UnboundedSender<EngineUpdate>,
    commands: UnboundedReceiver<Command>,
) -> EngineResult<RunState> {
    // Before anything is stored: a refused requirement leaves no run.
    if !request.await_spec {
        check_requirement_with(&request.config, &request.providers, &request.requirement).await?;
    }
    let (git, branch) = preflight(&request.repo)?;
    let _engine = EngineLock::acquire(&git)?;
    let mainline = request.config.project.mainline.clone().unwrap_or(branch);
    // Before the run exists: a run that cannot fence its agents never starts.
    let isolation = request.config.run.isolation()?;
    let m = mainline.clone();
    let base_commit = git.branch_head(&m)?;
    // Refuse a bad policy or isolation setting before the run exists, so
    // neither leaves a run stuck in planning (`context` loads them again).
    load_policy(git.root())?;
    request.config.run.isolation()?;
    let store = Store::open(&store_path(git.root()))?;
    let run = request.run_id.clone().unwrap_or_else(RunId::generate);
    let settings = RunSettings {
        concurrency: request.config.run.concurrency,
        max_tasks: request.config.run.max_tasks,
        max_rework: request.config.run.max_rework,
        max_conflict_rework: request.config.run.max_conflict_rework,
        max_plan_rounds: request.config.run.max_plan_rounds,
        test_command: request.config.project.test_command.clone(),
        provider: request.provider_label.clone(),
        scenario: request.scenario.clone(),
        auto_approve: request.auto_approve,
        await_spec: request.await_spec,
        write_sets: request.config.run.write_set_scheduling,
        budget: request.config.budget,
        verify_merges: request.config.verify_merges(),
        post_merge_command: request.config.merge.post_merge_command.clone(),
        isolation: isolation.describe(),
        // A tester's tests prove something only once they have been run.
        test_agents: if request.config.project.test_command.is_some() {
            request.config.run.test_agents
        } else {
            crate::domain::TestAgents::Off
        },
    };
    let secrets = crate::engine::secrets::secrets_in_env(&request.config);
    let started = EventKind::RunStarted(RunStarted {
        requirement: request.requirement.clone(),
        repo: git.root().display().to_string(),
        mainline: mainline.clone(),
        base_commit,
        settings: settings.clone(),
    });
    let recorder = Recorder::start(
        store,
        run,
        crate::domain::redact::redact_value(started, &secrets),
        updates,
    )?
    .with_crash_after(request.crash_after.map(CrashAfter))
    .with_secrets(secrets);
    let mut ctx = context(
        recorder,
        git,
        request.config,
        request.providers,
        mainline,
        &settings,
        request.steering,
    )?;
    ctx.agent_slots = request.agent_slots;
    Orchestrator::new(Arc::new(ctx), commands, request.steering)
        .run(false)
        .await
}

/// Everything needed to resume a stored run.
pub struct ResumeRequest {
    pub repo: PathBuf,
    pub run: RunId,
    pub config: Config,
    pub providers: ProviderSet,
    pub steering: Steering,
    pub crash_after: Option<u64>,
    /// The daemon's agent budget shared across runs, if any.
    pub agent_slots: Option<AgentSlots>,
}

/// Continues a run from its stored events.
pub async fn resume(
    request: ResumeRequest,
    updates: UnboundedSender<EngineUpdate>,
    commands: UnboundedReceiver<Command>,
) -> EngineResult<RunState> {
    let git = GitRepo::open(&request.repo)?;
    let _engine = EngineLock::acquire(&git)?;
    // A machine where the fence cannot be built does not resume the run.
    request.config.run.isolation()?;
    let store = Store::open(&store_path(git.root()))?;
    let recorder = Recorder::resume(store, &request.run, updates)?
        .with_crash_after(request.crash_after.map(CrashAfter))
        .with_secrets(crate::engine::secrets::secrets_in_env(&request.config));
    let (settings, mainline) = recorder.with_state(|s| (s.settings.clone(), s.mainline.clone()));
    // A shared store holds other repositories' runs too: carrying one on
    // here would build and land its tasks in the wrong repository. A clone
    // of its repository (another machine) has its base commit, once the
    // remote's mainline is fetched.
    let (base, recorded_in) = recorder.with_state(|s| (s.base_commit.clone(), s.repo.clone()));
    let remote = request
        .config
        .mainline
        .remote
        .clone()
        .map(|name| takeover::RemoteSetting {
            name,
            timeout: std::time::Duration::from_secs(request.config.mainline.timeout_secs),
        });
    if !takeover::has_base(&git, remote.as_ref(), &mainline, &base)? {
        return Err(EngineError::OtherRepository {
            run: request.run.to_string(),
            repo: recorded_in,
            base,
        });
    }
    // Another clone's run: its task branches are made here from the record.
    let worktrees = factory_dir(git.root()).join("worktrees");
    takeover::adopt_task_branches(&recorder, &git, remote.as_ref(), &worktrees, &mainline).await?;
    let mut ctx = context(
        recorder,
        git,
        request.config,
        request.providers,
        mainline,
        &settings,
        request.steering,
    )?;
    ctx.agent_slots = request.agent_slots;
    Orchestrator::new(Arc::new(ctx), commands, request.steering)
        .run(true)
        .await
}
