//! A blueprint is the planner's output: a DAG of tasks. Validation here is the
//! gate between an LLM's proposal and the orchestrator; every problem is
//! reported at once so the planner can fix them all in one revision.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::TaskId;

/// Default cap on tasks per blueprint.
pub const DEFAULT_MAX_TASKS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blueprint {
    /// One line naming what the run delivers.
    #[serde(default)]
    pub title: String,
    pub tasks: Vec<TaskSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: TaskId,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// What the reviewer checks before accepting the change.
    #[serde(default)]
    pub acceptance: Vec<String>,
    /// Paths or globs the task expects to touch, relative to the repo root.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<TaskId>,
}

/// One thing wrong with a blueprint, phrased for the planner to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlueprintIssue {
    NoTasks,
    TooManyTasks { count: usize, max: usize },
    InvalidId(String),
    DuplicateId(TaskId),
    EmptyTitle(TaskId),
    UnknownDependency { task: TaskId, dependency: TaskId },
    SelfDependency(TaskId),
    Cycle(Vec<TaskId>),
    PathOutsideRepo { task: TaskId, path: String },
}

impl fmt::Display for BlueprintIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlueprintIssue::NoTasks => write!(f, "the blueprint has no tasks"),
            BlueprintIssue::TooManyTasks { count, max } => {
                write!(
                    f,
                    "the blueprint has {count} tasks; at most {max} are allowed"
                )
            }
            BlueprintIssue::InvalidId(id) => write!(
                f,
                "task id {id:?} is invalid: use 1-40 characters from a-z, 0-9, '-' and '_'"
            ),
            BlueprintIssue::DuplicateId(id) => write!(f, "task id {id} is used more than once"),
            BlueprintIssue::EmptyTitle(id) => write!(f, "task {id} has an empty title"),
            BlueprintIssue::UnknownDependency { task, dependency } => {
                write!(f, "task {task} depends on unknown task {dependency}")
            }
            BlueprintIssue::SelfDependency(id) => write!(f, "task {id} depends on itself"),
            BlueprintIssue::Cycle(ids) => {
                let names: Vec<&str> = ids.iter().map(TaskId::as_str).collect();
                write!(f, "dependency cycle: {}", names.join(" -> "))
            }
            BlueprintIssue::PathOutsideRepo { task, path } => write!(
                f,
                "task {task} names path {path:?}, which is not a relative path inside the repository"
            ),
        }
    }
}

