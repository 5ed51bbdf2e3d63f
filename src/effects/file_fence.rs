//! Confines agents' file access to their worktree. Every path an agent names
//! is resolved here: relative only, never through `..` or a symlink out of
//! the worktree, never a hard link (its other names may live anywhere), never
//! into `.git` or `.memofab` (in any letter case: case-insensitive file
//! systems exist), never a write the policy denies, and never a write to a
//! file locked for this agent (a tester's tests, for the coder). This is the
//! file tools' fence; agents' commands are fenced by [`super::isolation`],
//! and [`super::repo_watch`] notices what slipped past both.

use std::path::{Component, Path, PathBuf};

use crate::domain::policy::{Policy, Risk};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0:?} is an absolute path; use a path relative to the repository root")]
    Absolute(String),
    #[error("{0:?} leads outside the repository; use a path inside it")]
    Escapes(String),
    #[error("{0:?} goes through a symbolic link that points outside the repository")]
    SymlinkOut(String),
    #[error(
        "{0:?} is a hard link to a file that may live outside the repository; it cannot be read or written"
    )]
    HardLink(String),
    #[error("writing {path:?} is not allowed: {reason}")]
    Denied { path: String, reason: String },
    #[error(
        "{0:?} is one of the task's acceptance tests, written by its tester, and read-only for you; change the code so that it passes"
    )]
    Locked(String),
    #[error("{0:?} is inside .git, which agents may not touch; commits are made for you")]
    Git(String),
    #[error(
        "{0:?} is inside .memofab, the factory's own records, which agents may neither read nor write"
    )]
    Factory(String),
    #[error("{0:?} does not exist")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Sandbox {
    root: PathBuf,
    policy: Policy,
    /// Repository-relative files that may be read but not written.
    locked: Vec<String>,
}

impl Sandbox {
    pub fn new(root: &Path, policy: Policy) -> Result<Self, SandboxError> {
        let root = root.canonicalize().map_err(|source| SandboxError::Io {
            path: root.display().to_string(),
            source,
        })?;
        Ok(Self {
            root,
            policy,
            locked: Vec::new(),
        })
    }

    /// The same sandbox, refusing writes to `files` (repository-relative).
    pub fn with_locked(mut self, files: &[String]) -> Self {
        self.locked
            .extend(files.iter().map(|f| f.trim_matches('/').to_owned()));
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The repository-relative form of a path inside the sandbox.
    pub fn relative(&self, abs: &Path) -> Option<String> {
        abs.strip_prefix(&self.root)
            .ok()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
    }

    /// `rel` as a plain repository-relative path, `.` and `a/..` folded
    /// away without looking at the file system (`..` above the root, an
    /// absolute path and a protected name are refused). What the file tools
    /// write at, beneath the worktree and following no link.
    pub fn normalize(&self, rel: &str) -> Result<String, SandboxError> {
        let raw = rel.trim();
        if raw.starts_with('/')
            || raw.starts_with('\\')
            || raw.starts_with('~')
            || raw.get(1..2) == Some(":")
        {
            return Err(SandboxError::Absolute(rel.to_owned()));
        }
        // Normalise lexically first: `a/../b` is fine, `../b` is not.
        let mut parts: Vec<String> = Vec::new();
        for component in Path::new(raw).components() {
            match component {
                Component::Normal(part) => {
                    let part = part.to_string_lossy().into_owned();
                    protected(&part, rel)?;
                    parts.push(part);
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(SandboxError::Escapes(rel.to_owned()));
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(SandboxError::Absolute(rel.to_owned()));
                }
            }
        }
        Ok(parts.join("/"))
    }

    /// Resolves `rel` to an absolute path inside the worktree, or says why
    /// not. Links that stay inside are resolved here; the file tools then
    /// open the path returned beneath the worktree following none (see
    /// [`crate::effects::beneath`]), so a link swapped in meanwhile is refused.
    pub fn resolve(&self, rel: &str, access: Access) -> Result<PathBuf, SandboxError> {
        let normal = self.normalize(rel)?;
        let lexical = self.root.join(&normal);

        // Then follow symlinks: the deepest existing ancestor must stay inside.
        let mut existing = lexical.clone();
        let mut missing: Vec<std::ffi::OsString> = Vec::new();
        loop {
            match std::fs::symlink_metadata(&existing) {
                Ok(_) => break,
                Err(_) => match (
                    existing.file_name().map(|n| n.to_owned()),
                    existing.parent(),
                ) {
                    (Some(name), Some(parent)) => {
                        missing.push(name);
                        existing = parent.to_owned();
                    }
                    _ => return Err(SandboxError::Escapes(rel.to_owned())),
                },
            }
        }
        let real = match existing.canonicalize() {
            Ok(real) => real,
            // A dangling symlink: where it points does not exist, so it cannot
            // be shown to be inside.
            Err(_) => return Err(SandboxError::SymlinkOut(rel.to_owned())),
        };
        if !real.starts_with(&self.root) {
            return Err(SandboxError::SymlinkOut(rel.to_owned()));
        }
        let mut resolved = real;
        for name in missing.iter().rev() {
            resolved.push(name);
        }
        if let Some(inside) = self.relative(&resolved) {
            for part in inside.split('/') {
                protected(part, rel)?;
            }
        }
        if is_hard_linked(&resolved) {
            return Err(SandboxError::HardLink(rel.to_owned()));
        }

        if access == Access::Write {
            let check = self.relative(&resolved).unwrap_or_else(|| normal.clone());
            for candidate in [normal.as_str(), check.as_str()] {
                let verdict = self.policy.risk_of(candidate);
                if verdict.risk == Risk::Deny {
                    return Err(SandboxError::Denied {
                        path: rel.to_owned(),
                        reason: verdict.reason,
                    });
                }
                // In any letter case: case-insensitive file systems exist.
                if self
                    .locked
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(candidate))
                {
                    return Err(SandboxError::Locked(rel.to_owned()));
                }
            }
        }
        Ok(resolved)
    }
}

