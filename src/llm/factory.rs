//! Builds HTTP providers from config (placeholder until they land).

use std::sync::Arc;

use super::{LlmError, LlmProvider};
use crate::config::ProviderConfig;

pub fn build_provider(name: &str, _cfg: &ProviderConfig) -> Result<Arc<dyn LlmProvider>, LlmError> {
    Err(LlmError::Config(format!(
        "provider {name}: HTTP providers are not built yet"
    )))
}
