//! The planner's `submit_blueprint`: the blueprint checked before it is
//! accepted, and, in the small profile, mended where a mistake has one
//! meaning, a plan of tasks that only look refused with the requirement as
//! one task to copy.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::domain::event::Warning;
use crate::domain::{Blueprint, EventKind, TaskId, TaskSpec, tool_names};
use crate::engine::agent::SubmitTool;
use crate::engine::context::RunContext;
use crate::engine::error::EngineResult;
use crate::llm::ToolSpec;

/// What a blueprint is held to beyond its form.
pub(super) enum PlanCheck {
    /// The planner's judgement is kept.
    Standard,
    /// The small profile's: see [`blueprint_tool`]. `offered` is set once
    /// a refusal has carried `one_task`.
    ChangesOnly {
        one_task: Option<Value>,
        offered: Arc<AtomicBool>,
    },
}

/// `submit_blueprint`: validated before it is accepted, so the planner fixes
/// every problem in the same conversation. With [`PlanCheck::ChangesOnly`]
/// (the small profile), a plan whose every task only reads or checks is refused too:
/// its coders would change nothing, which fails the tasks; small models
/// plan "Read README.md" as a task of its own. The refusal carries the
/// call that plans the requirement as one task, if there is one
/// ([`one_task_plan`]): measured, the 0.5B planner submitted the list of
/// its tools as its tasks until the shepherd stopped it.
pub(super) fn blueprint_tool(max_tasks: usize, check: PlanCheck) -> SubmitTool {
    let (changes_only, one_task, offered) = match check {
        PlanCheck::Standard => (false, None, None),
        PlanCheck::ChangesOnly { one_task, offered } => (true, one_task, Some(offered)),
    };
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
            // What the small profile mends is not held against the plan.
            let blueprint = match changes_only {
                true => mend(blueprint).0,
                false => blueprint,
            };
            let mut issues: Vec<String> = blueprint
                .validate(max_tasks)
                .iter()
                .map(ToString::to_string)
                .collect();
            // Tasks that only look are left out (see `mend`); a plan of
            // nothing else is refused.
            if changes_only
                && !blueprint.tasks.is_empty()
                && blueprint.tasks.iter().all(changes_nothing)
            {
                let mut issue = "every task only looks at the code; a task must change files \
                     (reading and checking are done inside the task that makes the change)"
                    .to_owned();
                if let Some(plan) = &one_task {
                    if let Some(offered) = &offered {
                        offered.store(true, Ordering::Relaxed);
                    }
                    issue.push_str(&format!(
                        ". To plan the requirement as one task that makes the change, call \
                         submit_blueprint with these arguments:\n```json\n{plan}\n```"
                    ));
                }
                issues.push(issue);
            }
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

/// The longest requirement planned as one task in a suggestion: a longer
/// one is more than one change.
const ONE_TASK_MAX_CHARS: usize = 600;

/// The blueprint that plans a short `requirement` as one task, touching the
/// repository's `files` it names; `None` for a long requirement or one that
/// names no file of the repository.
pub(super) fn one_task_plan(requirement: &str, files: &[String]) -> Option<Value> {
    let requirement = requirement.trim();
    if requirement.chars().count() > ONE_TASK_MAX_CHARS {
        return None;
    }
    let named: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|path| {
            let name = path.rsplit('/').next().unwrap_or(path);
            requirement.contains(path) || (name.contains('.') && requirement.contains(name))
        })
        .collect();
    let line = requirement.lines().next()?.trim();
    if named.is_empty() || line.is_empty() {
        return None;
    }
    let title: String = line.chars().take(80).collect();
    Some(json!({
        "title": title,
        "tasks": [{
            "id": "change",
            "title": title,
            "description": requirement,
            "acceptance": [line],
            "paths": named,
            "depends_on": [],
        }],
    }))
}

/// The small profile's blueprint, mended where a mistake has one meaning:
/// a dependency on itself or on no task is dropped, and the tasks that only
/// look ("Read README.md", "Open it in an editor") are left out, their
/// dependents waiting on what they waited on (their coder would change
/// nothing, which fails the task). Small models plan such steps as tasks of
/// their own and, told what is wrong, submit the same plan again (measured:
/// 1.5B, six times, then the planner was stopped). The plan reviewer sees
/// the mended plan; the transcript says what was mended.
pub(super) async fn mend_small_blueprint(
    ctx: &RunContext,
    blueprint: Blueprint,
) -> EngineResult<Blueprint> {
    let (mended, notes) = mend(blueprint);
    if !notes.is_empty() {
        ctx.recorder
            .record(EventKind::Warning(Warning {
                task: None,
                message: format!("the blueprint was mended: {}", notes.join("; ")),
            }))
            .await?;
    }
    Ok(mended)
}

