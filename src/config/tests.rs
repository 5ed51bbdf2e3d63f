//! Loading, layering and checking config files.

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn layers_override_only_what_they_set() {
    let dir = tempfile::tempdir().unwrap();
    let user = write(
        dir.path(),
        "user.toml",
        "[run]\nconcurrency = 8\nmax_rework = 5\n",
    );
    let project = write(
        dir.path(),
        "project.toml",
        "[run]\nmax_rework = 1\n[project]\ntest_command = \"make test\"\n",
    );
    let missing = dir.path().join("missing.toml");
    let c = Config::load(&[user, missing, project]).unwrap();
    assert_eq!(c.run.concurrency, 8);
    assert_eq!(c.run.max_rework, 1);
    assert_eq!(c.run.max_plan_rounds, 3);
    assert_eq!(c.project.test_command.as_deref(), Some("make test"));
    assert_eq!(c.role(AgentRole::Coder), None, "no provider unless asked");
}

#[test]
fn merges_are_verified_by_default_when_there_is_a_test_command() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!Config::default().verify_merges(), "nothing to run");
    let tests = write(
        dir.path(),
        "t.toml",
        "[project]\ntest_command = \"make test\"\n",
    );
    let config = Config::load(std::slice::from_ref(&tests)).unwrap();
    assert!(config.verify_merges());
    assert_eq!(config.merge.post_merge_command, None);
    let off = write(
        dir.path(),
        "m.toml",
        "[merge]\nverify = false\npost_merge_command = \"make e2e\"\n",
    );
    let config = Config::load(&[tests, off]).unwrap();
    assert!(!config.verify_merges());
    assert_eq!(config.merge.post_merge_command.as_deref(), Some("make e2e"));
}

#[test]
fn shepherd_thresholds_default_and_can_be_set() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "s.toml",
        "[shepherd]\nrepeat_calls = 6\nmax_minutes_in_state = 0\n",
    );
    let c = Config::load(&[f]).unwrap();
    let defaults = crate::domain::shepherd::Thresholds::default();
    assert_eq!(c.shepherd.repeat_calls, 6);
    assert_eq!(c.shepherd.max_minutes_in_state, 0);
    assert_eq!(c.shepherd.repeat_failures, defaults.repeat_failures);
    assert!(c.shepherd.enabled);
    let typo = write(dir.path(), "t.toml", "[shepherd]\nrepeat_call = 6\n");
    assert!(Config::load(&[typo]).is_err());
}

#[test]
fn wrong_types_and_unknown_keys_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", "[run]\nconcurrency = \"four\"\n");
    let err = Config::load(std::slice::from_ref(&bad))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("concurrency"), "{err}");
    let typo = write(dir.path(), "typo.toml", "[run]\nconcurency = 2\n");
    let err = Config::load(&[typo]).unwrap_err().to_string();
    assert!(err.contains("concurency"), "{err}");
}

#[test]
fn roles_must_name_configured_providers() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "c.toml", "[roles.coder]\nprovider = \"nope\"\n");
    let err = Config::load(&[f]).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn per_role_models_are_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "c.toml",
        r#"
        [providers.local]
        kind = "openai"
        base_url = "http://127.0.0.1:11434/v1"
        model = "qwen"
        [roles.default]
        provider = "local"
        [roles.reviewer]
        provider = "local"
        model = "big"
        "#,
    );
    let c = Config::load(&[f]).unwrap();
    assert_eq!(c.role(AgentRole::Coder), Some(("local", Some("qwen"))));
    assert_eq!(c.role(AgentRole::Reviewer), Some(("local", Some("big"))));
}

#[test]
fn governor_settings_default_and_can_be_set() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "c.toml",
        r#"
        [providers.local]
        kind = "openai"
        max_concurrency = 2
        max_parked_secs = 90
        [providers.cloud]
        kind = "anthropic"
        "#,
    );
    let c = Config::load(&[f]).unwrap();
    let local = c.providers["local"].governor();
    assert_eq!(local.max_concurrency, 2);
    assert_eq!(local.max_parked, std::time::Duration::from_secs(90));
    assert_eq!(
        c.providers["cloud"].governor(),
        crate::config::model_options::GovernorConfig::default()
    );
}

