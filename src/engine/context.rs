//! What every step of a run shares: the recorder, the repository, the policy,
//! the prompts and the models, plus the lock that serialises merges.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::agent::AgentRunner;
use super::error::{EngineError, EngineResult};
use super::prompts::Prompts;
use super::recorder::Recorder;
use crate::config::Config;
use crate::domain::event::RepositoryChanged;
use crate::domain::policy::Policy;
use crate::domain::{AgentRole, EventKind};
use crate::effects::git::GitRepo;
use crate::effects::repo_watch::{Fingerprint, Guard};
use crate::llm::LlmProvider;
use crate::llm::governor::{Governor, GovernorConfig};

/// The model each role talks to, and the quota governor of its provider.
#[derive(Clone)]
pub struct ProviderSet {
    by_role: HashMap<AgentRole, Binding>,
}

/// One role's provider, model and governor. Roles on the same provider share
/// the governor, so its limits hold across all their agents.
#[derive(Clone)]
pub struct Binding {
    pub provider: Arc<dyn LlmProvider>,
    pub model: String,
    pub governor: Arc<Governor>,
}

impl ProviderSet {
    /// Every role on one provider and model, under a default governor.
    pub fn uniform(provider: Arc<dyn LlmProvider>, model: &str) -> Self {
        let governor = Governor::new(&provider.name(), GovernorConfig::default());
        Self::uniform_governed(provider, model, governor)
    }

    /// Every role on one provider and model, under `governor`.
    pub fn uniform_governed(
        provider: Arc<dyn LlmProvider>,
        model: &str,
        governor: Arc<Governor>,
    ) -> Self {
        Self {
            by_role: AgentRole::ALL
                .into_iter()
                .map(|r| {
                    let binding = Binding {
                        provider: provider.clone(),
                        model: model.to_owned(),
                        governor: governor.clone(),
                    };
                    (r, binding)
                })
                .collect(),
        }
    }

    /// Puts `role` on `provider`, sharing the governor of any role already
    /// on a provider of that name.
    pub fn with_role(self, role: AgentRole, provider: Arc<dyn LlmProvider>, model: &str) -> Self {
        let name = provider.name();
        let governor = self
            .by_role
            .values()
            .find(|b| b.provider.name() == name)
            .map(|b| b.governor.clone())
            .unwrap_or_else(|| Governor::new(&name, GovernorConfig::default()));
        self.with_role_governed(role, provider, model, governor)
    }

    pub fn with_role_governed(
        mut self,
        role: AgentRole,
        provider: Arc<dyn LlmProvider>,
        model: &str,
        governor: Arc<Governor>,
    ) -> Self {
        let binding = Binding {
            provider,
            model: model.to_owned(),
            governor,
        };
        self.by_role.insert(role, binding);
        self
    }

    /// Every provider's governor, once each.
    pub fn governors(&self) -> Vec<Arc<Governor>> {
        let mut seen: Vec<Arc<Governor>> = Vec::new();
        for binding in self.by_role.values() {
            if !seen.iter().any(|g| Arc::ptr_eq(g, &binding.governor)) {
                seen.push(binding.governor.clone());
            }
        }
        seen
    }

    pub fn binding(&self, role: AgentRole) -> EngineResult<Binding> {
        self.by_role.get(&role).cloned().ok_or_else(|| {
            EngineError::Preflight(format!("no provider configured for the {role} role"))
        })
    }

    pub fn get(&self, role: AgentRole) -> EngineResult<(Arc<dyn LlmProvider>, String)> {
        self.binding(role).map(|b| (b.provider, b.model))
    }
}

