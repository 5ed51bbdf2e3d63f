//! Write-sets: the paths a task expects to change (declared in the
//! blueprint) joined with the paths it was seen changing. Two tasks whose
//! write-sets overlap are likely to conflict if they run at the same time,
//! so the scheduler keeps them apart.
//!
//! Overlap is decided on the patterns themselves, component by component,
//! and errs towards "overlaps": a false overlap only costs parallelism, a
//! missed one costs a merge conflict.

use std::collections::BTreeSet;

use globset::GlobBuilder;

/// Where two write-sets meet: one pattern of each that may name the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub ours: String,
    pub theirs: String,
}

/// The declared patterns and the observed paths of one task.
#[derive(Debug, Clone, Copy)]
pub struct WriteSet<'a> {
    pub declared: &'a [String],
    pub observed: &'a BTreeSet<String>,
}

impl WriteSet<'_> {
    fn patterns(&self) -> impl Iterator<Item = &str> {
        self.declared
            .iter()
            .map(String::as_str)
            .chain(self.observed.iter().map(String::as_str))
    }

    /// Every pair of patterns that may name the same file, without repeats.
    pub fn overlaps(&self, other: &WriteSet<'_>) -> Vec<Overlap> {
        let mut found: Vec<Overlap> = Vec::new();
        for ours in self.patterns() {
            for theirs in other.patterns() {
                if patterns_overlap(ours, theirs)
                    && !found.iter().any(|o| o.ours == ours && o.theirs == theirs)
                {
                    found.push(Overlap {
                        ours: ours.to_owned(),
                        theirs: theirs.to_owned(),
                    });
                }
            }
        }
        found
    }

    pub fn overlaps_with(&self, other: &WriteSet<'_>) -> bool {
        self.patterns().any(|ours| {
            other
                .patterns()
                .any(|theirs| patterns_overlap(ours, theirs))
        })
    }
}

/// Whether two path patterns (plain paths, directories or globs with `*`,
/// `?`, `[..]`, `**`) may name a common file. A plain directory covers
/// everything below it.
pub fn patterns_overlap(a: &str, b: &str) -> bool {
    let a: Vec<&str> = components(a).collect();
    let b: Vec<&str> = components(b).collect();
    if a.is_empty() || b.is_empty() {
        // "." or "" is the whole repository.
        return true;
    }
    for (x, y) in a.iter().zip(b.iter()) {
        if *x == "**" || *y == "**" {
            return true;
        }
        if !components_meet(x, y) {
            return false;
        }
    }
    // One is a prefix of the other: a directory and something inside it.
    true
}

fn components(pattern: &str) -> impl Iterator<Item = &str> {
    pattern
        .trim()
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
}

fn is_glob(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// Whether one path component of each pattern can be the same name.
fn components_meet(x: &str, y: &str) -> bool {
    match (is_glob(x), is_glob(y)) {
        (false, false) => x == y,
        (true, false) => glob_matches(x, y),
        (false, true) => glob_matches(y, x),
        // Two wildcards: deciding whether they share a name is not worth it.
        (true, true) => true,
    }
}

fn glob_matches(glob: &str, name: &str) -> bool {
    match GlobBuilder::new(glob).literal_separator(true).build() {
        Ok(g) => g.compile_matcher().is_match(name),
        // A pattern we cannot read may still name the file.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_overlap_only_when_equal_or_nested() {
        assert!(patterns_overlap("bin/textkit", "bin/textkit"));
        assert!(!patterns_overlap("lib/stats.sh", "lib/slug.sh"));
        assert!(patterns_overlap("src", "src/main.rs"));
        assert!(patterns_overlap("src/", "./src/main.rs"));
        assert!(!patterns_overlap("src/a", "srcx/a"));
    }

    #[test]
    fn globs_overlap_what_they_match() {
        assert!(patterns_overlap("lib/*.sh", "lib/stats.sh"));
        assert!(!patterns_overlap("lib/*.sh", "lib/stats.py"));
        assert!(!patterns_overlap("lib/*.sh", "bin/textkit"));
        assert!(patterns_overlap("docs/**", "docs/a/b.md"));
        assert!(
            patterns_overlap("**/*.rs", "README.md"),
            "`**` is conservative"
        );
        assert!(!patterns_overlap("src/*/mod.rs", "src/*/lib.rs"));
        assert!(patterns_overlap("src/*/mod.rs", "src/a/*.rs"));
        assert!(!patterns_overlap("src/*.rs", "tests/*.rs"));
    }

    #[test]
    fn the_whole_repository_overlaps_everything() {
        assert!(patterns_overlap(".", "a/b"));
        assert!(patterns_overlap("", "a"));
    }

    #[test]
    fn observed_paths_count_as_much_as_declared_ones() {
        let declared_a = vec!["lib/stats.sh".to_owned()];
        let declared_b = vec!["lib/slug.sh".to_owned()];
        let none = BTreeSet::new();
        let seen: BTreeSet<String> = ["bin/textkit".to_owned()].into();
        let a = WriteSet {
            declared: &declared_a,
            observed: &seen,
        };
        let b = WriteSet {
            declared: &declared_b,
            observed: &none,
        };
        assert!(!a.overlaps_with(&b));
        let b_seen = WriteSet {
            declared: &declared_b,
            observed: &seen,
        };
        assert!(a.overlaps_with(&b_seen));
        assert_eq!(
            a.overlaps(&b_seen),
            vec![Overlap {
                ours: "bin/textkit".into(),
                theirs: "bin/textkit".into()
            }]
        );
    }
}
