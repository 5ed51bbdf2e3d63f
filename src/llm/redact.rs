//! Keeps API keys out of everything memofab writes: errors, events, logs.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Secrets shorter than this are not redacted: they would match ordinary text.
const MIN_SECRET: usize = 8;

pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        out = out.replace(secret.as_str(), "[REDACTED]");
    }
    out
}

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

/// `value` with every secret replaced in every string it holds. Cheap when
/// none occurs (one serialisation to look).
pub fn redact_value<T: Serialize + DeserializeOwned>(value: T, secrets: &[String]) -> T {
    let secrets: Vec<&String> = secrets.iter().filter(|s| s.len() >= MIN_SECRET).collect();
    if secrets.is_empty() {
        return value;
    }
    let Ok(text) = serde_json::to_string(&value) else {
        return value;
    };
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return value;
    }
    let Ok(mut tree) = serde_json::to_value(&value) else {
        return value;
    };
    redact_tree(&mut tree, &secrets);
    serde_json::from_value(tree).unwrap_or(value)
}

fn redact_tree(value: &mut serde_json::Value, secrets: &[&String]) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "[REDACTED]");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_tree(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_tree(v, secrets)),
        _ => {}
    }
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
    fn nested_strings_are_redacted() {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct Out {
            text: String,
            lines: Vec<String>,
            n: u32,
        }
        let secrets = vec!["sk-ant-0123456789".to_owned()];
        let out = redact_value(
            Out {
                text: "key=sk-ant-0123456789!".into(),
                lines: vec!["a".into(), "sk-ant-0123456789".into()],
                n: 3,
            },
            &secrets,
        );
        assert_eq!(out.text, "key=[REDACTED]!");
        assert_eq!(out.lines, ["a", "[REDACTED]"]);
        assert_eq!(out.n, 3);
    }

    #[test]
    fn variables_named_like_keys_are_secrets() {
        assert!(looks_secret("OPENAI_API_KEY"));
        assert!(looks_secret("github_token"));
        assert!(looks_secret("AWS_SECRET_ACCESS_KEY"));
        assert!(!looks_secret("PATH"));
        assert!(!looks_secret("TOKENIZERS_PARALLELISM"));
    }

    #[test]
    fn keys_are_replaced_short_strings_are_not() {
        let secrets = vec!["sk-live-1234567890".to_owned(), "abc".to_owned()];
        assert_eq!(
            redact("bad key sk-live-1234567890 for abc", &secrets),
            "bad key [REDACTED] for abc"
        );
    }
}
