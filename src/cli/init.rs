//! `memofab init`: finds the model providers this machine has (API keys in
//! the environment, a local Ollama or llama.cpp server answering) and writes
//! `.memofab/config.toml` naming them and a commented `.memofab/policy.toml`.
//! An existing file is only replaced when the human says so at the prompt,
//! or with `--force`; without a terminal to ask on, nothing is written.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::args::{InitArgs, ProfileChoice};
use crate::config::{ModelProfile, ProviderKind};
use crate::effects::git::GitRepo;
use crate::engine::run::session::factory_dir;

/// A local server that does not answer this fast is taken as absent.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// A provider found on this machine, as it goes into the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The name under `[providers]`.
    pub name: &'static str,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    pub api_key_env: Option<&'static str>,
    pub model: String,
    /// The model's parameter count, where the server or the name says.
    pub params: Option<u64>,
    /// How it was found, for the file's header and the terminal.
    pub evidence: String,
}

impl Found {
    /// Whether this is a server on this machine or network serving a
    /// model under ~7B parameters.
    pub fn is_small_local(&self) -> bool {
        self.base_url
            .as_deref()
            .is_some_and(crate::llm::local::is_local_base_url)
            && self
                .params
                .is_some_and(|n| n < crate::llm::local::SMALL_MODEL_PARAMS)
    }
}

/// The profile to write for the default role's provider, `first`.
pub fn choose_profile(choice: ProfileChoice, first: Option<&Found>) -> ModelProfile {
    match choice {
        ProfileChoice::Small => ModelProfile::Small,
        ProfileChoice::Standard => ModelProfile::Standard,
        ProfileChoice::Auto if first.is_some_and(Found::is_small_local) => ModelProfile::Small,
        ProfileChoice::Auto => ModelProfile::Standard,
    }
}

