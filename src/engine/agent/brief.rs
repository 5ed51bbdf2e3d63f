//! What the small profile's write guards read from a coder's brief (`## Task
//! ID: TITLE`, its description, then `### …` sections, as `steps` writes
//! it): whether the task only adds, and where in a file it says the new
//! lines go.

/// Verbs of a task that adds, and words that say it changes or removes too.
const ADDING: &[&str] = &["add", "append", "insert"];
const NOT_ONLY_ADDING: &[&str] = &[
    "remove", "delete", "replace", "change", "rename", "update", "fix", "rewrite", "move", "edit",
    "modify", "refactor", "correct", "drop",
];

/// The heading of the brief's list of paths (as `steps::task_brief` writes it).
const PATHS_HEADING: &str = "### Paths it expects to touch\n";

/// Verbs a title may begin with before the one of adding.
const READING: &[&str] = &["read", "open", "check", "look", "view", "find", "locate"];

/// Words that put lines at a file's end or start.
const AT_END: &[&str] = &["end", "bottom", "append"];
const AT_START: &[&str] = &["top", "beginning", "prepend"];
/// Words that name a place inside a file: "the end of the Usage section",
/// "after the heading" say nothing about the file's end.
const INSIDE: &[&str] = &[
    "section",
    "heading",
    "block",
    "function",
    "list",
    "table",
    "paragraph",
    "after",
    "before",
    "under",
    "below",
    "above",
    "between",
    "inside",
    "within",
    "class",
    "method",
];

/// Where a task puts the lines it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// At the end of the file.
    End,
    /// At its start.
    Start,
    /// Somewhere inside it, or said both ways: not for a guard to decide.
    Inside,
    /// Nothing said.
    Unsaid,
}

/// The task of a coder's brief.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Task<'a> {
    title: &'a str,
    description: &'a str,
    /// The brief's list of the paths the task expects to touch.
    paths: &'a str,
}

impl<'a> Task<'a> {
    /// The task in `brief`, if it has one.
    pub(super) fn of(brief: &'a str) -> Option<Self> {
        let at = brief.find("## Task ")?;
        let (heading, after) = brief[at..].split_once('\n')?;
        let title = heading.split_once(": ").map_or("", |(_, t)| t);
        let description = after.split("\n\n### ").next().unwrap_or("");
        let paths = after
            .split_once(PATHS_HEADING)
            .map_or("", |(_, list)| list.split("\n\n").next().unwrap_or(""));
        Some(Self {
            title,
            description,
            paths,
        })
    }

    /// The paths the brief lists for the task to touch.
    pub(super) fn paths(&self) -> Vec<&'a str> {
        self.paths
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- "))
            .map(str::trim)
            .filter(|path| !path.is_empty() && !path.starts_with('('))
            .collect()
    }

    /// Whether the task only adds: its title begins with a verb of adding,
    /// or of reading and then one of adding ("Read and append to
    /// README.md", as a 1.5B planner titled it), and nothing in it or the
    /// description changes or removes.
    pub(super) fn only_adds(&self) -> bool {
        let title = words(self.title);
        let adding = |w: &String| ADDING.iter().any(|v| w.starts_with(v));
        let adds = match title.first() {
            Some(first) if READING.contains(&first.as_str()) => title.iter().any(adding),
            Some(first) => adding(first),
            None => false,
        };
        adds && !title
            .iter()
            .chain(words(self.description).iter())
            .any(|w| NOT_ONLY_ADDING.iter().any(|v| w.starts_with(v)))
    }

    /// Where the task says its lines go, by its words outside the texts it
    /// quotes (the line to add may well say "before").
    pub(super) fn place(&self) -> Place {
        let all: Vec<String> = words(self.title)
            .into_iter()
            .chain(words(self.description))
            .collect();
        let says = |set: &[&str]| all.iter().any(|w| set.contains(&w.as_str()));
        match (says(INSIDE), says(AT_END), says(AT_START)) {
            (true, _, _) | (false, true, true) => Place::Inside,
            (false, true, false) => Place::End,
            (false, false, true) => Place::Start,
            (false, false, false) => Place::Unsaid,
        }
    }

    /// The texts the task quotes (the line to add, mostly), not blank.
    pub(super) fn quoted(&self) -> Vec<&'a str> {
        [self.title, self.description]
            .into_iter()
            .flat_map(crate::text::quoted)
            .filter(|q| !q.trim().is_empty())
            .collect()
    }

    /// The single lines the task quotes that read as lines to add, not as
    /// names of files (`README.md`), trimmed.
    pub(super) fn lines_to_add(&self) -> Vec<&'a str> {
        let file_like = |q: &str| {
            !q.contains(char::is_whitespace)
                && q.rsplit_once('.').is_some_and(|(_, ext)| {
                    !ext.is_empty() && ext.chars().all(char::is_alphanumeric)
                })
        };
        self.quoted()
            .into_iter()
            .map(str::trim)
            .filter(|q| !q.contains('\n') && !file_like(q))
            .collect()
    }

    /// Whether the task names the file at `path` (its path or its name).
    pub(super) fn names(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        !name.is_empty()
            && [self.title, self.description]
                .iter()
                .any(|text| text.contains(path) || text.contains(name))
    }
}

