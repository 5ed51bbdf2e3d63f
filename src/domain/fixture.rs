//! A fixed, realistic event sequence for cockpit tests: a six-task diamond
//! with tasks merged, running, in review, at the gate and in conflict.

use super::event::{
    AgentMessage, AgentStarted, BlueprintAccepted, ChangeCommitted, ConflictMarkers, Escalated,
    GateDecision, MergeResult, MergeVerified, RunPhaseChanged, RunStarted, TaskStateChanged,
    TokensUsed, ToolCalled, ToolResult,
};
use super::{
    AgentId, AgentRole, Blueprint, ConflictFile, Event, EventKind, MergeCheck, MergeOutcome,
    MessageAuthor, RunId, RunSettings, TaskSpec, TaskState, TokenUsage,
};

pub struct Fixture {
    pub events: Vec<Event>,
}

impl Fixture {
    fn push(&mut self, kind: EventKind) {
        let seq = self.events.len() as u64 + 1;
        self.events.push(Event {
            run: RunId::from("r20261124-120000-abcd"),
            seq,
            at_ms: 1_795_000_000_000 + seq * 1000,
            kind,
        });
    }

    fn walk(&mut self, task: &str, path: &[TaskState]) {
        for pair in path.windows(2) {
            let reason = (pair[1] == TaskState::AwaitingGate)
                .then(|| "needs approval: README.md: docs are read by a human".to_owned());
            self.push(EventKind::TaskStateChanged(TaskStateChanged {
                task: task.into(),
                from: pair[0],
                to: pair[1],
                reason,
            }));
        }
    }
}

fn spec(id: &str, title: &str, deps: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        title: title.into(),
        description: format!("Do {title}."),
        acceptance: vec!["tests pass".into()],
        // Declared write-sets: stats and title both expect bin/textkit.
        paths: match id {
            "loader" => vec!["bin/textkit".into()],
            "stats" => vec!["lib/stats.sh".into(), "bin/textkit".into()],
            "title" => vec!["lib/title.sh".into(), "bin/textkit".into()],
            "slug" => vec!["lib/slug.sh".into()],
            "json" => vec!["lib/stats.sh".into()],
            _ => vec!["README.md".into()],
        },
        depends_on: deps.iter().map(|d| (*d).into()).collect(),
    }
}

pub const DIFF: &str = "diff --git a/lib/stats.sh b/lib/stats.sh\nnew file mode 100644\n--- /dev/null\n+++ b/lib/stats.sh\n@@ -0,0 +1,3 @@\n+tk_stats() {\n+  wc -l -w -m | awk '{ print $1, $2, $3 }'\n+}\n";

pub fn events() -> Vec<Event> {
    use TaskState::*;
    let mut f = Fixture { events: Vec::new() };
    f.push(EventKind::RunStarted(RunStarted {
        requirement: "Add stats, slugs and docs to textkit.".into(),
        repo: "/repo".into(),
        mainline: "main".into(),
        base_commit: "0000000000".into(),
        settings: RunSettings {
            test_command: Some("sh tests/run.sh".into()),
            ..RunSettings::default()
        },
    }));
    f.push(EventKind::BlueprintAccepted(BlueprintAccepted {
        blueprint: Blueprint {
            title: "Statistics and slugs".into(),
            tasks: vec![
                spec("loader", "Load every module", &[]),
                spec("stats", "stats command", &["loader"]),
                spec("slug", "slug command", &["loader"]),
                spec("title", "Title case", &["loader"]),
                spec("json", "stats --json", &["stats", "slug"]),
                spec("docs", "Document it", &["json", "title"]),
            ],
        },
    }));
    f.push(EventKind::RunPhaseChanged(RunPhaseChanged {
        to: crate::domain::RunPhase::Building,
        reason: None,
    }));
    f.walk(
        "loader",
        &[
            Pending, Ready, Running, Reviewing, Testing, Queued, Merging, Verifying,
        ],
    );
    f.push(verified("loader", "4444444444", true, "all good"));
    f.push(EventKind::MergeResult(MergeResult {
        task: "loader".into(),
        result: MergeOutcome::MergeCommit {
            commit: "4444444444".into(),
        },
    }));
    f.walk("loader", &[Verifying, Merged]);
    for t in ["stats", "slug", "title"] {
        f.walk(t, &[Pending, Ready, Running]);
    }
    let coder = AgentId::for_task(AgentRole::Coder, &"stats".into(), 1);
    f.push(EventKind::AgentStarted(AgentStarted {
        agent: coder.clone(),
        role: AgentRole::Coder,
        task: Some("stats".into()),
        model: "scripted".into(),
    }));
    f.push(EventKind::AgentMessage(AgentMessage {
        agent: coder.clone(),
        from: MessageAuthor::User,
        text: "## Task stats: stats command\nDo stats command.".into(),
    }));
    f.push(EventKind::AgentMessage(AgentMessage {
        agent: coder.clone(),
        from: MessageAuthor::Assistant,
        text: "Reading the dispatch first.".into(),
    }));
    f.push(EventKind::ToolCalled(ToolCalled {
        agent: coder.clone(),
        call_id: "c1".into(),
        tool: "read_file".into(),
        arguments: serde_json::json!({"path": "bin/textkit"}),
    }));
    f.push(EventKind::ToolResult(ToolResult {
        agent: coder.clone(),
        call_id: "c1".into(),
        ok: true,
        output: "#!/bin/sh\nset -eu\ncase \"$cmd\" in".into(),
    }));
    f.push(EventKind::ToolCalled(ToolCalled {
        agent: coder.clone(),
        call_id: "c2".into(),
        tool: "run".into(),
        arguments: serde_json::json!({"command": "sh tests/run.sh"}),
    }));
    f.push(EventKind::ToolResult(ToolResult {
        agent: coder.clone(),
        call_id: "c2".into(),
        ok: false,
        output: "$ sh tests/run.sh\nexit code 1\nFAIL test_stats".into(),
    }));
    f.push(EventKind::TokensUsed(TokensUsed {
        cost_usd: None,
        agent: coder,
        task: Some("stats".into()),
        model: "scripted".into(),
        usage: TokenUsage {
            input: 1200,
            output: 300,
            cached: 0,
            cache_write: 0,
        },
    }));
    f.push(EventKind::ChangeCommitted(ChangeCommitted {
        task: "stats".into(),
        commit: "1111111111".into(),
        files: vec!["lib/stats.sh".into()],
        diff: DIFF.into(),
    }));
    f.walk("stats", &[Running, Reviewing]);
    f.walk("title", &[Running, Reviewing, Testing, Merging]);
    f.push(EventKind::MergeResult(MergeResult {
        task: "title".into(),
        result: MergeOutcome::Conflict {
            files: vec!["bin/textkit".into()],
        },
    }));
    f.walk("title", &[Merging, Running]);
    f.push(EventKind::ConflictMarkers(ConflictMarkers {
        task: "title".into(),
        files: vec![ConflictFile {
            path: "bin/textkit".into(),
            content: "case \"$cmd\" in\n<<<<<<< ours\n  title) tk_title ;;\n=======\n  slug) tk_slug ;;\n>>>>>>> theirs\nesac".into(),
        }],
    }));
    f.walk("title", &[Running, Reviewing, Testing, Merging]);
    f.push(EventKind::Escalated(Escalated {
        task: "title".into(),
        reason: "merge conflicts in bin/textkit remain after 2 rework attempts".into(),
    }));
    f.walk("title", &[Merging, Conflict]);
    f.push(EventKind::ChangeCommitted(ChangeCommitted {
        task: "slug".into(),
        commit: "2222222222".into(),
        files: vec!["README.md".into()],
        diff: "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n # textkit\n+Slugs!\n".into(),
    }));
    f.walk("slug", &[Running, Reviewing, Testing, AwaitingGate]);
    f.events
}

