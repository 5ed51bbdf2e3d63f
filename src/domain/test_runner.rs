//! The test command's own files: what an agent could rewrite to make the
//! tests pass without passing them (`tests/run.sh` replaced by `exit 0`).
//! Found from the configured command's words, read at mainline (never in a
//! task's worktree): the files it names, the scripts those name, and for
//! `make`/`just` the Makefile or justfile and the scripts its recipe names.
//! Guessing is bounded: only words that are files at mainline count, and
//! only script-like files are followed.

use std::collections::BTreeSet;

/// How deep scripts naming scripts are followed.
const MAX_DEPTH: usize = 3;
/// At most this many files are guarded (and read).
const MAX_FILES: usize = 32;
/// Only the head of each file is scanned for the scripts it names.
const MAX_SCANNED_BYTES: usize = 64 * 1024;
/// At most this many paths are looked up, however wordy the scripts.
const MAX_LOOKUPS: usize = 512;

/// Build and task tools whose own file defines what a test run does, with
/// the files they read without being named.
const TOOL_FILES: [(&str, &[&str]); 11] = [
    ("make", &["Makefile", "makefile", "GNUmakefile"]),
    ("gmake", &["Makefile", "makefile", "GNUmakefile"]),
    ("just", &["justfile", "Justfile", ".justfile"]),
    ("npm", &["package.json"]),
    ("yarn", &["package.json"]),
    ("pnpm", &["package.json"]),
    ("bun", &["package.json"]),
    ("tox", &["tox.ini"]),
    ("nox", &["noxfile.py"]),
    ("pytest", &["pytest.ini", "conftest.py"]),
    ("rake", &["Rakefile"]),
];

/// Extensions of files that are run rather than read.
const SCRIPT_EXTENSIONS: [&str; 14] = [
    "sh", "bash", "zsh", "fish", "py", "pl", "rb", "js", "mjs", "cjs", "ts", "ps1", "bat", "mk",
];

/// The repository-relative files the test command `commands` run; `read`
/// gives a path's content at mainline, `None` if it is not a file there.
pub fn runner_files<'a>(
    commands: impl IntoIterator<Item = &'a str>,
    read: impl Fn(&str) -> Option<Vec<u8>>,
) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut looked_up = BTreeSet::new();
    // (text to scan, the directory it lives in, depth)
    let mut pending: Vec<(String, String, usize)> = commands
        .into_iter()
        .map(|c| (c.to_owned(), String::new(), 0))
        .collect();
    while let Some((text, dir, depth)) = pending.pop() {
        let words = words(&text);
        let mut named: Vec<(String, Option<String>)> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            if let Some((_, files)) = TOOL_FILES.iter().find(|(tool, _)| tool == word) {
                // `make test`: the target is the next word that is not a flag.
                let target = words[i + 1..].iter().find(|w| !w.starts_with('-')).cloned();
                for file in *files {
                    named.push(((*file).to_owned(), target.clone()));
                }
            }
            // In scripts, `echo`, `if`, `exit`: a word without a dot or a
            // slash is a command on PATH. The configured command is short:
            // all its words are looked up (`sh run`).
            if depth == 0 || word.contains(['/', '.']) {
                for candidate in candidates(word, &dir) {
                    named.push((candidate, None));
                }
            }
        }
        for (path, target) in named {
            if found.len() >= MAX_FILES
                || looked_up.len() >= MAX_LOOKUPS
                || !looked_up.insert(path.clone())
            {
                continue;
            }
            let Some(content) = read(&path) else { continue };
            // Deeper than the command itself, only scripts are followed: a
            // runner naming `src/main.c` does not make it a runner file.
            if depth > 0 && !is_tool_file(&path) && !is_script(&path, &content) {
                continue;
            }
            found.insert(path.clone());
            if depth + 1 >= MAX_DEPTH {
                continue;
            }
            let head = &content[..content.len().min(MAX_SCANNED_BYTES)];
            let text = String::from_utf8_lossy(head);
            let scanned = match &target {
                Some(target) => recipe(&text, target).unwrap_or_default(),
                // A Makefile called without a target, or a config file:
                // guarded itself, its words not followed.
                None if is_tool_file(&path) => String::new(),
                None => text.into_owned(),
            };
            let parent = path.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
            pending.push((scanned, parent, depth + 1));
        }
    }
    found
}

fn is_tool_file(path: &str) -> bool {
    TOOL_FILES
        .iter()
        .any(|(_, files)| files.contains(&path.rsplit('/').next().unwrap_or(path)))
}

fn is_script(path: &str, content: &[u8]) -> bool {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    content.starts_with(b"#!") || SCRIPT_EXTENSIONS.contains(&ext)
}

/// Shell-ish words: split on blanks, quotes and operators. Words with a
/// variable or a glob cannot be resolved without running the shell, so they
/// are left out.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || "'\"`;|&()<>=,".contains(c))
        .filter(|w| !w.is_empty() && !w.contains(['$', '*', '?', '[', '{']))
        .map(str::to_owned)
        .collect()
}

