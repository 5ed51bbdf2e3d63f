//! Syntax highlighting of diff lines with syntect. The syntax and theme sets
//! load once; oversized input falls back to plain text so a huge diff cannot
//! stall a frame.

use std::sync::OnceLock;

use ratatui::style::{Color, Style};
use ratatui::text::Span;
use syntect::easy::HighlightLines;
use syntect::highlighting::ThemeSet;
use syntect::parsing::SyntaxSet;

/// Lines longer than this are not highlighted.
const MAX_LINE: usize = 500;

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

fn themes() -> &'static ThemeSet {
    static SET: OnceLock<ThemeSet> = OnceLock::new();
    SET.get_or_init(ThemeSet::load_defaults)
}

pub fn has_syntax_theme(name: &str) -> bool {
    themes().themes.contains_key(name)
}

/// Highlights one line of code from file `path`; `None` when the language is
/// unknown or the line too long, and the caller shows plain text.
pub fn highlight_line(path: &str, line: &str, theme: &str) -> Option<Vec<Span<'static>>> {
    if line.len() > MAX_LINE {
        return None;
    }
    let set = syntaxes();
    let ext = path.rsplit('.').next().unwrap_or("");
    let syntax = set
        .find_syntax_by_extension(ext)
        .or_else(|| first_line_syntax(set, path))?;
    let theme = themes().themes.get(theme)?;
    let mut h = HighlightLines::new(syntax, theme);
    let ranges = h.highlight_line(line, set).ok()?;
    Some(
        ranges
            .into_iter()
            .map(|(style, text)| {
                let c = style.foreground;
                Span::styled(
                    text.to_owned(),
                    Style::default().fg(Color::Rgb(c.r, c.g, c.b)),
                )
            })
            .collect(),
    )
}

/// Scripts without an extension (`bin/tool`) are most often shell.
fn first_line_syntax<'a>(
    set: &'a SyntaxSet,
    path: &str,
) -> Option<&'a syntect::parsing::SyntaxReference> {
    if path.contains("bin/") {
        set.find_syntax_by_extension("sh")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_is_highlighted_and_unknown_is_plain() {
        let spans = highlight_line("src/lib.rs", "fn main() {}", "base16-ocean.dark").unwrap();
        assert!(spans.len() > 1);
        assert_eq!(
            spans.iter().map(|s| s.content.as_ref()).collect::<String>(),
            "fn main() {}"
        );
        assert!(highlight_line("data.unknownext", "x", "base16-ocean.dark").is_none());
        assert!(highlight_line("a.rs", &"x".repeat(MAX_LINE + 1), "base16-ocean.dark").is_none());
    }
}
