//! The plan phase: the planner proposes a blueprint, a plan reviewer with no
//! prior context challenges it, the planner revises — for a bounded number of
//! rounds. Picks up where a stored run left off: completed rounds are not
//! redone.

use crate::domain::tool_names;
use serde_json::json;

use crate::domain::event::{
    BlueprintAccepted, BlueprintProposed, PlanReviewed, RunPhaseChanged, Warning,
};
use crate::domain::instructions::{InstructionScope, with_instructions};
use crate::domain::{AgentRole, Blueprint, EventKind, RunPhase};
use crate::effects::file_fence::Sandbox;
use crate::engine::agent::{AgentJob, AgentOutcome, Review, SubmitTool, review_tool};
use crate::engine::context::RunContext;
use crate::engine::error::EngineResult;
use crate::engine::tools::{ToolBox, ToolSet};
use crate::llm::ToolSpec;

/// Files listed to the planner; a huge repository is summarised.
const MAX_LISTED_FILES: usize = 300;

pub enum PlanResult {
    Accepted(Blueprint),
    Failed(String),
    /// The reviewer never approved; a human decides (only when one is there).
    Disputed {
        blueprint: Blueprint,
        round: u32,
        feedback: String,
    },
}

pub async fn plan(ctx: &RunContext) -> EngineResult<PlanResult> {
    let (requirement, max_rounds, max_tasks, proposal, review, accepted) =
        ctx.recorder.with_state(|s| {
            (
                s.requirement.clone(),
                s.settings.max_plan_rounds.max(1) + s.extra_plan_rounds,
                s.settings.max_tasks,
                s.proposal.clone(),
                s.plan_review.clone(),
                s.blueprint.clone(),
            )
        });
    if let Some(blueprint) = accepted {
        return Ok(PlanResult::Accepted(blueprint));
    }
    let files = repo_listing(ctx).await?;

    // Resume: a round whose review is stored is complete.
    let mut previous: Option<(Blueprint, String)> = None;
    let mut round = 1;
    if let Some((reviewed_round, approved, feedback)) = review {
        if let Some(blueprint) = proposal.clone() {
            if approved {
                return accept(ctx, blueprint).await;
            }
            previous = Some((blueprint, feedback));
        }
        round = reviewed_round + 1;
    }
    // A stored proposal without its review: review it rather than re-plan.
    let mut pending = match (&proposal, ctx.recorder.with_state(|s| s.plan_round)) {
        (Some(b), r) if r == round => Some(b.clone()),
        _ => None,
    };

    loop {
        if round > max_rounds {
            let Some((blueprint, feedback)) = previous else {
                return Ok(PlanResult::Failed("no blueprint was proposed".into()));
            };
            let why = format!(
                "the plan reviewer did not approve within {max_rounds} rounds; building the last blueprint"
            );
            return settle_on_last(ctx, blueprint, round - 1, feedback, why).await;
        }
        let blueprint = match pending.take() {
            Some(b) => b,
            None => {
                let first = with_instructions(
                    &ctx.instructions,
                    InstructionScope::Repository,
                    planner_message(&requirement, &files, previous.as_ref()),
                );
                let job = AgentJob {
                    role: AgentRole::Planner,
                    task: None,
                    attempt: round,
                    prompt: ctx.prompts.load(AgentRole::Planner),
                    first_message: first,
                    toolbox: read_only_tools(ctx)?,
                    submit: Some(blueprint_tool(max_tasks)),
                };
                match ctx.run_agent(AgentRole::Planner, job).await? {
                    Ok(AgentOutcome::Submitted { arguments }) => {
                        match serde_json::from_value::<Blueprint>(arguments) {
                            Ok(b) => b,
                            Err(e) => {
                                return Ok(PlanResult::Failed(format!(
                                    "blueprint unreadable: {e}"
                                )));
                            }
                        }
                    }
                    Ok(AgentOutcome::Finished { summary }) => {
                        return Ok(PlanResult::Failed(format!(
                            "the planner stopped without a blueprint: {summary}"
                        )));
                    }
                    // A revision that fails leaves the last blueprint, as a
                    // reviewer who never approves does: a small model that
                    // loops while revising has still made a plan.
                    Err(failed) if previous.is_some() => {
                        let Some((blueprint, feedback)) = previous else {
                            return Ok(PlanResult::Failed(format!("the planner failed: {failed}")));
                        };
                        let why = format!(
                            "the planner's revision in round {round} failed ({failed}); \
                             building the blueprint of round {}",
                            round - 1
                        );
                        return settle_on_last(ctx, blueprint, round - 1, feedback, why).await;
                    }
                    Err(failed) => {
                        return Ok(PlanResult::Failed(format!("the planner failed: {failed}")));
                    }
                }
            }
        };
        ctx.recorder
            .record(EventKind::BlueprintProposed(BlueprintProposed {
                round,
                blueprint: blueprint.clone(),
            }))
            .await?;

        let job = AgentJob {
            role: AgentRole::PlanReviewer,
            task: None,
            attempt: round,
            prompt: ctx.prompts.load(AgentRole::PlanReviewer),
            first_message: with_instructions(
                &ctx.instructions,
                InstructionScope::Repository,
                reviewer_message(&requirement, &files, &blueprint),
            ),
            toolbox: read_only_tools(ctx)?,
            submit: Some(review_tool()),
        };
        let review = match ctx.run_agent(AgentRole::PlanReviewer, job).await? {
            Ok(outcome) => Review::from_outcome(&outcome),
            Err(failed) => Review {
                approved: true,
                feedback: format!(
                    "(the plan reviewer failed: {failed}; proceeding without review)"
                ),
            },
        };
        ctx.recorder
            .record(EventKind::PlanReviewed(PlanReviewed {
                round,
                approved: review.approved,
                feedback: review.feedback.clone(),
            }))
            .await?;
        if review.approved {
            return accept(ctx, blueprint).await;
        }
        previous = Some((blueprint, review.feedback));
        round += 1;
    }
}

