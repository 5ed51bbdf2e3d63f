//! Builds the model each role talks to from config and command-line overrides:
//! used by the command line, the daemon's workers and the overseer alike.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ProviderKind};
use crate::domain::AgentRole;
use crate::engine::context::ProviderSet;
use crate::llm::governor::Governor;
use crate::llm::scenario::Scenario;
use crate::llm::scenario::ScenarioError;
use crate::llm::scripted::ScriptedProvider;
use crate::llm::{LlmError, LlmProvider};

/// Why the providers could not be built; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ProvidersError {
    #[error("{NOT_CONFIGURED}")]
    NotConfigured,
    #[error("provider {name:?} is not configured; configured providers: {}", .known.join(", "))]
    UnknownProvider { name: String, known: Vec<String> },
    #[error("provider {name:?} (used by the {role} role) is not configured")]
    RoleProviderMissing { name: String, role: AgentRole },
    #[error("scenario file {}: {source}", .path.display())]
    ScenarioFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("setting up provider {name:?}: {source}")]
    Provider { name: String, source: LlmError },
}

pub struct ProviderChoice {
    pub set: ProviderSet,
    /// The default role's provider name, recorded with the run.
    pub label: String,
    /// The scenario file of a scripted run (absolute), if not the embedded one.
    pub scenario: Option<String>,
}

/// What to do when no provider is configured: said by `run`, the cockpit,
/// the overseer and `doctor`.
pub const NOT_CONFIGURED: &str = "no model provider is configured for this repository. \
Run `memofab init` to detect one (OPENAI_API_KEY, ANTHROPIC_API_KEY, or a local Ollama or \
llama.cpp server) and write .memofab/config.toml, or name one under [roles.default] there. \
To try memofab without a model, `memofab demo` runs the scripted demo; \
`--provider scripted` runs it here.";

/// Builds every role's provider. `override_provider` puts all roles on one
/// configured provider; a scenario file without one asks for `scripted`.
/// Without either, config must name the providers: the scripted demo model
/// never runs by default.
pub fn build(
    config: &Config,
    override_provider: Option<&str>,
    scenario_file: Option<&Path>,
    pace: Duration,
) -> Result<ProviderChoice, ProvidersError> {
    let override_provider = override_provider.or(scenario_file.map(|_| "scripted"));
    if let Some(name) = override_provider
        && !config.providers.contains_key(name)
    {
        return Err(ProvidersError::UnknownProvider {
            name: name.to_owned(),
            known: config.providers.keys().cloned().collect(),
        });
    }
    // One provider and one governor per configured name, however many roles use it.
    let mut built: HashMap<String, (Arc<dyn LlmProvider>, Arc<Governor>)> = HashMap::new();
    let mut set: Option<ProviderSet> = None;
    let mut scenario_used = None;
    let label = match override_provider {
        Some(name) => name,
        None => {
            config
                .role(AgentRole::Coder)
                .ok_or(ProvidersError::NotConfigured)?
                .0
        }
    }
    .to_owned();
    for role in AgentRole::ALL {
        let (name, model) = match override_provider {
            Some(name) => (
                name,
                config.providers.get(name).and_then(|p| p.model.as_deref()),
            ),
            None => config.role(role).ok_or(ProvidersError::NotConfigured)?,
        };
        let cfg =
            config
                .providers
                .get(name)
                .ok_or_else(|| ProvidersError::RoleProviderMissing {
                    name: name.to_owned(),
                    role,
                })?;
        let (provider, governor) = match built.get(name) {
            Some(p) => p.clone(),
            None => {
                let p: Arc<dyn LlmProvider> = match cfg.kind {
                    ProviderKind::Scripted => {
                        let file = scenario_file
                            .map(Path::to_owned)
                            .or_else(|| cfg.scenario.clone());
                        let scenario = match &file {
                            Some(path) => {
                                let abs = std::fs::canonicalize(path).map_err(|source| {
                                    ProvidersError::ScenarioFile {
                                        path: path.clone(),
                                        source,
                                    }
                                })?;
                                scenario_used = Some(abs.display().to_string());
                                Scenario::load(&abs)?
                            }
                            None => Scenario::demo()?,
                        };
                        Arc::new(ScriptedProvider::new(Arc::new(scenario)).with_pace(pace))
                    }
                    ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::Bedrock => {
                        crate::llm::factory::build_provider(name, cfg).map_err(|source| {
                            ProvidersError::Provider {
                                name: name.to_owned(),
                                source,
                            }
                        })?
                    }
                };
                let governor = Governor::new(name, cfg.governor());
                built.insert(name.to_owned(), (p.clone(), governor.clone()));
                (p, governor)
            }
        };
        let model = model.unwrap_or("default");
        set = Some(match set {
            None => ProviderSet::uniform_governed(provider, model, governor),
            Some(s) => s.with_role_governed(role, provider, model, governor),
        });
    }
    // AgentRole::ALL is not empty, so the loop set it.
    let set = set.ok_or(ProvidersError::NotConfigured)?;
    Ok(ProviderChoice {
        set,
        label,
        scenario: scenario_used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_on_one_provider_share_its_governor() {
        let mut config = Config::default();
        let default = crate::config::RoleConfig {
            provider: "scripted".into(),
            model: None,
            max_reply_tokens: None,
            max_tool_calls: None,
            reasoning_effort: None,
            temperature: None,
        };
        config.roles.default = Some(default.clone());
        let mut second = config.providers["scripted"].clone();
        second.max_concurrency = 1;
        config.providers.insert("other".into(), second);
        config.roles.by_role.insert(
            AgentRole::Reviewer,
            crate::config::RoleConfig {
                provider: "other".into(),
                ..default
            },
        );
        let set = build(&config, None, None, Duration::ZERO).unwrap().set;
        let governor = |role| set.binding(role).unwrap().governor;
        assert!(Arc::ptr_eq(
            &governor(AgentRole::Coder),
            &governor(AgentRole::Planner)
        ));
        assert_eq!(governor(AgentRole::Coder).name(), "scripted");
        let other = governor(AgentRole::Reviewer);
        assert!(!Arc::ptr_eq(&other, &governor(AgentRole::Coder)));
        assert_eq!((other.name(), other.ceiling()), ("other", 1));
    }

    #[test]
    fn the_scripted_model_runs_only_when_asked_for() {
        let config = Config::default();
        let err = build(&config, None, None, Duration::ZERO).err().unwrap();
        assert!(err.to_string().contains("memofab init"), "{err}");
        assert_eq!(
            build(&config, Some("scripted"), None, Duration::ZERO)
                .unwrap()
                .label,
            "scripted"
        );
    }
}
