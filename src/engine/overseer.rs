//! The overseer: reads past runs, computes factory metrics, and asks the
//! overseer agent for concrete changes to the factory's own prompts and
//! policy. Its session is stored like a run (so it can be exported and
//! replayed); its proposals are applied only when a human approves one, and
//! that approval is recorded.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::agent::{AgentJob, AgentOutcome, AgentRunner, SubmitTool};
use super::context::ProviderSet;
use super::error::{EngineError, EngineResult};
use super::files::{factory_dir, store_path};
use super::prompts::Prompts;
use super::recorder::Recorder;
use crate::config::Config;
use crate::domain::metrics::{FactoryMetrics, Proposal};
use crate::domain::overseer::{OpenProposal, WaitingProposals};
use crate::domain::policy::{Policy, PolicyFile};
use crate::domain::{AgentRole, EventKind, RunId, RunKind, RunPhase, RunSettings};
use crate::effects::store::Store;
use crate::llm::ToolSpec;

/// What the overseer produced.
#[derive(Debug, Clone)]
pub struct Report {
    pub run: RunId,
    pub markdown: String,
    pub proposals: Vec<Proposal>,
    pub metrics: FactoryMetrics,
}

/// Where a proposal's target lives in the project, and its current text.
fn target_file(repo: &Path, target: &str) -> Result<(PathBuf, String), String> {
    if target == "policy.toml" {
        let path = factory_dir(repo).join("policy.toml");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        return Ok((path, text));
    }
    let role = target
        .strip_prefix("prompts/")
        .and_then(|f| f.strip_suffix(".md"))
        .and_then(|r| AgentRole::ALL.into_iter().find(|x| x.as_str() == r))
        .ok_or_else(|| format!("target {target:?} is neither prompts/<role>.md nor policy.toml"))?;
    let path = factory_dir(repo)
        .join("prompts")
        .join(format!("{}.md", role.as_str()));
    Ok((path, Prompts::for_repo(repo).load(role).text))
}

/// Whether the target already reads as the proposal would make it: its
/// new text is there, and the text it replaces is gone (or part of it).
fn in_effect(current: &str, proposal: &Proposal) -> bool {
    let (find, replace) = (proposal.find.as_str(), proposal.replace.trim());
    if replace.is_empty() {
        return !find.is_empty() && !current.contains(find);
    }
    current.contains(replace)
        && (find.is_empty() || replace.contains(find) || !current.contains(find))
}