impl Blueprint {
    pub fn task(&self, id: &TaskId) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| &t.id == id)
    }

    /// The blueprint less the `dropped` tasks; a task that depended on one
    /// depends on what it depended on instead, so the order still holds.
    pub fn without(&self, dropped: &BTreeSet<TaskId>) -> Blueprint {
        let mut tasks = Vec::with_capacity(self.tasks.len());
        for task in self.tasks.iter().filter(|t| !dropped.contains(&t.id)) {
            let mut depends_on = Vec::new();
            let mut pending: Vec<&TaskId> = task.depends_on.iter().rev().collect();
            let mut visited = BTreeSet::new();
            while let Some(dep) = pending.pop() {
                if !visited.insert(dep) {
                    continue;
                }
                if dropped.contains(dep) {
                    if let Some(gone) = self.task(dep) {
                        pending.extend(gone.depends_on.iter().rev());
                    }
                } else if !depends_on.contains(dep) {
                    depends_on.push(dep.clone());
                }
            }
            tasks.push(TaskSpec {
                depends_on,
                ..task.clone()
            });
        }
        Blueprint {
            tasks,
            ..self.clone()
        }
    }

    /// Checks the blueprint; returns every issue found, or none.
    pub fn validate(&self, max_tasks: usize) -> Vec<BlueprintIssue> {
        let mut issues = Vec::new();
        if self.tasks.is_empty() {
            issues.push(BlueprintIssue::NoTasks);
        }
        if self.tasks.len() > max_tasks {
            // The rest of the checks would only drown this one.
            issues.push(BlueprintIssue::TooManyTasks {
                count: self.tasks.len(),
                max: max_tasks,
            });
            return issues;
        }
        let mut seen = BTreeSet::new();
        for task in &self.tasks {
            if !is_valid_id(task.id.as_str()) {
                issues.push(BlueprintIssue::InvalidId(task.id.0.clone()));
            }
            if !seen.insert(&task.id) {
                issues.push(BlueprintIssue::DuplicateId(task.id.clone()));
            }
            if task.title.trim().is_empty() {
                issues.push(BlueprintIssue::EmptyTitle(task.id.clone()));
            }
            for path in &task.paths {
                if !is_repo_relative(path) {
                    issues.push(BlueprintIssue::PathOutsideRepo {
                        task: task.id.clone(),
                        path: path.clone(),
                    });
                }
            }
        }
        for task in &self.tasks {
            for dep in &task.depends_on {
                if dep == &task.id {
                    issues.push(BlueprintIssue::SelfDependency(task.id.clone()));
                } else if !seen.contains(dep) {
                    issues.push(BlueprintIssue::UnknownDependency {
                        task: task.id.clone(),
                        dependency: dep.clone(),
                    });
                }
            }
        }
        if let Some(cycle) = self.find_cycle() {
            issues.push(BlueprintIssue::Cycle(cycle));
        }
        issues
    }

    /// Task ids in an order where every task comes after its dependencies,
    /// ties broken by blueprint order. `None` if there is a cycle.
    pub fn topo_order(&self) -> Option<Vec<TaskId>> {
        let index: HashMap<&TaskId, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (&t.id, i))
            .collect();
        let mut indegree = vec![0usize; self.tasks.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); self.tasks.len()];
        for (i, task) in self.tasks.iter().enumerate() {
            for dep in &task.depends_on {
                if let Some(&d) = index.get(dep)
                    && d != i
                {
                    indegree[i] += 1;
                    dependents[d].push(i);
                }
            }
        }
        let mut ready: BTreeSet<usize> = (0..self.tasks.len())
            .filter(|&i| indegree[i] == 0)
            .collect();
        let mut order = Vec::with_capacity(self.tasks.len());
        while let Some(i) = ready.pop_first() {
            order.push(self.tasks[i].id.clone());
            for &n in &dependents[i] {
                indegree[n] -= 1;
                if indegree[n] == 0 {
                    ready.insert(n);
                }
            }
        }
        (order.len() == self.tasks.len()).then_some(order)
    }

    /// Finds one dependency cycle, returned as a closed path (first id repeated last).
    fn find_cycle(&self) -> Option<Vec<TaskId>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnStack,
            Done,
        }
        let deps: BTreeMap<&TaskId, &Vec<TaskId>> =
            self.tasks.iter().map(|t| (&t.id, &t.depends_on)).collect();
        let mut marks: HashMap<&TaskId, Mark> = deps.keys().map(|k| (*k, Mark::New)).collect();
        // Iterative DFS so a hostile 1,000-task chain cannot overflow the stack.
        for &start in deps.keys() {
            if marks[start] != Mark::New {
                continue;
            }
            let mut stack: Vec<(&TaskId, usize)> = vec![(start, 0)];
            marks.insert(start, Mark::OnStack);
            while let Some((node, next)) = stack.last_mut() {
                let node_deps = deps.get(node).map(|d| d.as_slice()).unwrap_or(&[]);
                if let Some(dep) = node_deps.get(*next) {
                    *next += 1;
                    match marks.get(dep).copied() {
                        Some(Mark::New) => {
                            marks.insert(dep, Mark::OnStack);
                            stack.push((dep, 0));
                        }
                        Some(Mark::OnStack) if dep != *node => {
                            let from = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                            let mut cycle: Vec<TaskId> =
                                stack[from..].iter().map(|(n, _)| (*n).clone()).collect();
                            cycle.push(dep.clone());
                            return Some(cycle);
                        }
                        _ => {}
                    }
                } else {
                    let (done, _) = *stack.last()?;
                    marks.insert(done, Mark::Done);
                    stack.pop();
                }
            }
        }
        None
    }
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 40
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A path or glob that stays inside the repository: relative, no `..` segment.
pub fn is_repo_relative(path: &str) -> bool {
    let trimmed = path.trim();
    !trimmed.is_empty()
        && !trimmed.starts_with('/')
        && !trimmed.starts_with('\\')
        && !trimmed.contains(':')
        && trimmed.split(['/', '\\']).all(|seg| seg != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, deps: &[&str]) -> TaskSpec {
        TaskSpec {
            id: TaskId::from(id),
            title: format!("task {id}"),
            description: String::new(),
            acceptance: vec![],
            paths: vec![],
            depends_on: deps.iter().map(|d| TaskId::from(*d)).collect(),
        }
    }

    fn bp(tasks: Vec<TaskSpec>) -> Blueprint {
        Blueprint {
            title: "t".into(),
            tasks,
        }
    }

    #[test]
    fn dropping_tasks_hands_their_dependencies_on() {
        // read -> open -> add -> check -> doc; read and check are dropped.
        let b = bp(vec![
            task("read", &[]),
            task("open", &["read"]),
            task("add", &["open", "read"]),
            task("check", &["add"]),
            task("doc", &["check", "add"]),
        ]);
        let dropped = ["read", "check"].map(TaskId::from).into_iter().collect();
        let kept = b.without(&dropped);
        let deps: Vec<(&str, Vec<&str>)> = kept
            .tasks
            .iter()
            .map(|t| {
                (
                    t.id.as_str(),
                    t.depends_on.iter().map(TaskId::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            deps,
            [
                ("open", vec![]),
                ("add", vec!["open"]),
                ("doc", vec!["add"])
            ]
        );
        assert!(kept.validate(DEFAULT_MAX_TASKS).is_empty());
    }

    #[test]
    fn diamond_is_valid_and_ordered() {
        let b = bp(vec![
            task("d", &["b", "c"]),
            task("b", &["a"]),
            task("c", &["a"]),
            task("a", &[]),
        ]);
        assert!(b.validate(DEFAULT_MAX_TASKS).is_empty());
        let order: Vec<String> = b.topo_order().unwrap().into_iter().map(|t| t.0).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }

    #[test]
    fn cycle_is_reported_with_its_path() {
        let b = bp(vec![
            task("a", &["c"]),
            task("b", &["a"]),
            task("c", &["b"]),
        ]);
        let issues = b.validate(DEFAULT_MAX_TASKS);
        let cycle = issues
            .iter()
            .find_map(|i| match i {
                BlueprintIssue::Cycle(c) => Some(c.clone()),
                _ => None,
            })
            .expect("cycle found");
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
        assert!(b.topo_order().is_none());
    }

    #[test]
    fn unknown_and_self_dependencies_are_reported() {
        let b = bp(vec![task("a", &["zzz"]), task("b", &["b"])]);
        let issues = b.validate(DEFAULT_MAX_TASKS);
        assert!(issues.contains(&BlueprintIssue::UnknownDependency {
            task: "a".into(),
            dependency: "zzz".into()
        }));
        assert!(issues.contains(&BlueprintIssue::SelfDependency("b".into())));
    }

    #[test]
    fn too_many_tasks_is_rejected() {
        let tasks = (0..33).map(|i| task(&format!("t{i}"), &[])).collect();
        let issues = bp(tasks).validate(32);
        assert_eq!(
            issues,
            vec![BlueprintIssue::TooManyTasks { count: 33, max: 32 }]
        );
    }

    #[test]
    fn duplicates_empty_titles_bad_ids_and_escaping_paths_are_rejected() {
        let mut bad = task("a", &[]);
        bad.title = "  ".into();
        bad.paths = vec!["../etc/passwd".into(), "/abs".into(), "src/ok.rs".into()];
        let b = bp(vec![bad, task("a", &[]), task("Bad Id", &[])]);
        let issues = b.validate(DEFAULT_MAX_TASKS);
        assert!(issues.contains(&BlueprintIssue::DuplicateId("a".into())));
        assert!(issues.contains(&BlueprintIssue::EmptyTitle("a".into())));
        assert!(issues.contains(&BlueprintIssue::InvalidId("Bad Id".into())));
        let outside = issues
            .iter()
            .filter(|i| matches!(i, BlueprintIssue::PathOutsideRepo { .. }))
            .count();
        assert_eq!(outside, 2);
        assert!(bp(vec![]).validate(32).contains(&BlueprintIssue::NoTasks));
    }

    #[test]
    fn long_chain_does_not_overflow() {
        let tasks: Vec<TaskSpec> = (0..1000)
            .map(|i| {
                let dep = if i == 0 {
                    "t999".to_string()
                } else {
                    format!("t{}", i - 1)
                };
                task(&format!("t{i}"), &[dep.as_str()])
            })
            .collect();
        let b = bp(tasks);
        assert!(b.find_cycle().is_some());
    }
}
