//! The small profile's guard on `write_file` over a file that exists. Asked
//! to add a line, small models rewrite the whole file from memory and lose
//! what they did not remember (measured: a README's three lines replaced by
//! the new one). A write that would drop lines of the file is not run; the
//! answer shows the file as it is, so the model can keep it and add to it,
//! or change lines with `edit_file`. Files the agent created itself are
//! its own to rewrite.
//!
//! A task that only adds ("Add …", "Append …") gets more: an `edit_file`
//! that would remove lines is refused too (told to keep the file's lines,
//! small models replace its last line with the new one: 1.5B, 4 of 6 runs),
//! and so is a write or edit that keeps every line but puts the new ones
//! elsewhere than the task says (its end, unless it says the start), for
//! a file the task names: refused a write of the new line alone, the 1.5B
//! coder wrote it FIRST and the file after it (2 of 3 runs, both merged).
//! Each of these refusals carries the call that does what the task says,
//! built from the model's own lines: a call it can copy, and copying is what
//! small models do best. The same refused call sent again is run as that
//! suggested write (measured: the 1.5B coder sent it up to ten times with
//! the suggestion in front of it); and a coder's first `finish` while a
//! file the task names lacks the line the task quotes is refused with the
//! write that adds it.

use crate::domain::{AgentRole, tool_names};
use std::collections::HashSet;

use serde_json::Value;

use super::super::tools::{NoLooseMatch, ToolOutcome, loose_edit};
use super::AgentJob;
use super::brief::{Place, Task};
use crate::domain::shepherd::echo::REFUSED;

/// Longest current content quoted back in a refusal, and the largest file
/// a corrected call is suggested for.
const SHOWN_CHARS: usize = 4_000;

#[derive(Debug, Default)]
pub(super) struct WholeWrites {
    /// Paths that did not exist when this agent first wrote them.
    created: HashSet<String>,
    /// The last call refused with a write to make instead.
    refused: Option<Suggested>,
    /// Whether a `finish` was refused already (it is, once).
    finish_refused: bool,
}

/// A refused call and the write its refusal suggested.
#[derive(Debug, PartialEq)]
struct Suggested {
    tool: String,
    arguments: Value,
    path: String,
    content: String,
}

/// A refusal, with the whole content it suggests writing to the path of
/// the call, if it suggests one.
struct Refusal {
    answer: String,
    write: Option<String>,
}

/// What [`WholeWrites::check`] makes of one call.
enum Checked {
    Refused(Refusal),
    AlreadyThere(String),
}

impl WholeWrites {
    /// Why `write_file` or `edit_file` with `arguments` is not to be run: it
    /// would drop lines of the file it changes, or, for a task that only
    /// adds, add nothing, add the task's line twice, or put the new lines
    /// where the task does not; or that it is not needed; or, sent again
    /// as it was refused, the write its refusal suggested, to run instead.
    /// And why a first `finish` is early: a file the task names lacks the
    /// line the task adds.
    pub(super) async fn guard(
        &mut self,
        job: &AgentJob,
        tool: &str,
        arguments: &Value,
    ) -> Option<Guard> {
        if tool == tool_names::FINISH {
            return self.early_finish(job).await.map(Guard::Refused);
        }
        let refusal = match self.check(job, tool, arguments).await? {
            Checked::AlreadyThere(answer) => return Some(Guard::AlreadyThere(answer)),
            Checked::Refused(refusal) => refusal,
        };
        let path = arguments.get("path").and_then(Value::as_str)?;
        let suggested = refusal.write.map(|content| Suggested {
            tool: tool.to_owned(),
            arguments: arguments.clone(),
            path: path.to_owned(),
            content,
        });
        // Measured (1.5B): the same refused call sent four to ten times
        // with the suggested write in front of it, until the shepherd
        // failed the task. The second time, it is taken to mean that write:
        // the file's lines kept, the model's own new lines (or the task's
        // quoted ones) where the task says; nothing else is ever written.
        if suggested.is_some() && suggested == self.refused {
            let Suggested { path, content, .. } = self.refused.take()?;
            return Some(Guard::Repaired { path, content });
        }
        self.refused = suggested;
        Some(Guard::Refused(refusal.answer))
    }