/// The target's text with the proposal applied, or why it cannot be. A
/// proposal already in effect leaves the text as it is, so applying twice
/// changes the file once.
fn applied(current: &str, proposal: &Proposal) -> Result<String, String> {
    if in_effect(current, proposal) {
        return Ok(current.to_owned());
    }
    if proposal.find.is_empty() {
        let mut text = current.trim_end().to_owned();
        text.push_str("\n\n");
        text.push_str(proposal.replace.trim_end());
        text.push('\n');
        return Ok(text);
    }
    match current.matches(&proposal.find).count() {
        1 => Ok(current.replacen(&proposal.find, &proposal.replace, 1)),
        0 => Err(format!("the text to replace is not in {}", proposal.target)),
        n => Err(format!(
            "the text to replace occurs {n} times in {}",
            proposal.target
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submitted {
    proposals: Vec<Proposal>,
}

fn proposals_tool(repo: PathBuf) -> SubmitTool {
    SubmitTool {
        spec: ToolSpec {
            name: "submit_proposals".into(),
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

/// The newest report's proposals no human decided yet, if it has any. A
/// report whose session stopped before it was written is passed over.
pub fn waiting_proposals(repo: &Path) -> EngineResult<Option<WaitingProposals>> {
    let path = store_path(repo);
    if !path.exists() {
        return Ok(None);
    }
    // Newest first.
    let reports = Store::open(&path)?
        .runs()?
        .into_iter()
        .filter(|r| r.run.kind() == RunKind::OverseerReport);
    for report in reports {
        let (_, proposals, decided) = match stored_report(repo, &report.run) {
            Ok(found) => found,
            Err(EngineError::UnknownRun(_)) => continue,
            Err(e) => return Err(e),
        };
        let open: Vec<OpenProposal> = (1..)
            .zip(proposals)
            .filter(|(number, _)| !decided.contains(number))
            .map(|(number, p)| OpenProposal {
                number,
                title: p.title,
            })
            .collect();
        return Ok((!open.is_empty()).then_some(WaitingProposals {
            report: report.run,
            reported_ms: report.started_ms,
            open,
        }));
    }
    Ok(None)
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
        EventKind::RunStarted {
            requirement: format!("Overseer review of {} runs", runs.len()),
            repo: repo.display().to_string(),
            mainline: String::new(),
            base_commit: String::new(),
            settings,
        },
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
        shepherd: super::shepherd::Desk::new(config.shepherd.clone()),
        cap_identical_reads: config.run.profile == crate::config::ModelProfile::Small,
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
                .record(EventKind::Warning {
                    task: None,
                    message: format!("the overseer agent gave no proposals: {failed}"),
                })
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
        .record(EventKind::OverseerReport {
            runs,
            markdown: markdown.clone(),
            proposals: proposals.clone(),
        })
        .await?;
    recorder
        .record(EventKind::RunPhaseChanged {
            to: RunPhase::Finished,
            reason: None,
        })
        .await?;
    Ok(Report {
        run,
        markdown,
        proposals,
        metrics,
    })
}

/// A stored report and which of its proposals were decided.
pub fn stored_report(repo: &Path, run: &RunId) -> EngineResult<(String, Vec<Proposal>, Vec<u32>)> {
    let store = Store::open(&store_path(repo))?;
    let mut report = None;
    let mut decided = Vec::new();
    for event in store.events(run)? {
        match event.kind {
            EventKind::OverseerReport {
                markdown,
                proposals,
                ..
            } => report = Some((markdown, proposals)),
            EventKind::ProposalDecision { proposal, .. } => decided.push(proposal),
            _ => {}
        }
    }
    let (markdown, proposals) =
        report.ok_or_else(|| EngineError::UnknownRun(format!("{run} (no overseer report)")))?;
    Ok((markdown, proposals, decided))
}

/// Applies proposal `number` (1-based) of a report to the project's factory
/// definitions and records who approved it. Returns the file written.
pub fn apply(repo: &Path, run: &RunId, number: u32, by: &str) -> EngineResult<PathBuf> {
    let (_, proposals, decided) = stored_report(repo, run)?;
    let proposal = number
        .checked_sub(1)
        .and_then(|i| proposals.get(i as usize))
        .ok_or_else(|| {
            EngineError::Proposal(format!(
                "report {run} has no proposal {number}; it has {} (see `memofab overseer show {run}`)",
                proposals.len()
            ))
        })?;
    if decided.contains(&number) {
        return Err(EngineError::Proposal(format!(
            "proposal {number} of {run} was already decided"
        )));
    }
    let (path, current) = target_file(repo, &proposal.target).map_err(EngineError::Proposal)?;
    let text = applied(&current, proposal).map_err(EngineError::Proposal)?;
    if proposal.target == "policy.toml" {
        let file: PolicyFile = toml::from_str(&text).map_err(|e| {
            EngineError::Proposal(format!(
                "the proposed policy does not parse: {}",
                crate::toml_file::located("the proposed policy.toml", &text, &e)
            ))
        })?;
        Policy::new(&file)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(EngineError::io(format!("creating {}", parent.display())))?;
    }
    std::fs::write(&path, text).map_err(EngineError::io(format!("writing {}", path.display())))?;
    let store = Store::open(&store_path(repo))?;
    let (updates, _ignored) = mpsc::unbounded_channel();
    let recorder = Recorder::resume(store, run, updates)?;
    recorder.record_blocking(EventKind::ProposalDecision {
        proposal: number,
        approved: true,
        by: by.to_owned(),
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(find: &str, replace: &str) -> Proposal {
        Proposal {
            title: "t".into(),
            target: "prompts/coder.md".into(),
            rationale: "r".into(),
            find: find.into(),
            replace: replace.into(),
        }
    }

    #[test]
    fn proposals_replace_once_or_append() {
        assert_eq!(applied("a b a", &proposal("b", "c")).unwrap(), "a c a");
        assert!(
            applied("a b a", &proposal("a", "c"))
                .unwrap_err()
                .contains("2 times")
        );
        assert!(
            applied("x", &proposal("zz", "c"))
                .unwrap_err()
                .contains("not in")
        );
        assert_eq!(
            applied("x\n", &proposal("", "Rule.")).unwrap(),
            "x\n\nRule.\n"
        );
        assert!(proposal("", "new").patch().contains("+new"));
    }

    #[test]
    fn submitted_proposals_with_unknown_keys_are_refused() {
        let check = proposals_tool(std::env::temp_dir()).check;
        let misnamed = serde_json::json!({"proposals": [{
            "title": "t", "target": "prompts/coder.md", "rationale": "r",
            "search": "coding agent", "replace": "x"
        }]});
        assert!(check(&misnamed).unwrap_err().contains("search"));
    }

    #[test]
    fn a_proposal_in_effect_applies_as_no_change() {
        let append = proposal("", "Never repeat a failing command.");
        let once = applied("x\n", &append).unwrap();
        assert!(in_effect(&once, &append));
        assert_eq!(applied(&once, &append).unwrap(), once);
        assert_eq!(once.matches("Never repeat").count(), 1);

        let replace = proposal("Be brief.", "Be brief. Cite the test.");
        let once = applied("Rules: Be brief.\n", &replace).unwrap();
        assert!(in_effect(&once, &replace));
        assert_eq!(applied(&once, &replace).unwrap(), once);
        assert!(!in_effect("Rules: Be brief.\n", &replace));
        let delete = proposal("Be slow.", "");
        assert!(in_effect("Be fast.", &delete));
        assert!(!in_effect("Be slow.", &delete));
    }

    #[test]
    fn targets_are_prompts_or_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let (path, text) = target_file(dir.path(), "prompts/coder.md").unwrap();
        assert!(path.ends_with(".memofab/prompts/coder.md"));
        assert!(text.contains("coding agent"));
        assert!(target_file(dir.path(), "src/main.rs").is_err());
        assert!(target_file(dir.path(), "prompts/wizard.md").is_err());
    }
}