pub struct RunContext {
    pub recorder: Recorder,
    /// The user's repository as memofab last saw it (refs, hooks, config,
    /// mainline where the last landing put it), to notice changes nobody
    /// should have made.
    pub repo_watch: std::sync::Mutex<Guard>,
    pub git: GitRepo,
    pub config: Config,
    pub policy: Policy,
    pub prompts: Prompts,
    /// The repository's AGENTS.md / CLAUDE.md files at the run's base
    /// commit: what agents commit later cannot instruct the agents after them.
    pub instructions: Vec<crate::domain::instructions::InstructionFile>,
    pub providers: ProviderSet,
    /// Model prices from the config, read once, to cost each reply.
    pub prices: Arc<BTreeMap<String, crate::config::Price>>,
    /// Where task worktrees live: `<repo>/.memofab/worktrees/<run>/<task>`.
    pub worktrees: PathBuf,
    pub mainline: String,
    pub test_command: Option<String>,
    pub auto_approve: bool,
    /// A human is attached (the cockpit): disputes and questions wait for
    /// one; without, the run decides for itself.
    pub humans: bool,
    /// How agents' commands and the test step are fenced in.
    pub isolation: crate::effects::process::Isolation,
    /// Merges onto mainline happen one at a time: the merge queue's turn.
    /// tokio's mutex is fair, so the queue is first come, first served.
    pub merge_lock: tokio::sync::Mutex<()>,
    /// Told when a task enters the merge queue and so gives its slot back:
    /// the orchestrator can start the next ready task without waiting for a
    /// pipeline to end.
    pub slot_freed: tokio::sync::Notify,
    /// Worktrees of merged tasks, kept to be moved to the next task: on a
    /// large repository that saves a full checkout per task. Memory only; a
    /// resumed run starts without.
    pub spare_worktrees: std::sync::Mutex<Vec<SpareWorktree>>,
    /// The shepherd's thresholds, and tasks flagged as too long in a state.
    pub shepherd: Arc<super::shepherd::Desk>,
    /// The daemon's agent budget, shared by every run it drives: an agent
    /// holds one permit while it works. `None` in-process (no cap beyond
    /// the run's own concurrency).
    pub agent_slots: Option<AgentSlots>,
}

/// Agents allowed to work at once across runs (the daemon's `max_agents`).
pub type AgentSlots = Arc<tokio::sync::Semaphore>;

#[derive(Debug, Clone)]
pub struct SpareWorktree {
    pub dir: PathBuf,
    pub branch: String,
}

impl RunContext {
    fn spares(&self) -> std::sync::MutexGuard<'_, Vec<SpareWorktree>> {
        self.spare_worktrees
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps a merged task's worktree for the next task, up to one per agent
    /// slot; returns it back if the pool is full.
    pub fn park_worktree(&self, spare: SpareWorktree) -> Option<SpareWorktree> {
        let mut spares = self.spares();
        if spares.len() < self.settings().concurrency.max(1) {
            spares.push(spare);
            None
        } else {
            Some(spare)
        }
    }

    pub fn take_spare_worktree(&self) -> Option<SpareWorktree> {
        self.spares().pop()
    }

    /// Empties the pool, for removal when the run is over.
    pub fn drain_spare_worktrees(&self) -> Vec<SpareWorktree> {
        std::mem::take(&mut *self.spares())
    }

    pub fn runner(&self, role: AgentRole) -> EngineResult<AgentRunner> {
        let Binding {
            provider,
            model,
            governor,
        } = self.providers.binding(role)?;
        Ok(AgentRunner {
            recorder: self.recorder.clone(),
            provider,
            model,
            max_turns: self.config.run.max_agent_turns,
            prices: self.prices.clone(),
            governor,
            reply: self.config.reply_limits(role),
            shepherd: self.shepherd.clone(),
            small_model_guards: self.config.run.profile == crate::config::ModelProfile::Small,
        })
    }

    /// Runs one agent's conversation as `role`, first taking a permit of
    /// the daemon's agent budget if there is one; the permit goes back when
    /// the agent stops, whatever its outcome.
    pub async fn run_agent(
        &self,
        role: AgentRole,
        job: super::agent::AgentJob,
    ) -> EngineResult<Result<super::agent::AgentOutcome, super::agent::AgentFailed>> {
        let runner = self.runner(role)?;
        let _slot = match &self.agent_slots {
            Some(slots) => Some(
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| EngineError::Invalid("the agent budget was closed".into()))?,
            ),
            None => None,
        };
        runner.run(job).await
    }

    pub fn settings(&self) -> crate::domain::RunSettings {
        self.recorder.with_state(|s| s.settings.clone())
    }

    /// Runs blocking git work off the async threads.
    pub async fn git<T: Send + 'static>(
        &self,
        f: impl FnOnce(&GitRepo) -> Result<T, crate::effects::git::GitError> + Send + 'static,
    ) -> EngineResult<T> {
        let git = self.git.clone();
        tokio::task::spawn_blocking(move || f(&git))
            .await
            .map_err(|e| EngineError::Join(e.to_string()))?
            .map_err(EngineError::from)
    }

    /// Removes a worktree the run no longer needs. A failure only costs disk
    /// space, so it is logged rather than stopping the run.
    pub async fn discard_worktree(&self, dir: PathBuf) {
        let shown = dir.display().to_string();
        if let Err(e) = self.git(move |g| g.remove_worktree(&dir)).await {
            tracing::warn!(dir = %shown, error = %e, "could not remove a worktree");
        }
    }
}

