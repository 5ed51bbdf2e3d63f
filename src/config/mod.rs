//! Configuration: built-in defaults, overlaid by the user's config file
//! (`$XDG_CONFIG_HOME/memofab/config.toml`), then by the project's
//! (`.memofab/config.toml`). Every field has a default so a partial file
//! only changes what it names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::AgentRole;
use crate::domain::blueprint::DEFAULT_MAX_TASKS;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub run: RunConfig,
    pub project: ProjectConfig,
    /// Named providers; roles refer to them by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Which provider and model each role uses; `default` for roles not named.
    pub roles: RolesConfig,
    pub ui: UiConfig,
    /// Token and cost limits per task and per run; none by default.
    pub budget: crate::domain::Budget,
    /// The mainline merge queue.
    pub merge: MergeConfig,
    /// Where mainline lives: the local branch, or a git remote's.
    pub mainline: MainlineConfig,
    /// Where the record lives: the SQLite file, or a shared PostgreSQL.
    pub store: StoreConfig,
    /// When the shepherd finds work stuck, and whether it acts at all.
    pub shepherd: crate::domain::shepherd::Thresholds,
    /// What `memofab serve` shares across repositories.
    pub daemon: DaemonConfig,
    /// The overseer's schedule.
    pub overseer: OverseerConfig,
    /// MCP servers whose tools agents are given.
    pub mcp: McpConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MergeConfig {
    /// Run the project's test command on each merge result (in a scratch
    /// worktree) before mainline moves. Needs `project.test_command`.
    pub verify: bool,
    /// Runs on mainline after each landing; if it fails, the merge is
    /// reverted automatically and the task reopens.
    pub post_merge_command: Option<String>,
}

impl Default for MergeConfig {
    fn default() -> Self {
        Self {
            verify: true,
            post_merge_command: None,
        }
    }
}

impl Config {
    /// Whether merges are verified: asked for, and there is something to run.
    pub fn verify_merges(&self) -> bool {
        self.merge.verify && self.project.test_command.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Coding agents working at once.
    pub concurrency: usize,
    pub max_tasks: usize,
    /// Review or test rejections a task may be reworked for before it fails.
    pub max_rework: u32,
    /// Merge conflicts a task may be reworked for before it escalates.
    pub max_conflict_rework: u32,
    /// Planner revisions after plan review.
    pub max_plan_rounds: u32,
    /// LLM turns one agent may take before it is stopped.
    pub max_agent_turns: u32,
    /// Wall-clock limit of one `run` tool call or test run, seconds.
    pub command_timeout_secs: u64,
    /// Bytes of command output kept (head and tail).
    pub output_cap_bytes: usize,
    /// Agents' `run` refuses commands containing any of these.
    pub deny_commands: Vec<String>,
    /// Fencing for agents' commands and the test step: `auto` uses Landlock
    /// or bubblewrap, whichever works here, and refuses to run without one;
    /// `landlock` or `bwrap` require that one; `none` does without.
    pub isolation: IsolationChoice,
    /// Let isolated commands reach the network.
    pub allow_network: bool,
    /// Paths outside the system that fenced commands may read, such as
    /// toolchains in the home directory (`~/` is expanded). Nothing else of
    /// the home directory is readable.
    pub readable_paths: Vec<PathBuf>,
    /// Never run two tasks whose write-sets (declared paths joined with the
    /// paths seen written) overlap at the same time.
    pub write_set_scheduling: bool,
    /// Largest requirement a run accepts, in bytes: every planning turn
    /// carries it, so a huge one burns tokens on every call.
    pub max_requirement_bytes: usize,
    /// Largest file a task may commit, in bytes (its apparent size, sparse
    /// or not): a larger one is refused before git reads it.
    pub max_file_bytes: u64,
    /// Which tasks get a tester writing acceptance tests before the coder:
    /// `all`, `gated` (tasks whose declared paths the policy gates) or
    /// `off`. Needs `project.test_command`. On the scripted provider, a task
    /// without a tester conversation in the scenario gets none.
    pub test_agents: crate::domain::TestAgents,
    /// Which shipped prompts agents get: `standard`, or `small` (short,
    /// without literal examples, which small models copy word for word).
    /// `memofab init` picks `small` for a local model under ~7B.
    pub profile: ModelProfile,
}

/// How much a model can take: the prompts shipped for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelProfile {
    #[default]
    Standard,
    Small,
}

