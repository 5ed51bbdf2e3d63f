//! The overseer's proposals: which wait for a human, and applying one (only
//! when a human approves it; the approval is recorded).

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use crate::domain::event::{OverseerReport, ProposalDecision};
use crate::domain::metrics::Proposal;
use crate::domain::overseer::{OpenProposal, WaitingProposals};
use crate::domain::policy::{Policy, PolicyFile};
use crate::domain::{AgentRole, EventKind, RunId, RunKind};
use crate::effects::store::Store;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::files::{factory_dir, store_path};
use crate::engine::prompts::Prompts;
use crate::engine::recorder::Recorder;

/// Where a proposal's target lives in the project, and its current text.
pub(super) fn target_file(repo: &Path, target: &str) -> Result<(PathBuf, String), String> {
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
pub(super) fn in_effect(current: &str, proposal: &Proposal) -> bool {
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
pub(super) fn applied(current: &str, proposal: &Proposal) -> Result<String, String> {
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

/// A stored report and which of its proposals were decided.
pub fn stored_report(repo: &Path, run: &RunId) -> EngineResult<(String, Vec<Proposal>, Vec<u32>)> {
    let store = Store::open(&store_path(repo))?;
    let mut report = None;
    let mut decided = Vec::new();
    for event in store.events(run)? {
        match event.kind {
            EventKind::OverseerReport(OverseerReport {
                markdown,
                proposals,
                ..
            }) => report = Some((markdown, proposals)),
            EventKind::ProposalDecision(ProposalDecision { proposal, .. }) => {
                decided.push(proposal)
            }
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
    recorder.record_blocking(EventKind::ProposalDecision(ProposalDecision {
        proposal: number,
        approved: true,
        by: by.to_owned(),
    }))?;
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
