//! Merge policy: which paths an agent may change, and which changes wait for a
//! human at the gate. Rules are globs over repository-relative paths; the
//! most restrictive matching rule wins, so adding a rule can only tighten.
//! Optional sections gate on more than paths: the size of a change, the
//! recent history of the paths it touches, and deleted tests (evaluated in
//! `domain::risk`). Each can only add reasons to hold a change, never merge
//! one a path rule holds.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// How risky it is to change a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Merge as soon as review and tests pass.
    Auto,
    /// Hold at the gate until a human approves.
    Approve,
    /// Agents may not write here at all.
    Deny,
}

/// Paths that hold the factory's own definitions. Always `deny` for agents,
/// whatever the policy file says.
pub const PROTECTED_GLOBS: [&str; 4] = [".memofab", ".memofab/**", "prompts", "prompts/**"];

// Unknown keys are refused: a misspelt `reason` or `[[rules]]` would
// otherwise drop a rule silently and merge what it meant to hold back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    pub paths: Vec<String>,
    pub risk: Risk,
    #[serde(default)]
    pub reason: String,
}

/// The policy file's shape (`.memofab/policy.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default, rename = "rule")]
    pub rules: Vec<PolicyRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blast_radius: Option<BlastRadius>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestsRule>,
}

/// `[blast_radius]`: a change larger than this waits at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlastRadius {
    /// Files changed, added or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<usize>,
    /// Lines added plus lines removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lines: Option<usize>,
}

/// `[history]`: a change to a path that had more than `max_incidents`
/// incidents (conflicts, failed merge verifications, reverts, reworks) in
/// the last `runs` runs waits at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRule {
    #[serde(default = "default_history_runs")]
    pub runs: usize,
    pub max_incidents: u32,
}

fn default_history_runs() -> usize {
    10
}

/// `[tests]`: a change that deletes a test file waits at the gate. The
/// section turns the rule on; `gate_deletions = false` keeps it off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestsRule {
    #[serde(default = "yes")]
    pub gate_deletions: bool,
    /// Globs that name test files.
    #[serde(default = "default_test_globs")]
    pub paths: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Where tests usually live, across the common languages.
pub const DEFAULT_TEST_GLOBS: [&str; 7] = [
    "tests/**",
    "test/**",
    "**/*_test.*",
    "**/test_*.*",
    "**/*.test.*",
    "**/*_spec.*",
    "**/*.spec.*",
];

fn default_test_globs() -> Vec<String> {
    DEFAULT_TEST_GLOBS.iter().map(|g| (*g).to_owned()).collect()
}