impl ModelProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelProfile::Standard => "standard",
            ModelProfile::Small => "small",
        }
    }
}

pub use crate::effects::isolation::Choice as IsolationChoice;

mod factory;
pub mod model_options;
pub use factory::{DaemonConfig, McpConfig, McpServerConfig, OverseerConfig};
mod mainline;
pub use mainline::MainlineConfig;
mod store;
pub use store::StoreConfig;

impl RunConfig {
    /// The isolation commands get, or why the configured one is unavailable.
    pub fn isolation(
        &self,
    ) -> Result<crate::effects::isolation::Isolation, crate::effects::isolation::IsolationError>
    {
        crate::effects::isolation::Isolation::choose(
            self.isolation,
            self.allow_network,
            self.readable_paths.clone(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectConfig {
    /// Command that runs the project's tests, e.g. `cargo test`.
    pub test_command: Option<String>,
    /// Mainline branch; defaults to the branch checked out when the run starts.
    pub mainline: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Offline, deterministic, driven by a scenario file.
    Scripted,
    /// OpenAI-compatible Chat Completions (OpenAI, Ollama, vLLM, llama.cpp, LM Studio, OpenRouter).
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Amazon Bedrock's Converse Stream API, signed with AWS credentials.
    Bedrock,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key. The key itself
    /// never appears in config, events or logs.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Default model for roles that do not name one.
    #[serde(default)]
    pub model: Option<String>,
    /// Scenario file for the scripted provider; the embedded demo if unset.
    #[serde(default)]
    pub scenario: Option<PathBuf>,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Retries of 5xx and connection failures. Rate and usage limits (429)
    /// are not retried blindly: the provider's governor parks its agents.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Requests in flight to this provider at once, across all agents: the
    /// ceiling of the adaptive limit, which halves on each rate limit and
    /// grows back by one per window of successes.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// Seconds one agent may spend parked on this provider's limits in
    /// total before it fails (a usage window can last hours).
    #[serde(default = "default_max_parked_secs")]
    pub max_parked_secs: u64,
    /// USD per million tokens, by model.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// OpenAI-compatible only: what the reply cap is called in requests.
    /// Unset: `max_completion_tokens` for api.openai.com and for OpenAI's
    /// reasoning models (o1/o3/o4, gpt-5) wherever served, `max_tokens`
    /// otherwise; a 400 refusing the field is asked again once with the
    /// other, which the provider then keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_field: Option<model_options::MaxTokensField>,
    /// OpenAI-compatible only: `reasoning_effort` for roles that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<model_options::ReasoningEffort>,
    /// `auto`: a reply without tool calls whose text is one JSON call of an
    /// offered tool is taken as that call (small local models); `off`.
    #[serde(default)]
    pub text_tool_calls: model_options::TextToolCalls,
    /// OpenAI-compatible only: `tool_choice` for requests offering tools
    /// (`required` for small local models); not sent when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<model_options::ToolChoice>,
    /// OpenAI-compatible only: send a `prompt_cache_key` per conversation.
    /// Unset: on for api.openai.com, off for other servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<bool>,
    /// The model's context window in tokens. Unset: the server's own figure
    /// where it reports one (llama.cpp, Ollama), else a default for
    /// well-known models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u64>,
    /// Bedrock only: the AWS region; else AWS_REGION, AWS_DEFAULT_REGION,
    /// or the profile's `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Bedrock only: the AWS profile whose credentials sign requests when
    /// none are in the environment; else AWS_PROFILE, else `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// Prices of tokens read from a prompt cache and written to one, when
/// `cached_input` is not set: fractions of the input price.
const CACHE_READ_SHARE: f64 = 0.1;
const CACHE_WRITE_SHARE: f64 = 1.25;

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Tokens read from the prompt cache; 0 (unset) means a tenth of `input`.
    #[serde(default)]
    pub cached_input: f64,
}

impl Price {
    pub fn cache_read(&self) -> f64 {
        if self.cached_input > 0.0 {
            self.cached_input
        } else {
            self.input * CACHE_READ_SHARE
        }
    }

    /// Tokens written to the prompt cache (Anthropic: 1.25 × input).
    pub fn cache_write(&self) -> f64 {
        self.input * CACHE_WRITE_SHARE
    }
}

fn default_request_timeout() -> u64 {
    300
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_max_retries() -> u32 {
    4
}
fn default_max_concurrency() -> u32 {
    model_options::DEFAULT_MAX_CONCURRENCY
}
fn default_max_parked_secs() -> u64 {
    model_options::DEFAULT_MAX_PARKED.as_secs()
}

impl ProviderConfig {
    /// A provider of `kind` with every other setting at its default.
    pub fn new(kind: ProviderKind) -> Self {
        Self {
            kind,
            base_url: None,
            api_key_env: None,
            model: None,
            scenario: None,
            request_timeout_secs: default_request_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            max_retries: default_max_retries(),
            max_concurrency: default_max_concurrency(),
            max_parked_secs: default_max_parked_secs(),
            prices: BTreeMap::new(),
            max_tokens_field: None,
            reasoning_effort: None,
            text_tool_calls: Default::default(),
            tool_choice: None,
            prompt_cache_key: None,
            context_tokens: None,
            region: None,
            profile: None,
        }
    }

    /// The settings of this provider's quota governor.
    pub fn governor(&self) -> model_options::GovernorConfig {
        model_options::GovernorConfig {
            max_concurrency: self.max_concurrency,
            max_parked: std::time::Duration::from_secs(self.max_parked_secs),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    pub provider: String,
    #[serde(default)]
    pub model: Option<String>,
    /// Most tokens one reply may use (sent as the request's cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reply_tokens: Option<u32>,
    /// Most tool calls run from one reply; the rest are answered "ignored".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_calls: Option<u32>,
    /// `reasoning_effort` for this role's requests (OpenAI-compatible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<model_options::ReasoningEffort>,
    /// Sampling temperature sent with this role's requests (0–2); unset,
    /// the server's own default, except in the small profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

// No `deny_unknown_fields` here: serde does not combine it with `flatten`;
// an unknown role still fails because keys must parse as `AgentRole`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RolesConfig {
    /// None until the user names one (`memofab init` does): the scripted
    /// demo model never runs unless asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<RoleConfig>,
    #[serde(flatten)]
    pub by_role: BTreeMap<AgentRole, RoleConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// A bundled theme name (`dark`, `light`, `high-contrast`) or a path.
    pub theme: String,
    pub mouse: bool,
    /// How a new item in the attention inbox is announced: `bell`, `osc9`
    /// (a desktop notification where the terminal supports it) or `off`.
    pub notify: Notify,
}

impl Default for Config {
    fn default() -> Self {
        let mut providers = BTreeMap::new();
        providers.insert(
            "scripted".to_owned(),
            ProviderConfig {
                model: Some("scripted".into()),
                request_timeout_secs: default_request_timeout(),
                connect_timeout_secs: default_connect_timeout(),
                max_retries: default_max_retries(),
                max_concurrency: default_max_concurrency(),
                max_parked_secs: default_max_parked_secs(),
                ..ProviderConfig::new(ProviderKind::Scripted)
            },
        );
        Self {
            run: RunConfig::default(),
            project: ProjectConfig::default(),
            providers,
            roles: RolesConfig::default(),
            ui: UiConfig::default(),
            budget: crate::domain::Budget::default(),
            merge: MergeConfig::default(),
            mainline: MainlineConfig::default(),
            store: StoreConfig::default(),
            shepherd: Default::default(),
            daemon: DaemonConfig::default(),
            overseer: OverseerConfig::default(),
            mcp: McpConfig::default(),
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_tasks: DEFAULT_MAX_TASKS,
            max_rework: 2,
            max_conflict_rework: 2,
            max_plan_rounds: 3,
            max_agent_turns: 40,
            command_timeout_secs: 120,
            output_cap_bytes: 16 * 1024,
            deny_commands: vec![
                "git push".into(),
                "git remote".into(),
                "git config".into(),
                "sudo".into(),
            ],
            isolation: IsolationChoice::Auto,
            allow_network: false,
            // Toolchains, not secrets: ~/.cargo/credentials.toml stays unreadable.
            readable_paths: [
                "~/.rustup",
                "~/.cargo/bin",
                "~/.cargo/registry",
                "~/.cargo/git",
            ]
            .map(PathBuf::from)
            .to_vec(),
            write_set_scheduling: true,
            max_requirement_bytes: 256 * 1024,
            max_file_bytes: crate::effects::git::DEFAULT_MAX_FILE_BYTES,
            test_agents: crate::domain::TestAgents::All,
            profile: ModelProfile::Standard,
        }
    }
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            theme: "dark".into(),
            mouse: true,
            notify: Notify::Bell,
        }
    }
}

/// How the cockpit announces a new item in the attention inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notify {
    Off,
    Bell,
    /// `ESC ] 9 ; text BEL`: a desktop notification where the terminal
    /// supports it, ignored where it does not.
    Osc9,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `message` starts with the file, and its line and column if known.
    #[error("invalid config: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config is invalid: {0}")]
    Invalid(String),
    /// A file named on the command line (`--config`) that is not there.
    #[error("config file {} does not exist", .0.display())]
    Missing(PathBuf),
}

/// A semantic problem with a merged config, and the key that causes it, so
/// the loader can name the file that set that key.
struct Problem {
    key: Vec<String>,
    message: String,
}

impl Problem {
    fn new(key: &[&str], message: String) -> Self {
        Self {
            key: key.iter().map(|k| (*k).to_owned()).collect(),
            message,
        }
    }
}

impl Config {
    /// Defaults, then each existing file in order, later files winning per key.
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfigError> {
        let mut merged = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut layers = Vec::new();
        for path in files {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        source,
                    });
                }
            };
            let origin = path.display().to_string();
            let parse_error = |message: String| ConfigError::Parse {
                path: path.clone(),
                message,
            };
            let layer: toml::Value = toml::from_str(&text)
                .map_err(|e| parse_error(crate::toml_file::located(&origin, &text, &e)))?;
            // The file on its own first, so an unknown key or a wrong type is
            // reported at its line. A file may leave a provider's `kind` or a
            // role's `provider` to an earlier layer; the merged parse below
            // checks those.
            if let Err(e) = toml::from_str::<Config>(&text)
                && !e.message().starts_with("missing field")
            {
                return Err(parse_error(crate::toml_file::located(&origin, &text, &e)));
            }
            merge_toml(&mut merged, layer.clone());
            // Parse after each layer so an error names the file that caused it.
            Config::deserialize(merged.clone())
                .map_err(|e| parse_error(format!("{origin}: {}", e.message().trim_end())))?;
            layers.push((path, layer));
        }
        let config =
            Config::deserialize(merged).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(problem) = config.problem() {
            // Name the last file that set the key; defaults have no file.
            let setter = layers.iter().rev().find(|(_, layer)| {
                problem
                    .key
                    .iter()
                    .try_fold(layer, |value, key| value.get(key))
                    .is_some()
            });
            return Err(match setter {
                Some((path, _)) => ConfigError::Parse {
                    path: (*path).clone(),
                    message: format!("{}: {}", path.display(), problem.message),
                },
                None => ConfigError::Invalid(problem.message),
            });
        }
        Ok(config)
    }

