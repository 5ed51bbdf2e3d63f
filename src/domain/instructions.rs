//! Project instructions: the repository's `AGENTS.md` files (`CLAUDE.md` in
//! a directory without one), as Codex and Claude Code read them, given to
//! the agents in their first message.
//!
//! Each file applies to its directory and everything below it. Files are
//! shown root first, so a deeper file, which takes precedence, comes later.
//! The planner and plan reviewer see every file (their plan may touch any
//! directory); a task's agents see the root's and those of the directories
//! the task touches, and are told where the others are. Everything shown is
//! capped at [`MAX_INSTRUCTION_BYTES`], with a note saying what was cut.

use super::write_set::patterns_overlap;

/// Looked for in every directory, in this order; the first one present is
/// that directory's file.
pub const INSTRUCTION_FILE_NAMES: [&str; 2] = ["AGENTS.md", "CLAUDE.md"];

/// What all the instruction files shown to one agent may take together
/// (Codex's default `project_doc_max_bytes`).
pub const MAX_INSTRUCTION_BYTES: usize = 32 * 1024;

/// One directory's instruction file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionFile {
    /// Its path in the repository, e.g. `src/x/AGENTS.md`.
    pub path: String,
    pub text: String,
}

impl InstructionFile {
    /// The directory it governs, without a trailing slash; empty for the root.
    pub fn dir(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(dir, _)| dir)
    }

    fn depth(&self) -> usize {
        self.path.matches('/').count()
    }
}

/// Which instruction files an agent is given.
#[derive(Debug, Clone, Copy)]
pub enum InstructionScope<'a> {
    /// Planning: every directory may be touched.
    Repository,
    /// A task: the path patterns it declared or was seen writing.
    Paths(&'a [String]),
}

impl InstructionScope<'_> {
    fn covers(&self, file: &InstructionFile) -> bool {
        let dir = file.dir();
        match self {
            InstructionScope::Repository => true,
            _ if dir.is_empty() => true,
            // `dir/**` meets a pattern inside the directory and one naming
            // a directory above it alike.
            InstructionScope::Paths(paths) => {
                let under = format!("{dir}/**");
                paths.iter().any(|p| patterns_overlap(p, &under))
            }
        }
    }
}

/// Picks each directory's instruction file from a repository's file paths
/// and orders them root first. Returns paths.
pub fn pick_instruction_files<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut by_dir: std::collections::BTreeMap<&str, (usize, &str)> = Default::default();
    for path in paths {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let Some(rank) = INSTRUCTION_FILE_NAMES.iter().position(|n| *n == name) else {
            continue;
        };
        let best = by_dir.entry(dir).or_insert((rank, path));
        if rank < best.0 {
            *best = (rank, path);
        }
    }
    let mut picked: Vec<&str> = by_dir.into_values().map(|(_, path)| path).collect();
    picked.sort_by_key(|p| (p.matches('/').count(), *p));
    picked
}

/// The "Project instructions" section for an agent's first message, or
/// nothing if no file applies. `files` come root first, as picked.
pub fn render_instructions(files: &[InstructionFile], scope: InstructionScope<'_>) -> String {
    let mut files: Vec<&InstructionFile> =
        files.iter().filter(|f| !f.text.trim().is_empty()).collect();
    files.sort_by_key(|f| (f.depth(), f.path.clone()));
    let (shown, elsewhere): (Vec<&InstructionFile>, Vec<&InstructionFile>) =
        files.into_iter().partition(|f| scope.covers(f));
    if shown.is_empty() {
        return String::new();
    }
    let mut text = String::from(
        "## Project instructions\nFrom the repository's instruction files, as they were when the run started. \
Each applies to its directory and everything below it; where two disagree, the deeper one wins. \
Follow them unless the task says otherwise.\n",
    );
    let mut budget = MAX_INSTRUCTION_BYTES;
    let mut cut: Vec<String> = Vec::new();
    for file in &shown {
        if budget == 0 {
            cut.push(format!("{} (not shown)", file.path));
            continue;
        }
        let body = file.text.trim();
        let scope_note = match file.dir() {
            "" => String::new(),
            dir => format!(" (for {dir}/)"),
        };
        text.push_str(&format!("\n### {}{scope_note}\n", file.path));
        if body.len() <= budget {
            text.push_str(body);
            budget -= body.len();
        } else {
            let mut end = budget;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            text.push_str(&body[..end]);
            cut.push(format!("{} (after its first {end} bytes)", file.path));
            budget = 0;
        }
        text.push('\n');
    }
    if !cut.is_empty() {
        text.push_str(&format!(
            "\n[Instructions are capped at {} KiB; cut: {}. Read those files for the rest.]\n",
            MAX_INSTRUCTION_BYTES / 1024,
            cut.join(", ")
        ));
    }
    if !elsewhere.is_empty() {
        let paths: Vec<&str> = elsewhere.iter().map(|f| f.path.as_str()).collect();
        text.push_str(&format!(
            "\nOther directories have their own instructions; read them before changing files there: {}\n",
            paths.join(", ")
        ));
    }
    text
}

