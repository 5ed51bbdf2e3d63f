//! Dedicated test agents: which tasks get a tester, and where a task's
//! tester step stands. A tester writes a task's acceptance tests from the
//! task alone, before the coder starts; its tests must fail on the base
//! commit, are committed on the task branch, and are read-only for the coder.
//! The pipeline runs the step; this module holds its rules, without IO.

use serde::{Deserialize, Serialize};

/// Which tasks get a tester (`run.test_agents`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestAgents {
    /// Every task.
    All,
    /// Tasks whose declared paths the policy would hold at the gate.
    Gated,
    /// None.
    Off,
}

impl TestAgents {
    /// What runs stored before testers existed had.
    pub fn stored_default() -> Self {
        TestAgents::Off
    }

    /// Whether a task gets a tester, given whether the policy gates its
    /// declared paths.
    pub fn wants(self, gated: bool) -> bool {
        match self {
            TestAgents::All => true,
            TestAgents::Gated => gated,
            TestAgents::Off => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TestAgents::All => "all",
            TestAgents::Gated => "gated",
            TestAgents::Off => "off",
        }
    }
}

/// The tester's tests as committed on the task branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TesterTests {
    /// The commit on the task branch that adds them; the coder starts on it.
    pub commit: String,
    /// The files the tester added: the coder may not change them.
    pub files: Vec<String>,
    /// They failed on the base commit, as tests of new behaviour must. False
    /// when they still passed after the tester's last round (kept, warned).
    pub failed_on_base: bool,
}

/// Where a task's tester step stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TesterStep {
    /// Not over: the tester was sent back `sent_back` times, its tests
    /// passing on the base commit. Its next (or interrupted) round is the
    /// one after: a round whose tests failed there, as they should, but
    /// were not committed before a crash is done again, not skipped.
    Waiting { sent_back: u32 },
    /// Over; the coder works. Without tests, the task has none of a tester's
    /// (none was wanted, or it failed, or it wrote nothing).
    Done { tests: Option<TesterTests> },
}

impl Default for TesterStep {
    fn default() -> Self {
        TesterStep::Waiting { sent_back: 0 }
    }
}

impl TesterStep {
    pub fn is_done(&self) -> bool {
        matches!(self, TesterStep::Done { .. })
    }

    pub fn tests(&self) -> Option<&TesterTests> {
        match self {
            TesterStep::Done { tests } => tests.as_ref(),
            TesterStep::Waiting { .. } => None,
        }
    }

    /// Files the coder's tools refuse to write.
    pub fn locked_files(&self) -> &[String] {
        self.tests().map(|t| t.files.as_slice()).unwrap_or_default()
    }

    /// The tester's current round, from 1, while the step is not over.
    pub fn round(&self) -> Option<u32> {
        match self {
            TesterStep::Waiting { sent_back } => Some(sent_back + 1),
            TesterStep::Done { .. } => None,
        }
    }

    /// The tests of `round` ran on the base commit; passing, they send the
    /// tester back.
    pub fn checked(&mut self, round: u32, failed: bool) {
        if let TesterStep::Waiting { sent_back } = self
            && !failed
        {
            *sent_back = (*sent_back).max(round);
        }
    }
}

