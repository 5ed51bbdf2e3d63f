//! Budgets: how much a task and the whole run may spend, whether they have
//! spent it, and where the run's spending is heading. Pure: the engine asks
//! after each model reply, the cockpit shows the burn.

use super::event::Budget;
use super::ids::TaskId;
use super::run_state::RunState;
use super::task::TaskState;

/// What a budget allows once a human raised it `raises` times: each raise
/// grants one more budget's worth.
fn scaled(limit: Option<u64>, raises: u32) -> Option<u64> {
    limit.map(|l| l.saturating_mul(u64::from(raises) + 1))
}

fn scaled_usd(limit: Option<f64>, raises: u32) -> Option<f64> {
    limit.map(|l| l * f64::from(raises + 1))
}

/// Why `task` may not spend more, if it has used up its budget.
pub fn task_overrun(state: &RunState, task: &TaskId) -> Option<String> {
    let record = state.task(task)?;
    let Budget {
        task_tokens,
        task_usd,
        ..
    } = state.settings.budget;
    let spent = record.tokens.total();
    if let Some(limit) = scaled(task_tokens, record.budget_raises)
        && spent >= limit
    {
        return Some(format!(
            "task {task} used {spent} tokens of its {limit}-token budget"
        ));
    }
    if let Some(limit) = scaled_usd(task_usd, record.budget_raises)
        && record.cost_usd >= limit
    {
        return Some(format!(
            "task {task} spent ${:.2} of its ${limit:.2} budget",
            record.cost_usd
        ));
    }
    None
}

/// Why the run may not spend more, if it has used up its budget.
pub fn run_overrun(state: &RunState) -> Option<String> {
    let Budget {
        run_tokens,
        run_usd,
        ..
    } = state.settings.budget;
    let spent = state.tokens.total();
    if let Some(limit) = scaled(run_tokens, state.run_budget_raises)
        && spent >= limit
    {
        return Some(format!(
            "the run used {spent} tokens of its {limit}-token budget"
        ));
    }
    if let Some(limit) = scaled_usd(run_usd, state.run_budget_raises)
        && state.cost_usd >= limit
    {
        return Some(format!(
            "the run spent ${:.2} of its ${limit:.2} budget",
            state.cost_usd
        ));
    }
    None
}

/// Either budget `task` works under, whichever ran out first.
pub fn overrun(state: &RunState, task: &TaskId) -> Option<String> {
    task_overrun(state, task).or_else(|| run_overrun(state))
}

/// The run's spending so far, its limits and a forecast to completion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burn {
    pub tokens: u64,
    pub token_limit: Option<u64>,
    /// Tokens the run will have used when every task is done, at the pace
    /// of the tasks merged so far; `None` before the first merge.
    pub forecast_tokens: Option<u64>,
    pub usd: f64,
    pub usd_limit: Option<f64>,
    pub forecast_usd: Option<f64>,
}

pub fn run_burn(state: &RunState) -> Burn {
    let budget = state.settings.budget;
    let merged: Vec<_> = state
        .tasks()
        .iter()
        .filter(|t| t.state == TaskState::Merged)
        .collect();
    let (forecast_tokens, forecast_usd) = if merged.is_empty() {
        (None, None)
    } else {
        let n = merged.len() as f64;
        let mean_tokens = merged.iter().map(|t| t.tokens.total()).sum::<u64>() as f64 / n;
        let mean_usd = merged.iter().map(|t| t.cost_usd).sum::<f64>() / n;
        // Tasks that will not spend more count what they spent; the others
        // at least the mean of a merged task.
        let mut tokens = state.tokens.total() as f64;
        let mut usd = state.cost_usd;
        for t in state.tasks() {
            if !matches!(
                t.state,
                TaskState::Merged | TaskState::Failed | TaskState::Cancelled
            ) {
                tokens += (mean_tokens - t.tokens.total() as f64).max(0.0);
                usd += (mean_usd - t.cost_usd).max(0.0);
            }
        }
        (Some(tokens.round() as u64), Some(usd))
    };
    Burn {
        tokens: state.tokens.total(),
        token_limit: scaled(budget.run_tokens, state.run_budget_raises),
        forecast_tokens,
        usd: state.cost_usd,
        usd_limit: scaled_usd(budget.run_usd, state.run_budget_raises),
        forecast_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{BudgetRaised, TokensUsed};
    use crate::domain::made_up::{self, advance, push, task};
    use crate::domain::{AgentId, AgentRole, EventKind, RunSettings, TokenUsage};

    fn run(budget: Budget) -> RunState {
        let settings = RunSettings {
            budget,
            ..RunSettings::default()
        };
        made_up::started(settings, vec![task("a", &[], &[]), task("b", &[], &[])]).unwrap()
    }

    fn apply(state: &mut RunState, kind: EventKind) {
        push(state, 0, kind).unwrap();
    }

    fn spend(state: &mut RunState, task: &str, tokens: u64, usd: Option<f64>) {
        apply(
            state,
            EventKind::TokensUsed(TokensUsed {
                agent: AgentId::for_task(AgentRole::Coder, &task.into(), 1),
                task: Some(task.into()),
                model: "m".into(),
                usage: TokenUsage {
                    input: tokens,
                    output: 0,
                    cached: 0,
                    cache_write: 0,
                },
                cost_usd: usd,
            }),
        );
    }

    #[test]
    fn a_task_overruns_its_own_budget_and_each_raise_grants_one_more() {
        let mut state = run(Budget {
            task_tokens: Some(100),
            ..Budget::default()
        });
        spend(&mut state, "a", 99, None);
        assert_eq!(overrun(&state, &"a".into()), None);
        spend(&mut state, "a", 1, None);
        assert!(overrun(&state, &"a".into()).unwrap().contains("100-token"));
        assert_eq!(overrun(&state, &"b".into()), None, "budgets are per task");
        apply(
            &mut state,
            EventKind::BudgetRaised(BudgetRaised {
                task: Some("a".into()),
                by: "me".into(),
            }),
        );
        assert_eq!(overrun(&state, &"a".into()), None);
        spend(&mut state, "a", 100, None);
        assert!(overrun(&state, &"a".into()).is_some());
    }

    #[test]
    fn the_run_budget_counts_every_task_and_cost_needs_a_price() {
        let mut state = run(Budget {
            run_tokens: Some(150),
            run_usd: Some(1.0),
            ..Budget::default()
        });
        spend(&mut state, "a", 100, None);
        assert_eq!(run_overrun(&state), None);
        spend(&mut state, "b", 40, Some(1.5));
        assert!(run_overrun(&state).unwrap().contains("$1.50"));
        assert!(
            overrun(&state, &"a".into()).is_some(),
            "the run's budget binds every task"
        );
        apply(
            &mut state,
            EventKind::BudgetRaised(BudgetRaised {
                task: None,
                by: "me".into(),
            }),
        );
        assert_eq!(run_overrun(&state), None);
    }

    #[test]
    fn the_forecast_assumes_unfinished_tasks_cost_what_merged_ones_did() {
        let mut state = run(Budget::default());
        spend(&mut state, "a", 100, None);
        assert_eq!(run_burn(&state).forecast_tokens, None);
        advance(
            &mut state,
            0,
            &"a".into(),
            &[
                TaskState::Ready,
                TaskState::Running,
                TaskState::Reviewing,
                TaskState::Testing,
                TaskState::Merging,
                TaskState::Merged,
            ],
        )
        .unwrap();
        spend(&mut state, "b", 30, None);
        let burn = run_burn(&state);
        assert_eq!(burn.tokens, 130);
        assert_eq!(burn.forecast_tokens, Some(200));
    }
}