/// See [`mend_small_blueprint`]: the blueprint mended, and what was done.
fn mend(mut blueprint: Blueprint) -> (Blueprint, Vec<String>) {
    let mut notes = Vec::new();
    // A second task under an id already taken gets a fresh one (dependencies
    // on the id mean its first task).
    let mut ids: BTreeSet<TaskId> = BTreeSet::new();
    for task in &mut blueprint.tasks {
        if ids.contains(&task.id) {
            let fresh = (2..)
                .map(|n| TaskId::from(format!("{}-{n}", task.id).as_str()))
                .find(|id| !ids.contains(id));
            if let Some(fresh) = fresh {
                notes.push(format!("the second task {} is now {fresh}", task.id));
                task.id = fresh;
            }
        }
        ids.insert(task.id.clone());
    }
    for task in &mut blueprint.tasks {
        let before = task.depends_on.len();
        let own = task.id.clone();
        task.depends_on
            .retain(|dep| *dep != own && ids.contains(dep));
        if task.depends_on.len() < before {
            notes.push(format!(
                "task {} no longer depends on itself or on tasks that do not exist",
                task.id
            ));
        }
    }
    let looking: BTreeSet<TaskId> = blueprint
        .tasks
        .iter()
        .filter(|t| changes_nothing(t))
        .map(|t| t.id.clone())
        .collect();
    if looking.is_empty() || looking.len() == blueprint.tasks.len() {
        return (blueprint, notes);
    }
    let named: Vec<String> = blueprint
        .tasks
        .iter()
        .filter(|t| looking.contains(&t.id))
        .map(|t| format!("{} (\"{}\")", t.id, t.title))
        .collect();
    notes.push(format!(
        "tasks that only look at the code were left out: {}",
        named.join(", ")
    ));
    (blueprint.without(&looking), notes)
}

/// Verbs a task that only looks begins with.
const LOOK_VERBS: &[&str] = &[
    "read",
    "check",
    "review",
    "inspect",
    "verify",
    "examine",
    "look",
    "view",
    "open",
    "understand",
    "analyze",
    "analyse",
    "explore",
    "investigate",
    "study",
    "confirm",
    "run",
    "list",
    "find",
    "search",
    "locate",
    "identify",
    "test",
    "validate",
    "ensure",
];
/// Verbs that say a task changes something, in any of their forms.
const CHANGE_VERBS: &[&str] = &[
    "add",
    "append",
    "write",
    "wrote",
    "written",
    "edit",
    "change",
    "update",
    "create",
    "insert",
    "fix",
    "implement",
    "remove",
    "delete",
    "rename",
    "modify",
    "replace",
    "refactor",
    "move",
    "make",
    "made",
    "set",
    "put",
    "extend",
    "introduce",
    "generate",
    "rewrite",
    "convert",
    "adjust",
    "correct",
    "document",
    "translate",
    "port",
    "migrate",
];

/// Whether a task only reads or checks: its title begins with a verb of
/// looking (or, untitled, its id does: `read_file_1`) and nothing in its
/// title or description says it changes anything.
fn changes_nothing(task: &TaskSpec) -> bool {
    let words = crate::text::lower_words;
    let title = words(&task.title);
    let id = words(task.id.as_str());
    let Some(first) = title.first().or(id.first()) else {
        return false;
    };
    if !LOOK_VERBS.contains(&first.as_str()) {
        return false;
    }
    let is_change = |word: &String| {
        CHANGE_VERBS.iter().any(|verb| {
            word == verb
                || word.strip_prefix(verb).is_some_and(|rest| {
                    ["s", "es", "d", "ed", "ing", "ding", "ting"].contains(&rest)
                })
                || word
                    .strip_suffix("ing")
                    .is_some_and(|stem| format!("{stem}e") == *verb)
        })
    };
    // "Check if the new content is added": a change said of what is
    // checked, not done (measured: a 1.5B planner's last task).
    let changes = |text: &[String]| {
        text.iter()
            .enumerate()
            .any(|(i, word)| is_change(word) && !(i > 0 && PASSIVE.contains(&text[i - 1].as_str())))
    };
    !changes(&title) && !changes(&words(&task.description))
}

/// Words before a verb that make it something checked, not done.
const PASSIVE: &[&str] = &["is", "are", "was", "were", "been", "be", "being"];

#[cfg(test)]
mod tests {
    use super::*;

    /// The small profile's check of `plan`, with no one-task suggestion.
    fn small_check(plan: &Value) -> Result<(), String> {
        let check = PlanCheck::ChangesOnly {
            one_task: None,
            offered: Arc::default(),
        };
        (blueprint_tool(32, check).check)(plan)
    }

    fn standard_check(plan: &Value) -> Result<(), String> {
        (blueprint_tool(32, PlanCheck::Standard).check)(plan)
    }