impl RunContext {
    /// The repository's fingerprint now, read off the blocking pool.
    async fn fingerprint_now(self: &Arc<Self>) -> EngineResult<Fingerprint> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            Fingerprint::take(
                &crate::effects::repo_watch::common_dir(this.git.root()),
                &this.mainline,
            )
        })
        .await
        .map_err(|e| EngineError::Join(e.to_string()))
    }

    /// The reference fingerprint; a panic elsewhere cannot leave it half
    /// written (it is replaced whole), so a poisoned lock is still good.
    fn repo_watch(&self) -> std::sync::MutexGuard<'_, Guard> {
        self.repo_watch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the repository's fingerprint as the new reference, when a human
    /// resumes after a change.
    pub async fn rebaseline_repository(self: &Arc<Self>) -> EngineResult<()> {
        let now = self.fingerprint_now().await?;
        self.repo_watch().rebaseline(now);
        Ok(())
    }

    /// A human released a landing held for their checkout, which they were
    /// asked to commit: mainline as it is now is where memofab lands next.
    pub async fn accept_mainline(self: &Arc<Self>) -> EngineResult<()> {
        let now = self.fingerprint_now().await?;
        self.repo_watch().accept_mainline(&now);
        Ok(())
    }

    /// Runs one of memofab's own moves of mainline (a landing, a revert):
    /// the guard lets mainline move meanwhile, then takes the commit that
    /// `landed` names (if it moved) as where mainline is. Every other move
    /// of mainline during the run is a change the guard reports.
    pub async fn move_mainline<T: Send + 'static>(
        &self,
        f: impl FnOnce(&GitRepo) -> Result<T, crate::effects::git::GitError> + Send + 'static,
        landed: impl FnOnce(&T) -> Option<String>,
    ) -> EngineResult<T> {
        /// Ends the landing however the move ends, cancelled included.
        struct Landing<'a>(&'a RunContext, Option<String>);
        impl Drop for Landing<'_> {
            fn drop(&mut self) {
                self.0.repo_watch().landing_ends(self.1.as_deref());
            }
        }
        self.repo_watch().landing_starts();
        let mut landing = Landing(self, None);
        let result = self.git(f).await;
        landing.1 = result.as_ref().ok().and_then(landed);
        drop(landing);
        result
    }

    /// Runs git work on `task`'s own worktree (or the scratch worktree its
    /// merge is checked in). Its failure is the task's (what its code left
    /// there), not the run's: see [`EngineError::TaskWorktree`].
    pub async fn worktree_git<T: Send + 'static>(
        &self,
        task: &crate::domain::TaskId,
        f: impl FnOnce(&GitRepo) -> Result<T, crate::effects::git::GitError> + Send + 'static,
    ) -> EngineResult<T> {
        self.git(f).await.map_err(|e| match e {
            EngineError::Git(source) => EngineError::TaskWorktree {
                task: task.clone(),
                source,
            },
            other => other,
        })
    }

    /// Compares the repository with the reference; a change nobody made
    /// through memofab is recorded, which pauses the run. Whether the run
    /// is now stopped by such a change.
    pub async fn check_repository(self: &Arc<Self>) -> EngineResult<bool> {
        let now = self.fingerprint_now().await?;
        let changes = self.repo_watch().changes(&now);
        let (flagged, over) = self
            .recorder
            .with_state(|s| (!s.repository_changes.is_empty(), s.phase.is_over()));
        if !changes.is_empty() && !flagged && !over {
            tracing::warn!(?changes, "the repository changed outside memofab");
            self.recorder
                .record(EventKind::RepositoryChanged(RepositoryChanged { changes }))
                .await?;
        }
        Ok(self
            .recorder
            .with_state(|s| !s.repository_changes.is_empty()))
    }

    /// The limits every agent's tools work within.
    pub fn tool_limits(&self) -> super::tools::ToolLimits {
        let run = &self.config.run;
        super::tools::ToolLimits {
            command_timeout: std::time::Duration::from_secs(run.command_timeout_secs),
            output_cap: run.output_cap_bytes,
            deny_commands: run.deny_commands.clone(),
            isolation: self.isolation.clone(),
            max_file_bytes: run.max_file_bytes,
        }
    }
}