/// Whether a file or directory name is one agents may never reach.
pub fn is_protected_name(name: &str) -> bool {
    name.eq_ignore_ascii_case(".git") || name.eq_ignore_ascii_case(".memofab")
}

fn protected(part: &str, rel: &str) -> Result<(), SandboxError> {
    if part.eq_ignore_ascii_case(".git") {
        Err(SandboxError::Git(rel.to_owned()))
    } else if part.eq_ignore_ascii_case(".memofab") {
        Err(SandboxError::Factory(rel.to_owned()))
    } else {
        Ok(())
    }
}

/// A regular file with more than one name: the others may be outside.
#[cfg(unix)]
pub fn is_hard_linked(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.nlink() > 1)
}

#[cfg(not(unix))]
pub fn is_hard_linked(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> (tempfile::TempDir, tempfile::TempDir, Sandbox) {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("src")).unwrap();
        std::fs::write(root.path().join("src/lib.rs"), "x").unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let sb = Sandbox::new(root.path(), Policy::protected_only()).unwrap();
        (root, outside, sb)
    }

    #[test]
    fn plain_paths_resolve_inside() {
        let (_r, _o, sb) = sandbox();
        let p = sb.resolve("src/lib.rs", Access::Read).unwrap();
        assert!(p.starts_with(sb.root()));
        let new = sb.resolve("src/new/dir/file.rs", Access::Write).unwrap();
        assert!(new.ends_with("src/new/dir/file.rs"));
        assert!(sb.resolve("src/../src/lib.rs", Access::Read).is_ok());
    }

    #[test]
    fn escapes_are_refused() {
        let (_r, outside, sb) = sandbox();
        assert!(matches!(
            sb.resolve("../x", Access::Read),
            Err(SandboxError::Escapes(_))
        ));
        assert!(matches!(
            sb.resolve("src/../../x", Access::Read),
            Err(SandboxError::Escapes(_))
        ));
        assert!(matches!(
            sb.resolve("/etc/passwd", Access::Read),
            Err(SandboxError::Absolute(_))
        ));
        assert!(matches!(
            sb.resolve("~/x", Access::Read),
            Err(SandboxError::Absolute(_))
        ));
        let abs = outside.path().join("secret").display().to_string();
        assert!(matches!(
            sb.resolve(&abs, Access::Read),
            Err(SandboxError::Absolute(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_are_refused_for_read_and_write() {
        let (root, outside, sb) = sandbox();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link"))
            .unwrap();
        std::os::unix::fs::symlink("/nonexistent/target", root.path().join("dangling")).unwrap();
        for access in [Access::Read, Access::Write] {
            assert!(matches!(
                sb.resolve("out/secret", access),
                Err(SandboxError::SymlinkOut(_))
            ));
            assert!(matches!(
                sb.resolve("out/new-file", access),
                Err(SandboxError::SymlinkOut(_))
            ));
            assert!(matches!(
                sb.resolve("link", access),
                Err(SandboxError::SymlinkOut(_))
            ));
            assert!(matches!(
                sb.resolve("dangling", access),
                Err(SandboxError::SymlinkOut(_))
            ));
        }
        // A symlink that stays inside is fine.
        std::os::unix::fs::symlink(root.path().join("src"), root.path().join("alias")).unwrap();
        assert!(sb.resolve("alias/lib.rs", Access::Read).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn hard_links_cannot_be_read_or_written() {
        let (root, outside, sb) = sandbox();
        std::fs::hard_link(outside.path().join("secret"), root.path().join("twin")).unwrap();
        for access in [Access::Read, Access::Write] {
            assert!(matches!(
                sb.resolve("twin", access),
                Err(SandboxError::HardLink(_))
            ));
        }
    }

    #[test]
    fn protected_names_are_refused_in_any_case() {
        let (root, _o, sb) = sandbox();
        std::fs::create_dir_all(root.path().join(".memofab")).unwrap();
        std::fs::write(root.path().join(".memofab/store.db"), "events").unwrap();
        for path in [
            ".GIT/config",
            "src/.Git",
            ".memofab/store.db",
            ".MEMOFAB",
            "x/../.memofab",
        ] {
            for access in [Access::Read, Access::Write] {
                assert!(sb.resolve(path, access).is_err(), "{path} {access:?}");
            }
        }
    }

    #[test]
    fn git_and_factory_definitions_are_protected() {
        let (_r, _o, sb) = sandbox();
        assert!(matches!(
            sb.resolve(".git/config", Access::Read),
            Err(SandboxError::Git(_))
        ));
        assert!(matches!(
            sb.resolve("src/.git", Access::Write),
            Err(SandboxError::Git(_))
        ));
        assert!(matches!(
            sb.resolve(".memofab/policy.toml", Access::Write),
            Err(SandboxError::Factory(_))
        ));
        assert!(matches!(
            sb.resolve("prompts/coder.md", Access::Write),
            Err(SandboxError::Denied { .. })
        ));
        assert!(matches!(
            sb.resolve("./prompts/../prompts/x.md", Access::Write),
            Err(SandboxError::Denied { .. })
        ));
        assert!(sb.resolve("prompts/coder.md", Access::Read).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn locked_files_are_readable_but_never_writable() {
        let (root, _o, sb) = sandbox();
        std::fs::create_dir_all(root.path().join("tests")).unwrap();
        std::fs::write(root.path().join("tests/accept.sh"), "t").unwrap();
        std::os::unix::fs::symlink("accept.sh", root.path().join("tests/alias.sh")).unwrap();
        let sb = sb.with_locked(&["tests/accept.sh".to_owned()]);
        assert!(sb.resolve("tests/accept.sh", Access::Read).is_ok());
        for path in [
            "tests/accept.sh",
            "./tests/../tests/accept.sh",
            "TESTS/Accept.sh",
            "tests/alias.sh",
        ] {
            assert!(
                matches!(
                    sb.resolve(path, Access::Write),
                    Err(SandboxError::Locked(_))
                ),
                "{path}"
            );
        }
        assert!(sb.resolve("tests/other.sh", Access::Write).is_ok());
        assert!(sb.resolve("src/lib.rs", Access::Write).is_ok());
    }
}
