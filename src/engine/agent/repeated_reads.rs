//! A cap on identical reads. Small models loop on the same `read_file`
//! (the same arguments, turn after turn). A read repeated past the cap, with
//! nothing changed in between, is not run again: it is answered with what it
//! answered last time, and no read is offered on the next turn, so the model
//! has to act on what it read. (It used to be answered "Not run: already
//! read, its answer is above"; measured on Qwen2.5-Coder 1.5B, the reviewer
//! then wrote that refusal back as its verdict, rejecting correct work.)
//! A `write_file` identical to the call just before it, which would change
//! nothing, is refused: small models rewrite the same file turn after turn
//! instead of finishing.

use std::collections::HashMap;

use serde_json::Value;

use crate::engine::tools::{BuiltinTool, ReadFile, ToolSet, WorktreeTool, WriteFile};

/// Identical reads run; the next one is refused.
pub const MAX_IDENTICAL_READS: u32 = 2;

/// Whether `tool` only reads: the same call gives the same answer until
/// something is written or run.
fn only_reads(tool: &str) -> bool {
    BuiltinTool::named(tool).is_some_and(BuiltinTool::only_reads)
}

/// Whether an identical repeat of `tool` changes nothing.
fn idempotent_write(tool: &str) -> bool {
    tool == WriteFile::NAME
}

/// A call not to be run again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeat {
    /// A read already run `times` times, nothing written since: `last` is
    /// what it answered (the same call would answer it again).
    Read { times: u32, last: String },
    /// A read past the cap whose answer was not kept (it failed), or a
    /// write identical to the one just before: refused.
    Refused { times: u32 },
}

#[derive(Debug, Default)]
struct Seen {
    times: u32,
    /// The last successful answer to this read.
    answer: Option<String>,
}

#[derive(Debug, Default)]
pub struct RepeatedReads {
    /// Each read (tool and canonical arguments) since the last call that
    /// could change the worktree.
    seen: HashMap<String, Seen>,
    /// The read just counted, whose answer [`Self::answered`] keeps.
    pending: Option<String>,
    /// The last call that could change the worktree.
    last_write: Option<String>,
}

impl RepeatedReads {
    /// Counts the call; `Some` when it is not to be run again: a read
    /// already run `MAX_IDENTICAL_READS` times, or a write repeated.
    pub fn repeated(&mut self, tool: &str, arguments: &Value) -> Option<Repeat> {
        let key = call_key(tool, arguments);
        self.pending = None;
        if !only_reads(tool) {
            if idempotent_write(tool) && self.last_write.as_ref() == Some(&key) {
                return Some(Repeat::Refused { times: 1 });
            }
            // A write or a command may change what a read sees.
            self.seen.clear();
            self.last_write = Some(key);
            return None;
        }
        let seen = self.seen.entry(key.clone()).or_default();
        if seen.times >= MAX_IDENTICAL_READS {
            let times = seen.times;
            return Some(match &seen.answer {
                Some(last) => Repeat::Read {
                    times,
                    last: last.clone(),
                },
                None => Repeat::Refused { times },
            });
        }
        seen.times += 1;
        self.pending = Some(key);
        None
    }

    /// The answer of the call just counted: a read's is kept for its
    /// repeats; a failed call wrote nothing, so the same write again is no
    /// repeat.
    pub fn answered(&mut self, ok: bool, text: &str) {
        if !ok {
            self.last_write = None;
        }
        if let Some(key) = self.pending.take()
            && let Some(seen) = self.seen.get_mut(&key)
        {
            seen.answer = ok.then(|| text.to_owned());
        }
    }

    /// The call just counted was not run as sent (another write was made
    /// for it): the same call again is no repeat.
    pub fn not_as_sent(&mut self) {
        self.last_write = None;
    }

    /// The tools not offered on the turn after `tool` was refused: every
    /// read after a read (a looping model swaps one read for another), else
    /// the tool itself. A model constrained to one call of the tools offered
    /// then has to act on what it read.
    pub fn withheld_after(tool: &str) -> Vec<String> {
        if only_reads(tool) {
            ToolSet::ReadOnly
                .tools()
                .iter()
                .map(|t| t.name().to_owned())
                .collect()
        } else {
            vec![tool.to_owned()]
        }
    }

    /// What the transcript says of a read answered from its last answer
    /// (the model is not told: it would copy the note into its verdict).
    pub fn note(tool: &str, times: u32) -> String {
        format!(
            "{tool} asked again with the same arguments ({times} times before, nothing written \
             since): answered with its last answer, not run; no read is offered on the next turn."
        )
    }

    /// What a refused call is answered.
    /// `finish` names the call that ends the conversation, the step a
    /// looping model most often misses.
    pub fn refusal(tool: &str, times: u32, finish: &str) -> String {
        if idempotent_write(tool) {
            return format!(
                "Not run: this {tool} call is the same as the one just before it, which already \
                 wrote exactly this; it would change nothing. Check the task: if it is done, call \
                 {finish}; if not, make a different change."
            );
        }
        format!(
            "Not run: this {tool} call, with the same arguments, already ran {times} times and \
             nothing was written since; its answer is above. Do not repeat it: use what you read \
             and take the next step of the task. When you are done, call {finish}."
        )
    }
}

