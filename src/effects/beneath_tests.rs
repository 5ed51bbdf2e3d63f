//! Every case runs twice: through `openat2`, and through the per-component
//! walk that kernels without it get.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::*;

struct Case {
    root: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("src")).unwrap();
        std::fs::write(root.path().join("src/lib.rs"), "lib").unwrap();
        std::fs::write(
            outside.path().join("config.toml"),
            "isolation = \"landlock\"",
        )
        .unwrap();
        Case { root, outside }
    }

    fn beneath(&self, openat2: bool) -> Beneath {
        let mut beneath = Beneath::open(self.root.path()).unwrap();
        beneath.try_openat2 = openat2;
        beneath
    }

    fn at(&self, rel: &str) -> std::path::PathBuf {
        self.root.path().join(rel)
    }

    /// Every file under the outside directory, with its bytes.
    fn outside_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(self.outside.path())
            .unwrap()
            .flatten()
            .map(|e| {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                (e.file_name().to_string_lossy().into_owned(), bytes)
            })
            .collect();
        files.sort();
        files
    }

    fn outside_untouched(&self) {
        assert_eq!(
            self.outside_files(),
            vec![(
                "config.toml".to_owned(),
                b"isolation = \"landlock\"".to_vec()
            )]
        );
    }
}

fn each_resolver(test: impl Fn(bool)) {
    test(true);
    test(false);
}

#[test]
fn plain_paths_are_read_written_and_removed() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        assert_eq!(b.read(Path::new("src/lib.rs")).unwrap(), b"lib");
        assert_eq!(b.read(Path::new("./src/./lib.rs")).unwrap(), b"lib");
        b.write(Path::new("a/b/c.txt"), b"new", None).unwrap();
        assert_eq!(std::fs::read(case.at("a/b/c.txt")).unwrap(), b"new");
        assert_eq!(b.kind(Path::new("a/b")).unwrap(), Some(Kind::Dir));
        assert_eq!(b.kind(Path::new("a/b/c.txt")).unwrap(), Some(Kind::File));
        assert_eq!(b.kind(Path::new("a/nothing")).unwrap(), None);
        assert!(b.remove(Path::new("a")).unwrap());
        assert!(!case.at("a").exists());
        assert!(!b.remove(Path::new("a")).unwrap(), "nothing left to remove");
        assert!(matches!(
            b.read(Path::new("missing")),
            Err(BeneathError::NotFound { .. })
        ));
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(case.root.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("src")]);
    });
}

#[test]
fn a_file_keeps_its_mode_and_a_new_one_gets_the_mode_asked_for() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        std::fs::write(case.at("run.sh"), "old").unwrap();
        std::fs::set_permissions(case.at("run.sh"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        b.write(Path::new("run.sh"), b"new", None).unwrap();
        let mode = |p| std::fs::metadata(case.at(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("run.sh"), 0o750);
        b.put(Path::new("t/accept.sh"), b"x", Some(0o755)).unwrap();
        assert_eq!(mode("t/accept.sh"), 0o755);
        b.write(Path::new("plain.txt"), b"x", None).unwrap();
        assert_eq!(mode("plain.txt"), 0o644);
    });
}

#[test]
fn a_symlinked_parent_is_never_followed() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        symlink(case.outside.path(), case.at("tests")).unwrap();
        assert!(matches!(
            b.write(
                Path::new("tests/config.toml"),
                b"isolation = \"none\"",
                None
            ),
            Err(BeneathError::Symlink { .. })
        ));
        assert!(matches!(
            b.write(Path::new("tests/new/deeper.txt"), b"x", None),
            Err(BeneathError::Symlink { .. })
        ));
        assert!(matches!(
            b.read(Path::new("tests/config.toml")),
            Err(BeneathError::Symlink { .. })
        ));
        assert!(matches!(
            b.create_dirs(Path::new("tests/sub")),
            Err(BeneathError::Symlink { .. })
        ));
        assert_eq!(b.kind(Path::new("tests/config.toml")).unwrap(), None);
        assert!(!b.remove(Path::new("tests/config.toml")).unwrap());
        case.outside_untouched();
        // Even a link that stays inside is not followed.
        symlink("src", case.at("alias")).unwrap();
        assert!(matches!(
            b.read(Path::new("alias/lib.rs")),
            Err(BeneathError::Symlink { .. })
        ));
    });
}

