//! Errors in the TOML files memofab reads, located as `path:line:col` so an
//! editor can jump to them. toml reports a byte span; this turns it into a
//! line and column of the file's text.

/// `origin:line:col: message` for an error toml found in `text`, followed
/// by the line itself; `origin: message` when toml gave no span.
pub fn located(origin: &str, text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            let source = text.lines().nth(line - 1).unwrap_or_default().trim();
            format!("{origin}:{line}:{col}: {message}\n    {source}")
        }
        None => format!("{origin}: {message}"),
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        name: String,
    }

    #[test]
    fn an_unknown_key_is_located_by_line_and_column() {
        let text = "name = \"x\"\n\n  reasn = 1\n";
        let err = toml::from_str::<Shape>(text).unwrap_err();
        let located = located("p.toml", text, &err);
        assert!(located.starts_with("p.toml:3:3: "), "{located}");
        assert!(located.ends_with("\n    reasn = 1"), "{located}");
    }

    #[test]
    fn columns_count_characters_and_offsets_are_clamped() {
        assert_eq!(line_col("é = 1", 3), (1, 3));
        assert_eq!(line_col("a\nb", 99), (2, 2));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