/// The lower-case words of `text` outside its quoted spans.
fn words(text: &str) -> Vec<String> {
    crate::text::lower_words(&crate::text::outside_quotes(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brief(title: &str, description: &str) -> String {
        format!("## Task 1: {title}\n{description}\n\n### Acceptance criteria\n- (none)\n")
    }

    #[test]
    fn a_task_that_only_adds_is_told_from_its_brief() {
        let adds = |b: &str| Task::of(b).is_some_and(|t| t.only_adds());
        assert!(adds(&brief(
            "Append 'Hello from memofab.' to the end of README.md",
            "Read the README.md file and append the line."
        )));
        assert!(adds(&format!(
            "Instructions of the project.\n\n{}",
            brief("Add line to README.md", "Add it at the end.")
        )));
        assert!(adds(&brief(
            "Read and append to README.md",
            "Read README.md and append 'Hello from memofab.' at the end."
        )));
        assert!(!adds(&brief("Read the config", "and report what it holds")));
        assert!(!adds(&brief("Add a flag", "and remove the old one")));
        assert!(!adds(&brief("Fix the parser", "Add a check.")));
        // A quoted line is text to add, not what the task does.
        assert!(adds(&brief("Add the line 'Fix nothing.' to NOTES", "")));
        assert!(Task::of("no brief").is_none());
    }

    #[test]
    fn the_place_is_what_the_task_says_outside_its_quotes() {
        let place = |title: &str, description: &str| {
            Task::of(&brief(title, description)).map(|t| t.place())
        };
        // As the measured runs' planners wrote it.
        assert_eq!(
            place(
                "Add line to README.md",
                "Add the line 'Hello from memofab.' at the end of README.md."
            ),
            Some(Place::End)
        );
        assert_eq!(place("Add a line to NOTES", ""), Some(Place::Unsaid));
        assert_eq!(
            place("Add a title", "Put '# Notes' at the top of NOTES.md"),
            Some(Place::Start)
        );
        // A place inside the file, or both ends: not decided here.
        assert_eq!(
            place("Add a bullet", "at the end of the Usage section"),
            Some(Place::Inside)
        );
        assert_eq!(
            place("Add a line", "after the heading of README.md"),
            Some(Place::Inside)
        );
        assert_eq!(
            place("Add lines", "one at the top, one at the end"),
            Some(Place::Inside)
        );
        // The quoted line's own words place nothing.
        assert_eq!(
            place(
                "Add 'Read this before you start.' to the end of README.md",
                ""
            ),
            Some(Place::End)
        );
        assert_eq!(
            place(
                "Add a note",
                "It doesn't matter: \"Run tests before a push.\""
            ),
            Some(Place::Unsaid)
        );
    }

    #[test]
    fn the_lines_to_add_are_the_quoted_lines_not_the_names_of_files() {
        let brief = brief(
            "Add 'Hello.' to 'README.md'",
            "Append \"Run `make` first.\" and 'docs/a.md' to it.",
        );
        let task = Task::of(&brief).expect("a task");
        assert_eq!(task.lines_to_add(), ["Hello.", "Run `make` first."]);
    }

    #[test]
    fn the_paths_are_the_briefs_list() {
        let listed = |paths: &str| {
            let brief = format!(
                "## Task 1: Add a line\nto NOTES\n\n### Acceptance criteria\n- ok\n\n\
                 ### Paths it expects to touch\n{paths}\n\n## Feedback\n- not a path\n"
            );
            Task::of(&brief).map(|t| t.paths().join(","))
        };
        assert_eq!(
            listed("- NOTES\n- docs/a b.md"),
            Some("NOTES,docs/a b.md".into())
        );
        assert_eq!(listed("- (none given)"), Some(String::new()));
        let brief = brief("Add a line", "to NOTES");
        assert_eq!(Task::of(&brief).map(|t| t.paths().len()), Some(0));
    }

    #[test]
    fn a_task_names_a_file_by_its_path_or_its_name() {
        let task = brief("Add a line", "at the end of docs/README.md");
        let task = Task::of(&task).expect("a task");
        assert!(task.names("docs/README.md"));
        assert!(task.names("README.md"));
        assert!(!task.names("src/lib.rs"));
    }
}
