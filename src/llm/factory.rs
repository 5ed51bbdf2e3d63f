//! Builds HTTP providers from config.

use std::sync::Arc;
use std::time::Duration;

use super::LlmProvider;
use super::anthropic::{self, AnthropicProvider};
use super::bedrock::BedrockProvider;
use super::bedrock::credentials::AwsEnv;
use super::http::{Endpoint, RetryPolicy};
use super::openai::{self, OpenAiOptions, OpenAiProvider};
use super::types::LlmError;
use crate::config::{ProviderConfig, ProviderKind};

pub fn build_provider(name: &str, cfg: &ProviderConfig) -> Result<Arc<dyn LlmProvider>, LlmError> {
    let default_url = match cfg.kind {
        ProviderKind::Openai => openai::DEFAULT_BASE_URL,
        ProviderKind::Anthropic => anthropic::DEFAULT_BASE_URL,
        ProviderKind::Bedrock => {
            let env = AwsEnv::process();
            return Ok(Arc::new(BedrockProvider::from_config(name, cfg, env)?));
        }
        ProviderKind::Scripted => {
            return Err(LlmError::Config(
                "scripted providers are built by the engine".into(),
            ));
        }
    };
    let api_key = match &cfg.api_key_env {
        Some(var) => match std::env::var(var) {
            Ok(key) if !key.trim().is_empty() => Some(key.trim().to_owned()),
            _ => {
                return Err(LlmError::Config(format!(
                    "provider {name}: the environment variable {var} (providers.{name}.api_key_env) is not set"
                )));
            }
        },
        None => None,
    };
    let base_url = cfg.base_url.as_deref().unwrap_or(default_url);
    let endpoint = Endpoint::new(
        base_url,
        api_key,
        Duration::from_secs(cfg.connect_timeout_secs),
        Duration::from_secs(cfg.request_timeout_secs),
        RetryPolicy::new(cfg.max_retries),
    )?;
    Ok(match cfg.kind {
        ProviderKind::Anthropic => Arc::new(
            AnthropicProvider::new(name, endpoint)
                .with_text_tool_calls(cfg.text_tool_calls)
                .with_context_tokens(cfg.context_tokens),
        ),
        _ => {
            let defaults = OpenAiOptions::for_base_url(base_url);
            let options = OpenAiOptions {
                max_tokens_field: cfg.max_tokens_field.unwrap_or(defaults.max_tokens_field),
                reasoning_effort: cfg.reasoning_effort,
                text_tool_calls: cfg.text_tool_calls,
                tool_choice: cfg.tool_choice,
                prompt_cache_key: cfg.prompt_cache_key.unwrap_or(defaults.prompt_cache_key),
            };
            Arc::new(
                OpenAiProvider::new(name, endpoint)
                    .with_options(options)
                    .with_configured_cap_field(cfg.max_tokens_field.is_some())
                    .with_context_tokens(cfg.context_tokens),
            )
        }
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn a_missing_key_names_the_variable_not_a_value() {
        let cfg = ProviderConfig {
            api_key_env: Some("MEMOFAB_TEST_SURELY_UNSET_KEY".into()),
            request_timeout_secs: 5,
            connect_timeout_secs: 5,
            max_retries: 0,
            max_concurrency: 4,
            max_parked_secs: 60,
            ..ProviderConfig::new(ProviderKind::Openai)
        };
        let err = build_provider("cloud", &cfg).err().unwrap().to_string();
        assert!(err.contains("MEMOFAB_TEST_SURELY_UNSET_KEY"), "{err}");
    }
}
