//! `memofab doctor`: checks every file memofab reads (config, policy, theme,
//! scenarios) and sends each model the roles use a tiny request offering one
//! tool, reporting whether it calls tools (agents can do nothing else);
//! exits non-zero if anything a run needs fails.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::args::GlobalArgs;
use crate::config::{Config, ProviderConfig, ProviderKind};
use crate::domain::AgentRole;
use crate::effects::git::GitRepo;
use crate::engine::run::session;
use crate::llm::factory::build_provider;
use crate::llm::openai::ToolChoice;
use crate::llm::probe::{PROBE_TOOL, ToolCalling, probe_tool_calls};
use crate::llm::scenario::Scenario;
use crate::llm::types::TextToolCalls;

/// The PostgreSQL store: reachable, its server's version and the schema
/// found (connecting migrates it, as any command would). The URL is shown
/// without its password.
fn store_check(url: &str) -> (bool, String) {
    use crate::effects::store::postgres::{PgStore, SCHEMA_VERSION, url::redacted};
    let result = PgStore::connect(url)
        .and_then(|store| Ok((store.server_version()?, store.schema_version()?)));
    match result {
        Ok((version, schema)) => (
            true,
            format!(
                "PostgreSQL {version} at {} (schema v{schema} of v{SCHEMA_VERSION})",
                redacted(url)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// Long enough for a local server to load a model for the first request.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Where to read how to make a model call tools.
const LOCAL_MODELS_HELP: &str = "see docs/local-models.md in memofab's repository";

pub async fn run(global: &GlobalArgs, repo: &Path) -> Result<ExitCode> {
    let mut failures = 0;
    let mut report = |ok: bool, what: &str, detail: String| {
        if !ok {
            failures += 1;
        }
        println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
    };

    let config = match super::load_config(repo, global.config.as_deref()) {
        Ok(config) => {
            report(true, "config", "loaded".into());
            config
        }
        Err(e) => {
            report(false, "config", format!("{e:#}"));
            return Ok(ExitCode::FAILURE);
        }
    };
    match session::preflight(repo) {
        Ok((git, branch)) => report(
            true,
            "repository",
            format!("{} on {branch}", git.root().display()),
        ),
        Err(e) => match GitRepo::open(repo) {
            Ok(_) => report(false, "repository", e.to_string()),
            Err(_) => println!(
                "--   repository: {} is not a git repository (needed for runs)",
                repo.display()
            ),
        },
    }
    let (c, r) = (config.clone(), repo.to_owned());
    match tokio::task::spawn_blocking(move || super::doctor_remote::check(&c, &r)).await {
        Ok(findings) => {
            for (ok, what, detail) in findings {
                report(ok, &what, detail);
            }
        }
        Err(e) => report(false, "remote", e.to_string()),
    }
    if let Some(url) = crate::effects::store::postgres::selected() {
        let url = url.to_owned();
        match tokio::task::spawn_blocking(move || store_check(&url)).await {
            Ok((ok, detail)) => report(ok, "store", detail),
            Err(e) => report(false, "store", e.to_string()),
        }
    }
    match config.run.isolation() {
        Ok(isolation) => {
            let mut text = isolation.describe();
            if isolation.mechanism == crate::effects::isolation::Mechanism::Landlock
                && let Err(why) = crate::effects::isolation::pid_namespace_status()
            {
                text.push_str(&format!(
                    "; no PID namespace here ({why}), so /proc is closed to commands"
                ));
            }
            report(
                isolation.mechanism != crate::effects::isolation::Mechanism::None
                    || config.run.isolation == crate::config::IsolationChoice::None,
                "isolation",
                text,
            )
        }
        Err(e) => report(false, "isolation", e.to_string()),
    }
    match session::load_policy(repo) {
        Ok(_) => report(
            true,
            "policy",
            "valid (factory definitions are always protected)".into(),
        ),
        Err(e) => report(false, "policy", e.to_string()),
    }
    match crate::tui::Theme::load(&config.ui.theme) {
        Ok(_) => report(true, "theme", format!("{:?}", config.ui.theme)),
        Err(e) => report(false, "theme", format!("ui.theme: {e}")),
    }
    let unassigned: Vec<String> = AgentRole::ALL
        .into_iter()
        .filter(|role| config.role(*role).is_none())
        .map(|role| role.to_string())
        .collect();
    if !unassigned.is_empty() {
        report(
            false,
            "roles",
            format!(
                "no provider for {}: {}",
                unassigned.join(", "),
                crate::engine::providers::NOT_CONFIGURED
            ),
        );
    }
    for role in AgentRole::ALL {
        if let Some((provider, model)) = config.role(role) {
            println!(
                "     role {role}: provider {provider}, model {}",
                model.unwrap_or("(provider default)")
            );
        }
    }
    for (name, cfg) in &config.providers {
        let what = format!("provider {name}");
        match cfg.kind {
            // Built into every config; worth a line only when a role uses it.
            ProviderKind::Scripted if models_used(&config, name).is_empty() => {}
            ProviderKind::Scripted => {
                let scenario = match &cfg.scenario {
                    Some(path) => Scenario::load(path),
                    None => Scenario::demo(),
                };
                match scenario {
                    Ok(s) => report(
                        true,
                        &what,
                        format!(
                            "scripted scenario {:?}, {} conversations",
                            s.name,
                            s.conversations.len()
                        ),
                    ),
                    Err(e) => report(false, &what, e.to_string()),
                }
            }
            ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::Bedrock => {
                let provider = match build_provider(name, cfg) {
                    Ok(provider) => provider,
                    Err(e) => {
                        report(false, &what, e.to_string());
                        continue;
                    }
                };
                let used = models_used(&config, name);
                let (models, by_roles) = if used.is_empty() {
                    let model = cfg.model.clone().unwrap_or_else(|| "default".into());
                    (vec![model], false)
                } else {
                    (used, true)
                };
                for model in models {
                    let probe = tokio::time::timeout(
                        CHECK_TIMEOUT,
                        probe_tool_calls(provider.as_ref(), &model),
                    )
                    .await;
                    let what = format!("{what}, model {model}");
                    match probe {
                        Ok(Ok(calling)) => {
                            let detail = format!("tool calls: {}", describe(&calling, cfg));
                            if calling.usable() || by_roles {
                                report(calling.usable(), &what, detail);
                            } else {
                                // No role uses it: worth knowing, not a failure.
                                println!("--   {what}: {detail}");
                            }
                        }
                        Ok(Err(e)) => report(false, &what, e.to_string()),
                        Err(_) => report(
                            false,
                            &what,
                            format!(
                                "no answer in {}s (a local server may still be loading the model)",
                                CHECK_TIMEOUT.as_secs()
                            ),
                        ),
                    }
                }
            }
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The models the roles use on provider `name`, each once, in role order.
fn models_used(config: &Config, name: &str) -> Vec<String> {
    let mut models: Vec<String> = Vec::new();
    for role in AgentRole::ALL {
        if let Some((provider, model)) = config.role(role)
            && provider == name
        {
            let model = model.unwrap_or("default").to_owned();
            if !models.contains(&model) {
                models.push(model);
            }
        }
    }
    models
}

/// The probe's answer, for the report.
fn describe(calling: &ToolCalling, cfg: &ProviderConfig) -> String {
    match calling {
        ToolCalling::Native => "yes".into(),
        ToolCalling::AsText { read: true } => {
            let required = cfg.tool_choice == Some(ToolChoice::Required);
            match cfg.text_tool_calls {
                TextToolCalls::Constrained if required => {
                    "only as text, each reply constrained to one call (text_tool_calls = \"constrained\"; \
                     tool_choice = \"required\" is not sent with it)"
                        .into()
                }
                TextToolCalls::Constrained => {
                    "only as text, each reply constrained to one call (text_tool_calls = \"constrained\")"
                        .into()
                }
                _ => format!(
                    "only as text, read as calls; this server needs text_tool_calls = \"constrained\" \
                     in [providers.<name>] so that each reply is one whole call (a json_schema \
                     response_format){} ({LOCAL_MODELS_HELP})",
                    if required {
                        ", and not tool_choice = \"required\", with which llama.cpp pads replies to the cap"
                    } else {
                        ""
                    }
                ),
            }
        }
        ToolCalling::AsText { read: false } => format!(
            "only as text, which text_tool_calls = \"off\" ignores: set it to \"auto\" ({LOCAL_MODELS_HELP})"
        ),
        ToolCalling::None { reply, cut } => {
            let said = if reply.is_empty() {
                "nothing".to_owned()
            } else {
                let shown: String = reply.chars().take(80).collect();
                let more = if shown.len() < reply.len() { "…" } else { "" };
                format!("{shown:?}{more}")
            };
            let cut = if *cut {
                ", cut at the token limit,"
            } else {
                ""
            };
            format!(
                "no: asked to call `{PROBE_TOOL}`, it answered {said}{cut} without a call. \
Agents act only through tool calls, so runs on this model cannot work: \
use a model trained for tool calling, and start the server with tool calling on \
(llama-server --jinja; vLLM --enable-auto-tool-choice --tool-call-parser NAME); {LOCAL_MODELS_HELP}"
            )
        }
    }
}