#[test]
fn a_symlinked_last_component_is_never_followed() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        symlink(case.outside.path().join("config.toml"), case.at("link")).unwrap();
        assert!(matches!(
            b.read(Path::new("link")),
            Err(BeneathError::Symlink { .. })
        ));
        assert!(matches!(
            b.write(Path::new("link"), b"isolation = \"none\"", None),
            Err(BeneathError::Symlink { .. })
        ));
        assert_eq!(b.kind(Path::new("link")).unwrap(), Some(Kind::Symlink));
        case.outside_untouched();
        // Put replaces the link itself with a file.
        b.put(Path::new("link"), b"mine", None).unwrap();
        assert_eq!(std::fs::read(case.at("link")).unwrap(), b"mine");
        assert!(
            !std::fs::symlink_metadata(case.at("link"))
                .unwrap()
                .is_symlink()
        );
        case.outside_untouched();
    });
}

#[test]
fn dotdot_and_absolute_paths_are_refused_before_any_lookup() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        let escape = format!(
            "../{}/planted",
            case.outside.path().file_name().unwrap().to_string_lossy()
        );
        let absolute = case.outside.path().join("planted");
        for rel in [
            Path::new(&escape),
            Path::new("src/../../planted"),
            Path::new("src/../lib.rs"),
            absolute.as_path(),
            Path::new(""),
        ] {
            assert!(
                matches!(
                    b.write(rel, b"x", None),
                    Err(BeneathError::NotRelative { .. } | BeneathError::IsADirectory { .. })
                ),
                "{rel:?}"
            );
            assert!(b.read(rel).is_err(), "{rel:?}");
            assert!(b.remove(rel).is_err(), "{rel:?}");
        }
        case.outside_untouched();
    });
}

#[test]
fn a_dangling_link_is_not_created_through() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        let target = case.outside.path().join("made-through-link");
        symlink(&target, case.at("dangling")).unwrap();
        symlink(case.outside.path().join("new-dir"), case.at("dangling-dir")).unwrap();
        assert!(b.write(Path::new("dangling"), b"x", None).is_err());
        assert!(b.write(Path::new("dangling-dir/f"), b"x", None).is_err());
        assert!(b.read(Path::new("dangling")).is_err());
        assert!(!target.exists());
        case.outside_untouched();
        assert!(b.remove(Path::new("dangling")).unwrap());
        assert!(std::fs::symlink_metadata(case.at("dangling")).is_err());
    });
}

#[test]
fn a_directory_where_a_file_should_be() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        std::fs::create_dir_all(case.at("tests/accept.sh/inner")).unwrap();
        std::fs::write(case.at("tests/accept.sh/inner/f"), "x").unwrap();
        assert!(matches!(
            b.write(Path::new("tests/accept.sh"), b"t", None),
            Err(BeneathError::IsADirectory { .. })
        ));
        assert!(matches!(
            b.read(Path::new("tests/accept.sh")),
            Err(BeneathError::IsADirectory { .. })
        ));
        // A file where a directory should be.
        assert!(matches!(
            b.write(Path::new("src/lib.rs/x"), b"t", None),
            Err(BeneathError::NotADirectory { .. })
        ));
        b.put(Path::new("tests/accept.sh"), b"t", None).unwrap();
        assert_eq!(std::fs::read(case.at("tests/accept.sh")).unwrap(), b"t");
    });
}

#[test]
fn put_replaces_a_planted_link_on_the_way_and_writes_inside() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        symlink(case.outside.path(), case.at("tests")).unwrap();
        b.put(Path::new("tests/config.toml"), b"the tester's", None)
            .unwrap();
        assert!(
            std::fs::symlink_metadata(case.at("tests"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(
            std::fs::read(case.at("tests/config.toml")).unwrap(),
            b"the tester's"
        );
        case.outside_untouched();
        // A file where a directory belongs goes too.
        std::fs::write(case.at("spec"), "in the way").unwrap();
        b.put(Path::new("spec/x"), b"x", None).unwrap();
        assert_eq!(std::fs::read(case.at("spec/x")).unwrap(), b"x");
    });
}