/// Planning ended without an approved revision: the last blueprint (of
/// `round`) goes to a human when there is one, else it is built, with
/// `why` recorded as a warning.
async fn settle_on_last(
    ctx: &RunContext,
    blueprint: Blueprint,
    round: u32,
    feedback: String,
    why: String,
) -> EngineResult<PlanResult> {
    if ctx.humans {
        return Ok(PlanResult::Disputed {
            blueprint,
            round,
            feedback,
        });
    }
    ctx.recorder
        .record(EventKind::Warning(Warning {
            task: None,
            message: why,
        }))
        .await?;
    accept(ctx, blueprint).await
}

pub async fn accept(ctx: &RunContext, blueprint: Blueprint) -> EngineResult<PlanResult> {
    ctx.recorder
        .record(EventKind::BlueprintAccepted(BlueprintAccepted {
            blueprint: blueprint.clone(),
        }))
        .await?;
    ctx.recorder
        .record(EventKind::RunPhaseChanged(RunPhaseChanged {
            to: RunPhase::Building,
            reason: None,
        }))
        .await?;
    Ok(PlanResult::Accepted(blueprint))
}

fn read_only_tools(
    ctx: &RunContext,
) -> EngineResult<Option<(std::sync::Arc<ToolBox>, Vec<ToolSpec>)>> {
    let sandbox = Sandbox::new(ctx.git.root(), ctx.policy.clone())?;
    let toolbox = ToolBox::new(sandbox, ctx.tool_limits());
    Ok(Some((
        std::sync::Arc::new(toolbox),
        ToolBox::specs(ToolSet::ReadOnly),
    )))
}

async fn repo_listing(ctx: &RunContext) -> EngineResult<Vec<String>> {
    let mainline = ctx.mainline.clone();
    ctx.git(move |g| g.list_files_at(&mainline)).await
}

