//! The crate's layer order, and a test that keeps it.
//!
//! From the bottom up (docs/design.md explains each):
//!
//! ```text
//! text, toml_file            leaf helpers: import nothing of the crate
//! domain                     pure rules, events, the state machine
//! protocol                   engine ↔ front-end messages (domain types)
//! effects                    git, store, processes, fences, the clock
//! config                     the merged config files (may name effects' choices)
//! llm                        providers (obey config's model options)
//! error                      the library's top error: wraps config and llm
//! engine                     orchestrator, agents, runs
//! tui, daemon, mcp_server, bench   front ends and tools over the engine
//! cli                        the command line: the only layer above them all
//! ```
//!
//! A module may use any module in a lower layer, never one in a higher layer.
//! Modules in the same layer do not use each other, except along the few
//! edges in [`PEER_EDGES`]. Test code is held to the same order: fixtures
//! live low enough for every layer that uses them (`domain::fixture`), so a
//! test never links a lower layer to a higher one.
//!
//! Within a layer, modules do not use each other in a loop either (a parent
//! and its children count as one unit); the loops not yet broken are named
//! in [`KNOWN_LOOPS`]. The tests read paths, not the compiler's resolution:
//! `crate::…`, `super::…`, `use child::…`, and a parent's re-exports.

/// Layers from the bottom up; every top-level module is in exactly one.
pub const LAYERS: &[&[&str]] = &[
    &["text", "toml_file"],
    &["domain"],
    &["protocol"],
    &["effects"],
    &["config"],
    &["llm"],
    &["error"],
    &["engine"],
    &["tui", "daemon", "mcp_server", "bench"],
    &["cli"],
];

/// `(from, to)` uses between modules of the same layer that the design has:
/// the render benchmarks draw the cockpit; the MCP server drives the
/// daemon's queue.
pub const PEER_EDGES: &[(&str, &str)] = &[("bench", "tui"), ("mcp_server", "daemon")];