pub async fn run(repo: &Path, args: InitArgs) -> Result<ExitCode> {
    let Ok(repo) = std::fs::canonicalize(repo) else {
        bail!("{} does not exist; {}", repo.display(), super::NEEDS_A_REPO);
    };
    let git = GitRepo::open(&repo).map_err(|_| {
        anyhow::anyhow!(
            "{} is not inside a git repository; {}",
            repo.display(),
            super::NEEDS_A_REPO
        )
    })?;
    let dir = factory_dir(&repo);
    let files = [
        (dir.join("config.toml"), None),
        (dir.join("policy.toml"), Some(policy_text())),
    ];
    // Decide about existing files before probing or writing anything.
    let mut keep = Vec::new();
    for (path, _) in &files {
        if path.exists() && !args.force && !confirm_overwrite(path)? {
            keep.push(path.clone());
        }
    }

    let found = detect(&args).await;
    let (unanswered, found): (Vec<_>, Vec<_>) = found.into_iter().partition(|f| f.is_err());
    for note in unanswered.into_iter().filter_map(Result::err) {
        eprintln!("memofab init: {note}");
    }
    let found: Vec<Found> = found.into_iter().filter_map(Result::ok).collect();
    for f in &found {
        eprintln!("memofab init: found {} ({})", f.name, f.evidence);
    }
    let profile = choose_profile(args.profile, found.first());
    if profile == ModelProfile::Small {
        eprintln!(
            "memofab init: the small-model profile: short prompts and replies, no tester agents{}",
            if args.profile == ProfileChoice::Auto {
                " (a local model under 7B parameters; --profile standard for the full one)"
            } else {
                ""
            }
        );
    }

    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The factory's files are not the project's: keep them out of `git status`.
    git.ensure_excluded("/.memofab/")?;
    for (path, text) in files {
        if keep.contains(&path) {
            eprintln!("memofab init: kept {}", path.display());
            continue;
        }
        let text = text.unwrap_or_else(|| config_text(&found, test_command(&repo), profile));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("memofab init: wrote {}", path.display());
    }
    match found.first() {
        Some(first) => eprintln!(
            "memofab init: every role uses {}{}; `memofab doctor` checks that it answers, then run `memofab`",
            first.name,
            if found.len() > 1 {
                " (the others are configured too; a role can use one of them under [roles.<role>])"
            } else {
                ""
            }
        ),
        None => {
            eprintln!(
                "memofab init: no model provider found. Set OPENAI_API_KEY or ANTHROPIC_API_KEY, or start \
             Ollama (127.0.0.1:11434) or a llama.cpp server (127.0.0.1:8080), then run `memofab init --force`; \
             or fill in the commented example in {}",
                dir.join("config.toml").display()
            );
            // Not a success: nothing can run yet, and `memofab init && memofab`
            // in a script must stop here, not at a confusing later error. A
            // kept config may name a provider already, so then it is not ours
            // to fail.
            if !keep.contains(&dir.join("config.toml")) {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal whether to replace `path`; without one, refuses.
fn confirm_overwrite(path: &Path) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "{} exists and there is no terminal to ask whether to overwrite it; \
             nothing was written (use `memofab init --force` to overwrite)",
            path.display()
        );
    }
    eprint!("{} exists; overwrite it? [y/N] ", path.display());
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Every candidate, in order of preference for the default role: found, or
/// a note saying why not (only for servers, which the user may expect).
async fn detect(args: &InitArgs) -> Vec<Result<Found, String>> {
    let key = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
    let mut found = Vec::new();
    if key("ANTHROPIC_API_KEY") {
        found.push(Ok(Found {
            name: "claude",
            kind: ProviderKind::Anthropic,
            base_url: None,
            api_key_env: Some("ANTHROPIC_API_KEY"),
            model: "claude-sonnet-4-5".into(),
            params: None,
            evidence: "ANTHROPIC_API_KEY is set".into(),
        }));
    }
    if key("OPENAI_API_KEY") {
        found.push(Ok(Found {
            name: "openai",
            kind: ProviderKind::Openai,
            base_url: Some(crate::llm::openai::DEFAULT_BASE_URL.into()),
            api_key_env: Some("OPENAI_API_KEY"),
            model: "gpt-4.1".into(),
            params: None,
            evidence: "OPENAI_API_KEY is set".into(),
        }));
    }
    let client = match reqwest::Client::builder()
        .connect_timeout(PROBE_CONNECT_TIMEOUT)
        .timeout(PROBE_TIMEOUT)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            found.push(Err(format!("cannot probe local servers: {e}")));
            return found;
        }
    };
    let (ollama, llamacpp) = tokio::join!(
        probe_ollama(&client, &args.ollama_url),
        probe_llamacpp(&client, &args.llamacpp_url)
    );
    found.extend([ollama, llamacpp]);
    found
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let response = client.get(url).send().await.map_err(|e| {
        if e.is_connect() {
            format!("nothing answers at {url} (connection refused or unreachable)")
        } else if e.is_timeout() {
            format!("no answer from {url} in {}ms", PROBE_TIMEOUT.as_millis())
        } else {
            format!("{url}: {e}")
        }
    })?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    response
        .json()
        .await
        .map_err(|e| format!("{url} did not answer JSON: {e}"))
}

/// Ollama lists its pulled models at `/api/tags`; its OpenAI-compatible API
/// is under `/v1`.
async fn probe_ollama(client: &reqwest::Client, base: &str) -> Result<Found, String> {
    let base = base.trim_end_matches('/');
    let tags = get_json(client, &format!("{base}/api/tags"))
        .await
        .map_err(|e| format!("no Ollama server: {e}"))?;
    let first = &tags["models"][0];
    let model = first["name"].as_str().ok_or_else(|| {
        format!("the Ollama server at {base} has no models; pull one (e.g. `ollama pull qwen2.5-coder`) and run `memofab init` again")
    })?;
    // `details.parameter_size` reads like "1.5B".
    let params = first["details"]["parameter_size"]
        .as_str()
        .and_then(crate::llm::local::params_from_name)
        .or_else(|| crate::llm::local::params_from_name(model));
    Ok(Found {
        name: "ollama",
        kind: ProviderKind::Openai,
        base_url: Some(format!("{base}/v1")),
        api_key_env: None,
        model: model.to_owned(),
        params,
        evidence: format!("an Ollama server answers at {base}"),
    })
}