fn format_listing(files: &[String]) -> String {
    let shown: Vec<&str> = files
        .iter()
        .take(MAX_LISTED_FILES)
        .map(String::as_str)
        .collect();
    let more = files.len().saturating_sub(MAX_LISTED_FILES);
    let mut text = shown.join("\n");
    if more > 0 {
        text.push_str(&format!("\n... and {more} more files (use list_files)"));
    }
    text
}

fn planner_message(
    requirement: &str,
    files: &[String],
    previous: Option<&(Blueprint, String)>,
) -> String {
    let mut text = format!(
        "## Requirement\n{requirement}\n\n## Files in the repository\n{}\n",
        format_listing(files)
    );
    if let Some((blueprint, feedback)) = previous {
        let json = serde_json::to_string_pretty(blueprint).unwrap_or_default();
        text.push_str(&format!(
            "\n## Your previous blueprint\n```json\n{json}\n```\n\n## The plan reviewer's feedback\n{feedback}\n\nRevise the blueprint to address every point, then call submit_blueprint.\n"
        ));
    } else {
        text.push_str("\nPlan the work, then call submit_blueprint.\n");
    }
    text
}

fn reviewer_message(requirement: &str, files: &[String], blueprint: &Blueprint) -> String {
    let json = serde_json::to_string_pretty(blueprint).unwrap_or_default();
    format!(
        "## Requirement\n{requirement}\n\n## Files in the repository\n{}\n\n## Proposed blueprint\n```json\n{json}\n```\n\nReview it and call submit_review.\n",
        format_listing(files)
    )
}

/// `submit_blueprint`: validated before it is accepted, so the planner fixes
/// every problem in the same conversation.
fn blueprint_tool(max_tasks: usize) -> SubmitTool {
    SubmitTool {
        spec: ToolSpec {
            name: tool_names::SUBMIT_BLUEPRINT.into(),
            description: "Submit the blueprint: a DAG of tasks.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "tasks": {
                        "type": "array",
                        "maxItems": max_tasks,
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string", "pattern": "^[a-z0-9_-]{1,40}$"},
                                "title": {"type": "string"},
                                "description": {"type": "string"},
                                "acceptance": {"type": "array", "items": {"type": "string"}},
                                "paths": {"type": "array", "items": {"type": "string"}},
                                // Task ids, as `id`: a schema that says so keeps
                                // a constrained small model from naming files.
                                "depends_on": {"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9_-]{1,40}$"}}
                            },
                            "required": ["id", "title", "description", "acceptance", "paths", "depends_on"]
                        }
                    }
                },
                "required": ["title", "tasks"]
            }),
        },
        check: Box::new(move |args| {
            let blueprint: Blueprint = serde_json::from_value(args.clone())
                .map_err(|e| format!("the blueprint does not have the expected shape: {e}"))?;
            let issues = blueprint.validate(max_tasks);
            if issues.is_empty() {
                Ok(())
            } else {
                Err(issues
                    .iter()
                    .map(|i| format!("- {i}"))
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blueprint_tool_reports_every_issue() {
        let tool = blueprint_tool(32);
        let bad = json!({"title": "x", "tasks": [
            {"id": "a", "title": "A", "depends_on": ["b"]},
            {"id": "b", "title": "B", "depends_on": ["a"]},
            {"id": "c", "title": "", "depends_on": ["zz"]}
        ]});
        let problems = (tool.check)(&bad).unwrap_err();
        assert!(problems.contains("cycle"), "{problems}");
        assert!(problems.contains("unknown task zz"), "{problems}");
        assert!(problems.contains("empty title"), "{problems}");
        let good = json!({"title": "x", "tasks": [{"id": "a", "title": "A"}]});
        assert!((tool.check)(&good).is_ok());
        assert!(
            (tool.check)(&json!({"tasks": 3}))
                .unwrap_err()
                .contains("shape")
        );
    }

    #[test]
    fn listing_is_capped() {
        let files: Vec<String> = (0..400).map(|i| format!("f{i}")).collect();
        let text = format_listing(&files);
        assert!(text.contains("and 100 more files"));
    }
}
