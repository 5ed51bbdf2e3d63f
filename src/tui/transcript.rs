//! One agent's conversation as display lines. Lines are appended as events
//! arrive and never re-laid out, so a 100k-line transcript costs nothing to
//! keep; the view renders only the visible window. Tool results are folded
//! to one line unless expanded.

use crate::domain::MessageAuthor;

/// Results longer than this many lines show a fold marker when folded.
const FOLDED_PREVIEW: usize = 1;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LineKind {
    #[default]
    Agent,
    /// The agent's reasoning, shown apart from its answer.
    Thinking,
    Factory,
    ToolCall,
    ToolOk,
    ToolError,
    /// Body of a tool result, hidden while folded.
    ResultBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TLine {
    pub kind: LineKind,
    pub text: String,
}

/// Where a transcript ended: truncating to it takes the transcript back
/// to that point, since lines are only ever appended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    lines: usize,
    folded: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    lines: Vec<TLine>,
    /// Indices of the lines shown while results are folded.
    folded: Vec<usize>,
    /// Text streaming in for the reply being written now.
    live: String,
    /// Whether `live` is answer or reasoning.
    live_kind: LineKind,
}

impl Mark {
    /// This mark, of a transcript appended to one that ended at `before`,
    /// counted from the start of the whole.
    pub fn after(self, before: Mark) -> Mark {
        Mark {
            lines: before.lines + self.lines,
            folded: before.folded + self.folded,
        }
    }
}

impl Transcript {
    /// Puts `after`'s lines at the end, as if the events that wrote them
    /// had been folded here: a replay builds the end of a long transcript
    /// first and its beginning later.
    pub fn append(&mut self, after: Transcript) {
        let base = self.lines.len();
        self.folded.extend(after.folded.iter().map(|i| i + base));
        self.lines.extend(after.lines);
        self.live = after.live;
        self.live_kind = after.live_kind;
    }

    /// Where the settled transcript ends now.
    pub fn mark(&self) -> Mark {
        Mark {
            lines: self.lines.len(),
            folded: self.folded.len(),
        }
    }

    /// Takes the transcript back to `mark` (taken from it earlier), dropping
    /// any text still streaming in.
    pub fn truncate(&mut self, mark: Mark) {
        self.lines.truncate(mark.lines);
        self.folded.truncate(mark.folded);
        self.live.clear();
    }

    /// Adds `text` as one line per `\n` in it; a single line is moved in
    /// without copying (a replay folds millions of these).
    fn push(&mut self, kind: LineKind, text: String) {
        if text.contains('\n') {
            for line in text.split('\n') {
                self.push_line(kind, line.to_owned());
            }
        } else {
            self.push_line(kind, text);
        }
    }

    fn push_line(&mut self, kind: LineKind, text: String) {
        if kind != LineKind::ResultBody {
            self.folded.push(self.lines.len());
        }
        self.lines.push(TLine { kind, text });
    }

    pub fn message(&mut self, from: MessageAuthor, text: &str) {
        self.live.clear();
        let kind = match from {
            MessageAuthor::Assistant => LineKind::Agent,
            MessageAuthor::Thinking => LineKind::Thinking,
            MessageAuthor::User | MessageAuthor::System => LineKind::Factory,
        };
        let prefix = match kind {
            LineKind::Agent => "▍ ",
            LineKind::Thinking => "∴ ",
            _ => "» ",
        };
        let mut first = true;
        for line in text.trim_end().split('\n') {
            let p = if first { prefix } else { "  " };
            first = false;
            self.push(kind, format!("{p}{line}"));
        }
    }

    pub fn delta(&mut self, text: &str) {
        self.live_delta(LineKind::Agent, text);
    }

    /// Reasoning streaming in; the answer that follows replaces it live
    /// (the whole reasoning is stored as its own message).
    pub fn thinking_delta(&mut self, text: &str) {
        self.live_delta(LineKind::Thinking, text);
    }

    fn live_delta(&mut self, kind: LineKind, text: &str) {
        if self.live_kind != kind {
            self.live.clear();
            self.live_kind = kind;
        }
        self.live.push_str(text);
    }

    pub fn tool_call(&mut self, tool: &str, arguments: &serde_json::Value) {
        self.live.clear();
        let args = compact(arguments);
        self.push(LineKind::ToolCall, format!("→ {tool} {args}"));
    }