/// `body` with the instructions that apply put before it.
pub fn with_instructions(
    files: &[InstructionFile],
    scope: InstructionScope<'_>,
    body: String,
) -> String {
    let section = render_instructions(files, scope);
    if section.is_empty() {
        body
    } else {
        format!("{section}\n{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> InstructionFile {
        InstructionFile {
            path: path.into(),
            text: text.into(),
        }
    }

    fn repo() -> Vec<InstructionFile> {
        vec![
            file("src/x/AGENTS.md", "X RULES"),
            file("AGENTS.md", "ROOT RULES"),
            file("lib/y/CLAUDE.md", "Y RULES"),
        ]
    }

    #[test]
    fn agents_md_wins_over_claude_md_in_the_same_directory_only() {
        let files = [
            "CLAUDE.md",
            "AGENTS.md",
            "src/CLAUDE.md",
            "src/x/AGENTS.md",
            "src/x/main.rs",
            "docs/AGENTS.md.bak",
            "a/b/c/CLAUDE.md",
        ];
        assert_eq!(
            pick_instruction_files(files),
            [
                "AGENTS.md",
                "src/CLAUDE.md",
                "src/x/AGENTS.md",
                "a/b/c/CLAUDE.md"
            ]
        );
    }

    #[test]
    fn a_task_sees_the_root_and_the_directories_it_touches() {
        let inside = ["src/x/lib.rs".to_owned()];
        let text = render_instructions(&repo(), InstructionScope::Paths(&inside));
        let (root, x) = (
            text.find("ROOT RULES").unwrap(),
            text.find("X RULES").unwrap(),
        );
        assert!(root < x, "root first, the deeper file after it:\n{text}");
        assert!(!text.contains("Y RULES"));
        assert!(text.contains("lib/y/CLAUDE.md"), "the others are named");

        // A pattern naming a directory above one with instructions.
        let above = ["src/**".to_owned()];
        let text = render_instructions(&repo(), InstructionScope::Paths(&above));
        assert!(text.contains("X RULES"));

        let elsewhere = ["README.md".to_owned()];
        let text = render_instructions(&repo(), InstructionScope::Paths(&elsewhere));
        assert!(text.contains("ROOT RULES"));
        assert!(!text.contains("X RULES") && !text.contains("Y RULES"));
        assert!(!text.contains("### src/x/AGENTS.md"));
    }

    #[test]
    fn planning_sees_every_file_and_no_files_means_no_section() {
        let text = render_instructions(&repo(), InstructionScope::Repository);
        for rules in ["ROOT RULES", "X RULES", "Y RULES"] {
            assert!(text.contains(rules), "{rules}");
        }
        assert_eq!(render_instructions(&[], InstructionScope::Repository), "");
        let blank = [file("AGENTS.md", "  \n")];
        assert_eq!(
            with_instructions(&blank, InstructionScope::Repository, "body".into()),
            "body"
        );
    }

    #[test]
    fn everything_shown_is_capped_with_a_note() {
        let big = "é".repeat(MAX_INSTRUCTION_BYTES); // two bytes each
        let files = [file("AGENTS.md", &big), file("src/AGENTS.md", "LATER")];
        let text = render_instructions(&files, InstructionScope::Repository);
        let shown = text.matches('é').count();
        assert_eq!(shown, MAX_INSTRUCTION_BYTES / 2);
        assert!(!text.contains("LATER"));
        assert!(text.contains(&format!(
            "AGENTS.md (after its first {MAX_INSTRUCTION_BYTES} bytes)"
        )));
        assert!(text.contains("src/AGENTS.md (not shown)"));
    }
}