    async fn check(&mut self, job: &AgentJob, tool: &str, arguments: &Value) -> Option<Checked> {
        let adding = Task::of(&job.first_message).filter(Task::only_adds);
        if tool == tool_names::EDIT_FILE {
            adding?;
        } else if tool != tool_names::WRITE_FILE {
            return None;
        }
        let path = arguments.get("path")?.as_str()?;
        if self.created.contains(path) {
            return None;
        }
        let current = match current_text(job, path).await {
            Current::Text(text) => text,
            Current::Unchecked => return None,
            Current::Absent => {
                if tool == tool_names::WRITE_FILE {
                    self.created.insert(path.to_owned());
                }
                return None;
            }
        };
        // A place said of another file says nothing of this one.
        let place = adding.map(|task| match task.place() {
            said if task.names(path) => said,
            _ => Place::Unsaid,
        });
        let refused = |answer: String, write: Option<String>| {
            Some(Checked::Refused(Refusal { answer, write }))
        };
        let after = if tool == tool_names::WRITE_FILE {
            arguments.get("content")?.as_str()?.to_owned()
        } else {
            let old = arguments.get("old")?.as_str()?;
            let new = arguments.get("new")?.as_str()?;
            match edited(&current, old, new) {
                Edited::To(after) => match removing_edit_refusal(arguments) {
                    Some(refusal) => return refused(refusal, None),
                    None => after,
                },
                // What `new` adds, as the write that adds it (measured: the
                // 1.5B coder gave the file's name as `old`, and sent the
                // edit again each time it was told `old` does not occur).
                Edited::Absent => {
                    let content = place
                        .and_then(|place| restored(&current, new, place))
                        .or_else(|| task_write(adding.as_ref(), place, &current, path))?;
                    return refused(absent_old_answer(path, old, &content), Some(content));
                }
                // The tool says why.
                Edited::Refused => return None,
            }
        };
        let lost = lost_lines(&current, &after);
        let added = added_lines(&current, &after);
        if !lost.is_empty() {
            // Only `write_file` gets here: a removing edit was answered above.
            let suggested = place
                .and_then(|place| restored(&current, &after, place))
                .or_else(|| task_write(adding.as_ref(), place, &current, path));
            let ending = match suggested {
                Some(content) => Ending::Write(content),
                None if adding.is_some_and(|task| has_task_lines(&task, &current, path))
                    && added.is_empty()
                    && job.offers(tool_names::FINISH) =>
                {
                    return Some(Checked::AlreadyThere(already_there(path)));
                }
                None => Ending::File,
            };
            let answer = answer(path, &current, &lost, &ending);
            let write = match ending {
                Ending::Write(content) => Some(content),
                Ending::File => None,
            };
            return refused(answer, write);
        }
        if adding.is_some() && added.is_empty() {
            // Measured (1.5B, stock template): `old` "Tiny repo" inside the
            // heading, `new` the file's first lines again (a line doubled,
            // and merged); `old` and `new` the same (the task failed on
            // "nothing changed").
            let suggested = task_write(adding.as_ref(), place, &current, path);
            return refused(repeats_answer(path, suggested.as_deref()), suggested);
        }
        if let Some(task) = adding.as_ref()
            && let Some(twice) = added_twice(task, &current, path, &added)
        {
            // Measured (1.5B, stock template): the task's line written
            // twice at the end, and merged.
            let fixed = task_write(Some(task), place, &current, path);
            return refused(twice_answer(path, twice, fixed.as_deref()), fixed);
        }
        let place = place.filter(|p| matches!(p, Place::End | Place::Start))?;
        let fixed = misplaced(&current, &after, place)?;
        refused(misplaced_answer(path, place, &fixed), Some(fixed))
    }

    /// Why a coder's first `finish` is early, for a task that only adds:
    /// a file it names and lists lacks the line it quotes. Measured (1.5B,
    /// fenced template): three coders in a row read past the end of
    /// README.md, wrote nothing, and finished saying the line was added;
    /// the task failed on "nothing changed".
    async fn early_finish(&mut self, job: &AgentJob) -> Option<String> {
        if self.finish_refused || job.role != AgentRole::Coder {
            return None;
        }
        let task = Task::of(&job.first_message).filter(Task::only_adds)?;
        for path in task.paths().into_iter().filter(|p| task.names(p)) {
            let Current::Text(current) = current_text(job, path).await else {
                continue;
            };
            let Some(content) = task_write(Some(&task), Some(task.place()), &current, path) else {
                continue;
            };
            self.finish_refused = true;
            return Some(early_finish_answer(path, &content));
        }
        None
    }
}

