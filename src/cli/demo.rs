//! `memofab demo`: a complete factory run on a fresh repository made from the
//! embedded seed project, driven by the scripted provider. The git effects,
//! test runs and gates are all real.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::args::{DemoArgs, GlobalArgs};
use super::headless;
use crate::engine::demo_seed::{embedded_seed, prepare_repo};
use crate::engine::providers;
use crate::engine::run::orchestrator::Steering;
use crate::engine::run::session::RunRequest;
use crate::llm::scenario::Scenario;

/// Streaming pace in the cockpit, per word (a tool call counts as a few):
/// a person can read along, and the first gate comes after about a minute
/// rather than before the eye has found the panes.
const WATCHABLE_PACE: Duration = Duration::from_millis(130);

/// The scripted provider's pace: as asked, else watchable in the cockpit
/// and none headless, where nobody watches.
fn pace(headless: bool, asked_ms: Option<u64>) -> Duration {
    match asked_ms {
        Some(ms) => Duration::from_millis(ms),
        None if headless => Duration::ZERO,
        None => WATCHABLE_PACE,
    }
}

pub async fn run(global: &GlobalArgs, args: DemoArgs) -> Result<ExitCode> {
    if !args.headless {
        // Before the demo repository and its run exist.
        super::require_terminal("the demo's cockpit", super::HEADLESS_INSTEAD)?;
    }
    let (scenario, seed_files) = match &args.scenario {
        Some(path) => {
            let scenario = Scenario::load(path)?;
            let base = path.parent().unwrap_or(Path::new("."));
            let seed_dir = base.join(
                scenario
                    .seed
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("seed")),
            );
            let files = read_tree(&seed_dir)
                .with_context(|| format!("reading the seed project {}", seed_dir.display()))?;
            (scenario, files)
        }
        None => (Scenario::demo()?, embedded_seed()),
    };
    let dir = demo_dir(args.dir.as_deref())?;
    let repo = prepare_repo(&dir, &scenario, &seed_files)?;

    let config = super::load_config(&repo, global.config.as_deref())?;
    let pace = pace(args.headless, args.pace_ms);
    let choice = providers::build(&config, Some("scripted"), args.scenario.as_deref(), pace)?;
    eprintln!("memofab demo: repository {}", repo.display());
    headless::launch(
        &repo,
        RunRequest {
            repo: repo.clone(),
            requirement: scenario.requirement.clone(),
            config,
            providers: choice.set,
            provider_label: "scripted".into(),
            scenario: choice.scenario,
            auto_approve: args.auto_approve,
            await_spec: false,
            steering: if args.headless {
                Steering::Headless
            } else {
                Steering::Interactive
            },
            crash_after: global.crash_after_events,
            run_id: None,
            agent_slots: None,
        },
        args.headless,
    )
    .await
}

/// The demo's directory: the one asked for (new or empty), or a fresh temp dir.
fn demo_dir(asked: Option<&Path>) -> Result<PathBuf> {
    match asked {
        Some(dir) => {
            if dir.exists() {
                let empty = std::fs::read_dir(dir)
                    .with_context(|| format!("reading {}", dir.display()))?
                    .next()
                    .is_none();
                if !empty {
                    bail!(
                        "{} is not empty; give a new or empty directory for the demo",
                        dir.display()
                    );
                }
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(dir.to_owned())
        }
        None => {
            let run = crate::domain::RunId::generate();
            let dir = std::env::temp_dir().join(format!("memofab-demo-{run}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(dir)
        }
    }
}

fn read_tree(root: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read(&path)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use futures_util::StreamExt;

    use super::*;
    use crate::llm::LlmProvider;
    use crate::llm::scripted::ScriptedProvider;
    use crate::llm::types::{ChatMessage, CompletionRequest, ScriptKey};

    /// Virtual time to stream every turn of the demo's script, one after
    /// the other, at `pace`.
    async fn whole_script(pace: Duration) -> Duration {
        let scenario = Scenario::demo().unwrap();
        let provider = ScriptedProvider::new(Arc::new(scenario.clone())).with_pace(pace);
        let start = tokio::time::Instant::now();
        for conversation in &scenario.conversations {
            let script = ScriptKey {
                role: conversation.role,
                task: conversation.task.clone(),
                attempt: conversation.attempt.unwrap_or(1),
            };
            let mut messages = vec![ChatMessage::User {
                content: "go".into(),
            }];
            for _ in &conversation.turns {
                let request = CompletionRequest {
                    model: "scripted".into(),
                    system: String::new(),
                    messages: messages.clone(),
                    tools: Vec::new(),
                    max_tokens: 1000,
                    temperature: None,
                    reasoning_effort: None,
                    script: script.clone(),
                };
                let mut stream = provider.stream(request);
                while let Some(event) = stream.next().await {
                    event.unwrap();
                }
                messages.push(ChatMessage::Assistant {
                    content: String::new(),
                    tool_calls: Vec::new(),
                });
            }
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn the_cockpit_demo_is_paced_for_a_person_and_headless_is_not() {
        assert_eq!(pace(true, None), Duration::ZERO);
        assert_eq!(pace(false, Some(0)), Duration::ZERO);
        // Agents work in parallel, so the gate comes before the script's
        // end: streamed one after the other it lasts well over a minute.
        let watched = whole_script(pace(false, None)).await;
        assert!(watched >= Duration::from_secs(60), "{watched:?}");
        assert!(watched <= Duration::from_secs(300), "{watched:?}");
        assert_eq!(whole_script(pace(true, None)).await, Duration::ZERO);
    }
}
