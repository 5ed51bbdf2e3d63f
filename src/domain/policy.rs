//! Merge policy: which paths an agent may change, and which changes wait for a
//! human at the gate. Rules are globs over repository-relative paths; the
//! most restrictive matching rule wins, so adding a rule can only tighten.
//! More sections gate on more than paths (evaluated in `domain::risk`):
//! optionally the size of a change and the recent history of the paths it
//! touches; by default weakened tests, governance paths and large binaries,
//! which the policy can relax. Each can only add reasons to hold a change,
//! never merge one a path rule holds.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use super::gate_reason::GovernanceClass;
use super::governance;

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
    /// On by default: an absent section is the default rule.
    #[serde(default)]
    pub tests: TestsRule,
    #[serde(default)]
    pub governance: GovernanceRule,
    #[serde(default)]
    pub binaries: BinariesRule,
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

/// `[tests]`: a change that weakens the tests waits at the gate: a test
/// file deleted, renamed out of the test paths, or shrunk (more lines
/// removed than added), or a file the test command runs changed at all.
/// Adding tests never gates. On by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestsRule {
    /// Deleted, moved out or shrunk tests; `false` turns all three off.
    #[serde(default = "yes")]
    pub gate_weakened: bool,
    /// Deleted tests alone (the older key); `false` lets deletions through.
    #[serde(default = "yes")]
    pub gate_deletions: bool,
    /// The test command's own files: its runner script, the scripts that
    /// names, the Makefile or justfile it calls.
    #[serde(default = "yes")]
    pub gate_runner: bool,
    /// Globs that name test files.
    #[serde(default = "default_test_globs")]
    pub paths: Vec<String>,
}

/// `[governance]`: a change to a governance path (project instructions,
/// CI definitions, git attributes and modules, hooks; `domain::governance`)
/// waits at the gate, and `--auto-approve` does not approve it. On by
/// default; each class can be relaxed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceRule {
    /// `false` turns every class off.
    #[serde(default = "yes")]
    pub gate: bool,
    #[serde(default = "yes")]
    pub instructions: bool,
    #[serde(default = "yes")]
    pub ci: bool,
    #[serde(default = "yes")]
    pub git: bool,
    #[serde(default = "yes")]
    pub hooks: bool,
    /// Let `--auto-approve` approve these gates too.
    #[serde(default)]
    pub auto_approve: bool,
}

impl Default for GovernanceRule {
    fn default() -> Self {
        Self {
            gate: true,
            instructions: true,
            ci: true,
            git: true,
            hooks: true,
            auto_approve: false,
        }
    }
}

/// `[binaries]`: a file over `max_bytes` that is not text waits at the
/// gate. On by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinariesRule {
    #[serde(default = "yes")]
    pub gate: bool,
    #[serde(default = "default_binary_bytes")]
    pub max_bytes: u64,
}

/// 1 MiB.
pub const DEFAULT_MAX_BINARY_BYTES: u64 = 1024 * 1024;

fn default_binary_bytes() -> u64 {
    DEFAULT_MAX_BINARY_BYTES
}

impl Default for BinariesRule {
    fn default() -> Self {
        Self {
            gate: true,
            max_bytes: DEFAULT_MAX_BINARY_BYTES,
        }
    }
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
            gate_weakened: true,
            gate_deletions: true,
            gate_runner: true,
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
    tests: TestsRule,
    /// `tests.paths`, compiled.
    test_paths: GlobSet,
    /// The governance classes the policy gates, each with its globs.
    governance: Vec<(GovernanceClass, GlobSet)>,
    governance_auto_approve: bool,
    binaries: BinariesRule,
}

