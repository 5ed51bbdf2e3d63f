//! `edit_file`'s second chance: an `old` text that does not occur exactly
//! but does once when blank lines and trailing spaces are not counted.
//! Small models copy a file's lines into `old` without its blank lines
//! (measured: Qwen2.5-Coder 1.5B, every edit of a README with a blank line
//! after its title missed), so the edit failed however often they tried.
//!
//! A loose match is applied so the blank lines the model did not see stay
//! where they were: when `new` is `old` with lines added after (or before)
//! it, only those lines are added; any other edit replaces the matched lines
//! with `new` as given.

/// Most line comparisons a loose match may take.
const MAX_LINE_COMPARISONS: usize = 20_000_000;

/// Where `old` matches loosely, and the text that results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseEdit {
    pub updated: String,
}

/// Why no loose edit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoLooseMatch {
    /// `old` has no line with text in it.
    Blank,
    Absent,
    /// Matches more than once; the count.
    Ambiguous(usize),
}

/// One line of a text: its bytes `start..end` (without the line break) and
/// `next`, where the following line starts.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    end: usize,
    next: usize,
}

fn lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let (end, next) = match text[start..].find('\n') {
            Some(i) => (start + i, start + i + 1),
            None => (text.len(), text.len()),
        };
        out.push(Line { start, end, next });
        start = next;
    }
    out
}

/// A line as compared: its text without trailing spaces (or a `\r`).
fn key(text: &str, line: Line) -> &str {
    text[line.start..line.end].trim_end()
}

/// The lines of `text` with something in them.
fn filled(text: &str) -> Vec<Line> {
    lines(text)
        .into_iter()
        .filter(|l| !key(text, *l).is_empty())
        .collect()
}

/// Applies `old` → `new` to `text` where `old` occurs once, blank lines and
/// trailing spaces aside. Only for an `old` that does not occur exactly.
pub fn loose_edit(text: &str, old: &str, new: &str) -> Result<LooseEdit, NoLooseMatch> {
    let wanted: Vec<&str> = filled(old).into_iter().map(|l| key(old, l)).collect();
    if wanted.is_empty() {
        return Err(NoLooseMatch::Blank);
    }
    let have = filled(text);
    // Each start compares up to `wanted` lines: an 8 MiB file of one line
    // repeated, against an `old` of thousands, is not worth the seconds.
    if have.len().saturating_mul(wanted.len()) > MAX_LINE_COMPARISONS {
        return Err(NoLooseMatch::Absent);
    }
    let starts: Vec<usize> = (0..have.len().saturating_sub(wanted.len() - 1))
        .filter(|&i| {
            wanted
                .iter()
                .enumerate()
                .all(|(j, w)| key(text, have[i + j]) == *w)
        })
        .collect();
    let first = match starts.as_slice() {
        [] => return Err(NoLooseMatch::Absent),
        [one] => *one,
        many => return Err(NoLooseMatch::Ambiguous(many.len())),
    };
    let (from, to) = (have[first], have[first + wanted.len() - 1]);
    // The span ends with the last line's break when `old` did.
    let span_end = if old.ends_with('\n') { to.next } else { to.end };
    let span = from.start..span_end;

    let given: Vec<Line> = lines(new);
    let given_filled: Vec<&str> = filled(new).into_iter().map(|l| key(new, l)).collect();
    let mut updated = String::with_capacity(text.len() + new.len());
    if given_filled.starts_with(&wanted) {
        // `old` and then more: keep the matched lines as they are, add the rest.
        let rest = after_filled(new, &given, wanted.len());
        updated.push_str(&text[..span.end]);
        if !updated.ends_with('\n') && !updated.is_empty() && !rest.is_empty() {
            updated.push('\n');
        }
        updated.push_str(rest);
        if !old.ends_with('\n') && !rest.is_empty() && rest.ends_with('\n') {
            // `old` ended mid-line; the text after the span goes on as it was.
            updated.pop();
        }
        updated.push_str(&text[span.end..]);
    } else if given_filled.ends_with(&wanted) {
        // More, and then `old`: add the lines before the matched ones.
        let before = before_filled(new, &given, given_filled.len() - wanted.len());
        updated.push_str(&text[..span.start]);
        updated.push_str(before);
        updated.push_str(&text[span.start..]);
    } else {
        updated.push_str(&text[..span.start]);
        updated.push_str(new);
        updated.push_str(&text[span.end..]);
    }
    Ok(LooseEdit { updated })
}