    /// The user's config file, for every project (and the daemon).
    pub fn user_file() -> Option<PathBuf> {
        directories::ProjectDirs::from("dev", "memofab", "memofab")
            .map(|dirs| dirs.config_dir().join("config.toml"))
    }

    /// The usual config files for a project at `repo`: user, then project.
    /// The config of the project at `repo`: defaults, the user's file, the
    /// project's file, then `extra` (`--config`), which must exist.
    pub fn for_repo(repo: &Path, extra: Option<&Path>) -> Result<Self, ConfigError> {
        let mut files = Self::standard_files(repo);
        if let Some(extra) = extra {
            if !extra.exists() {
                return Err(ConfigError::Missing(extra.to_owned()));
            }
            files.push(extra.to_owned());
        }
        Self::load(&files)
    }

    pub fn standard_files(repo: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = Self::user_file().into_iter().collect();
        files.push(repo.join(".memofab").join("config.toml"));
        files
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problem() {
            Some(problem) => Err(ConfigError::Invalid(problem.message)),
            None => Ok(()),
        }
    }

    fn problem(&self) -> Option<Problem> {
        if let Some(problem) = self.mcp.problem() {
            return Some(problem);
        }
        if let Some(problem) = self.store.problem() {
            return Some(problem);
        }
        if let Some(problem) = self.mainline.problem() {
            return Some(problem);
        }
        if self.run.concurrency == 0 {
            return Some(Problem::new(
                &["run", "concurrency"],
                "run.concurrency must be at least 1".into(),
            ));
        }
        if self.run.max_tasks == 0 {
            return Some(Problem::new(
                &["run", "max_tasks"],
                "run.max_tasks must be at least 1".into(),
            ));
        }
        if self.daemon.max_agents == 0 {
            return Some(Problem::new(
                &["daemon", "max_agents"],
                "daemon.max_agents must be at least 1".into(),
            ));
        }
        if self.daemon.intake_max_connections == 0 {
            return Some(Problem::new(
                &["daemon", "intake_max_connections"],
                "daemon.intake_max_connections must be at least 1".into(),
            ));
        }
        let mut roles: Vec<(String, &RoleConfig)> = self
            .roles
            .default
            .iter()
            .map(|c| ("default".to_owned(), c))
            .collect();
        roles.extend(self.roles.by_role.iter().map(|(r, c)| (r.to_string(), c)));
        if let Some((role, t)) = roles.iter().find_map(|(role, rc)| {
            rc.temperature
                .filter(|t| !(0.0..=2.0).contains(t))
                .map(|t| (role, t))
        }) {
            return Some(Problem::new(
                &["roles", role, "temperature"],
                format!("roles.{role}.temperature must be between 0 and 2 (found {t})"),
            ));
        }
        let known = || {
            let names: Vec<&str> = self.providers.keys().map(String::as_str).collect();
            names.join(", ")
        };
        roles
            .into_iter()
            .find(|(_, rc)| !self.providers.contains_key(&rc.provider))
            .map(|(role, rc)| {
                Problem::new(
                    &["roles", &role, "provider"],
                    format!(
                        "roles.{role} uses provider {:?}, which is not configured under [providers] (configured: {})",
                        rc.provider,
                        known()
                    ),
                )
            })
    }