impl Default for TestsRule {
    fn default() -> Self {
        Self {
            gate_deletions: true,
            paths: default_test_globs(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("policy glob {glob:?} is invalid: {source}")]
pub struct PolicyError {
    glob: String,
    source: globset::Error,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<(PolicyRule, GlobSet)>,
    blast_radius: Option<BlastRadius>,
    history: Option<HistoryRule>,
    /// Test files, when deleting one gates the change.
    tests: Option<GlobSet>,
}

/// The verdict for a set of paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub risk: Risk,
    /// Why, naming the path and rule that decided it.
    pub reason: String,
}

impl Policy {
    pub fn new(file: &PolicyFile) -> Result<Self, PolicyError> {
        let protected = PolicyRule {
            paths: PROTECTED_GLOBS.iter().map(|g| (*g).to_owned()).collect(),
            risk: Risk::Deny,
            reason: "factory definitions are never changed by agents".into(),
        };
        let rules = std::iter::once(&protected)
            .chain(&file.rules)
            .map(|rule| Ok((rule.clone(), compile(&rule.paths)?)))
            .collect::<Result<_, PolicyError>>()?;
        let tests = match &file.tests {
            Some(t) if t.gate_deletions => Some(compile(&t.paths)?),
            _ => None,
        };
        Ok(Self {
            rules,
            blast_radius: file.blast_radius,
            history: file.history,
            tests,
        })
    }

    /// The policy with only the built-in protections.
    pub fn protected_only() -> Self {
        // The built-in globs are constants known to compile.
        Self::new(&PolicyFile::default()).unwrap_or(Self {
            rules: Vec::new(),
            blast_radius: None,
            history: None,
            tests: None,
        })
    }

    pub fn blast_radius(&self) -> Option<BlastRadius> {
        self.blast_radius
    }

    /// The history rule, if the policy has one: the engine reads the
    /// store's recent runs only then.
    pub fn history(&self) -> Option<HistoryRule> {
        self.history
    }

    /// Whether deleting `path` deletes a test the policy guards.
    pub fn is_guarded_test(&self, path: &str) -> bool {
        self.tests
            .as_ref()
            .is_some_and(|set| set.is_match(path.trim_start_matches("./")))
    }

    /// The risk of changing one path.
    pub fn risk_of(&self, path: &str) -> Assessment {
        let path = path.trim_start_matches("./");
        let mut verdict = Assessment {
            risk: Risk::Auto,
            reason: String::new(),
        };
        for (rule, set) in &self.rules {
            if rule.risk > verdict.risk && set.is_match(path) {
                verdict = Assessment {
                    risk: rule.risk,
                    reason: format!("{path}: {}", rule.reason),
                };
            }
        }
        verdict
    }

    /// The risk of a change touching all of `paths`: the worst of them.
    pub fn assess<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> Assessment {
        paths
            .into_iter()
            .map(|p| self.risk_of(p))
            .max_by_key(|a| a.risk)
            .unwrap_or(Assessment {
                risk: Risk::Auto,
                reason: String::new(),
            })
    }
}

fn compile(globs: &[String]) -> Result<GlobSet, PolicyError> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        let compiled = Glob::new(glob).map_err(|source| PolicyError {
            glob: glob.clone(),
            source,
        })?;
        builder.add(compiled);
    }
    builder.build().map_err(|source| PolicyError {
        glob: globs.join(", "),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let file: PolicyFile = toml::from_str(
            r#"
            [[rule]]
            paths = ["migrations/**", "Cargo.toml"]
            risk = "approve"
            reason = "schema and dependency changes need a human"

            [[rule]]
            paths = ["secrets/**"]
            risk = "deny"
            reason = "no agent touches secrets"
            "#,
        )
        .unwrap();
        Policy::new(&file).unwrap()
    }

    #[test]
    fn factory_definitions_are_always_denied() {
        let p = Policy::protected_only();
        assert_eq!(p.risk_of(".memofab/policy.toml").risk, Risk::Deny);
        assert_eq!(p.risk_of("prompts/coder.md").risk, Risk::Deny);
        assert_eq!(p.risk_of("./prompts/coder.md").risk, Risk::Deny);
        assert_eq!(p.risk_of("src/prompts.rs").risk, Risk::Auto);
    }

    #[test]
    fn most_restrictive_rule_wins() {
        let p = policy();
        assert_eq!(p.risk_of("src/lib.rs").risk, Risk::Auto);
        assert_eq!(p.risk_of("Cargo.toml").risk, Risk::Approve);
        let a = p.assess(["src/a.rs", "migrations/001.sql", "secrets/key"]);
        assert_eq!(a.risk, Risk::Deny);
        assert!(a.reason.contains("secrets/key"));
        assert_eq!(
            p.assess(["src/a.rs", "migrations/1.sql"]).risk,
            Risk::Approve
        );
    }

    #[test]
    fn misspelt_tables_and_keys_are_refused() {
        for text in [
            "[[rules]]\npaths = [\"secrets/**\"]\nrisk = \"deny\"\n",
            "[[rule]]\npaths = [\"secrets/**\"]\nrisk = \"deny\"\nreasn = \"x\"\n",
        ] {
            assert!(toml::from_str::<PolicyFile>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn invalid_glob_is_a_clear_error() {
        let file = PolicyFile {
            rules: vec![PolicyRule {
                paths: vec!["a/[".into()],
                risk: Risk::Approve,
                reason: String::new(),
            }],
            ..PolicyFile::default()
        };
        let err = Policy::new(&file).unwrap_err();
        assert!(err.to_string().contains("a/["));
        let file = PolicyFile {
            tests: Some(TestsRule {
                gate_deletions: true,
                paths: vec!["t/[".into()],
            }),
            ..PolicyFile::default()
        };
        assert!(Policy::new(&file).unwrap_err().to_string().contains("t/["));
    }

    #[test]
    fn risk_sections_parse_with_defaults() {
        let file: PolicyFile = toml::from_str(
            "[blast_radius]\nmax_files = 20\n[history]\nmax_incidents = 3\n[tests]\n",
        )
        .unwrap();
        assert_eq!(
            file.blast_radius,
            Some(BlastRadius {
                max_files: Some(20),
                max_lines: None
            })
        );
        assert_eq!(
            file.history.map(|h| (h.runs, h.max_incidents)),
            Some((10, 3))
        );
        let p = Policy::new(&file).unwrap();
        for test in [
            "tests/a.rs",
            "src/db_test.go",
            "pkg/test_db.py",
            "web/app.test.ts",
            "spec/models/user_spec.rb",
            "a_test.rs",
        ] {
            assert!(p.is_guarded_test(test), "{test}");
        }
        for plain in ["src/db.rs", "src/testing.rs", "latest.txt"] {
            assert!(!p.is_guarded_test(plain), "{plain}");
        }
        let off: PolicyFile = toml::from_str("[tests]\ngate_deletions = false\n").unwrap();
        assert!(!Policy::new(&off).unwrap().is_guarded_test("tests/a.rs"));
        assert!(!Policy::protected_only().is_guarded_test("tests/a.rs"));
    }

    #[test]
    fn misspelt_risk_keys_are_refused() {
        for text in [
            "[blast_radius]\nmax_file = 20\n",
            "[history]\nmax_incident = 3\n",
            "[history]\nruns = 5\n",
            "[tests]\ngate_deletion = true\n",
            "[blast]\nmax_files = 1\n",
        ] {
            assert!(toml::from_str::<PolicyFile>(text).is_err(), "{text}");
        }
    }
}