/// What a coder's answer to a write or edit of `path` ends with when the
/// file (as it is now) has every line the task quotes: that it has, and to
/// finish. Measured (1.5B, stock template, 2 of 3 runs): told only "wrote
/// README.md (83 bytes)" after the right write, the coder wrote those words
/// into README.md eight times, until the shepherd replaced it.
pub(super) async fn done_note(job: &AgentJob, tool: &str, arguments: &Value) -> Option<String> {
    if !tool_names::writes_files(tool) || !job.offers(tool_names::FINISH) {
        return None;
    }
    let task = Task::of(&job.first_message).filter(Task::only_adds)?;
    let path = arguments.get("path")?.as_str()?;
    if !task.names(path) {
        return None;
    }
    let Current::Text(current) = current_text(job, path).await else {
        return None;
    };
    has_task_lines(&task, &current, path)
        .then(|| format!(" {path} has the line the task adds: if the task is done, call `finish`."))
}

/// What the guard makes of a call it does not let run as sent.
#[derive(Debug, PartialEq)]
pub(super) enum Guard {
    /// Not run, and why (the answer starts with `REFUSED`).
    Refused(String),
    /// Not needed: the file already has every line of the write and the
    /// line the task adds (the write differs from it only in the marks of
    /// a line, like a heading's `#`). Answered as done, with nothing
    /// written. Measured: sent back by a reviewer that was wrong, the 1.5B
    /// coder retyped the finished file without its `#`, was refused, and
    /// sent it again until the shepherd failed the task, told each time
    /// that the file had the line and to call `finish`.
    AlreadyThere(String),
    /// Sent again as it was refused: run as the `write_file` of `content`
    /// to `path` that its refusal suggested.
    Repaired { path: String, content: String },
}

/// The answer to a `finish` while a file the task names lacks its line.
fn early_finish_answer(path: &str, content: &str) -> String {
    format!(
        "{REFUSED}the task is not done yet: {path} does not have the line it adds. To add it, {}",
        suggested_write(path, content)
    )
}

/// What the model is told of a call run as the write its refusal
/// suggested.
pub(super) fn repaired_answer(path: &str) -> String {
    format!(
        "Sent again, this call was run as the write_file call suggested before: every line of \
         {path} kept, your new lines where the task says. If the task is done, call `finish`."
    )
}

/// The answer to a write [`Guard::AlreadyThere`].
fn already_there(path: &str) -> String {
    format!(
        "{path} already has the line the task adds and every line of this write (only marks \
         such as a heading's `#` differ, and those are kept): nothing needed writing, and nothing \
         was written. If the task is done, call `finish`."
    )
}

/// The write that adds the lines the task quotes (and `current` lacks) at
/// the task's place: what to suggest when the model's own call shows no
/// line to add.
fn task_write(
    task: Option<&Task<'_>>,
    place: Option<Place>,
    current: &str,
    path: &str,
) -> Option<String> {
    let place = match place? {
        Place::Inside => return None,
        Place::Start => Place::Start,
        Place::End | Place::Unsaid => Place::End,
    };
    let lines = task_lines(task?, current, path);
    (!lines.is_empty() && current.chars().count() <= SHOWN_CHARS)
        .then(|| with_added(current, &lines, place))
}

/// The texts the task quotes that read as lines to add, not names of
/// files (`README.md`), and that `current` does not have yet.
fn task_lines<'t>(task: &Task<'t>, current: &str, path: &str) -> Vec<&'t str> {
    let had: HashSet<&str> = current.lines().map(str::trim).collect();
    task.lines_to_add()
        .into_iter()
        .filter(|q| *q != path && !had.contains(q))
        .collect()
}

/// A line the task quotes that `added` (a change's new lines) has more
/// than once.
fn added_twice<'t>(task: &Task<'t>, current: &str, path: &str, added: &[&str]) -> Option<&'t str> {
    task_lines(task, current, path)
        .into_iter()
        .find(|line| added.iter().filter(|a| a.trim() == *line).count() > 1)
}

/// The refusal of a change that writes the task's line more than once.
fn twice_answer(path: &str, line: &str, fixed: Option<&str>) -> String {
    let mut text = format!(
        "{REFUSED}this change writes the line the task adds more than once (\"{line}\"); the task \
         adds it once."
    );
    if let Some(content) = fixed {
        text.push_str(&format!(
            " To add it once, {}",
            suggested_write(path, content)
        ));
    }
    text
}

/// The refusal of a change that adds no line of its own, only repeats
/// lines the file has, with the write of the task's line if it quotes one.
fn repeats_answer(path: &str, suggested: Option<&str>) -> String {
    let mut text = format!(
        "{REFUSED}this change adds no line of its own to {path}: every line it writes is one \
         {path} already has, so it would only repeat them."
    );
    match suggested {
        Some(content) => text.push_str(&format!(
            " To add the task's line to {path}, {}",
            suggested_write(path, content)
        )),
        None => text.push_str(" Add the task's new lines, or call `finish` if the task is done."),
    }
    text
}

