//! The overseer's review: reads the factory's past runs, computes its
//! metrics, and asks the overseer agent for concrete changes to the
//! factory's own prompts and policy. Its session is stored like a run (so it
//! can be exported and replayed).

use crate::domain::tool_names;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::domain::event::{OverseerReport, RunPhaseChanged, RunStarted, Warning};
use crate::domain::metrics::{FactoryMetrics, Proposal};
use crate::domain::{AgentRole, EventKind, RunId, RunKind, RunPhase, RunSettings};
use crate::effects::store::Store;
use crate::engine::agent::{AgentJob, AgentOutcome, AgentRunner, SubmitTool};
use crate::engine::context::ProviderSet;
use crate::engine::error::EngineResult;
use crate::engine::files::store_path;
use crate::engine::prompts::Prompts;
use crate::engine::recorder::Recorder;
use crate::llm::ToolSpec;

use super::proposals::{applied, in_effect, target_file};

/// What the overseer produced.
#[derive(Debug, Clone)]
pub struct Report {
    pub run: RunId,
    pub markdown: String,
    pub proposals: Vec<Proposal>,
    pub metrics: FactoryMetrics,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submitted {
    proposals: Vec<Proposal>,
}

fn proposals_tool(repo: PathBuf) -> SubmitTool {
    SubmitTool {
        spec: ToolSpec {
            name: tool_names::SUBMIT_PROPOSALS.into(),
            description: "Submit your proposed changes to the factory's prompts or policy.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"proposals": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string"},
                        "target": {"type": "string", "description": "prompts/<role>.md or policy.toml"},
                        "rationale": {"type": "string", "description": "The evidence from the metrics."},
                        "find": {"type": "string", "description": "Exact text to replace; empty to append."},
                        "replace": {"type": "string"}
                    },
                    "required": ["title", "target", "rationale", "replace"]
                }}},
                "required": ["proposals"]
            }),
        },
        check: Box::new(move |args| {
            let submitted: Submitted = serde_json::from_value(args.clone())
                .map_err(|e| format!("expected {{\"proposals\": [...]}}: {e}"))?;
            let problems: Vec<String> = submitted
                .proposals
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    target_file(&repo, &p.target)
                        .and_then(|(_, current)| applied(&current, p))
                        .err()
                        .map(|e| format!("- proposal {}: {e}", i + 1))
                })
                .collect();
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("\n"))
            }
        }),
    }
}

fn first_message(repo: &Path, metrics: &FactoryMetrics) -> String {
    let prompts = Prompts::for_repo(repo);
    let mut text = format!(
        "Here are the metrics of the factory's recent runs.\n\n{}\n\n## The factory's current prompts\n",
        metrics.to_markdown()
    );
    for role in [AgentRole::Coder, AgentRole::Reviewer, AgentRole::Planner] {
        let p = prompts.load(role);
        text.push_str(&format!(
            "\n### prompts/{}.md\n```\n{}\n```\n",
            role.as_str(),
            p.text.trim()
        ));
    }
    text.push_str(
        "\nPropose changes with submit_proposals. Each proposal's `find` must be exact text from the target (or empty to append).\n",
    );
    text
}

/// The factory's runs started since `since_ms` (unix ms).
fn runs_in(store: &Store, since_ms: u64) -> EngineResult<Vec<RunId>> {
    Ok(store
        .runs()?
        .into_iter()
        .filter(|r| r.started_ms >= since_ms && r.run.kind() == RunKind::Factory)
        .map(|r| r.run)
        .collect())
}

/// The factory's runs in the repository started since `since_ms`; none
/// (and no store created) in a repository that never ran.
pub fn runs_since(repo: &Path, since_ms: u64) -> EngineResult<Vec<RunId>> {
    let path = store_path(repo);
    if !path.exists() {
        return Ok(Vec::new());
    }
    runs_in(&Store::open(&path)?, since_ms)
}