/// What makes two calls the same. serde_json's maps are sorted, so key
/// order does not matter; a `read_file` from the start of a file is the
/// same read whatever `max_lines` says (small models vary it to no end),
/// while one from another line is the next page.
fn call_key(tool: &str, arguments: &Value) -> String {
    if tool == ReadFile::NAME {
        let path = arguments.get("path").and_then(Value::as_str).unwrap_or("");
        let from = arguments
            .get("offset_line")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .max(1);
        return format!("{tool} {path:?} from {from}");
    }
    format!("{tool} {arguments}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_write_that_failed_may_be_tried_again() {
        let mut reads = RepeatedReads::default();
        let args = json!({"path": "notes.txt", "content": "x"});
        assert_eq!(reads.repeated("write_file", &args), None);
        reads.answered(false, "refused");
        assert_eq!(reads.repeated("write_file", &args), None);
        reads.answered(true, "wrote");
        // Written this time: the same write again changes nothing.
        assert_eq!(
            reads.repeated("write_file", &args),
            Some(Repeat::Refused { times: 1 })
        );
    }

    #[test]
    fn the_same_read_past_the_cap_is_refused_until_something_changes() {
        let mut reads = RepeatedReads::default();
        let args = json!({"path": "README.md"});
        assert_eq!(reads.repeated("read_file", &args), None);
        reads.answered(true, "# old");
        assert_eq!(reads.repeated("read_file", &args), None);
        reads.answered(true, "# Title");
        // Past the cap: answered with the last answer, not run.
        let last = Some(Repeat::Read {
            times: 2,
            last: "# Title".into(),
        });
        assert_eq!(reads.repeated("read_file", &args), last);
        assert_eq!(reads.repeated("read_file", &args), last);
        // A read that failed has no answer to give again: refused.
        let missing = json!({"path": "missing.md"});
        for _ in 0..2 {
            assert_eq!(reads.repeated("read_file", &missing), None);
            reads.answered(false, "no such file");
        }
        assert_eq!(
            reads.repeated("read_file", &missing),
            Some(Repeat::Refused { times: 2 })
        );
        // Key order is the same call; other arguments are another read.
        let reordered: Value = serde_json::from_str(r#"{"max_lines": 5, "path": "a"}"#).unwrap();
        let ordered: Value = serde_json::from_str(r#"{"path": "a", "max_lines": 5}"#).unwrap();
        assert_eq!(reads.repeated("read_file", &reordered), None);
        assert_eq!(reads.repeated("read_file", &ordered), None);
        assert_eq!(
            reads.repeated("read_file", &ordered),
            Some(Repeat::Refused { times: 2 })
        );
        assert_eq!(reads.repeated("list_files", &json!({})), None);
        // From the start of README.md, however many lines: the same read.
        let mut reads = RepeatedReads::default();
        assert_eq!(
            reads.repeated("read_file", &json!({"path": "README.md"})),
            None
        );
        let first_page = json!({"path": "README.md", "offset_line": 0, "max_lines": 100});
        assert_eq!(reads.repeated("read_file", &first_page), None);
        assert!(reads.repeated("read_file", &first_page).is_some());
        // The next page is another read.
        let next = json!({"path": "README.md", "offset_line": 101});
        assert_eq!(reads.repeated("read_file", &next), None);
        // A write resets the count: the file may read differently now.
        assert_eq!(reads.repeated("write_file", &args), None);
        assert_eq!(reads.repeated("read_file", &args), None);
    }

    #[test]
    fn a_write_identical_to_the_one_before_is_refused() {
        let mut calls = RepeatedReads::default();
        let write = json!({"path": "a", "content": "x"});
        assert_eq!(calls.repeated("write_file", &write), None);
        assert_eq!(
            calls.repeated("write_file", &write),
            Some(Repeat::Refused { times: 1 })
        );
        assert_eq!(
            calls.repeated("write_file", &write),
            Some(Repeat::Refused { times: 1 })
        );
        // Another write in between: the file changed, writing it back is real.
        assert_eq!(
            calls.repeated("write_file", &json!({"path": "a", "content": "y"})),
            None
        );
        assert_eq!(calls.repeated("write_file", &write), None);
        // A command in between may have changed the file too.
        assert_eq!(calls.repeated("run", &json!({"command": "make"})), None);
        assert_eq!(calls.repeated("write_file", &write), None);
        // Reads in between do not.
        assert_eq!(calls.repeated("read_file", &json!({"path": "a"})), None);
        assert_eq!(
            calls.repeated("write_file", &write),
            Some(Repeat::Refused { times: 1 })
        );
        assert!(RepeatedReads::refusal("write_file", 1, "`finish`").contains("`finish`"));
    }
}