/// The part of `new` after its first `count` filled lines and the break
/// of the last of them (blank lines after it belong to the rest).
fn after_filled<'a>(new: &'a str, given: &[Line], count: usize) -> &'a str {
    let mut seen = 0;
    for line in given {
        if !key(new, *line).is_empty() {
            seen += 1;
            if seen == count {
                return &new[line.next..];
            }
        }
    }
    ""
}

/// The part of `new` before its filled line number `count` (from 0).
fn before_filled<'a>(new: &'a str, given: &[Line], count: usize) -> &'a str {
    let mut seen = 0;
    for line in given {
        if !key(new, *line).is_empty() {
            if seen == count {
                return &new[..line.start];
            }
            seen += 1;
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = "# Tiny repo\n\nA test repository for memofab with a local model.\n";

    fn edited(text: &str, old: &str, new: &str) -> String {
        loose_edit(text, old, new).expect("a loose match").updated
    }

    #[test]
    fn a_line_added_after_lines_copied_without_their_blank_keeps_the_blank() {
        let old = "# Tiny repo\nA test repository for memofab with a local model.\n";
        let new =
            "# Tiny repo\nA test repository for memofab with a local model.\nHello from memofab.\n";
        assert_eq!(
            edited(README, old, new),
            "# Tiny repo\n\nA test repository for memofab with a local model.\nHello from memofab.\n"
        );
        // Without the final break, as models often write it.
        let old = "# Tiny repo\nA test repository for memofab with a local model.";
        let new =
            "# Tiny repo\nA test repository for memofab with a local model.\n\nHello from memofab.";
        assert_eq!(
            edited(README, old, new),
            "# Tiny repo\n\nA test repository for memofab with a local model.\n\nHello from memofab.\n"
        );
    }

    #[test]
    fn a_line_added_before_keeps_what_follows() {
        let old = "# Tiny repo\nA test repository for memofab with a local model.\n";
        let new = "<!-- top -->\n# Tiny repo\nA test repository for memofab with a local model.\n";
        assert_eq!(
            edited(README, old, new),
            "<!-- top -->\n# Tiny repo\n\nA test repository for memofab with a local model.\n"
        );
    }

    #[test]
    fn another_edit_replaces_the_matched_lines() {
        let text = "a\n\nb  \nc\n\nd\n";
        assert_eq!(edited(text, "b\nc\n", "B\n"), "a\n\nB\n\nd\n");
        // Trailing spaces do not count; leading ones do.
        assert_eq!(loose_edit("  x\n", "x\n", "y\n"), Err(NoLooseMatch::Absent));
    }

    #[test]
    fn no_match_twice_nor_on_blank_old() {
        let text = "x\n\ny\nx\ny\n";
        assert_eq!(
            loose_edit(text, "x\ny\n", "z\n"),
            Err(NoLooseMatch::Ambiguous(2))
        );
        assert_eq!(loose_edit(text, "\n\n", "z"), Err(NoLooseMatch::Blank));
        assert_eq!(loose_edit(text, "q\n", "z"), Err(NoLooseMatch::Absent));
        assert_eq!(loose_edit("", "q\n", "z"), Err(NoLooseMatch::Absent));
    }

    #[test]
    fn text_after_the_span_stays() {
        let text = "one\n\ntwo\nthree\n";
        assert_eq!(
            edited(text, "one\ntwo\n", "one\ntwo\nmore\n"),
            "one\n\ntwo\nmore\nthree\n"
        );
    }
}
