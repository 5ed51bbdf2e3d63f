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