#[test]
fn removing_never_reaches_through_links() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        // A tree with links to a file and a directory outside.
        std::fs::create_dir_all(case.at("tree/a/b")).unwrap();
        std::fs::write(case.at("tree/a/b/f"), "x").unwrap();
        symlink(case.outside.path(), case.at("tree/a/out-dir")).unwrap();
        symlink(
            case.outside.path().join("config.toml"),
            case.at("tree/out-file"),
        )
        .unwrap();
        assert!(b.remove(Path::new("tree")).unwrap());
        assert!(std::fs::symlink_metadata(case.at("tree")).is_err());
        case.outside_untouched();
        // A link to a directory is removed itself.
        symlink(case.outside.path(), case.at("linked-dir")).unwrap();
        assert!(b.remove(Path::new("linked-dir")).unwrap());
        assert!(std::fs::symlink_metadata(case.at("linked-dir")).is_err());
        case.outside_untouched();
        // Through a linked parent there is nothing beneath to remove.
        symlink(case.outside.path(), case.at("via")).unwrap();
        assert!(!b.remove(Path::new("via/config.toml")).unwrap());
        case.outside_untouched();
    });
}

#[test]
fn a_hard_link_is_replaced_not_written_into() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        if std::fs::hard_link(case.outside.path().join("config.toml"), case.at("twin")).is_err() {
            return; // different file systems
        }
        b.write(Path::new("twin"), b"isolation = \"none\"", None)
            .unwrap();
        assert_eq!(
            std::fs::read(case.at("twin")).unwrap(),
            b"isolation = \"none\""
        );
        case.outside_untouched();
    });
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            case.at("pipe"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(matches!(
            b.read(Path::new("pipe")),
            Err(BeneathError::NotAFile { .. })
        ));
        assert_eq!(b.kind(Path::new("pipe")).unwrap(), Some(Kind::Other));
        b.put(Path::new("pipe"), b"file", None).unwrap();
        assert_eq!(std::fs::read(case.at("pipe")).unwrap(), b"file");
    });
}

#[test]
fn absurdly_deep_trees_are_refused_not_crashed_on() {
    let case = Case::new();
    let b = case.beneath(true);
    let mut dir = rustix::fs::open(case.root.path(), dir_flags(), Mode::empty()).unwrap();
    rustix::fs::mkdirat(&dir, "deep", Mode::from_raw_mode(0o755)).unwrap();
    dir = rustix::fs::openat(&dir, "deep", dir_flags(), Mode::empty()).unwrap();
    for _ in 0..MAX_DEPTH + 5 {
        rustix::fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(&dir, "d", dir_flags(), Mode::empty()).unwrap();
    }
    assert!(matches!(
        b.remove(Path::new("deep")),
        Err(BeneathError::TooDeep { .. })
    ));
}

#[test]
fn the_root_itself_may_not_be_a_link_nor_a_link_beneath_a_trusted_base() {
    let case = Case::new();
    let linked = case.outside.path().join("root-link");
    symlink(case.root.path(), &linked).unwrap();
    assert!(matches!(
        Beneath::open(&linked),
        Err(BeneathError::Symlink { .. })
    ));
    // A worktree under the repository whose parent an agent replaced by a link.
    std::fs::create_dir_all(case.at("wt-real/r/t")).unwrap();
    symlink(case.at("wt-real"), case.at("worktrees")).unwrap();
    assert!(matches!(
        Beneath::open_under(case.root.path(), &case.at("worktrees/r/t")),
        Err(BeneathError::Symlink { .. })
    ));
    assert!(Beneath::open_under(case.root.path(), &case.at("wt-real/r/t")).is_ok());
    // Removing the worktree path through the link removes nothing beneath it.
    assert!(!remove_all(case.root.path(), &case.at("worktrees/r/t")).unwrap());
    assert!(case.at("wt-real/r/t").is_dir());
    assert!(remove_all(case.root.path(), &case.at("wt-real/r")).unwrap());
    assert!(!case.at("wt-real/r").exists());
}

/// No check-then-open: while another thread keeps swapping a directory for
/// a link to the outside, not one write lands outside.
#[test]
fn writes_racing_a_swapped_directory_never_land_outside() {
    each_resolver(|openat2| {
        let case = Case::new();
        let b = case.beneath(openat2);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (dir, link_tmp, outside) = (
            case.at("tests"),
            case.at("tests-link"),
            case.outside.path().to_owned(),
        );
        let flipper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = std::fs::create_dir(&dir);
                    let _ = symlink(&outside, &link_tmp);
                    let _ = std::fs::remove_dir(&dir);
                    let _ = std::fs::rename(&link_tmp, &dir);
                    let _ = std::fs::remove_file(&dir);
                }
            })
        };
        for i in 0..2000 {
            let _ = b.write(Path::new(&format!("tests/f{i}")), b"x", None);
            let _ = b.remove(Path::new("tests/config.toml"));
        }
        stop.store(true, Ordering::Relaxed);
        flipper.join().unwrap();
        case.outside_untouched();
    });
}