#[test]
fn wire_settings_and_reply_limits_per_role() {
    use crate::config::model_options::MaxTokensField;
    use crate::config::model_options::TextToolCalls;
    use crate::config::model_options::{ReasoningEffort, ReplyLimits};
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "c.toml",
        r#"
        [providers.local]
        kind = "openai"
        max_tokens_field = "max_completion_tokens"
        reasoning_effort = "low"
        text_tool_calls = "off"
        [roles.default]
        provider = "local"
        max_reply_tokens = 4000
        [roles.coder]
        provider = "local"
        max_reply_tokens = 16000
        max_tool_calls = 4
        reasoning_effort = "high"
        "#,
    );
    let c = Config::load(&[f]).unwrap();
    let local = &c.providers["local"];
    assert_eq!(
        local.max_tokens_field,
        Some(MaxTokensField::MaxCompletionTokens)
    );
    assert_eq!(local.reasoning_effort, Some(ReasoningEffort::Low));
    assert_eq!(local.text_tool_calls, TextToolCalls::Off);
    assert_eq!(
        c.reply_limits(AgentRole::Coder),
        ReplyLimits {
            max_tokens: 16000,
            max_tool_calls: 4,
            reasoning_effort: Some(ReasoningEffort::High),
            temperature: None,
        }
    );
    let planner = c.reply_limits(AgentRole::Planner);
    assert_eq!(planner.max_tokens, 4000, "the default role's cap");
    assert_eq!(
        planner.max_tool_calls,
        ReplyLimits::default().max_tool_calls
    );
    assert_eq!(
        Config::default().reply_limits(AgentRole::Coder),
        ReplyLimits::default()
    );
    let bad = write(
        dir.path(),
        "bad.toml",
        "[providers.x]\nkind = \"openai\"\nmax_tokens_field = \"max_toks\"\n",
    );
    assert!(Config::load(&[bad]).is_err());
}

#[test]
fn a_local_server_gets_a_short_reply_cap_unless_one_is_set() {
    use crate::config::model_options::{DEFAULT_LOCAL_MAX_REPLY_TOKENS, DEFAULT_MAX_REPLY_TOKENS};
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "c.toml",
        r#"
        [providers.local]
        kind = "openai"
        base_url = "http://127.0.0.1:8080/v1"
        [providers.cloud]
        kind = "openai"
        base_url = "https://api.openai.com/v1"
        [roles.default]
        provider = "local"
        [roles.reviewer]
        provider = "cloud"
        [roles.coder]
        provider = "local"
        max_reply_tokens = 6000
        "#,
    );
    let c = Config::load(&[f]).unwrap();
    assert_eq!(
        c.reply_limits(AgentRole::Planner).max_tokens,
        DEFAULT_LOCAL_MAX_REPLY_TOKENS
    );
    const { assert!(DEFAULT_LOCAL_MAX_REPLY_TOKENS <= 2048) };
    assert_eq!(
        c.reply_limits(AgentRole::Reviewer).max_tokens,
        DEFAULT_MAX_REPLY_TOKENS
    );
    assert_eq!(c.reply_limits(AgentRole::Coder).max_tokens, 6000);
    assert_eq!(c.run.profile, super::ModelProfile::Standard);
}

#[test]
fn the_small_profile_samples_cold_unless_a_role_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let config = |run: &str, coder: &str| {
        let f = write(
            dir.path(),
            "t.toml",
            &format!(
                "[providers.local]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8080/v1\"\n\
                 [roles.default]\nprovider = \"local\"\n[roles.coder]\nprovider = \"local\"\n{coder}\n{run}\n"
            ),
        );
        Config::load(&[f])
    };
    let small = config("[run]\nprofile = \"small\"", "temperature = 0.7").unwrap();
    assert_eq!(
        small.reply_limits(AgentRole::Planner).temperature,
        Some(crate::config::model_options::SMALL_PROFILE_TEMPERATURE)
    );
    assert_eq!(small.reply_limits(AgentRole::Coder).temperature, Some(0.7));
    let standard = config("", "").unwrap();
    assert_eq!(standard.reply_limits(AgentRole::Planner).temperature, None);
    assert!(config("", "temperature = 2.5").is_err());
    assert!(config("", "temperature = -0.1").is_err());
}