/// The fixture run a little later: `stats` failed verification once (its
/// merge with mainline broke the tests), was reworked and is being verified
/// again; `slug` was approved and waits in the merge queue.
pub fn queue_events() -> Vec<Event> {
    use TaskState::*;
    let mut f = Fixture { events: events() };
    f.walk("stats", &[Reviewing, Testing, Queued, Merging, Verifying]);
    f.push(verified(
        "stats",
        "5555555555",
        false,
        "FAIL test_slug: expected hello-world",
    ));
    f.walk(
        "stats",
        &[
            Verifying, Running, Reviewing, Testing, Queued, Merging, Verifying,
        ],
    );
    f.push(EventKind::GateDecision(GateDecision {
        task: "slug".into(),
        approved: true,
        by: crate::domain::Decider::Earlier("ada".into()),
        feedback: String::new(),
    }));
    f.walk("slug", &[AwaitingGate, Queued]);
    f.events
}

fn verified(task: &str, candidate: &str, passed: bool, output: &str) -> EventKind {
    EventKind::MergeVerified(MergeVerified {
        task: task.into(),
        check: MergeCheck::Verify,
        candidate: candidate.into(),
        onto: "0000000000".into(),
        command: "sh tests/run.sh".into(),
        exit_code: Some(if passed { 0 } else { 1 }),
        passed,
        duration_ms: 40,
        output: output.into(),
    })
}

/// Why the fixture's `stats` fails in [`failed_task_events`]: longer than
/// any pane is wide.
pub const PROVIDER_DOWN: &str = "could not reach the provider: error sending request for url (https://api.example.com/v1/chat/completions): client error (Connect): tcp connect error: Connection refused (os error 111)";

/// The fixture run with `stats` failed: its provider could not be reached.
pub fn failed_task_events() -> Vec<Event> {
    let mut f = Fixture { events: events() };
    f.push(EventKind::TaskStateChanged(TaskStateChanged {
        task: "stats".into(),
        from: TaskState::Reviewing,
        to: TaskState::Failed,
        reason: Some(PROVIDER_DOWN.into()),
    }));
    f.events
}

/// Why the run in [`failed_run_events`] failed.
pub const PLAN_FAILED: &str = "the planner gave no valid blueprint in 3 rounds: dependency cycle: a -> b -> a; task c depends on unknown task d";

/// A run that failed in planning.
pub fn failed_run_events() -> Vec<Event> {
    let mut f = Fixture { events: Vec::new() };
    f.push(EventKind::RunStarted(RunStarted {
        requirement: "Add stats to textkit.".into(),
        repo: "/repo".into(),
        mainline: "main".into(),
        base_commit: "0000000000".into(),
        settings: RunSettings::default(),
    }));
    f.push(EventKind::RunPhaseChanged(RunPhaseChanged {
        to: crate::domain::RunPhase::Failed,
        reason: Some(PLAN_FAILED.into()),
    }));
    f.events
}
