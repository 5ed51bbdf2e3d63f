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
    /// Not over: `checks` rounds of tests were run on the base commit so
    /// far (each that passed sent the tester back).
    Waiting { checks: u32 },
    /// Over; the coder works. Without tests, the task has none of a tester's
    /// (none was wanted, or it failed, or it wrote nothing).
    Done { tests: Option<TesterTests> },
}

impl Default for TesterStep {
    fn default() -> Self {
        TesterStep::Waiting { checks: 0 }
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

    /// The tests were run on the base commit once more.
    pub fn checked(&mut self, round: u32) {
        if let TesterStep::Waiting { checks } = self {
            *checks = (*checks).max(round);
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
        step.checked(1);
        step.checked(2);
        assert_eq!(step, TesterStep::Waiting { checks: 2 });
        step = TesterStep::Done {
            tests: Some(TesterTests {
                commit: "c".into(),
                files: vec!["tests/t.sh".into()],
                failed_on_base: true,
            }),
        };
        step.checked(3);
        assert!(step.is_done());
        assert_eq!(step.locked_files(), ["tests/t.sh".to_owned()]);
        assert!(
            TesterStep::Done { tests: None }
                .locked_files()
                .is_empty()
        );
    }
}
