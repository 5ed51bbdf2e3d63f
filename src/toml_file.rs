//! Errors in the TOML files memofab reads, located as `path:line:col` so an
//! editor can jump to them. toml reports a byte span; this turns it into a
//! line and column of the file's text.

/// `origin:line:col: message` for an error toml found in `text`, followed
/// by the line itself; `origin: message` when toml gave no span.
pub fn located(origin: &str, text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end();
    let plain = duplicate_table(message);
    let message = plain.as_deref().unwrap_or(message);
    match err.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            let source = text.lines().nth(line - 1).unwrap_or_default().trim();
            format!("{origin}:{line}:{col}: {message}\n    {source}")
        }
        None => format!("{origin}: {message}"),
    }
}

/// toml's words for a table written twice (`invalid table header` over
/// `duplicate key `b` in table `a``) as a person would say them.
fn duplicate_table(message: &str) -> Option<String> {
    let mut lines = message.lines();
    if lines.next()?.trim() != "invalid table header" {
        return None;
    }
    let detail = lines.next()?.trim();
    let rest = detail.strip_prefix("duplicate key `")?;
    let (key, rest) = rest.split_once('`')?;
    let table = match rest.trim().strip_prefix("in table `") {
        Some(parent) => format!("{}.{key}", parent.trim_end_matches('`')),
        None => key.to_owned(),
    };
    Some(format!(
        "duplicate table [{table}]: write each table once, with all its keys under one header"
    ))
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
    fn a_table_written_twice_is_named_at_its_second_header() {
        for (text, table, line) in [
            ("[project]\na = 1\n\n[project]\nb = 2\n", "[project]", 4),
            ("[run]\n[x.y]\nc = 1\n[x.y]\n", "[x.y]", 4),
        ] {
            let err = toml::from_str::<toml::Value>(text).unwrap_err();
            let located = located("p.toml", text, &err);
            assert!(located.starts_with(&format!("p.toml:{line}:")), "{located}");
            assert!(
                located.contains(&format!("duplicate table {table}")),
                "{located}"
            );
            assert!(!located.contains("invalid table header"), "{located}");
        }
    }

    #[test]
    fn columns_count_characters_and_offsets_are_clamped() {
        assert_eq!(line_col("é = 1", 3), (1, 3));
        assert_eq!(line_col("a\nb", 99), (2, 2));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
