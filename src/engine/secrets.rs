//! The secrets of this process, gathered once per run so that the recorder
//! and the providers can redact them (see [`crate::domain::redact`]).

use crate::domain::redact::MIN_SECRET;

/// Environment variable names whose values are treated as secrets even when
/// no provider names them: the user's shell exports the same keys.
fn looks_secret(name: &str) -> bool {
    const SUFFIXES: [&str; 6] = [
        "_API_KEY",
        "_TOKEN",
        "_SECRET",
        "_SECRET_KEY",
        "_SECRET_ACCESS_KEY",
        "_PASSWORD",
    ];
    let upper = name.to_ascii_uppercase();
    SUFFIXES.iter().any(|s| upper.ends_with(s))
}

/// The secrets of this process: the API keys the configured providers read,
/// and every variable that looks like a key or token.
pub fn secrets_in_env(config: &crate::config::Config) -> Vec<String> {
    let mut secrets: Vec<String> = config
        .providers
        .values()
        .filter_map(|p| p.api_key_env.as_deref())
        .filter_map(|var| std::env::var(var).ok())
        .collect();
    secrets.extend(
        std::env::vars()
            .filter(|(name, _)| looks_secret(name))
            .map(|(_, value)| value),
    );
    // Keys the config hands to MCP servers: a tool may echo them back.
    secrets.extend(
        config
            .mcp
            .servers
            .values()
            .flat_map(|server| &server.env)
            .filter(|(name, _)| looks_secret(name))
            .map(|(_, value)| value.clone()),
    );
    // Bedrock's keys may come from ~/.aws files rather than the environment.
    let aws = crate::llm::bedrock::credentials::AwsEnv::process();
    for provider in config.providers.values() {
        if provider.kind == crate::config::ProviderKind::Bedrock
            && let Ok(credentials) = aws.credentials(provider.profile.as_deref())
        {
            secrets.extend(credentials.secrets());
        }
    }
    secrets.retain(|s| s.len() >= MIN_SECRET);
    // Longest first, so a key that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_given_to_mcp_servers_are_secrets() {
        let mut config = crate::config::Config::default();
        config.mcp.servers.insert(
            "hub".into(),
            crate::config::McpServerConfig {
                command: "hub-mcp".into(),
                args: Vec::new(),
                env: [
                    ("HUB_TOKEN".to_owned(), "hub-secret-0123456789".to_owned()),
                    ("HUB_URL".to_owned(), "https://hub.example".to_owned()),
                ]
                .into(),
            },
        );
        let secrets = secrets_in_env(&config);
        assert!(secrets.contains(&"hub-secret-0123456789".to_owned()));
        assert!(!secrets.contains(&"https://hub.example".to_owned()));
    }

    #[test]
    fn variables_named_like_keys_are_secrets() {
        assert!(looks_secret("OPENAI_API_KEY"));
        assert!(looks_secret("github_token"));
        assert!(looks_secret("AWS_SECRET_ACCESS_KEY"));
        assert!(!looks_secret("PATH"));
        assert!(!looks_secret("TOKENIZERS_PARALLELISM"));
    }
}