/// Reviews the runs started since `since_ms` (unix ms) and stores a report.
pub async fn review(
    repo: &Path,
    since_ms: u64,
    config: &Config,
    providers: &ProviderSet,
) -> EngineResult<Report> {
    let store = Store::open(&store_path(repo))?;
    let runs = runs_in(&store, since_ms)?;
    let mut all = Vec::with_capacity(runs.len());
    for run in &runs {
        all.push(store.events(run)?);
    }
    let metrics = FactoryMetrics::compute(&all);
    let run = RunId::overseer_report();
    let (updates, _ignored) = mpsc::unbounded_channel();
    let settings = RunSettings {
        concurrency: 1,
        max_tasks: 0,
        max_rework: 0,
        max_conflict_rework: 0,
        max_plan_rounds: 0,
        provider: "overseer".into(),
        ..RunSettings::default()
    };
    let recorder = Recorder::start(
        store,
        run.clone(),
        EventKind::RunStarted(RunStarted {
            requirement: format!("Overseer review of {} runs", runs.len()),
            repo: repo.display().to_string(),
            mainline: String::new(),
            base_commit: String::new(),
            settings,
        }),
        updates,
    )?;
    let binding = providers.binding(AgentRole::Overseer)?;
    let runner = AgentRunner {
        recorder: recorder.clone(),
        provider: binding.provider,
        model: binding.model,
        max_turns: config.run.max_agent_turns,
        prices: std::sync::Arc::new(crate::llm::pricing::price_table(config)),
        governor: binding.governor,
        reply: config.reply_limits(AgentRole::Overseer),
        shepherd: crate::engine::shepherd::Desk::new(config.shepherd.clone()),
        small_model_guards: config.run.profile == crate::config::ModelProfile::Small,
    };
    let job = AgentJob {
        role: AgentRole::Overseer,
        task: None,
        attempt: 1,
        prompt: Prompts::for_repo(repo).load(AgentRole::Overseer),
        first_message: first_message(repo, &metrics),
        toolbox: None,
        submit: Some(proposals_tool(repo.to_owned())),
    };
    let submitted = match runner.run(job).await? {
        Ok(AgentOutcome::Submitted { arguments }) => serde_json::from_value::<Submitted>(arguments)
            .map(|s| s.proposals)
            .unwrap_or_default(),
        Ok(AgentOutcome::Finished { .. }) => Vec::new(),
        Err(failed) => {
            recorder
                .record(EventKind::Warning(Warning {
                    task: None,
                    message: format!("the overseer agent gave no proposals: {failed}"),
                }))
                .await?;
            Vec::new()
        }
    };
    // The metrics still show what an applied change came too late for: a
    // proposal already in effect is not proposed again.
    let (proposals, in_force): (Vec<Proposal>, Vec<Proposal>) =
        submitted.into_iter().partition(|p| {
            !target_file(repo, &p.target).is_ok_and(|(_, current)| in_effect(&current, p))
        });
    let mut markdown = format!(
        "# Overseer report {run}\n\n{}\n## Proposals\n\n",
        metrics.to_markdown()
    );
    if proposals.is_empty() {
        markdown.push_str("None.\n");
    }
    for p in &in_force {
        markdown.push_str(&format!(
            "Left out, already in effect in {}: {}\n\n",
            p.target, p.title
        ));
    }
    for (i, p) in proposals.iter().enumerate() {
        markdown.push_str(&format!(
            "### {}. {}\n\n{}\n\n```diff\n{}```\n\nApply with `memofab overseer apply {run} {}`.\n\n",
            i + 1,
            p.title,
            p.rationale.trim(),
            p.patch(),
            i + 1
        ));
    }
    recorder
        .record(EventKind::OverseerReport(OverseerReport {
            runs,
            markdown: markdown.clone(),
            proposals: proposals.clone(),
        }))
        .await?;
    recorder
        .record(EventKind::RunPhaseChanged(RunPhaseChanged {
            to: RunPhase::Finished,
            reason: None,
        }))
        .await?;
    Ok(Report {
        run,
        markdown,
        proposals,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submitted_proposals_with_unknown_keys_are_refused() {
        let check = proposals_tool(std::env::temp_dir()).check;
        let misnamed = serde_json::json!({"proposals": [{
            "title": "t", "target": "prompts/coder.md", "rationale": "r",
            "search": "coding agent", "replace": "x"
        }]});
        assert!(check(&misnamed).unwrap_err().contains("search"));
    }
}