/// What the tester is told when its tests passed on the base commit.
pub fn passed_on_base_feedback(command: &str, output: &str) -> String {
    format!(
        "Your tests PASSED on the base commit, where the task is not done yet, so they prove \
         nothing. Make them exercise the behaviour the task adds, so that they fail now and pass \
         once the task is done. You may rewrite your own files. `{command}` printed:\n{output}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{
        BlueprintAccepted, RunStarted, TaskStateChanged, TesterDone, TestsOnBase, WorktreeCreated,
    };
    use crate::domain::{
        Blueprint, Event, EventKind, RunId, RunSettings, RunState, TaskSpec, TaskState,
    };

    /// A run with one task `a`, its worktree at `base`, coding.
    fn running() -> Vec<Event> {
        let spec = TaskSpec {
            id: "a".into(),
            title: "a".into(),
            description: String::new(),
            acceptance: vec![],
            paths: vec!["src/a.rs".into()],
            depends_on: vec![],
        };
        let kinds = [
            EventKind::RunStarted(RunStarted {
                requirement: "r".into(),
                repo: "/repo".into(),
                mainline: "main".into(),
                base_commit: "base".into(),
                settings: RunSettings::default(),
            }),
            EventKind::BlueprintAccepted(BlueprintAccepted {
                blueprint: Blueprint {
                    title: "b".into(),
                    tasks: vec![spec],
                },
            }),
            EventKind::TaskStateChanged(TaskStateChanged {
                task: "a".into(),
                from: TaskState::Pending,
                to: TaskState::Ready,
                reason: None,
            }),
            EventKind::TaskStateChanged(TaskStateChanged {
                task: "a".into(),
                from: TaskState::Ready,
                to: TaskState::Running,
                reason: None,
            }),
            EventKind::WorktreeCreated(WorktreeCreated {
                task: "a".into(),
                branch: "memofab/r/a".into(),
                path: "/wt/a".into(),
                base_commit: "base".into(),
            }),
        ];
        kinds.into_iter().map(event).collect()
    }

    fn event(kind: EventKind) -> Event {
        Event {
            run: RunId::from("r"),
            seq: 0,
            at_ms: 0,
            kind,
        }
    }

    fn fold(mut events: Vec<Event>) -> RunState {
        for (i, e) in events.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
        }
        RunState::fold(&events).unwrap().unwrap()
    }

    fn on_base(round: u32, failed: bool) -> Event {
        event(EventKind::TestsOnBase(TestsOnBase {
            task: "a".into(),
            round,
            files: vec!["tests/a.rs".into()],
            command: "cargo test".into(),
            exit_code: Some(i32::from(failed)),
            failed,
            duration_ms: 1,
            output: String::new(),
        }))
    }

    #[test]
    fn the_fold_counts_rounds_then_locks_the_committed_tests() {
        let mut events = running();
        events.push(on_base(1, false));
        events.push(on_base(2, true));
        let state = fold(events.clone());
        let a = state.task(&"a".into()).unwrap();
        assert_eq!(a.tester, TesterStep::Waiting { sent_back: 1 });
        assert_eq!(a.tester.round(), Some(2));
        assert_eq!(a.state, TaskState::Running, "the tester works in `running`");
        assert_eq!(a.attempt, 1, "a tester round is not a coding attempt");

        let tests = TesterTests {
            commit: "tests".into(),
            files: vec!["tests/a.rs".into()],
            failed_on_base: true,
        };
        events.push(event(EventKind::TesterDone(TesterDone {
            task: "a".into(),
            tests: Some(tests.clone()),
        })));
        let state = fold(events);
        let a = state.task(&"a".into()).unwrap();
        assert_eq!(a.tester.tests(), Some(&tests));
        assert_eq!(a.tester.locked_files(), ["tests/a.rs".to_owned()]);
        // The coder starts on the tester's commit; the tests are in the
        // task's write-set.
        assert_eq!(a.head_commit.as_deref(), Some("tests"));
        assert!(a.observed_writes.contains("tests/a.rs"));
    }

    #[test]
    fn a_task_without_tests_goes_on_from_the_base_commit() {
        let mut events = running();
        events.push(event(EventKind::TesterDone(TesterDone {
            task: "a".into(),
            tests: None,
        })));
        let state = fold(events);
        let a = state.task(&"a".into()).unwrap();
        assert!(a.tester.is_done());
        assert!(a.tester.locked_files().is_empty());
        assert_eq!(a.head_commit.as_deref(), Some("base"));
    }

    #[test]
    fn events_name_their_task_and_round_trip() {
        let done = EventKind::TesterDone(TesterDone {
            task: "a".into(),
            tests: None,
        });
        assert_eq!(done.name(), "tester_done");
        assert_eq!(on_base(1, true).kind.name(), "tests_on_base");
        assert_eq!(on_base(1, true).kind.task().map(|t| t.as_str()), Some("a"));
        let json = serde_json::to_string(&done).unwrap();
        assert!(!json.contains("tests\""), "{json}");
        assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), done);
        // Runs stored before testers existed had none.
        let mut settings = serde_json::to_value(RunSettings::default()).unwrap();
        settings.as_object_mut().unwrap().remove("test_agents");
        let old: RunSettings = serde_json::from_value(settings).unwrap();
        assert_eq!(old.test_agents, TestAgents::Off);
    }

    #[test]
    fn modes_pick_tasks() {
        assert!(TestAgents::All.wants(false));
        assert!(TestAgents::Gated.wants(true));
        assert!(!TestAgents::Gated.wants(false));
        assert!(!TestAgents::Off.wants(true));
        let parsed: TestAgents = serde_json::from_str("\"gated\"").unwrap();
        assert_eq!(parsed, TestAgents::Gated);
        assert_eq!(TestAgents::stored_default(), TestAgents::Off);
    }

    #[test]
    fn checks_count_up_until_done_and_only_done_tests_lock() {
        let mut step = TesterStep::default();
        assert!(step.locked_files().is_empty());
        assert_eq!(step.round(), Some(1));
        step.checked(1, false);
        assert_eq!(step.round(), Some(2));
        // Failing on base is what is wanted: until the tests are committed,
        // the same round stands (a crash repeats it).
        step.checked(2, true);
        assert_eq!(step, TesterStep::Waiting { sent_back: 1 });
        step = TesterStep::Done {
            tests: Some(TesterTests {
                commit: "c".into(),
                files: vec!["tests/t.sh".into()],
                failed_on_base: true,
            }),
        };
        step.checked(3, false);
        assert!(step.is_done());
        assert_eq!(step.round(), None);
        assert_eq!(step.locked_files(), ["tests/t.sh".to_owned()]);
        assert!(TesterStep::Done { tests: None }.locked_files().is_empty());
    }
}