/// Refuses a requirement over `run.max_requirement_bytes`, or one the
/// planner's context window cannot hold where config tells the window (the
/// provider's `context_tokens`, else the model's well-known one). Used where
/// no provider is at hand (`memofab submit`, MCP); a run checks again with
/// [`check_requirement_with`].
pub fn check_requirement(config: &Config, requirement: &str) -> EngineResult<()> {
    check_size(config, requirement)?;
    let known = config
        .role(AgentRole::Planner)
        .and_then(|(provider, model)| {
            let model = model?;
            config
                .providers
                .get(provider)
                .and_then(|p| p.context_tokens)
                .or_else(|| crate::llm::compaction::default_context_tokens(model))
                .map(|tokens| (model.to_owned(), tokens))
        });
    match known {
        Some((model, tokens)) => check_fits(config, &model, tokens, requirement),
        None => Ok(()),
    }
}

/// [`check_requirement`] with the planner's window found as its agent will
/// find it: the provider's figure (a local server's own), else the model's
/// well-known one, else the fallback.
pub async fn check_requirement_with(
    config: &Config,
    providers: &ProviderSet,
    requirement: &str,
) -> EngineResult<()> {
    check_requirement(config, requirement)?;
    let Binding {
        provider, model, ..
    } = providers.binding(AgentRole::Planner)?;
    let tokens = match provider.context_tokens(&model).await {
        Some(n) => n,
        None => crate::llm::compaction::default_context_tokens(&model)
            .unwrap_or(super::agent::FALLBACK_CONTEXT_TOKENS),
    };
    check_fits(config, &model, tokens, requirement)
}

fn check_size(config: &Config, requirement: &str) -> EngineResult<()> {
    let (size, limit) = (requirement.len(), config.run.max_requirement_bytes);
    if size > limit {
        return Err(EngineError::RequirementTooLarge { size, limit });
    }
    Ok(())
}

/// What the planner's first request carries besides the requirement: its
/// prompt, its tools and the repository's file listing.
const PLANNER_ALLOWANCE_TOKENS: u64 = 4_000;

/// The requirement is in every planning request and cannot be compacted:
/// it must fit the planner's window with room for the rest and the reply.
fn check_fits(
    config: &Config,
    model: &str,
    context_tokens: u64,
    requirement: &str,
) -> EngineResult<()> {
    let window = crate::llm::compaction::Window {
        context_tokens,
        reply_tokens: u64::from(config.reply_limits(AgentRole::Planner).max_tokens),
    };
    let tokens = crate::llm::compaction::text_tokens(requirement);
    let room = window.limit().saturating_sub(PLANNER_ALLOWANCE_TOKENS);
    if tokens > room {
        return Err(EngineError::RequirementTooLong {
            tokens,
            room,
            model: model.to_owned(),
            context_tokens,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&[path]).unwrap()
    }

    #[test]
    fn a_requirement_the_planners_window_cannot_hold_is_refused_at_submit() {
        let small_window = config(
            "[roles.default]\nprovider = \"local\"\nmodel = \"some-model\"\n\
             [providers.local]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             context_tokens = 16000\n",
        );
        // Well under max_requirement_bytes, far over what 16k tokens hold.
        let long = "word ".repeat(20_000);
        assert!(matches!(
            check_requirement(&small_window, &long),
            Err(EngineError::RequirementTooLong {
                context_tokens: 16_000,
                ..
            })
        ));
        assert!(check_requirement(&small_window, "Add a stats command.").is_ok());
        // A model known for a large window takes it.
        let claude = config(
            "[roles.default]\nprovider = \"a\"\nmodel = \"claude-sonnet-4-5\"\n\
             [providers.a]\nkind = \"anthropic\"\n",
        );
        assert!(check_requirement(&claude, &long).is_ok());
    }
}