/// What `edit_file` would make of a file.
enum Edited {
    To(String),
    /// `old` does not occur in it, even blank lines aside, or is blank.
    Absent,
    /// Not applied: `old` occurs more than once.
    Refused,
}

/// `current` as `edit_file` would change it: `old` replaced where it
/// occurs, or where it occurs once blank lines aside.
fn edited(current: &str, old: &str, new: &str) -> Edited {
    if !old.is_empty() && current.contains(old) {
        return Edited::To(current.replacen(old, new, 1));
    }
    match loose_edit(current, old, new) {
        Ok(edit) => Edited::To(edit.updated),
        // An empty `old` is one the file does not have either (measured:
        // the 1.5B coder sent `old` "" with the new line, again and again).
        Err(NoLooseMatch::Absent | NoLooseMatch::Blank) => Edited::Absent,
        Err(NoLooseMatch::Ambiguous(_)) => Edited::Refused,
    }
}

/// The refusal of an edit whose `old` is not in the file, with the write
/// that adds what its `new` adds.
fn absent_old_answer(path: &str, old: &str, content: &str) -> String {
    let what = if old.trim().is_empty() {
        "is empty"
    } else {
        "does not occur in the file"
    };
    format!(
        "{REFUSED}`old` {what}: `old` must be text of {path}, copied exactly, which `new` \
         replaces. To add your lines to {path} as the task says, {}",
        suggested_write(path, content)
    )
}

/// A file as the guard found it.
enum Current {
    /// Missing, or unreadable (the write itself says why): a new file.
    Absent,
    /// Empty, or too long to be read whole: nothing to check.
    Unchecked,
    Text(String),
}

/// The file at `path` as the agent would read it: confined, links refused.
async fn current_text(job: &AgentJob, path: &str) -> Current {
    let Some((toolbox, _)) = job.toolbox.as_ref() else {
        return Current::Unchecked;
    };
    let read = serde_json::json!({ "path": path }).to_string();
    match toolbox.call(tool_names::READ_FILE, &read).await {
        ToolOutcome::Output { ok: true, text }
            if text != format!("[{path} is empty]") && !text.contains("\n[... ") =>
        {
            Current::Text(text)
        }
        ToolOutcome::Output { ok: true, .. } => Current::Unchecked,
        _ => Current::Absent,
    }
}

/// The refusal of an edit whose `new` leaves out lines of its `old`, with
/// the call that adds `new` after `old` instead. Told in words how
/// `edit_file` adds, the 1.5B coder sent the same edit again; a call built
/// from its own arguments it can copy, and copying is what small models do
/// best.
fn removing_edit_refusal(arguments: &Value) -> Option<String> {
    let old = arguments.get("old")?.as_str()?;
    let new = arguments.get("new")?.as_str()?;
    let path = arguments.get("path")?.as_str()?;
    let lost = lost_lines(old, new);
    if lost.is_empty() {
        return None;
    }
    // The line ends stay where the file had them.
    let added = if old.ends_with('\n') {
        let end = if new.ends_with('\n') { "" } else { "\n" };
        format!("{old}{new}{end}")
    } else {
        format!("{old}\n{}", new.trim_end_matches('\n'))
    };
    let call = serde_json::json!({ "path": path, "old": old, "new": added });
    Some(format!(
        "{REFUSED}the task adds to {path}; this edit_file would remove {} of its lines. \
         edit_file puts `new` in the place of `old`. To add after `old`, call edit_file with \
         these arguments:\n```json\n{call}\n```",
        lost.len()
    ))
}

/// The lines of `old` (not blank) that `new` no longer has, compared
/// without surrounding whitespace.
fn lost_lines<'a>(old: &'a str, new: &str) -> Vec<&'a str> {
    let kept: HashSet<&str> = new.lines().map(str::trim).collect();
    old.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !kept.contains(line))
        .collect()
}

/// A line as compared to tell a new one from one of the file: its letters
/// and digits, lower-cased (the 1.5B coder retypes a heading without its
/// `#`: that is the file's line, lost, not a new one), or, with none, the
/// line without surrounding whitespace.
fn key(line: &str) -> String {
    let loose: String = line
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if loose.is_empty() {
        line.trim().to_owned()
    } else {
        loose
    }
}

/// The lines of `after` that `current` does not have, even retyped (not
/// blank).
fn added_lines<'a>(current: &str, after: &'a str) -> Vec<&'a str> {
    let had: HashSet<String> = current.lines().map(key).collect();
    after
        .lines()
        .filter(|line| !line.trim().is_empty() && !had.contains(&key(line)))
        .collect()
}