    /// The provider name and model a role uses, if config names one.
    pub fn role(&self, role: AgentRole) -> Option<(&str, Option<&str>)> {
        let rc = self
            .roles
            .by_role
            .get(&role)
            .or(self.roles.default.as_ref())?;
        let model = rc.model.as_deref().or_else(|| {
            self.providers
                .get(&rc.provider)
                .and_then(|p| p.model.as_deref())
        });
        Some((rc.provider.as_str(), model))
    }

    /// Whether `role`'s provider is a server on this machine or network.
    pub fn role_is_local(&self, role: AgentRole) -> bool {
        self.role(role)
            .and_then(|(name, _)| self.providers.get(name))
            .and_then(|p| p.base_url.as_deref())
            .is_some_and(model_options::is_local_base_url)
    }

    /// The reply limits of `role`: its own settings, else the default
    /// role's, else the built-in ones.
    pub fn reply_limits(&self, role: AgentRole) -> model_options::ReplyLimits {
        let own = self.roles.by_role.get(&role);
        let default = self.roles.default.as_ref();
        let pick =
            |f: fn(&RoleConfig) -> Option<u32>| own.and_then(f).or_else(|| default.and_then(f));
        let mut builtin = model_options::ReplyLimits::default();
        if self.role_is_local(role) {
            builtin.max_tokens = model_options::DEFAULT_LOCAL_MAX_REPLY_TOKENS;
        }
        model_options::ReplyLimits {
            max_tokens: pick(|r| r.max_reply_tokens).unwrap_or(builtin.max_tokens),
            max_tool_calls: pick(|r| r.max_tool_calls)
                .map_or(builtin.max_tool_calls, |n| (n as usize).max(1)),
            reasoning_effort: own
                .and_then(|r| r.reasoning_effort)
                .or_else(|| default.and_then(|d| d.reasoning_effort)),
            temperature: own
                .and_then(|r| r.temperature)
                .or_else(|| default.and_then(|d| d.temperature))
                .or((self.run.profile == ModelProfile::Small)
                    .then_some(model_options::SMALL_PROFILE_TEMPERATURE)),
        }
    }
}

fn merge_toml(base: &mut toml::Value, layer: toml::Value) {
    match (base, layer) {
        (toml::Value::Table(base), toml::Value::Table(layer)) => {
            for (key, value) in layer {
                match base.get_mut(&key) {
                    Some(existing) => merge_toml(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

#[cfg(test)]
mod tests;
