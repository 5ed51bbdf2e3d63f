//! `memofab doctor`: checks every file memofab reads (config, policy, theme,
//! scenarios) and reaches every configured provider with a tiny request,
//! reporting what works and what does not; exits non-zero if anything fails.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::args::GlobalArgs;
use crate::config::ProviderKind;
use crate::domain::AgentRole;
use crate::effects::git::GitRepo;
use crate::engine::session;
use crate::llm::factory::{build_provider, check_provider};
use crate::llm::scenario::Scenario;

const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

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
                super::providers::NOT_CONFIGURED
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
                let model = cfg.model.clone().unwrap_or_else(|| "default".into());
                match build_provider(name, cfg) {
                    Err(e) => report(false, &what, e.to_string()),
                    Ok(provider) => {
                        match tokio::time::timeout(
                            CHECK_TIMEOUT,
                            check_provider(provider.as_ref(), &model),
                        )
                        .await
                        {
                            Ok(Ok(reply)) => report(
                                true,
                                &what,
                                format!("model {model} answered {:?}", reply.trim()),
                            ),
                            Ok(Err(e)) => report(false, &what, format!("model {model}: {e}")),
                            Err(_) => report(
                                false,
                                &what,
                                format!("model {model}: no answer in {}s", CHECK_TIMEOUT.as_secs()),
                            ),
                        }
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