/// `current` with `added` at `place`, its line ends kept; a line added
/// twice in a row once (measured: the 1.5B coder wrote the new line twice).
fn with_added(current: &str, added: &[&str], place: Place) -> String {
    let mut once = added.to_vec();
    once.dedup_by(|a, b| a.trim() == b.trim());
    let added = once.join("\n");
    match place {
        Place::Start => format!("{added}\n{current}"),
        Place::End | Place::Inside | Place::Unsaid => {
            format!("{}\n{added}\n", current.trim_end_matches('\n'))
        }
    }
}

/// For a write that would lose lines of `current` in a task that only
/// adds: the file whole with the write's new lines at `place`, or where the
/// write put them when the task says nothing (after the file's lines or
/// before them, not in between). Measured, the 1.5B coder sent the new line
/// alone, or the file retyped from memory (a heading's `#` dropped) with the
/// new line after it, and sent it again each time it was shown the file.
fn restored(current: &str, after: &str, place: Place) -> Option<String> {
    let place = match place {
        Place::End | Place::Start => place,
        Place::Unsaid => where_written(current, after)?,
        Place::Inside => return None,
    };
    let added = added_lines(current, after);
    (!added.is_empty() && current.chars().count() <= SHOWN_CHARS)
        .then(|| with_added(current, &added, place))
}

/// Where `after` puts its new lines: after the lines it has of `current`
/// (or with none of them), or before them.
fn where_written(current: &str, after: &str) -> Option<Place> {
    let had: HashSet<String> = current.lines().map(key).collect();
    let lines: Vec<&str> = after.lines().filter(|l| !l.trim().is_empty()).collect();
    let is_new = |line: &&str| !had.contains(&key(line));
    let Some(first_old) = lines.iter().position(|l| !is_new(l)) else {
        return Some(Place::End);
    };
    let last_old = lines.iter().rposition(|l| !is_new(l))?;
    let first_new = lines.iter().position(is_new)?;
    let last_new = lines.iter().rposition(is_new)?;
    if first_new > last_old {
        Some(Place::End)
    } else if last_new < first_old {
        Some(Place::Start)
    } else {
        None
    }
}

/// For a change that keeps every line of `current` but puts new ones
/// elsewhere than at `place`: the file with them there.
fn misplaced(current: &str, after: &str, place: Place) -> Option<String> {
    if current.chars().count() > SHOWN_CHARS {
        return None;
    }
    let had: HashSet<String> = current.lines().map(key).collect();
    let lines: Vec<&str> = after.lines().filter(|l| !l.trim().is_empty()).collect();
    let is_new = |line: &&str| !had.contains(&key(line));
    let first_new = lines.iter().position(is_new)?;
    let last_new = lines.iter().rposition(is_new)?;
    let first_old = lines.iter().position(|l| !is_new(l))?;
    let last_old = lines.iter().rposition(|l| !is_new(l))?;
    let wrong = match place {
        Place::End => first_new < last_old,
        Place::Start => last_new > first_old,
        Place::Inside | Place::Unsaid => false,
    };
    wrong.then(|| with_added(current, &added_lines(current, after), place))
}

/// The call that writes `content` to `path`, on a line of its own.
fn suggested_write(path: &str, content: &str) -> String {
    let call = serde_json::json!({ "path": path, "content": content });
    format!("call write_file with these arguments:\n```json\n{call}\n```")
}

fn place_words(place: Place) -> &'static str {
    match place {
        Place::Start => "at the start",
        Place::End | Place::Inside | Place::Unsaid => "at the end",
    }
}

/// The refusal of a change that puts the task's new lines in the wrong
/// place, with the call that puts them where the task says.
fn misplaced_answer(path: &str, place: Place, fixed: &str) -> String {
    format!(
        "{REFUSED}the task adds its lines {} of {path}; this puts them elsewhere. To add them {} \
         and keep the file as it is, {}",
        place_words(place),
        place_words(place),
        suggested_write(path, fixed)
    )
}

/// Whether `current` already has, each as a line, the texts the task
/// quotes (its names of files aside): the line it adds is there.
fn has_task_lines(task: &Task<'_>, current: &str, path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let lines: HashSet<&str> = current.lines().map(str::trim).collect();
    let quoted: Vec<&str> = task
        .quoted()
        .into_iter()
        .map(str::trim)
        .filter(|q| *q != path && *q != name)
        .collect();
    !quoted.is_empty() && quoted.iter().all(|q| lines.contains(q))
}