/// The repository paths `word` may name: as written (from the worktree's
/// root, where commands run) and beside the file that names it.
fn candidates(word: &str, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = normalize(word) {
        out.push(p);
    }
    if !dir.is_empty()
        && let Some(p) = normalize(&format!("{dir}/{word}"))
        && !out.contains(&p)
    {
        out.push(p);
    }
    out
}

/// `word` as a path inside the repository, without `.` and `..`; `None` for
/// an absolute path or one leaving the repository.
fn normalize(word: &str) -> Option<String> {
    if word.starts_with('/') || word.starts_with('-') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in word.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The recipe lines of `target` in a Makefile or justfile, if the target is
/// written simply (`test:` or `test: deps` at the start of a line, its
/// recipe indented below it).
fn recipe(text: &str, target: &str) -> Option<String> {
    let mut lines = text.lines();
    lines.by_ref().find(|line| {
        line.strip_prefix(target).is_some_and(|rest| {
            let rest = rest.trim_start();
            rest.starts_with(':') && !rest.starts_with(":=")
        })
    })?;
    let body: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with([' ', '\t']))
        .collect();
    Some(body.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo<'a>(files: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<Vec<u8>> + 'a {
        move |path| {
            files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, c)| c.as_bytes().to_vec())
        }
    }

    fn found(command: &str, files: &[(&str, &str)]) -> Vec<String> {
        runner_files([command], repo(files)).into_iter().collect()
    }

    #[test]
    fn the_runner_script_and_the_scripts_it_names() {
        let files = [
            (
                "tests/run.sh",
                "#!/bin/sh\n. ./tests/lib.sh\nsh helper.sh\ngcc src/main.c\n\"$ROOT\"/bin/tool\n",
            ),
            ("tests/lib.sh", "check() { :; }\n"),
            ("tests/helper.sh", "echo ok\n"),
            ("src/main.c", "int main() {}\n"),
            ("bin/tool", "#!/bin/sh\n"),
        ];
        assert_eq!(
            found("sh tests/run.sh --verbose", &files),
            ["tests/helper.sh", "tests/lib.sh", "tests/run.sh"]
        );
        assert_eq!(
            found("./tests/run.sh", &files),
            ["tests/helper.sh", "tests/lib.sh", "tests/run.sh"]
        );
        assert!(found("cargo test", &files).is_empty());
        assert_eq!(found("sh run", &[("run", "echo ok\n")]), ["run"]);
        let nested = [
            ("ci.sh", "#!/bin/sh\nmake check\n"),
            ("Makefile", "check:\n\t./t.sh\n"),
            ("t.sh", ""),
        ];
        assert_eq!(found("sh ci.sh", &nested), ["Makefile", "ci.sh", "t.sh"]);
    }

    #[test]
    fn make_and_just_guard_their_file_and_the_target_recipe() {
        let files = [
            (
                "Makefile",
                "build:\n\tcc src/main.c\n\ntest: build\n\tsh scripts/check.sh\n\nother:\n\tsh scripts/other.sh\n",
            ),
            ("scripts/check.sh", "echo\n"),
            ("scripts/other.sh", "echo\n"),
            ("src/main.c", ""),
        ];
        assert_eq!(
            found("make -j2 test", &files),
            ["Makefile", "scripts/check.sh"]
        );
        assert_eq!(found("make", &files), ["Makefile"]);
        let just = [("justfile", "test:\n    ./t.sh\n"), ("t.sh", "x")];
        assert_eq!(found("just test", &just), ["justfile", "t.sh"]);
        assert_eq!(
            found("npm test", &[("package.json", "{}")]),
            ["package.json"]
        );
    }

    #[test]
    fn paths_leaving_the_repository_are_never_named() {
        let files = [("x.sh", "sh ../../etc/passwd /etc/hosts\n")];
        assert_eq!(found("sh x.sh", &files), ["x.sh"]);
        assert_eq!(normalize("a/../../b"), None);
        assert_eq!(normalize("./a//b/./c.sh").as_deref(), Some("a/b/c.sh"));
    }

    #[test]
    fn a_script_naming_itself_or_many_files_stops() {
        let files = [("a.sh", "sh a.sh b.sh"), ("b.sh", "sh a.sh")];
        assert_eq!(found("sh a.sh", &files), ["a.sh", "b.sh"]);
        let many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("s{i}.sh"), format!("sh s{}.sh", i + 1)))
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        assert!(found("sh s0.sh", &refs).len() <= MAX_DEPTH);
        // A wordy script costs a bounded number of lookups.
        let wordy = format!(
            "{}\n",
            (0..20_000)
                .map(|i| format!("w{i}.sh"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let files = [("run.sh", wordy.as_str())];
        let lookups = std::cell::Cell::new(0);
        let read = |path: &str| {
            lookups.set(lookups.get() + 1);
            repo(&files)(path)
        };
        assert_eq!(runner_files(["sh run.sh"], read).len(), 1);
        assert!(lookups.get() <= MAX_LOOKUPS, "{}", lookups.get());
    }
}
