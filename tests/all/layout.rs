//! The test tree's own check: with `autotests = false` Cargo builds only
//! `tests/all/main.rs`, so a test file that is not declared as a module
//! there would silently never run.

use std::collections::BTreeSet;
use std::path::Path;

/// The stems of the `.rs` files in `dir`, but `skip`.
fn rust_files(dir: &Path, skip: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
        .filter(|stem| stem != skip)
        .collect()
}

/// The modules `file` declares with `mod name;` (or `pub mod name;`).
fn declared(file: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix("pub ").unwrap_or(line.trim());
            Some(line.strip_prefix("mod ")?.strip_suffix(';')?.to_owned())
        })
        .collect()
}

#[test]
fn every_test_file_is_a_module_of_the_one_test_binary() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let all = tests.join("all");
    assert_eq!(
        rust_files(&tests, ""),
        BTreeSet::new(),
        "tests/*.rs is not built (autotests = false): move the file to tests/all/ \
         and declare it in tests/all/main.rs (docs/testing.md)"
    );
    let mut modules = rust_files(&all, "main");
    modules.insert("support".to_owned());
    assert_eq!(modules, declared(&all.join("main.rs")));
    assert_eq!(
        rust_files(&all.join("support"), "mod"),
        declared(&all.join("support/mod.rs"))
    );
}