/// What a refusal of a write that would lose lines ends with.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The write that adds the model's new lines to the file as it is.
    Write(String),
    /// The file as it is.
    File,
}

/// The refusal names no lost line on a line of its own, and ends with the
/// file as it is, or with the call that adds the write's lines to it: small
/// models copy the last lines they were given into the next write
/// (measured: a 1.5B coder wrote this answer's instruction into README.md,
/// and it was merged).
fn answer(path: &str, current: &str, lost: &[&str], ending: &Ending) -> String {
    let mut text = format!(
        "{REFUSED}write_file must keep every line of {path}, which exists; this write would lose \
         {} of them. Write the whole file again with your change in it, or use edit_file.",
        lost.len()
    );
    if let Ending::Write(content) = ending {
        text.push_str(&format!(
            " To add your lines to {path} as the task says, {}",
            suggested_write(path, content)
        ));
        return text;
    }
    if current.chars().count() <= SHOWN_CHARS {
        text.push_str(&format!(
            " {path} is now:\n```\n{}\n```",
            current.trim_end_matches('\n')
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = "# Tiny repo\n\nA test repository for memofab with a local model.\n";

    #[test]
    fn a_rewrite_from_memory_loses_lines_an_addition_does_not() {
        // As measured: the new line alone, and the file retyped from memory.
        assert_eq!(lost_lines(README, "Hello from memofab.").len(), 2);
        assert_eq!(
            lost_lines(
                README,
                "Tiny repo\nA test repository for memofab with a local model."
            ),
            vec!["# Tiny repo"]
        );
        // Kept, with the line added (blank lines and trailing spaces aside).
        assert!(lost_lines(README, &format!("{README}Hello from memofab.\n")).is_empty());
        assert!(
            lost_lines(
                README,
                "# Tiny repo  \nA test repository for memofab with a local model.\nHello from memofab."
            )
            .is_empty()
        );
    }

    /// What `edit_file` does with the arguments: `old` replaced once.
    fn applied(file: &str, call: &Value) -> String {
        file.replacen(
            call["old"].as_str().unwrap(),
            call["new"].as_str().unwrap(),
            1,
        )
    }

    #[test]
    fn an_edit_that_replaces_the_last_line_is_answered_with_the_call_that_adds_after_it() {
        let line = "A test repository for memofab with a local model.";
        // As measured (1.5B): the last line replaced by the new one, with
        // and without the line's end in `old`.
        for (old, new) in [
            (line.to_owned(), "Hello from memofab.\n"),
            (format!("{line}\n"), "Hello from memofab."),
        ] {
            let edit = serde_json::json!({"path": "README.md", "old": old, "new": new});
            let refusal = removing_edit_refusal(&edit).expect("refused");
            assert!(refusal.starts_with(REFUSED));
            let suggested: Value =
                serde_json::from_str(refusal.lines().find(|l| l.starts_with('{')).unwrap())
                    .expect("a call on its own line");
            assert_eq!(
                applied(README, &suggested),
                format!("{README}Hello from memofab.\n"),
                "the suggested call, run, adds the line and keeps the file"
            );
        }
        // An edit that keeps `old`'s lines is not this guard's business.
        let keeps =
            serde_json::json!({"path": "README.md", "old": line, "new": format!("{line}\nHello.")});
        assert_eq!(removing_edit_refusal(&keeps), None);
    }

    #[test]
    fn the_answer_shows_the_file_as_it_is() {
        let text = answer("README.md", README, &["# Tiny repo"], &Ending::File);
        assert!(text.starts_with(REFUSED));
        assert!(text.contains("edit_file") && text.contains(README.trim_end()));
        let big = "x\n".repeat(SHOWN_CHARS);
        assert!(!answer("big.txt", &big, &["x"], &Ending::File).contains("```"));
    }

    /// The write a refusal suggests, as the model would copy it.
    fn suggested(refusal: &str) -> Value {
        let line = refusal
            .lines()
            .find(|l| l.starts_with('{'))
            .expect("a call on its own line");
        serde_json::from_str(line).expect("JSON")
    }

    #[test]
    fn a_write_that_loses_lines_is_answered_with_the_file_and_its_new_lines_where_the_task_says() {
        let fixed = format!("{README}Hello from memofab.\n");
        // As measured (1.5B): the new line alone (stock template); the file
        // retyped from memory with a heading's `#` dropped and the new line
        // after it (fenced template, sent again each time it was refused).
        let retyped =
            "Tiny repo\n\nA test repository for memofab with a local model.\nHello from memofab.\n";
        for (write, place) in [
            ("Hello from memofab.", Place::End),
            ("Hello from memofab.", Place::Unsaid),
            (retyped, Place::End),
            (retyped, Place::Unsaid),
        ] {
            let content = restored(README, write, place).expect("suggested");
            assert_eq!(content, fixed, "{write:?} {place:?}");
            let refusal = answer("README.md", README, &["x"], &Ending::Write(content.clone()));
            assert!(refusal.starts_with(REFUSED));
            let call = suggested(&refusal);
            assert_eq!(call["path"], "README.md");
            assert_eq!(call["content"].as_str(), Some(fixed.as_str()));
        }
        // Where the task says, or the write put them when it says nothing.
        assert_eq!(
            restored(README, "Hello.\n", Place::Start).as_deref(),
            Some(format!("Hello.\n{README}").as_str())
        );
        assert_eq!(
            restored(README, "Hello.\nTiny repo\n", Place::Unsaid).as_deref(),
            Some(format!("Hello.\n{README}").as_str())
        );
        // New lines between the file's own, a place inside the file, only
        // the file retyped, or a file too long to show: the file is shown
        // instead, nothing suggested.
        let between = "Tiny repo\nHello.\nA test repository for memofab with a local model.";
        assert_eq!(restored(README, between, Place::Unsaid), None);
        assert_eq!(restored(README, "Hello.", Place::Inside), None);
        assert_eq!(restored(README, "tiny repo", Place::End), None);
        assert_eq!(
            restored(&"x\n".repeat(SHOWN_CHARS), "Hello.", Place::End),
            None
        );
    }

    #[test]
    fn new_lines_put_first_when_the_task_says_the_end_are_moved_there() {
        // As measured (1.5B, stock template, 2 of 3 runs merged so).
        let first = format!("Hello from memofab.\n\n{README}");
        let fixed = misplaced(README, &first, Place::End).expect("misplaced");
        assert_eq!(fixed, format!("{README}Hello from memofab.\n"));
        let refusal = misplaced_answer("README.md", Place::End, &fixed);
        assert!(refusal.starts_with(REFUSED));
        assert_eq!(
            suggested(&refusal)["content"].as_str(),
            Some(fixed.as_str())
        );
        // In the middle is not the end either.
        let middle =
            "# Tiny repo\nHello from memofab.\nA test repository for memofab with a local model.\n";
        assert_eq!(
            misplaced(README, middle, Place::End).as_deref(),
            Some(fixed.as_str())
        );
        // Where the task says, nothing to say; blank lines and the file's
        // own lines moved are not new lines.
        assert_eq!(misplaced(README, &fixed, Place::End), None);
        assert_eq!(
            misplaced(README, &format!("{README}\n\nHello.\n\n"), Place::End),
            None
        );
        assert_eq!(misplaced(README, &first, Place::Start), None);
        assert_eq!(
            misplaced(README, &fixed, Place::Start).as_deref(),
            Some(format!("Hello from memofab.\n{README}").as_str())
        );
        assert_eq!(misplaced(README, &first, Place::Inside), None);
        // Nothing new: not this guard's business.
        assert_eq!(misplaced(README, README, Place::End), None);
    }

    #[test]
    fn a_retyped_file_that_already_has_the_tasks_line_is_said_to_add_nothing() {
        let brief = "## Task 1: Add line to README.md\nAdd the line 'Hello from memofab.' at the end of README.md.\n\n### Acceptance criteria\n";
        let task = Task::of(brief).expect("a task");
        let done = format!("{README}Hello from memofab.\n");
        // As measured (1.5B, fenced, sent back by a wrong rejection): the
        // finished file retyped without its heading's `#`.
        let retyped =
            "Tiny repo\n\nA test repository for memofab with a local model.\nHello from memofab.";
        assert!(has_task_lines(&task, &done, "README.md"));
        assert!(added_lines(&done, retyped).is_empty());
        let text = already_there("README.md");
        assert!(!text.starts_with(REFUSED) && text.contains("`finish`"));
        // Before the line is there, nothing is said to be done; the file's
        // name, quoted, is not a line to have.
        assert!(!has_task_lines(&task, README, "README.md"));
        let named = Task::of("## Task 1: Add 'Hi.' to `README.md`\n\n### A\n").expect("a task");
        assert!(has_task_lines(&named, "Hi.\n", "README.md"));
        let unquoted = Task::of("## Task 1: Add a line\nat the end\n\n### A\n").expect("a task");
        assert!(!has_task_lines(&unquoted, &done, "README.md"));
    }

    #[test]
    fn an_edit_of_text_the_file_lacks_is_answered_with_the_write_of_what_it_adds() {
        // As measured (1.5B, stock template): the file's name as `old`.
        let new =
            "Tiny repo\n\nA test repository for memofab with a local model.\n\nHello from memofab.";
        assert!(matches!(edited(README, "README.md", new), Edited::Absent));
        let content = restored(README, new, Place::Unsaid).expect("suggested");
        assert_eq!(content, format!("{README}Hello from memofab.\n"));
        let refusal = absent_old_answer("README.md", "README.md", &content);
        assert!(refusal.starts_with(REFUSED));
        assert_eq!(
            suggested(&refusal)["content"].as_str(),
            Some(content.as_str())
        );
        // Text the file has, exactly or blank lines aside, is edited there.
        let Edited::To(after) = edited(README, "# Tiny repo\n", "# Tiny repo\nHi.\n") else {
            panic!("edited")
        };
        assert!(after.starts_with("# Tiny repo\nHi.\n"));
        let loose = "# Tiny repo\nA test repository for memofab with a local model.";
        assert!(matches!(edited(README, loose, "x"), Edited::To(_)));
        assert!(matches!(edited(README, "", "x"), Edited::Absent));
        // As measured (1.5B, stock): `old` empty, `new` the line.
        let content = restored(README, "Hello from memofab.", Place::End).expect("suggested");
        assert_eq!(content, format!("{README}Hello from memofab.\n"));
        // The line written twice (1.5B, fenced) is suggested once.
        let twice =
            "Tiny repo\n\nA test repository for memofab with a local model.\nHello.\nHello.\n";
        assert_eq!(
            restored(README, twice, Place::End),
            Some(format!("{README}Hello.\n"))
        );
    }

    #[test]
    fn a_change_that_only_repeats_the_files_lines_is_answered_with_the_tasks_line() {
        let brief = "## Task 1: Add line to README.md\nAdd the line 'Hello from memofab.' at the end of README.md.\n\n### A\n";
        let task = Task::of(brief).expect("a task");
        assert_eq!(
            task_lines(&task, README, "README.md"),
            ["Hello from memofab."]
        );
        // As measured (1.5B, stock): "Tiny repo" (inside the heading)
        // replaced by the file's first lines, a line doubled.
        let Edited::To(after) = edited(
            README,
            "Tiny repo",
            "Tiny repo\n\nA test repository for memofab with a local model.\n",
        ) else {
            panic!("edited")
        };
        assert!(after != README && added_lines(README, &after).is_empty());
        let content =
            task_write(Some(&task), Some(Place::End), README, "README.md").expect("suggested");
        assert_eq!(content, format!("{README}Hello from memofab.\n"));
        let refusal = repeats_answer("README.md", Some(&content));
        assert!(refusal.starts_with(REFUSED));
        assert_eq!(
            suggested(&refusal)["content"].as_str(),
            Some(content.as_str())
        );
        // Nothing to suggest: a place inside the file, the line already
        // there, or only names of files quoted.
        assert_eq!(
            task_write(Some(&task), Some(Place::Inside), README, "README.md"),
            None
        );
        assert_eq!(
            task_write(Some(&task), Some(Place::End), &content, "README.md"),
            None
        );
        let named =
            Task::of("## Task 1: Add a line to `README.md`\nSee 'docs/guide.md'.\n\n### A\n")
                .expect("a task");
        assert!(task_lines(&named, README, "README.md").is_empty());
    }

    #[test]
    fn the_tasks_line_written_twice_is_answered_with_it_written_once() {
        let brief = "## Task 1: Read and append to README.md\nRead README.md and append 'Hello from memofab.' at the end.\n\n### A\n";
        let task = Task::of(brief).expect("a task");
        assert!(task.only_adds());
        // As measured (1.5B, stock template), and merged.
        let twice = format!("{README}Hello from memofab.\nHello from memofab.\n");
        let added = added_lines(README, &twice);
        assert_eq!(
            added_twice(&task, README, "README.md", &added),
            Some("Hello from memofab.")
        );
        let fixed =
            task_write(Some(&task), Some(Place::End), README, "README.md").expect("suggested");
        let refusal = twice_answer("README.md", "Hello from memofab.", Some(&fixed));
        assert!(refusal.starts_with(REFUSED));
        assert_eq!(
            suggested(&refusal)["content"].as_str(),
            Some(format!("{README}Hello from memofab.\n").as_str())
        );
        // Once is what the task asks.
        let once = format!("{README}Hello from memofab.\n");
        assert_eq!(
            added_twice(&task, README, "README.md", &added_lines(README, &once)),
            None
        );
    }
}
