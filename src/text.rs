//! Plain-text helpers: the headless summary and the cockpit wrap long
//! reasons rather than cut them; the small profile's guards read a task's
//! words.

/// The words of `text` in order, lower-cased, split at anything that is
/// not a letter or digit (`README.md` is `readme`, `md`).
pub fn lower_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The spans of `text` between quote marks (`'`, `"`, a backtick): opened
/// by a mark at the start of a word and closed by the same mark at the end
/// of one (an apostrophe inside a word, as in "don't", opens nothing).
pub fn quoted(text: &str) -> Vec<&str> {
    quote_spans(text)
        .into_iter()
        .map(|(start, end)| &text[start..end])
        .collect()
}

/// `text` with each quoted span (see [`quoted`]) and its marks replaced by
/// a space: the words a text says itself.
pub fn outside_quotes(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut from = 0;
    for (start, end) in quote_spans(text) {
        // The marks are one byte each.
        kept.push_str(&text[from..start - 1]);
        kept.push(' ');
        from = end + 1;
    }
    kept.push_str(&text[from..]);
    kept
}

/// Byte ranges of the quoted spans of `text`, marks excluded.
fn quote_spans(text: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let word = |i: usize| chars.get(i).is_some_and(|(_, c)| c.is_alphanumeric());
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, mark) = chars[i];
        let opens = matches!(mark, '\'' | '"' | '`') && !(i > 0 && word(i - 1));
        let close = opens
            .then(|| (i + 1..chars.len()).find(|&j| chars[j].1 == mark && !word(j + 1)))
            .flatten();
        match close {
            Some(j) => {
                spans.push((at + 1, chars[j].0));
                i = j + 1;
            }
            None => i += 1,
        }
    }
    spans
}

/// Greedy word wrap to `width` characters: the first line starts with
/// `first`, the others with `rest`. Nothing is dropped: a word longer than a
/// line is broken across lines.
pub fn wrap(text: &str, first: &str, rest: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, paragraph) in text.lines().enumerate() {
        let mut line = Line::new(if i == 0 { first } else { rest });
        for word in paragraph.split_whitespace() {
            if !line.empty && line.len + 1 + word.chars().count() > width {
                lines.push(line.take(rest));
            }
            if !line.empty {
                line.push(" ");
            }
            let mut chars = word.chars().peekable();
            while chars.peek().is_some() {
                let room = width.saturating_sub(line.len).max(1);
                let chunk: String = chars.by_ref().take(room).collect();
                line.push(&chunk);
                if chars.peek().is_some() {
                    lines.push(line.take(rest));
                }
            }
        }
        lines.push(line.text);
    }
    if lines.is_empty() {
        lines.push(first.to_owned());
    }
    lines
}

/// A line being filled, with its length in characters.
struct Line {
    text: String,
    len: usize,
    /// Only the prefix so far.
    empty: bool,
}

impl Line {
    fn new(prefix: &str) -> Self {
        Self {
            text: prefix.to_owned(),
            len: prefix.chars().count(),
            empty: true,
        }
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.len += s.chars().count();
        self.empty = false;
    }

    /// Returns the line's text and starts the next one with `prefix`.
    fn take(&mut self, prefix: &str) -> String {
        std::mem::replace(self, Line::new(prefix)).text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_spans_open_at_a_word_start_and_close_at_a_word_end() {
        let text = "Add the line 'Hello from memofab.' to `README.md`; don't say \"it's done\".";
        assert_eq!(
            quoted(text),
            ["Hello from memofab.", "README.md", "it's done"]
        );
        assert_eq!(
            lower_words(&outside_quotes(text)),
            ["add", "the", "line", "to", "don", "t", "say"]
        );
        // An unclosed mark quotes nothing.
        assert!(quoted("it is 'open").is_empty());
        assert_eq!(outside_quotes("é 'ü' ö"), "é   ö");
    }

    #[test]
    fn wrapping_keeps_every_word() {
        let reason = "could not reach the provider: error sending request for url (http://127.0.0.1:9/v1/chat/completions): connection refused";
        let lines = wrap(reason, "- b is failed: ", "    ", 40);
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:?}");
        let letters = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        assert_eq!(
            letters(&lines.concat()),
            letters(&format!("- b is failed: {reason}"))
        );
        assert!(lines[1..].iter().all(|l| l.starts_with("    ")));
    }

    #[test]
    fn a_word_longer_than_the_line_is_broken_not_cut() {
        let lines = wrap("short averyveryverylongword end", "", "", 10);
        assert_eq!(lines, vec!["short", "averyveryv", "erylongwor", "d end"]);
        assert_eq!(wrap("", "> ", "  ", 10), vec!["> "]);
        assert_eq!(wrap("a\nb", "> ", "  ", 10), vec!["> a", "  b"]);
    }
}