/// The verdict for a set of paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub risk: Risk,
    /// The path that decided it (empty when nothing matched).
    pub path: String,
    /// The deciding rule's own reason.
    pub rule_reason: String,
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
        let g = &file.governance;
        let governance = governance::CLASSES
            .into_iter()
            .filter(|class| {
                g.gate
                    && match class {
                        GovernanceClass::Instructions => g.instructions,
                        GovernanceClass::Ci => g.ci,
                        GovernanceClass::Git => g.git,
                        GovernanceClass::Hooks => g.hooks,
                    }
            })
            .map(|class| {
                let globs: Vec<String> = governance::globs(class)
                    .iter()
                    .map(|g| (*g).to_owned())
                    .collect();
                Ok((class, compile(&globs)?))
            })
            .collect::<Result<_, PolicyError>>()?;
        Ok(Self {
            rules,
            blast_radius: file.blast_radius,
            history: file.history,
            test_paths: compile(&file.tests.paths)?,
            tests: file.tests.clone(),
            governance,
            governance_auto_approve: g.auto_approve,
            binaries: file.binaries,
        })
    }

    /// The policy with only the built-in protections.
    pub fn protected_only() -> Self {
        // The built-in globs are constants known to compile.
        Self::new(&PolicyFile::default()).unwrap_or(Self {
            rules: Vec::new(),
            blast_radius: None,
            history: None,
            tests: TestsRule::default(),
            test_paths: GlobSet::empty(),
            governance: Vec::new(),
            governance_auto_approve: false,
            binaries: BinariesRule::default(),
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

    /// Whether `path` is a test file (`[tests] paths`).
    pub fn is_test(&self, path: &str) -> bool {
        self.test_paths.is_match(path.trim_start_matches("./"))
    }

    /// Whether deleting `path` deletes a test the policy guards.
    pub fn is_guarded_test(&self, path: &str) -> bool {
        self.tests.gate_weakened && self.tests.gate_deletions && self.is_test(path)
    }

    /// The `[tests]` rule.
    pub fn tests(&self) -> &TestsRule {
        &self.tests
    }

    /// The governance class of `path`, if the policy gates it.
    pub fn governance_class(&self, path: &str) -> Option<GovernanceClass> {
        let path = path.trim_start_matches("./");
        self.governance
            .iter()
            .find(|(_, set)| set.is_match(path))
            .map(|(class, _)| *class)
    }

    /// Whether the policy gates hooks (then `core.hooksPath` counts too).
    pub fn gates_hooks(&self) -> bool {
        self.governance
            .iter()
            .any(|(class, _)| *class == GovernanceClass::Hooks)
    }

    /// Whether `--auto-approve` may approve a governance gate.
    pub fn auto_approves_governance(&self) -> bool {
        self.governance_auto_approve
    }

    /// The size over which a binary gates, if the policy gates binaries.
    pub fn max_binary_bytes(&self) -> Option<u64> {
        self.binaries.gate.then_some(self.binaries.max_bytes)
    }

    /// The risk of changing one path.
    pub fn risk_of(&self, path: &str) -> Assessment {
        let path = path.trim_start_matches("./");
        let mut verdict = Assessment {
            risk: Risk::Auto,
            path: String::new(),
            rule_reason: String::new(),
            reason: String::new(),
        };
        for (rule, set) in &self.rules {
            if rule.risk > verdict.risk && set.is_match(path) {
                verdict = Assessment {
                    risk: rule.risk,
                    path: path.to_owned(),
                    rule_reason: rule.reason.clone(),
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
                path: String::new(),
                rule_reason: String::new(),
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
            tests: TestsRule {
                paths: vec!["t/[".into()],
                ..TestsRule::default()
            },
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
        let weak: PolicyFile = toml::from_str("[tests]\ngate_weakened = false\n").unwrap();
        assert!(!Policy::new(&weak).unwrap().is_guarded_test("tests/a.rs"));
        // Without the section, the default rule.
        assert!(Policy::protected_only().is_guarded_test("tests/a.rs"));
    }

    #[test]
    fn governance_and_binaries_gate_by_default_and_relax_per_class() {
        let p = Policy::protected_only();
        for (path, class) in [
            ("AGENTS.md", GovernanceClass::Instructions),
            ("src/x/CLAUDE.md", GovernanceClass::Instructions),
            (".github/workflows/ci.yml", GovernanceClass::Ci),
            (".gitlab-ci.yml", GovernanceClass::Ci),
            ("Jenkinsfile", GovernanceClass::Ci),
            (".ci/run", GovernanceClass::Ci),
            (".gitattributes", GovernanceClass::Git),
            ("assets/.gitattributes", GovernanceClass::Git),
            (".gitmodules", GovernanceClass::Git),
            (".githooks/pre-commit", GovernanceClass::Hooks),
            (".husky/pre-push", GovernanceClass::Hooks),
            (".pre-commit-config.yaml", GovernanceClass::Hooks),
        ] {
            assert_eq!(p.governance_class(path), Some(class), "{path}");
        }
        for plain in [
            "src/agents.rs",
            "docs/AGENTS.md.bak",
            ".github/ISSUE_TEMPLATE.md",
        ] {
            assert_eq!(p.governance_class(plain), None, "{plain}");
        }
        assert!(!p.auto_approves_governance());
        assert_eq!(p.max_binary_bytes(), Some(DEFAULT_MAX_BINARY_BYTES));

        let relaxed = |text: &str| Policy::new(&toml::from_str(text).unwrap()).unwrap();
        let no_ci = relaxed("[governance]\nci = false\n");
        assert_eq!(no_ci.governance_class(".gitlab-ci.yml"), None);
        assert_eq!(
            no_ci.governance_class("AGENTS.md"),
            Some(GovernanceClass::Instructions)
        );
        let off = relaxed("[governance]\ngate = false\n[binaries]\ngate = false\n");
        assert_eq!(off.governance_class("AGENTS.md"), None);
        assert!(!off.gates_hooks());
        assert_eq!(off.max_binary_bytes(), None);
        let small = relaxed("[binaries]\nmax_bytes = 10\n");
        assert_eq!(small.max_binary_bytes(), Some(10));
    }

    #[test]
    fn misspelt_risk_keys_are_refused() {
        for text in [
            "[blast_radius]\nmax_file = 20\n",
            "[history]\nmax_incident = 3\n",
            "[history]\nruns = 5\n",
            "[tests]\ngate_deletion = true\n",
            "[tests]\ngate_weaken = false\n",
            "[governance]\ngated = false\n",
            "[governance]\ninstruction = false\n",
            "[binaries]\nmax_byte = 10\n",
            "[binary]\ngate = false\n",
            "[blast]\nmax_files = 1\n",
        ] {
            assert!(toml::from_str::<PolicyFile>(text).is_err(), "{text}");
        }
    }
}