/// A llama.cpp server serves one model, listed at `/v1/models`.
async fn probe_llamacpp(client: &reqwest::Client, base: &str) -> Result<Found, String> {
    let base = base.trim_end_matches('/');
    let models = get_json(client, &format!("{base}/v1/models"))
        .await
        .map_err(|e| format!("no llama.cpp server: {e}"))?;
    let first = &models["data"][0];
    let model = first["id"].as_str().unwrap_or("default");
    // llama.cpp says how big its model is; else the name (a file path) may.
    let params = first["meta"]["n_params"]
        .as_u64()
        .or_else(|| crate::llm::local::params_from_name(model));
    Ok(Found {
        name: "llamacpp",
        kind: ProviderKind::Openai,
        base_url: Some(format!("{base}/v1")),
        api_key_env: None,
        model: model.to_owned(),
        params,
        evidence: format!("a llama.cpp server answers at {base}"),
    })
}

/// The project's test command, guessed from the files at its root.
fn test_command(repo: &Path) -> Option<(&'static str, &'static str)> {
    [
        ("Cargo.toml", "cargo test"),
        ("package.json", "npm test"),
        ("go.mod", "go test ./..."),
        ("pyproject.toml", "pytest"),
        ("Makefile", "make test"),
        // A shell project's runner (memofab's own demo project has one).
        ("tests/run.sh", "sh tests/run.sh"),
    ]
    .into_iter()
    .find(|(file, _)| repo.join(file).exists())
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The config naming every provider found, the first for every role.
pub fn config_text(found: &[Found], test: Option<(&str, &str)>, profile: ModelProfile) -> String {
    let mut out = String::from(
        "# memofab's config for this repository, written by `memofab init`.\n\
         # It is layered over the built-in defaults and your user config; every key\n\
         # is described in memofab's docs/configuration.md. `memofab doctor` checks\n\
         # this file and sends each provider a tiny request.\n",
    );
    for f in found {
        out.push_str(&format!("# Found: {}.\n", f.evidence));
    }
    for (i, f) in found.iter().enumerate() {
        let kind = match f.kind {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Scripted => "scripted",
        };
        out.push_str(&format!(
            "\n[providers.{}]\nkind = {}\n",
            f.name,
            quoted(kind)
        ));
        if let Some(url) = &f.base_url {
            out.push_str(&format!("base_url = {}\n", quoted(url)));
        }
        if let Some(var) = f.api_key_env {
            out.push_str(&format!(
                "api_key_env = {}   # the key is read from this variable, never stored\n",
                quoted(var)
            ));
        }
        out.push_str(&format!("model = {}\n", quoted(&f.model)));
        if profile == ModelProfile::Small && i == 0 && f.name == "llamacpp" {
            out.push_str(
                "# The model writes tool calls as text: each reply is constrained to one\n\
                 # call of an offered tool (a json_schema response_format).\n\
                 text_tool_calls = \"constrained\"\n",
            );
        }
    }
    match found.first() {
        Some(first) => {
            out.push_str(&format!(
                "\n# The provider and model of every role; a role may have its own:\n\
                 # [roles.reviewer]\n# provider = {}\n# model = \"...\"\n\
                 [roles.default]\nprovider = {}\n",
                quoted(first.name),
                quoted(first.name)
            ));
            if profile == ModelProfile::Small {
                out.push_str(
                    "# A small model loops rather than writes long answers: a short cap.\n\
                     max_reply_tokens = 1024\n",
                );
            }
        }
        None => out.push_str(
            "\n# No provider was found on this machine. Name one, for example:\n\
             # [providers.openai]\n\
             # kind = \"openai\"                        # also Ollama, vLLM, llama.cpp, LM Studio\n\
             # base_url = \"https://api.openai.com/v1\"  # http://127.0.0.1:11434/v1 for Ollama\n\
             # api_key_env = \"OPENAI_API_KEY\"\n\
             # model = \"gpt-4.1\"\n\
             #\n\
             # [roles.default]\n\
             # provider = \"openai\"\n",
        ),
    }
    if profile == ModelProfile::Small {
        out.push_str(
            "\n[run]\n\
             # Short prompts without examples (a small model copies them word for word).\n\
             profile = \"small\"\n\
             # No tester agents: a small model's acceptance tests rarely fail for the right reason.\n\
             test_agents = \"off\"\n\
             # Two plan reviews: one revision after the reviewer's objections. A plan still\n\
             # rejected is a dispute: yours in the cockpit; headless, --auto-approve builds it.\n\
             max_plan_rounds = 2\n",
        );
    }
    out.push_str("\n[project]\n");
    match test {
        Some((file, command)) => out.push_str(&format!(
            "# Runs in each task's worktree; exit 0 = pass. Guessed from {file}: check it.\n\
             test_command = {}\n",
            quoted(command)
        )),
        None => out.push_str(
            "# The command that runs the project's tests; exit 0 = pass. Without it,\n\
             # changes are only reviewed, not tested.\n\
             # test_command = \"make test\"\n",
        ),
    }
    out
}

/// A policy with no rules, explaining how to write them.
pub fn policy_text() -> String {
    "# Which paths agents may change, and which changes wait for a human.\n\
     # Written by `memofab init`. Each [[rule]] maps path globs to a risk; the most\n\
     # restrictive matching rule wins:\n\
     #   auto     merge when review and tests pass (paths no rule names)\n\
     #   approve  hold the merge at the gate until a human approves it\n\
     #            (`a` in the cockpit's Gates tab, or `memofab approve RUN TASK`)\n\
     #   deny     agents may not write these paths at all\n\
     # .memofab/ and prompts/ are always deny. Misspelt keys are errors.\n\
     #\n\
     # [[rule]]\n\
     # paths = [\"migrations/**\", \"Cargo.toml\", \"package.json\"]\n\
     # risk = \"approve\"\n\
     # reason = \"schema and dependency changes need a human\"\n\
     #\n\
     # [[rule]]\n\
     # paths = [\"secrets/**\", \".env*\"]\n\
     # risk = \"deny\"\n\
     # reason = \"no agent touches secrets\"\n\
     #\n\
     # Optional rules that also hold a change at the gate, saying why with numbers:\n\
     # a large change, a change to paths that caused trouble in recent runs\n\
     # (conflicts, failed merge verifications, reverts, reworks).\n\
     #\n\
     # [blast_radius]\n\
     # max_files = 20\n\
     # max_lines = 800\n\
     #\n\
     # [history]\n\
     # runs = 10\n\
     # max_incidents = 3\n\
     #\n\
     # Rules on by default (shown with their defaults; set one to false to relax it):\n\
     # weakened tests, the test command's own files, governance paths (AGENTS.md,\n\
     # CI definitions, .gitattributes/.gitmodules, hooks), large binaries.\n\
     #\n\
     # [tests]\n\
     # gate_weakened = true    # a test deleted, renamed out of the test paths, or shrunk\n\
     # gate_deletions = true   # false lets deletions alone through\n\
     # gate_runner = true      # the runner script the test command names, scripts it runs\n\
     # paths = [\"tests/**\", \"**/*_test.*\", \"**/test_*.*\", \"**/*.test.*\", \"**/*_spec.*\"]\n\
     #\n\
     # [governance]\n\
     # gate = true             # false: none of the classes below\n\
     # instructions = true\n\
     # ci = true\n\
     # git = true\n\
     # hooks = true\n\
     # auto_approve = false    # true lets --auto-approve approve these gates too\n\
     #\n\
     # [binaries]\n\
     # gate = true\n\
     # max_bytes = 1048576     # a file over this that is not text\n"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::domain::AgentRole;
    use crate::domain::policy::PolicyFile;

    fn found(name: &'static str) -> Found {
        Found {
            name,
            kind: ProviderKind::Openai,
            base_url: Some("http://127.0.0.1:1/v1".into()),
            api_key_env: Some("OPENAI_API_KEY"),
            model: "m \"quoted\"".into(),
            params: None,
            evidence: "test".into(),
        }
    }

    fn load(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&[path]).unwrap()
    }

    #[test]
    fn the_written_config_parses_and_names_the_first_provider_for_every_role() {
        let text = config_text(
            &[found("ollama"), found("llamacpp")],
            Some(("Cargo.toml", "cargo test")),
            ModelProfile::Standard,
        );
        let config = load(&text);
        assert_eq!(
            config.role(AgentRole::Coder),
            Some(("ollama", Some("m \"quoted\"")))
        );
        assert!(config.providers.contains_key("llamacpp"));
        assert_eq!(config.project.test_command.as_deref(), Some("cargo test"));
    }

    #[test]
    fn a_small_local_model_gets_the_small_profile() {
        let small = Found {
            params: Some(1_777_088_000),
            ..found("llamacpp")
        };
        let hosted = Found {
            base_url: Some("https://api.example.com/v1".into()),
            ..small.clone()
        };
        let big = Found {
            params: Some(32_000_000_000),
            ..small.clone()
        };
        let unknown = found("llamacpp");
        assert_eq!(
            choose_profile(ProfileChoice::Auto, Some(&small)),
            ModelProfile::Small
        );
        for other in [&hosted, &big, &unknown] {
            assert_eq!(
                choose_profile(ProfileChoice::Auto, Some(other)),
                ModelProfile::Standard
            );
        }
        assert_eq!(
            choose_profile(ProfileChoice::Auto, None),
            ModelProfile::Standard
        );
        assert_eq!(
            choose_profile(ProfileChoice::Small, Some(&big)),
            ModelProfile::Small
        );
        assert_eq!(
            choose_profile(ProfileChoice::Standard, Some(&small)),
            ModelProfile::Standard
        );

        let config = load(&config_text(&[small], None, ModelProfile::Small));
        assert_eq!(config.run.profile, ModelProfile::Small);
        assert_eq!(config.run.test_agents, crate::domain::TestAgents::Off);
        assert_eq!(config.run.max_plan_rounds, 2);
        assert_eq!(config.reply_limits(AgentRole::Coder).max_tokens, 1024);
        assert_eq!(
            config.providers["llamacpp"].text_tool_calls,
            crate::llm::types::TextToolCalls::Constrained
        );
        let standard = load(&config_text(
            &[found("llamacpp")],
            None,
            ModelProfile::Standard,
        ));
        assert_eq!(standard.run.profile, ModelProfile::Standard);
        assert_eq!(
            standard.providers["llamacpp"].text_tool_calls,
            crate::llm::types::TextToolCalls::Auto
        );
    }

    #[test]
    fn a_shell_projects_test_runner_is_its_test_command() {
        let repo = tempfile::tempdir().unwrap();
        assert_eq!(test_command(repo.path()), None);
        std::fs::create_dir_all(repo.path().join("tests")).unwrap();
        std::fs::write(repo.path().join("tests/run.sh"), "exit 0\n").unwrap();
        assert_eq!(
            test_command(repo.path()).map(|(_, command)| command),
            Some("sh tests/run.sh")
        );
    }

    #[test]
    fn with_nothing_found_the_config_parses_and_names_no_provider() {
        let config = load(&config_text(&[], None, ModelProfile::Standard));
        assert_eq!(config.role(AgentRole::Coder), None);
        assert_eq!(config.project.test_command, None);
    }

    #[test]
    fn the_written_policy_parses_with_no_rules() {
        let file: PolicyFile = toml::from_str(&policy_text()).unwrap();
        assert!(file.rules.is_empty());
    }

    #[test]
    fn the_policy_examples_parse_once_uncommented() {
        let uncommented: String = policy_text()
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let file: PolicyFile = toml::from_str(&uncommented).unwrap();
        assert_eq!(file.rules.len(), 2);
        assert!(file.blast_radius.is_some() && file.history.is_some());
        assert_ne!(file.tests, crate::domain::policy::TestsRule::default());
        assert_eq!(
            (file.governance, file.binaries),
            Default::default(),
            "the defaults as written"
        );
    }
}