    pub fn tool_result(&mut self, ok: bool, output: &str) {
        let body: Vec<&str> = output.trim_end().split('\n').collect();
        let kind = if ok {
            LineKind::ToolOk
        } else {
            LineKind::ToolError
        };
        let head = body.first().copied().unwrap_or("");
        let more = body.len().saturating_sub(FOLDED_PREVIEW);
        let mark = if ok { "←" } else { "✗" };
        let summary = if more > 0 {
            format!("{mark} {head}  [+{more} lines]")
        } else {
            format!("{mark} {head}")
        };
        self.push(kind, summary);
        for line in body.iter().skip(FOLDED_PREVIEW) {
            self.push(LineKind::ResultBody, format!("    {line}"));
        }
    }

    /// The transcript without text still streaming in.
    pub fn settled(&self) -> (&[TLine], &[usize]) {
        (&self.lines, &self.folded)
    }

    /// Number of display lines, including the live one.
    pub fn len(&self, expanded: bool) -> usize {
        let base = if expanded {
            self.lines.len()
        } else {
            self.folded.len()
        };
        base + usize::from(!self.live.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.live.is_empty()
    }

    /// The display line at `index` (live text last).
    pub fn line(&self, index: usize, expanded: bool) -> Option<(LineKind, &str)> {
        let stored = if expanded {
            self.lines.get(index)
        } else {
            self.folded.get(index).and_then(|&i| self.lines.get(i))
        };
        match stored {
            Some(l) => Some((l.kind, l.text.as_str())),
            None if index == self.len(expanded).saturating_sub(1) && !self.live.is_empty() => {
                Some((self.live_kind, self.live.as_str()))
            }
            None => None,
        }
    }

    /// Display indices of lines containing `query`, in order.
    pub fn find(&self, query: &str, expanded: bool) -> Vec<usize> {
        if query.is_empty() {
            return Vec::new();
        }
        let needle = query.to_lowercase();
        (0..self.len(expanded))
            .filter(|&i| {
                self.line(i, expanded)
                    .is_some_and(|(_, t)| t.to_lowercase().contains(&needle))
            })
            .collect()
    }
}

/// Tool arguments on one line, long strings shortened.
fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={}", shorten(s, 60)),
                    other => format!("{k}={}", shorten(&other.to_string(), 60)),
                })
                .collect();
            parts.join(" ")
        }
        serde_json::Value::String(s) => shorten(s, 80),
        other => shorten(&other.to_string(), 80),
    }
}

fn shorten(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', "⏎");
    if one_line.chars().count() <= max {
        return format!("{one_line:?}").trim_matches('"').to_owned();
    }
    let cut: String = one_line.chars().take(max).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_fold_to_one_line_and_expand() {
        let mut t = Transcript::default();
        t.message(MessageAuthor::User, "do it");
        t.tool_call("run", &serde_json::json!({"command": "make"}));
        t.tool_result(false, "exit 1\nline a\nline b");
        assert_eq!(t.len(false), 3);
        assert_eq!(t.len(true), 5);
        assert_eq!(
            t.line(2, false).unwrap(),
            (LineKind::ToolError, "✗ exit 1  [+2 lines]")
        );
        assert_eq!(t.line(1, false).unwrap().1, "→ run command=make");
        assert_eq!(t.line(4, true).unwrap().1, "    line b");
    }

    #[test]
    fn live_text_streams_then_becomes_the_message() {
        let mut t = Transcript::default();
        t.delta("Hel");
        t.delta("lo");
        assert_eq!(t.len(false), 1);
        assert_eq!(t.line(0, false).unwrap().1, "Hello");
        t.message(MessageAuthor::Assistant, "Hello");
        assert_eq!(t.len(false), 1);
        assert_eq!(t.line(0, false).unwrap().1, "▍ Hello");
    }

    #[test]
    fn thinking_streams_and_is_stored_apart_from_the_answer() {
        let mut t = Transcript::default();
        t.thinking_delta("Let me ");
        t.thinking_delta("see");
        assert_eq!(
            t.line(0, false).unwrap(),
            (LineKind::Thinking, "Let me see")
        );
        t.delta("Done");
        assert_eq!(t.line(0, false).unwrap(), (LineKind::Agent, "Done"));
        t.message(MessageAuthor::Thinking, "Let me see");
        t.message(MessageAuthor::Assistant, "Done");
        assert_eq!(t.len(false), 2);
        assert_eq!(
            t.line(0, false).unwrap(),
            (LineKind::Thinking, "∴ Let me see")
        );
        assert_eq!(t.line(1, false).unwrap(), (LineKind::Agent, "▍ Done"));
    }

    #[test]
    fn find_is_case_insensitive_and_respects_folding() {
        let mut t = Transcript::default();
        t.message(MessageAuthor::Assistant, "Running TESTS");
        t.tool_result(true, "ok\nall tests pass");
        assert_eq!(t.find("tests", false), vec![0]);
        assert_eq!(t.find("tests", true), vec![0, 2]);
    }
}