    #[test]
    fn blueprint_tool_reports_every_issue() {
        let tool = blueprint_tool(32, PlanCheck::Standard);
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
    fn a_short_requirement_naming_a_file_is_suggested_as_one_valid_task() {
        let files = [
            "README.md".to_owned(),
            "docs/guide.md".to_owned(),
            "src".to_owned(),
        ];
        let plan = one_task_plan(
            "Add the line 'Hi.' to README.md and docs/guide.md.\n",
            &files,
        )
        .expect("a plan");
        let blueprint: Blueprint = serde_json::from_value(plan.clone()).expect("a blueprint");
        assert!(blueprint.validate(32).is_empty());
        assert_eq!(blueprint.tasks[0].paths, ["README.md", "docs/guide.md"]);
        assert!(!changes_nothing(&blueprint.tasks[0]));
        // The suggestion rides on the refusal of a plan that only looks.
        let looking = json!({"title": "x", "tasks": [
            {"id": "read", "title": "Read README.md", "description": "Read it."}
        ]});
        let offered = Arc::new(AtomicBool::new(false));
        let tool = blueprint_tool(
            32,
            PlanCheck::ChangesOnly {
                one_task: Some(plan.clone()),
                offered: offered.clone(),
            },
        );
        let refusal = (tool.check)(&looking).unwrap_err();
        assert!(offered.load(Ordering::Relaxed));
        let shown: Value = refusal
            .lines()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
            .expect("the plan on a line of its own");
        assert_eq!(shown, plan);
        // Too long to be one change, or naming no file: none.
        assert!(one_task_plan(&"Add README.md. ".repeat(50), &files).is_none());
        assert!(one_task_plan("Make it faster.", &files).is_none());
    }

    #[test]
    fn the_small_profile_refuses_tasks_that_only_look() {
        let task = |id: &str, title: &str, description: &str| json!({"id": id, "title": title, "description": description});
        // As measured (f2, s1): reading as a task of its own.
        let plan = json!({"title": "x", "tasks": [
            task("read_file_1", "Read README.md", "Read the README.md file."),
            task("check_file_1", "Check the file", ""),
            task("write_file_1", "Write the line", "Append the line to README.md."),
            // As measured (1.5B, stock template): a check of what another
            // task adds; and a check that also fixes what it finds.
            task(
                "check_new_content",
                "Check new content in README.md",
                "Check if the new content is added to the README.md file."
            ),
            task("check_fix", "Check the heading", "and fix it if it is wrong."),
        ]});
        let looking: Vec<bool> = plan["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| changes_nothing(&serde_json::from_value(t.clone()).unwrap()))
            .collect();
        assert_eq!(looking, [true, true, false, true, false]);
        // Accepted (the looking tasks are dropped after), unless no task
        // is left.
        assert!(small_check(&plan).is_ok());
        let only_looks = json!({"title": "x", "tasks": [
            task("read_file_1", "Read README.md", "Read the README.md file."),
        ]});
        assert!(small_check(&only_looks).is_err());
        // The standard profile keeps its planner's judgement.
        assert!(standard_check(&only_looks).is_ok());
        // As measured (f3): the reading task depends on itself, or on a
        // task that does not exist; the small profile mends both.
        let mut looping = task("read_file_1", "Read README.md", "Read the README.md file.");
        looping["depends_on"] = json!(["read_file_1", "read_file"]);
        let mut append = task("append_hello", "Append the line", "Append it to README.md.");
        append["depends_on"] = json!(["read_file_1", "nowhere"]);
        let plan = json!({"title": "x", "tasks": [looping, append]});
        assert!(standard_check(&plan).is_err());
        assert!(small_check(&plan).is_ok());
        let (mended, notes) = mend(serde_json::from_value(plan).unwrap());
        assert_eq!(mended.tasks.len(), 1);
        assert!(mended.tasks[0].depends_on.is_empty());
        assert_eq!(notes.len(), 3, "{notes:?}");
        // As measured: two tasks under one id.
        let twice = json!({"title": "x", "tasks": [
            task("add-1", "Add the line", "Append it to README.md."),
            task("add-1", "Write the file", "Write README.md."),
        ]});
        assert!(small_check(&twice).is_ok());
        let (mended, _) = mend(serde_json::from_value(twice).unwrap());
        let ids: Vec<&str> = mended.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["add-1", "add-1-2"]);
        // Tasks that change something, whatever they begin with.
        let plan = json!({"title": "x", "tasks": [
            task("a", "Add a line to README.md", ""),
            task("b", "Check the parser and fix the overflow", ""),
            task("c", "Review docs", "Updating the install section."),
            task("d", "Docs", "x"),
            task("readme", "README: the new line", "x"),
        ]});
        assert!(small_check(&plan).is_ok());
    }
}