/// Loops between modules that are not parent and child (a parent and its
/// children are one unit), still to be broken. Each names every module in
/// it; the test fails on any other loop. None are left.
pub const KNOWN_LOOPS: &[&[&str]] = &[];

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use std::collections::{BTreeMap, BTreeSet};

    use super::{KNOWN_LOOPS, LAYERS, PEER_EDGES};

    /// The layer of a top-level module, or `None` for one not in the table.
    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    /// Why `from` may not use `to`, or `None` when it may.
    fn forbidden(from: &str, to: &str) -> Option<String> {
        if from == to {
            return None;
        }
        let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) else {
            return Some(format!(
                "{from} or {to} is in no layer: add it to layers::LAYERS"
            ));
        };
        if b > a {
            return Some(format!("{from} (layer {a}) uses {to} (layer {b}, above)"));
        }
        if a == b && !PEER_EDGES.contains(&(from, to)) {
            return Some(format!(
                "{from} and {to} are peers (layer {a}); peers do not use each other"
            ));
        }
        None
    }

    /// `source` without comments, string and character literals, so that a
    /// path mentioned in a doc comment or a message does not count.
    fn code_only(source: &str) -> String {
        let chars: Vec<char> = source.chars().collect();
        let mut out = String::with_capacity(source.len());
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if c == '/' && next == Some('/') {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if c == '/' && next == Some('*') {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            } else if c == 'r'
                && matches!(next, Some('"') | Some('#'))
                && (i == 0 || !is_ident(chars[i - 1]))
            {
                // A raw string: r"…", r#"…"#, r##"…"##.
                let mut j = i + 1;
                let mut hashes = 0;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if chars.get(j) != Some(&'"') {
                    out.push(c);
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    match chars.get(j) {
                        None => break,
                        Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                            j += 1 + hashes;
                            break;
                        }
                        Some(_) => j += 1,
                    }
                }
                out.push_str("\"\"");
                i = j;
            } else if c == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            } else if c == '\'' {
                // A character literal ('x', '\n', '"'), or a lifetime ('a).
                if next == Some('\\') {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    out.push(c);
                    i += 1;
                }
                out.push(' ');
            } else {
                out.push(c);
                i += 1;
            }
        }
        out
    }

    fn is_ident(c: char) -> bool {
        c.is_alphanumeric() || c == '_'
    }

    fn ident_at(chars: &[char], mut i: usize) -> (String, usize) {
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        let start = i;
        while chars.get(i).is_some_and(|c| is_ident(*c)) {
            i += 1;
        }
        (chars[start..i].iter().collect(), i)
    }

    /// The first segment of each item of the `{…}` group at `open`.
    fn group_heads(chars: &[char], open: usize) -> Vec<String> {
        let mut heads = Vec::new();
        let mut depth = 0;
        let mut item_start = true;
        let mut i = open;
        while i < chars.len() {
            match chars[i] {
                '{' => {
                    depth += 1;
                    if depth == 1 {
                        item_start = true;
                    }
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => item_start = true,
                c if depth == 1 && item_start && is_ident(c) => {
                    let (head, end) = ident_at(chars, i);
                    heads.push(head);
                    item_start = false;
                    i = end;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        heads
    }

    /// The top-level modules named after `prefix::` at each place it occurs
    /// as a path start (not inside another path or a macro's `$crate`).
    fn heads_after(chars: &[char], prefix: &[char]) -> Vec<(usize, Vec<String>)> {
        let mut found = Vec::new();
        let mut i = 0;
        while i + prefix.len() <= chars.len() {
            let starts_path = i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == '$');
            if starts_path && chars[i..i + prefix.len()] == *prefix {
                let mut j = i + prefix.len();
                while chars.get(j).is_some_and(|c| c.is_whitespace()) {
                    j += 1;
                }
                if chars.get(j) == Some(&'{') {
                    found.push((i, group_heads(chars, j)));
                } else {
                    let (head, _) = ident_at(chars, j);
                    found.push((i, vec![head]));
                }
                i = j;
            } else {
                i += 1;
            }
        }
        found
    }

    /// Every top-level module that `source` (the file of the module at
    /// `depth`, 1 for `src/engine.rs` or `src/engine/mod.rs`) names: paths
    /// from `crate::`, and `super::` chains that climb to the crate root.
    /// `crate::Error` and `crate::Result` are the root's re-exports of `error`.
    fn used_modules(source: &str, depth: usize) -> Vec<String> {
        let chars: Vec<char> = code_only(source).chars().collect();
        let crate_prefix: Vec<char> = "crate::".chars().collect();
        let mut used: Vec<String> = heads_after(&chars, &crate_prefix)
            .into_iter()
            .flat_map(|(_, heads)| heads)
            .collect();
        let mut climb: Vec<char> = Vec::new();
        for _ in 0..depth {
            climb.extend("super::".chars());
        }
        for (_, heads) in heads_after(&chars, &climb) {
            // Inside an inline module (`mod tests`) the same chain stops one
            // module short of the root: only names of top-level modules are
            // read as such (deeper chains' extra `super`s are skipped).
            used.extend(heads.into_iter().filter(|h| layer_of(h).is_some()));
        }
        used.into_iter()
            .map(|head| match head.as_str() {
                "Error" | "Result" => "error".to_owned(),
                _ => head,
            })
            .collect()
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every `(file, used module, why)` in `src/` that breaks the order.
    fn violations(src: &Path) -> Vec<(String, String, String)> {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        files.sort();
        let mut found = Vec::new();
        for file in files {
            let Ok(rel) = file.strip_prefix(src) else {
                continue;
            };
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let top = parts[0].trim_end_matches(".rs").to_owned();
            if top == "lib" || top == "main" || top == "layers" {
                continue;
            }
            let mut depth = parts.len();
            if parts.last().is_some_and(|p| p == "mod.rs") {
                depth -= 1;
            }
            let source = std::fs::read_to_string(&file).unwrap_or_default();
            for used in used_modules(&source, depth) {
                if used == "super" || used == "self" || used.is_empty() {
                    continue;
                }
                if let Some(why) = forbidden(&top, &used) {
                    found.push((rel.display().to_string(), used, why));
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    #[test]
    fn no_module_uses_a_layer_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let found = violations(&src);
        let report: Vec<String> = found
            .iter()
            .map(|(file, used, why)| format!("src/{file} uses crate::{used}: {why}"))
            .collect();
        assert!(report.is_empty(), "{}", report.join("\n"));
    }

    #[test]
    fn every_top_level_module_has_a_layer() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
        let declared: Vec<&str> = lib
            .lines()
            .filter_map(|line| line.trim().strip_prefix("pub mod "))
            .filter_map(|rest| rest.strip_suffix(';'))
            .collect();
        assert!(declared.contains(&"engine"), "{declared:?}");
        let missing: Vec<&&str> = declared.iter().filter(|m| layer_of(m).is_none()).collect();
        assert!(missing.is_empty(), "not in layers::LAYERS: {missing:?}");
    }

    #[test]
    fn uses_are_read_from_every_form_of_path() {
        let source = r##"
            use crate::{config::Config, domain::{Event, TaskId}};
            use crate::llm::LlmError; // crate::tui in a comment
            fn f() -> crate::Result<()> { let _ = "crate::cli"; let _ = '"'; g::<crate::effects::X>() }
            /* crate::daemon */
            const S: &str = r#"crate::bench"#;
            fn h() { $crate::x(); super::super::engine::run(); super::y(); }
        "##;
        let mut used = used_modules(source, 2);
        used.sort();
        assert_eq!(
            used,
            ["config", "domain", "effects", "engine", "error", "llm"]
        );
    }

    #[test]
    fn an_import_up_the_order_is_refused() {
        assert!(forbidden("engine", "tui").is_some());
        assert!(forbidden("effects", "engine").is_some());
        assert!(forbidden("tui", "daemon").is_some());
        assert!(forbidden("cli", "engine").is_none());
        assert!(forbidden("bench", "tui").is_none());
        assert!(forbidden("domain", "text").is_none());
        assert!(forbidden("domain", "nowhere").is_some());
    }

    /// A module's path from the crate root: `src/engine/run/mod.rs` and
    /// `src/engine/run.rs` are both `engine::run`.
    type ModPath = Vec<String>;

    /// The paths of the `use` tree (or plain path) starting at `i`:
    /// `a::{b::C, d::{self, E}}` gives `a::b::C`, `a::d`, `a::d::E`.
    fn path_tree(chars: &[char], mut i: usize) -> Vec<ModPath> {
        let mut prefix: ModPath = Vec::new();
        loop {
            while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                i += 1;
            }
            if chars.get(i) == Some(&'{') {
                let mut out = Vec::new();
                let mut depth = 0;
                let mut item = i + 1;
                let mut j = i;
                while j < chars.len() {
                    match chars[j] {
                        '{' => depth += 1,
                        '}' | ',' if depth == 1 => {
                            for sub in path_tree(chars, item) {
                                let mut path = prefix.clone();
                                path.extend(sub.into_iter().filter(|s| s != "self"));
                                out.push(path);
                            }
                            item = j + 1;
                            if chars[j] == '}' {
                                break;
                            }
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                return out;
            }
            let (segment, end) = ident_at(chars, i);
            if segment.is_empty() {
                return if prefix.is_empty() {
                    Vec::new()
                } else {
                    vec![prefix]
                };
            }
            prefix.push(segment);
            i = end;
            while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                i += 1;
            }
            if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
                i += 2;
            } else {
                return vec![prefix];
            }
        }
    }

    fn starts_with(chars: &[char], i: usize, word: &str) -> bool {
        word.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k) == Some(&c))
    }

    /// Every path `source` names, from the crate root: `crate::…`,
    /// `super::…` and `use child::…` (relative to the file's module `at`).
    fn named_paths(chars: &[char], at: &[String], modules: &BTreeSet<ModPath>) -> Vec<ModPath> {
        let mut found = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let fresh =
                i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == '$' || chars[i - 1] == ':');
            if !fresh {
                i += 1;
                continue;
            }
            if starts_with(chars, i, "crate::") {
                found.extend(path_tree(chars, i + "crate::".len()));
                i += "crate::".len();
            } else if starts_with(chars, i, "super::") {
                let mut up = 0;
                let mut j = i;
                while starts_with(chars, j, "super::") {
                    up += 1;
                    j += "super::".len();
                }
                if let Some(base) = at.len().checked_sub(up).map(|n| at[..n].to_vec()) {
                    for path in path_tree(chars, j) {
                        found.push(base.iter().cloned().chain(path).collect());
                    }
                }
                i = j;
            } else if starts_with(chars, i, "use ") {
                let mut j = i + "use ".len();
                while chars.get(j).is_some_and(|c| c.is_whitespace()) {
                    j += 1;
                }
                if starts_with(chars, j, "self::") {
                    j += "self::".len();
                }
                let (head, _) = ident_at(chars, j);
                let mut child = at.to_vec();
                child.push(head);
                if modules.contains(&child) {
                    for path in path_tree(chars, j) {
                        found.push(at.iter().cloned().chain(path).collect());
                    }
                }
                i = j;
            } else {
                i += 1;
            }
        }
        found
    }

    /// The module a path lands in: its longest prefix that is a module,
    /// following a parent's `pub use child::Name` to the child.
    fn landing(
        path: &[String],
        modules: &BTreeSet<ModPath>,
        reexports: &BTreeMap<(ModPath, String), ModPath>,
    ) -> ModPath {
        let mut at: ModPath = Vec::new();
        for segment in path {
            let mut next = at.clone();
            next.push(segment.clone());
            if modules.contains(&next) {
                at = next;
            } else if let Some(target) = reexports.get(&(at.clone(), segment.clone())) {
                let mut target = target.clone();
                while !target.is_empty() && !modules.contains(&target) {
                    target.pop();
                }
                return target;
            } else {
                break;
            }
        }
        at
    }

    /// Every module's uses of other modules, parents and children left out.
    fn module_graph(src: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let mut sources: BTreeMap<ModPath, Vec<char>> = BTreeMap::new();
        for file in files {
            let Ok(rel) = file.strip_prefix(src) else {
                continue;
            };
            let mut path: ModPath = rel
                .components()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_owned()
                })
                .collect();
            if path.last().is_some_and(|p| p == "mod") {
                path.pop();
            }
            if path == ["lib"] || path == ["main"] {
                continue;
            }
            let source = std::fs::read_to_string(&file).unwrap_or_default();
            sources.insert(path, code_only(&source).chars().collect());
        }
        let modules: BTreeSet<ModPath> = sources.keys().cloned().collect();
        let mut reexports = BTreeMap::new();
        for (at, chars) in &sources {
            for path in named_paths(chars, at, &modules) {
                // A path from `at` into one of its children (`pub use
                // child::Name`): `at::Name` lives in that child.
                if path.len() <= at.len() + 1 || path[..at.len()] != at[..] {
                    continue;
                }
                let child = path[..=at.len()].to_vec();
                if modules.contains(&child)
                    && let Some(name) = path.last()
                {
                    reexports.insert((at.clone(), name.clone()), path[..path.len() - 1].to_vec());
                }
            }
        }
        let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (at, chars) in &sources {
            for path in named_paths(chars, at, &modules) {
                let target = landing(&path, &modules, &reexports);
                let related = target.starts_with(at) || at.starts_with(&target);
                if !target.is_empty() && !related {
                    graph.entry(at.clone()).or_default().insert(target);
                }
            }
        }
        graph
    }

    fn reachable(
        graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        from: &ModPath,
    ) -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(at) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    }

    /// Every set of modules that use each other in a loop.
    fn loops(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<BTreeSet<String>> {
        let reach: BTreeMap<&ModPath, BTreeSet<ModPath>> =
            graph.keys().map(|m| (m, reachable(graph, m))).collect();
        let mut found: Vec<BTreeSet<String>> = Vec::new();
        for (module, from_it) in &reach {
            let members: BTreeSet<String> = from_it
                .iter()
                .filter(|other| reach.get(other).is_some_and(|back| back.contains(*module)))
                .map(|m| m.join("::"))
                .collect();
            if members.len() > 1 && !found.contains(&members) {
                found.push(members);
            }
        }
        found
    }

    #[test]
    fn no_modules_use_each_other_in_a_loop() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let known: Vec<BTreeSet<String>> = KNOWN_LOOPS
            .iter()
            .map(|l| l.iter().map(|m| (*m).to_owned()).collect())
            .collect();
        let new: Vec<String> = loops(&module_graph(&src))
            .into_iter()
            .filter(|l| !known.iter().any(|k| l.is_subset(k)))
            .map(|l| l.into_iter().collect::<Vec<_>>().join(" ↔ "))
            .collect();
        assert!(new.is_empty(), "module loops:\n{}", new.join("\n"));
    }

    #[test]
    fn use_trees_and_reexports_are_followed() {
        let chars: Vec<char> = "a::{b::C, d::{self, E as F}}; x".chars().collect();
        let paths: Vec<String> = path_tree(&chars, 0).iter().map(|p| p.join("::")).collect();
        assert_eq!(paths, ["a::b::C", "a::d", "a::d::E"]);
        let modules: BTreeSet<ModPath> =
            [vec!["d".to_owned()], vec!["d".into(), "e".into()]].into();
        let reexports = [(
            (vec!["d".to_owned()], "Event".to_owned()),
            vec!["d".to_owned(), "e".to_owned()],
        )]
        .into();
        let to = |p: &str| {
            landing(
                &p.split("::").map(str::to_owned).collect::<Vec<_>>(),
                &modules,
                &reexports,
            )
        };
        assert_eq!(to("d::Event"), ["d", "e"]);
        assert_eq!(to("d::Other"), ["d"]);
    }
}
