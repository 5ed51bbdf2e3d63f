//! Themes: named style roles, not per-widget colours. The bundled themes are
//! embedded; a user's theme file overrides only the roles it sets, on top of
//! the dark theme.

use std::collections::BTreeMap;
use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

use crate::domain::TaskState;

const DARK: &str = include_str!("../../themes/dark.toml");
const LIGHT: &str = include_str!("../../themes/light.toml");
const HIGH_CONTRAST: &str = include_str!("../../themes/high-contrast.toml");

pub const BUNDLED: [(&str, &str); 3] = [
    ("dark", DARK),
    ("light", LIGHT),
    ("high-contrast", HIGH_CONTRAST),
];

/// Every role a widget may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Text,
    Muted,
    Accent,
    Border,
    BorderFocus,
    Selection,
    StatusBar,
    Error,
    Warning,
    TaskPending,
    TaskReady,
    TaskRunning,
    TaskReviewing,
    TaskTesting,
    TaskGate,
    TaskQueued,
    TaskMerging,
    TaskVerifying,
    TaskMerged,
    TaskFailed,
    TaskConflict,
    TaskBlocked,
    TaskCancelled,
    AgentText,
    AgentHuman,
    ToolCall,
    ToolOk,
    ToolError,
    DiffAdd,
    DiffDel,
    DiffHunk,
    DiffFile,
    ConflictMarker,
    SearchMatch,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    syntax_theme: Option<String>,
    #[serde(default)]
    roles: BTreeMap<Role, StyleSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("cannot read theme {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `message` names the theme, and the line and column if known.
    #[error("invalid theme: {message}")]
    Invalid { origin: String, message: String },
    #[error("no bundled theme named {0:?} (bundled: dark, light, high-contrast) and no such file")]
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    styles: BTreeMap<Role, Style>,
    /// The syntect theme used to highlight diffs.
    pub syntax_theme: String,
}

impl Theme {
    /// A bundled theme by name, or a theme file by path.
    pub fn load(name_or_path: &str) -> Result<Theme, ThemeError> {
        if let Some((_, text)) = BUNDLED.iter().find(|(n, _)| *n == name_or_path) {
            let mut theme = Theme::empty();
            theme.overlay(text, name_or_path)?;
            return Ok(theme);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(ThemeError::Unknown(name_or_path.to_owned()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ThemeError::Read {
            path: name_or_path.to_owned(),
            source,
        })?;
        let mut theme = Theme::dark();
        theme.overlay(&text, name_or_path)?;
        Ok(theme)
    }

    /// The default theme; bundled, so it always parses (a test checks).
    pub fn dark() -> Theme {
        let mut theme = Theme::empty();
        let _ = theme.overlay(DARK, "dark");
        theme
    }

    fn empty() -> Theme {
        Theme {
            styles: BTreeMap::new(),
            syntax_theme: "base16-ocean.dark".into(),
        }
    }

    fn overlay(&mut self, text: &str, origin: &str) -> Result<(), ThemeError> {
        let invalid = |message: String| ThemeError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        let file: ThemeFile = toml::from_str(text)
            .map_err(|e| invalid(crate::toml_file::located(origin, text, &e)))?;
        if let Some(syntax) = file.syntax_theme {
            self.syntax_theme = syntax;
        }
        for (role, spec) in file.roles {
            let mut style = Style::default();
            if let Some(fg) = &spec.fg {
                style = style
                    .fg(parse_color(fg).map_err(|e| invalid(format!("{origin}: {role:?}: {e}")))?);
            }
            if let Some(bg) = &spec.bg {
                style = style
                    .bg(parse_color(bg).map_err(|e| invalid(format!("{origin}: {role:?}: {e}")))?);
            }
            if spec.bold {
                style = style.add_modifier(Modifier::BOLD);
            }
            self.styles.insert(role, style);
        }
        Ok(())
    }

    pub fn style(&self, role: Role) -> Style {
        self.styles.get(&role).copied().unwrap_or_default()
    }

    pub fn task(&self, state: TaskState) -> Style {
        self.style(task_role(state))
    }
}

pub fn task_role(state: TaskState) -> Role {
    match state {
        TaskState::Pending => Role::TaskPending,
        TaskState::Ready => Role::TaskReady,
        TaskState::Running => Role::TaskRunning,
        TaskState::Reviewing => Role::TaskReviewing,
        TaskState::Testing => Role::TaskTesting,
        TaskState::AwaitingGate => Role::TaskGate,
        TaskState::Queued => Role::TaskQueued,
        TaskState::Merging => Role::TaskMerging,
        TaskState::Verifying => Role::TaskVerifying,
        TaskState::Merged => Role::TaskMerged,
        TaskState::Failed => Role::TaskFailed,
        TaskState::Conflict => Role::TaskConflict,
        TaskState::Blocked => Role::TaskBlocked,
        TaskState::Cancelled => Role::TaskCancelled,
        // Waits for a human, like a gate.
        TaskState::OverBudget => Role::TaskGate,
    }
}

fn parse_color(text: &str) -> Result<Color, String> {
    text.parse::<Color>()
        .map_err(|_| format!("{text:?} is not a colour (a name or #rrggbb)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_theme_parses_and_sets_every_role() {
        for (name, _) in BUNDLED {
            let theme = Theme::load(name).unwrap();
            for state in TaskState::ALL {
                assert_ne!(theme.task(state), Style::default(), "{name}: {state}");
            }
            assert!(
                crate::tui::highlight::has_syntax_theme(&theme.syntax_theme),
                "{name}: unknown syntax theme {}",
                theme.syntax_theme
            );
        }
    }

    #[test]
    fn a_user_file_overrides_only_what_it_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, "[roles]\ntask_merged = { fg = \"#ff0000\" }\n").unwrap();
        let theme = Theme::load(path.to_str().unwrap()).unwrap();
        assert_eq!(
            theme.task(TaskState::Merged).fg,
            Some(Color::Rgb(255, 0, 0))
        );
        assert_eq!(
            theme.task(TaskState::Failed),
            Theme::dark().task(TaskState::Failed)
        );
    }

    #[test]
    fn bad_themes_are_clear_errors() {
        assert!(matches!(Theme::load("neon"), Err(ThemeError::Unknown(_))));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[roles]\ntext = { fg = \"not-a-colour\" }\n").unwrap();
        let err = Theme::load(path.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("not-a-colour"), "{err}");
    }
}
