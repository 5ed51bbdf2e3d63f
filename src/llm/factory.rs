//! Builds HTTP providers from config and checks that a
//! configured provider answers (`memofab doctor`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::anthropic::{self, AnthropicProvider};
use super::bedrock::BedrockProvider;
use super::bedrock::credentials::AwsEnv;
use super::http::{Endpoint, RetryPolicy};
use super::openai::{self, OpenAiOptions, OpenAiProvider};
use super::types::{ChatMessage, CompletionRequest, LlmError, ScriptKey};
use super::{LlmProvider, collect_completion};
use crate::config::{ProviderConfig, ProviderKind};
use crate::domain::AgentRole;

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
            AnthropicProvider::new(name, endpoint).with_text_tool_calls(cfg.text_tool_calls),
        ),
        _ => {
            let defaults = OpenAiOptions::for_base_url(base_url);
            let options = OpenAiOptions {
                max_tokens_field: cfg.max_tokens_field.unwrap_or(defaults.max_tokens_field),
                reasoning_effort: cfg.reasoning_effort,
                text_tool_calls: cfg.text_tool_calls,
            };
            Arc::new(OpenAiProvider::new(name, endpoint).with_options(options))
        }
    })
}

/// Sends a tiny request and returns the reply: proof the provider is reachable,
/// the key accepted and the model known.
pub async fn check_provider(provider: &dyn LlmProvider, model: &str) -> Result<String, LlmError> {
    let request = CompletionRequest {
        model: model.to_owned(),
        system: "You are a health check.".into(),
        messages: vec![ChatMessage::User {
            content: "Reply with the word ok.".into(),
        }],
        tools: Vec::new(),
        max_tokens: 16,
        temperature: Some(0.0),
        reasoning_effort: None,
        script: ScriptKey {
            role: AgentRole::Planner,
            task: None,
            attempt: 1,
        },
    };
    let stream = provider.stream(request).fuse();
    let completion = collect_completion(stream, |_| {}).await?;
    Ok(completion.text)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_missing_key_names_the_variable_not_a_value() {
        let cfg = ProviderConfig {
            kind: ProviderKind::Openai,
            base_url: None,
            api_key_env: Some("MEMOFAB_TEST_SURELY_UNSET_KEY".into()),
            model: None,
            scenario: None,
            request_timeout_secs: 5,
            connect_timeout_secs: 5,
            max_retries: 0,
            max_concurrency: 4,
            max_parked_secs: 60,
            prices: BTreeMap::new(),
            max_tokens_field: None,
            reasoning_effort: None,
            text_tool_calls: Default::default(),
            region: None,
            profile: None,
        };
        let err = build_provider("cloud", &cfg).err().unwrap().to_string();
        assert!(err.contains("MEMOFAB_TEST_SURELY_UNSET_KEY"), "{err}");
    }
}
