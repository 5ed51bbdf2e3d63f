//! How a run reads from outside its engine: the summary a run leaves on
//! stderr when the process ends (what merged, why what failed did, whole,
//! wrapped, not cut, and how to carry on), which MCP hands out too, and
//! which stored run an engine works on now.

use std::path::Path;

use crate::domain::{RunId, RunPhase, RunState, TaskState, narrate};
use crate::effects::store::RunSummary;
use crate::engine::run::session;
use crate::llm::pricing::Costs;
use crate::text::wrap;

pub type Prices = std::collections::BTreeMap<String, crate::config::Price>;

/// Summary lines are wrapped to this width.
const WIDTH: usize = 100;
/// Where values start, after labels like `  repository:  `.
const LABEL: usize = 15;

/// The summary of `state`; `stopped_by` names the signal that stopped the
/// process, if one did.
pub fn summary(state: &RunState, repo: &Path, prices: &Prices, stopped_by: Option<&str>) -> String {
    let merged = state.count(TaskState::Merged);
    let mut lines = vec![
        String::new(),
        format!("run {} — {}", state.run, state.phase),
    ];
    if let Some(reason) = &state.phase_reason
        && matches!(state.phase, RunPhase::Failed | RunPhase::Paused)
    {
        labelled(&mut lines, "why:", reason);
    }
    if let Some(signal) = stopped_by {
        labelled(
            &mut lines,
            "stopped:",
            &format!("by {signal}; the run was recorded as interrupted"),
        );
    }
    labelled(&mut lines, "repository:", &repo.display().to_string());
    labelled(
        &mut lines,
        "tasks:",
        &format!(
            "{merged} merged of {} ({} failed, {} in conflict, {} blocked, {} at the gate)",
            state.tasks().len(),
            state.count(TaskState::Failed),
            state.count(TaskState::Conflict),
            state.count(TaskState::Blocked),
            state.count(TaskState::AwaitingGate),
        ),
    );
    if state.blueprint.is_some() {
        labelled(
            &mut lines,
            "mainline:",
            &format!(
                "{} at {}, {} new commits",
                state.mainline,
                state.mainline_commit.get(..10).unwrap_or("?"),
                new_commits(repo, state)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "?".into())
            ),
        );
    }
    labelled(
        &mut lines,
        "tokens:",
        &format!(
            "{} in, {} out{}",
            state.tokens.input,
            state.tokens.output,
            run_cost(repo, state, prices)
                .map(|c| format!(", ${c:.2}"))
                .unwrap_or_default()
        ),
    );
    // A finished run kept the worktrees and branches of these for a human.
    let kept = if state.phase.is_over() {
        kept_for_review(repo, state)
    } else {
        Vec::new()
    };
    for task in state.tasks() {
        if task.state != TaskState::Merged {
            let mut text = format!(
                "- {}",
                narrate::task_state(task.id(), task.state, task.reason.as_deref())
            );
            if let Some(k) = kept.iter().find(|k| k.task == task.id().as_str()) {
                let mut what = Vec::new();
                if let Some(dir) = &k.worktree {
                    what.push(format!("worktree {}", dir.display()));
                }
                if let Some(branch) = &k.branch {
                    what.push(format!("branch {branch}"));
                }
                text.push_str(&format!("; kept: {}", what.join(", ")));
            }
            lines.extend(wrap(&text, "  ", "    ", WIDTH));
        }
    }
    if !kept.is_empty() {
        labelled(
            &mut lines,
            "clean up:",
            &format!("memofab --repo {} clean {}", repo.display(), state.run),
        );
    }
    if !state.phase.is_over() {
        labelled(
            &mut lines,
            "continue:",
            &format!("memofab --repo {} resume {}", repo.display(), state.run),
        );
    }
    labelled(
        &mut lines,
        "replay:",
        &format!("memofab --repo {} replay {}", repo.display(), state.run),
    );
    lines.join("\n")
}

/// `  label:      value`, the value wrapped under itself.
fn labelled(lines: &mut Vec<String>, label: &str, value: &str) {
    let first = format!("  {label:<width$}", width = LABEL - 2);
    lines.extend(wrap(value, &first, &" ".repeat(LABEL), WIDTH));
}

/// The worktrees and branches a finished run kept for a human.
fn kept_for_review(repo: &Path, state: &RunState) -> Vec<crate::engine::cleanup::Kept> {
    crate::effects::git::GitRepo::open(repo)
        .map(|git| crate::engine::cleanup::kept(&git, state))
        .unwrap_or_default()
}

/// Commits on mainline since the run started.
fn new_commits(repo: &Path, state: &RunState) -> Option<usize> {
    let git = crate::effects::git::GitRepo::open(repo).ok()?;
    let all = git.log_messages(&state.mainline, usize::MAX).ok()?;
    let before = git.log_messages(&state.base_commit, usize::MAX).ok()?;
    Some(all.len().saturating_sub(before.len()))
}

/// What the run cost, if its models have prices in config.
pub fn run_cost(repo: &Path, state: &RunState, prices: &Prices) -> Option<f64> {
    if prices.is_empty() {
        return None;
    }
    let store = crate::effects::store::Store::open_reader(&session::store_path(repo)).ok()?;
    let costs = Costs::of(prices, &store.events(&state.run).ok()?);
    costs.priced.then_some(costs.total)
}

/// The run an engine works on now, among `runs` (newest first): only the
/// newest run not over, and only while an engine holds the repository. The
/// other runs not over were interrupted and wait for `memofab resume`.
pub fn live_run(repo: &Path, runs: &[RunSummary]) -> Option<RunId> {
    runs.iter()
        .find(|r| r.phase.is_none_or(|p| !p.is_over()))
        .filter(|_| crate::engine::engine_lock::EngineLock::held(repo))
        .map(|r| r.run.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixture;

    #[test]
    fn a_failed_task_is_listed_with_its_whole_reason() {
        let state = RunState::fold(&fixture::failed_task_events())
            .unwrap()
            .unwrap();
        let text = summary(&state, Path::new("/nowhere"), &Prices::new(), None);
        let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            squeeze(&text).contains(&format!("- stats is failed: {}", fixture::PROVIDER_DOWN)),
            "{text}"
        );
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        // The Log tab and the export's account say it in the same words.
        let said = format!("stats is failed: {}", fixture::PROVIDER_DOWN);
        let log: Vec<String> = fixture::failed_task_events()
            .iter()
            .filter_map(crate::domain::narrate::line)
            .map(|l| l.text)
            .collect();
        assert!(log.contains(&said), "{log:?}");
        let account = crate::domain::report::markdown(&fixture::failed_task_events());
        assert!(account.contains(&format!("- {said}")), "{account}");
        // Not over: the summary says how to carry on.
        assert!(text.contains("continue:    memofab --repo /nowhere resume r2026"));
    }
}
