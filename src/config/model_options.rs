//! The options the config sets for a provider or a role that shape model
//! requests: the reply cap and its field name, tool choice, reasoning effort,
//! reading calls from text, and the quota governor's limits. They live here,
//! below `llm`, so that the config can name them and `llm` obeys them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The name of the reply cap in the request body. OpenAI's reasoning models
/// (o-series, gpt-5) refuse `max_tokens`; many local servers know only it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    MaxTokens,
    MaxCompletionTokens,
}

/// Whether `base_url` is OpenAI's own API (or Azure's).
pub fn is_openai(base_url: &str) -> bool {
    let host = base_url
        .split("://")
        .nth(1)
        .unwrap_or(base_url)
        .split(['/', ':'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    host == "api.openai.com" || host.ends_with(".openai.azure.com")
}

impl MaxTokensField {
    /// `max_completion_tokens` for OpenAI's own API (and Azure's), which
    /// takes it for every model; `max_tokens` for everything else.
    pub fn for_base_url(base_url: &str) -> Self {
        if is_openai(base_url) {
            MaxTokensField::MaxCompletionTokens
        } else {
            MaxTokensField::MaxTokens
        }
    }

    /// `max_completion_tokens` for OpenAI's reasoning models (o1, o3,
    /// o4-mini, gpt-5…) wherever they are served, a gateway or proxy
    /// included (`openai/o3` on OpenRouter); `None` for other models.
    pub fn for_model(model: &str) -> Option<Self> {
        let model = model.to_ascii_lowercase();
        let name = model.rsplit('/').next().unwrap_or(&model);
        let reasoning = ["o1", "o3", "o4"]
            .iter()
            .any(|family| name == *family || name.starts_with(&format!("{family}-")))
            || name.starts_with("gpt-5");
        reasoning.then_some(MaxTokensField::MaxCompletionTokens)
    }

    pub fn key(self) -> &'static str {
        match self {
            MaxTokensField::MaxTokens => "max_tokens",
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        }
    }

    /// The other name, for one retry when the server refuses this one.
    pub fn other(self) -> Self {
        match self {
            MaxTokensField::MaxTokens => MaxTokensField::MaxCompletionTokens,
            MaxTokensField::MaxCompletionTokens => MaxTokensField::MaxTokens,
        }
    }
}

/// `tool_choice`, sent with every request that offers tools when set.
/// `required` makes servers that constrain decoding (llama-server, vLLM,
/// OpenAI) answer with a well-formed call every turn, which small models
/// need; agents act only through calls anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    Auto,
    Required,
}

impl ToolChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolChoice::Auto => "auto",
            ToolChoice::Required => "required",
        }
    }
}

/// OpenAI's `reasoning_effort` (also understood by Ollama, vLLM and
/// OpenRouter). Sent only when configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningEffort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
}

impl ReasoningEffort {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningEffort::None => "none",
            ReasoningEffort::Minimal => "minimal",
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
            ReasoningEffort::Xhigh => "xhigh",
        }
    }
}

/// Whether a reply's text may be read as a tool call (per provider).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextToolCalls {
    /// When a reply has no tool calls and its text is one JSON call of an
    /// offered tool, take it as that call.
    #[default]
    Auto,
    /// As `auto`, and each request also asks the server to constrain the
    /// reply to one call of an offered tool, as JSON (OpenAI-compatible:
    /// a `json_schema` `response_format`). For models that write calls
    /// only as text; llama.cpp honours it while streaming.
    Constrained,
    Off,
}

impl TextToolCalls {
    /// Whether a reply's text may be read as a call.
    pub fn reads_text(self) -> bool {
        self != TextToolCalls::Off
    }
}

/// How much of one reply an agent takes: the token cap sent with each
/// request and the tool calls run from one reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplyLimits {
    pub max_tokens: u32,
    /// Calls past this many in one reply are answered "ignored" unrun: a
    /// looping model can emit hundreds of identical calls in one turn.
    pub max_tool_calls: usize,
    pub reasoning_effort: Option<ReasoningEffort>,
    /// None: the server's default.
    pub temperature: Option<f64>,
}

/// The small profile's sampling temperature when a role sets none. At
/// llama.cpp's default (0.8) a 1.5B model wrote a different plan and a
/// different edit every run; low, its best answer comes back run after run.
pub const SMALL_PROFILE_TEMPERATURE: f64 = 0.2;

pub const DEFAULT_MAX_REPLY_TOKENS: u32 = 8192;
/// The reply cap for a model served on this machine or the local network:
/// a small model that loops fills whatever it is allowed, at a few tokens a
/// second, while a tool call takes a few hundred.
pub const DEFAULT_LOCAL_MAX_REPLY_TOKENS: u32 = 2048;
pub const DEFAULT_MAX_TOOL_CALLS: usize = 16;

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_REPLY_TOKENS,
            max_tool_calls: DEFAULT_MAX_TOOL_CALLS,
            reasoning_effort: None,
            temperature: None,
        }
    }
}

/// A ceiling when the config names none: a handful of parallel requests
/// suits most paid tiers and still protects a local server.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 4;
/// How long one agent may spend parked in total before it gives up. Long
/// enough to sit out a provider's usage window (several hours).
pub const DEFAULT_MAX_PARKED: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GovernorConfig {
    /// The concurrency ceiling (and starting point).
    pub max_concurrency: u32,
    /// Total time one agent may spend parked before it fails.
    pub max_parked: Duration,
}

impl Default for GovernorConfig {
    fn default() -> Self {
        Self {
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_parked: DEFAULT_MAX_PARKED,
        }
    }
}

/// Whether `base_url` is a server on this machine or a private network:
/// loopback, RFC 1918 and link-local addresses, `localhost`, `*.local`.
pub fn is_local_base_url(base_url: &str) -> bool {
    let rest = base_url.split("://").nth(1).unwrap_or(base_url);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    }
    .to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") || host.ends_with(".local") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00 // unique local
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_servers_are_told_from_hosted_ones() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://localhost:11434/v1",
            "http://[::1]:8080/v1",
            "http://192.168.1.20:1234/v1",
            "http://10.0.0.5/v1",
            "http://gpu-box.local:8000/v1",
        ] {
            assert!(is_local_base_url(url), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "https://openrouter.ai/api/v1",
            "http://8.8.8.8/v1",
            "https://localhost.example.com/v1",
        ] {
            assert!(!is_local_base_url(url), "{url}");
        }
    }
}
