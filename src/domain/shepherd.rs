//! The shepherd: notices work that is stuck and says what to do about it.
//! Pure: the engine feeds a [`Watch`] an agent's tool calls and turns, and
//! keeps a [`TaskShepherd`] per task in the run state; both answer with a
//! [`Pattern`] and the next step of the ladder ([`next_action`]): a nudge,
//! then a fresh agent, then a human.
//!
//! Invariant: a pattern, once reported, is forgotten by the watch, so the
//! next step of the ladder needs the pattern to recur in full.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

pub use super::stuck::{Action, Pattern};
use super::task::TaskState;

pub mod echo;

/// The heading of what a fresh agent is told about the one it replaces:
/// what follows it in a brief is memofab's words, not the task's.
pub const RESTART_HEADING: &str = "## A previous agent on this step was stopped";
/// The `[shepherd]` config: when work counts as stuck.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    pub enabled: bool,
    /// The same tool error (or the same failing call) this many times.
    pub repeat_failures: u32,
    /// The same call with the same arguments this many times without a
    /// file changing in between.
    pub repeat_calls: u32,
    /// Turns of an agent that can write files without it writing one.
    pub turns_without_change: u32,
    /// Replies in a row without a tool call (each already answered with a
    /// nudge); 0 turns it off.
    pub no_call_replies: u32,
    /// Review rejections in a row asking for the same changes.
    pub rework_echo: u32,
    /// Minutes a task may stay running or reviewing; 0 turns it off.
    pub max_minutes_in_state: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            enabled: true,
            repeat_failures: 3,
            repeat_calls: 4,
            turns_without_change: 20,
            // Measured: the 0.5B plan reviewer's replies ran to the reply
            // cap without a call eight times, ~75 s each, until the run's
            // time limit.
            no_call_replies: 2,
            rework_echo: 2,
            max_minutes_in_state: 30,
        }
    }
}

impl Thresholds {
    /// A shepherd that never intervenes.
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

/// Longest argument or error text quoted in a pattern.
const QUOTE_CHARS: usize = 160;

impl Pattern {
    /// What to do instead, told to the agent with the nudge.
    fn advice(&self) -> &'static str {
        match self {
            Pattern::RepeatedFailure { .. } => {
                "Doing the same again will fail the same way. Read the error, then change \
                 the command or its input, or take another approach."
            }
            Pattern::RepeatedCall { tool, .. } if tool == super::tool_names::RUN => {
                "Running it again does again what it did: a command that changes a file \
                 changes it once more each time. Read the files it touched to see what they \
                 hold now, put them right with edit_file, then finish."
            }
            Pattern::RepeatedCall { .. } => {
                "Its result is already above in this conversation and has not changed. Use \
                 it and move on: make the change, or finish if the work is done."
            }
            Pattern::NoChange { .. } => {
                "Make the change the task asks for (write_file or edit_file), or finish if \
                 the work is done."
            }
            Pattern::NoCall { .. } => {
                "Reply with exactly one tool call and nothing else: no explanation, no \
                 repeated text."
            }
            Pattern::ReworkEcho { .. } => {
                "The last attempts did not address the feedback. Go through it point by \
                 point and change exactly what it asks for."
            }
            Pattern::SlowStep { .. } => "Finish the essential part of the work now and wrap up.",
        }
    }
}

/// The next step after `steps` earlier interventions. Only the agents of a
/// task's coding attempt (coder, reviewer, resolver) are `replaceable`;
/// others are stopped after the nudge. A rework echo already gets a new
/// coder each round, so it goes from the nudge straight to a human.
pub fn next_action(steps: u32, pattern: &Pattern, replaceable: bool) -> Action {
    match steps {
        0 => Action::Nudge,
        _ if !replaceable => Action::Stop,
        1 if !matches!(pattern, Pattern::ReworkEcho { .. }) => Action::FreshAgent,
        _ => Action::Escalate,
    }
}

/// One line for the Log tab and the export: who, what was found, what was done.
pub fn intervention_line(
    task: Option<&super::ids::TaskId>,
    agent: Option<&super::ids::AgentId>,
    pattern: &Pattern,
    action: Action,
) -> String {
    let who = match (task, agent) {
        (_, Some(agent)) => agent.to_string(),
        (Some(task), None) => task.to_string(),
        (None, None) => "the run".to_owned(),
    };
    format!(
        "{who}: stuck ({}); the shepherd {}",
        pattern.describe(),
        action.label()
    )
}

/// The nudge sent to the agent, with the overseer's advice on it, if any.
pub fn nudge_text(pattern: &Pattern, advice: Option<&str>) -> String {
    let mut text = format!(
        "The factory's shepherd thinks you are stuck: {}. {}",
        pattern.describe(),
        pattern.advice()
    );
    if let Some(advice) = advice.map(str::trim).filter(|a| !a.is_empty()) {
        text.push_str(&format!("\nThe overseer's advice about this: {advice}"));
    }
    text
}

/// Longest piece of the overseer's advice quoted in a nudge.
const ADVICE_CHARS: usize = 400;

impl Pattern {
    /// Words that show a proposal of the overseer is about this pattern.
    fn cues(&self) -> Vec<String> {
        let mut cues: Vec<String> = match self {
            Pattern::RepeatedFailure { .. } => {
                vec!["same error".into(), "fails again".into(), "failing".into()]
            }
            Pattern::RepeatedCall { .. } => {
                vec![
                    "same file".into(),
                    "again and again".into(),
                    "re-read".into(),
                    "reread".into(),
                ]
            }
            Pattern::NoChange { .. } => vec!["without chang".into(), "no change".into()],
            Pattern::NoCall { .. } => vec!["no tool call".into(), "without a call".into()],
            Pattern::ReworkEcho { .. } => vec!["same feedback".into(), "review feedback".into()],
            Pattern::SlowStep { .. } => vec!["too long".into(), "slow".into()],
        };
        cues.push("stuck".into());
        if let Pattern::RepeatedFailure { tool, .. } | Pattern::RepeatedCall { tool, .. } = self {
            cues.push(format!("`{tool}`"));
        }
        cues
    }
}

/// The overseer's advice about `pattern`: the text of the last proposal of
/// its report (rejected ones left out) whose title or rationale speaks of it.
pub fn advice_for(pattern: &Pattern, proposals: &[super::proposal::Proposal]) -> Option<String> {
    let cues = pattern.cues();
    proposals
        .iter()
        .rev()
        .find(|p| {
            let about = format!("{} {}", p.title, p.rationale).to_lowercase();
            cues.iter().any(|c| about.contains(c.as_str()))
        })
        .map(|p| {
            let text = p.replace.trim();
            let advice = if text.is_empty() {
                p.title.trim()
            } else {
                text
            };
            let cut: String = advice.chars().take(ADVICE_CHARS).collect();
            cut.split_whitespace().collect::<Vec<_>>().join(" ")
        })
}

/// Tools whose success changes a file in the worktree.
fn writes(tool: &str) -> bool {
    super::tool_names::writes_files(tool)
}

/// What one kind of call did, for the summary a fresh agent gets.
#[derive(Debug, Clone, PartialEq)]
struct Tally {
    tool: String,
    arguments: String,
    times: u32,
    failures: u32,
    last_error: Option<String>,
}

/// Distinct calls remembered for the summary.
const SUMMARY_CALLS: usize = 8;

/// Watches one agent's conversation.
#[derive(Debug, Clone)]
pub struct Watch {
    limits: Thresholds,
    /// The agent has tools that write files.
    can_write: bool,
    /// Calls by `tool + canonical arguments`, since the last file change.
    calls: HashMap<String, u32>,
    /// Failures by `tool + error` and by `tool + arguments`.
    failures: HashMap<String, u32>,
    quiet_turns: u32,
    /// Replies in a row without a tool call.
    silent_replies: u32,
    /// A file changed in the current turn.
    wrote: bool,
    /// Most recent last.
    tallies: Vec<Tally>,
    /// Patterns reported so far, for the summary.
    seen: Vec<Pattern>,
}

impl Watch {
    pub fn new(limits: Thresholds, can_write: bool) -> Self {
        Self {
            limits,
            can_write,
            calls: HashMap::new(),
            failures: HashMap::new(),
            quiet_turns: 0,
            silent_replies: 0,
            wrote: false,
            tallies: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// One tool call and its result. Reports the first threshold crossed.
    pub fn call(
        &mut self,
        tool: &str,
        arguments: &serde_json::Value,
        ok: bool,
        output: &str,
    ) -> Option<Pattern> {
        self.silent_replies = 0;
        let arguments = canonical(arguments);
        // memofab refusing to run a call (a repeat, say) is not the tool
        // failing: the repeat itself is counted below, as a repeated call.
        let refused = output.starts_with(echo::REFUSED);
        let error = (!ok && !refused).then(|| first_line(output));
        self.tally(tool, &arguments, (!ok).then(|| first_line(output)));
        if ok && writes(tool) {
            // The world changed: the same read may now tell something new.
            self.calls.clear();
            self.failures.clear();
            self.wrote = true;
            return None;
        }
        if !self.limits.enabled {
            return None;
        }
        let call_key = format!("{tool}\u{0}{arguments}");
        if let Some(error) = error {
            let by_error = bump(&mut self.failures, format!("{tool}\u{0}error\u{0}{error}"));
            let by_call = bump(&mut self.failures, format!("{call_key}\u{0}failed"));
            let times = by_error.max(by_call);
            if times >= self.limits.repeat_failures.max(1) {
                self.failures.clear();
                self.calls.remove(&call_key);
                return self.report(Pattern::RepeatedFailure {
                    tool: tool.to_owned(),
                    error,
                    times,
                });
            }
        }
        let times = bump(&mut self.calls, call_key.clone());
        if times >= self.limits.repeat_calls.max(1) {
            self.calls.remove(&call_key);
            return self.report(Pattern::RepeatedCall {
                tool: tool.to_owned(),
                arguments: quote(&arguments),
                times,
            });
        }
        None
    }

    /// A reply without a tool call. Reports replies that keep holding
    /// none: a small model whose every reply runs to the cap would
    /// otherwise be asked again until its turns or the run's time run out.
    pub fn no_call(&mut self) -> Option<Pattern> {
        if !self.limits.enabled || self.limits.no_call_replies == 0 {
            return None;
        }
        self.silent_replies += 1;
        if self.silent_replies < self.limits.no_call_replies {
            return None;
        }
        let replies = std::mem::take(&mut self.silent_replies);
        self.report(Pattern::NoCall { replies })
    }

    /// One reply of the model is over (its calls, if any, answered).
    pub fn turn(&mut self) -> Option<Pattern> {
        if std::mem::take(&mut self.wrote) {
            self.quiet_turns = 0;
            return None;
        }
        if !self.limits.enabled || !self.can_write || self.limits.turns_without_change == 0 {
            return None;
        }
        self.quiet_turns += 1;
        if self.quiet_turns >= self.limits.turns_without_change {
            let turns = self.quiet_turns;
            self.quiet_turns = 0;
            return self.report(Pattern::NoChange { turns });
        }
        None
    }

    fn report(&mut self, pattern: Pattern) -> Option<Pattern> {
        self.seen.push(pattern.clone());
        Some(pattern)
    }

    fn tally(&mut self, tool: &str, arguments: &str, error: Option<String>) {
        let arguments = quote(arguments);
        let index = self
            .tallies
            .iter()
            .position(|t| t.tool == tool && t.arguments == arguments);
        let mut entry = match index {
            Some(i) => self.tallies.remove(i),
            None => Tally {
                tool: tool.to_owned(),
                arguments,
                times: 0,
                failures: 0,
                last_error: None,
            },
        };
        entry.times += 1;
        if error.is_some() {
            entry.failures += 1;
        }
        entry.last_error = error;
        self.tallies.push(entry);
        if self.tallies.len() > SUMMARY_CALLS {
            self.tallies.remove(0);
        }
    }

    /// What a fresh agent is told about the one it replaces, after its
    /// brief, under [`RESTART_HEADING`].
    pub fn summary(&self, why: &Pattern) -> String {
        let mut text = format!(
            "{RESTART_HEADING}\nThe factory's shepherd replaced it because it was stuck: {}.\n",
            why.describe()
        );
        if !self.tallies.is_empty() {
            text.push_str("Its most recent calls:\n");
            for t in self.tallies.iter().rev() {
                let outcome = match (&t.last_error, t.failures) {
                    (Some(error), _) => format!("failed: {error}"),
                    (None, 0) => "ok".to_owned(),
                    (None, n) => format!("ok at last, {n} failed"),
                };
                let times = if t.times > 1 {
                    format!(" ×{}", t.times)
                } else {
                    String::new()
                };
                text.push_str(&format!(
                    "- `{}` {}{times}: {outcome}\n",
                    t.tool, t.arguments
                ));
            }
        }
        text.push_str(
            "Do not repeat what did not work. Files it wrote are still in the worktree; \
             look at them before you start.\n",
        );
        text
    }
}

fn bump(counts: &mut HashMap<String, u32>, key: String) -> u32 {
    let n = counts.entry(key).or_insert(0);
    *n += 1;
    *n
}

/// JSON with object keys sorted, so equal arguments compare equal whatever
/// order the model wrote them in.
fn canonical(value: &serde_json::Value) -> String {
    fn sorted(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&map[k]));
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sorted).collect())
            }
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// The first telling line of a tool's output, shortened. `run` starts its
/// output with `$ command` and the exit status, which say nothing of the
/// error; the status stands in when nothing else is there.
fn first_line(output: &str) -> String {
    let lines = || output.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = lines()
        .find(|l| !l.starts_with("$ ") && !l.starts_with("exit code "))
        .or_else(|| lines().next())
        .unwrap_or("(no output)");
    quote(line)
}

fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(QUOTE_CHARS).collect();
    format!("{cut}…")
}

/// What the shepherd keeps about one task, folded from its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskShepherd {
    /// Interventions since the task last left the code–review loop or a
    /// human retried it: where the next one is on the ladder.
    pub steps: u32,
    /// The feedback of the reviewer's rejections in a row.
    pub rejections: Vec<String>,
    /// Why the task was handed to a human, until it is retried.
    pub stuck: Option<String>,
    /// A word for the task's next agent, until one starts.
    pub note: Option<String>,
}

impl TaskShepherd {
    /// The shepherd intervened on this task.
    pub fn intervened(&mut self, pattern: &Pattern, action: Action) {
        self.steps += 1;
        match action {
            Action::Nudge if matches!(pattern, Pattern::ReworkEcho { .. }) => {
                self.note = Some(nudge_text(pattern, None));
            }
            Action::Escalate => self.stuck = Some(pattern.describe()),
            _ => {}
        }
    }

    pub fn transitioned(&mut self, to: TaskState) {
        match to {
            // A human's retry starts afresh.
            TaskState::Pending | TaskState::Ready => *self = Self::default(),
            TaskState::Running
            | TaskState::Reviewing
            | TaskState::Failed
            | TaskState::OverBudget
            | TaskState::Cancelled
            | TaskState::Blocked => {}
            // Out of the code–review loop: it moved on.
            _ => {
                self.steps = 0;
                self.rejections.clear();
            }
        }
    }

    pub fn reviewed(&mut self, approved: bool, feedback: &str) {
        if approved {
            self.rejections.clear();
        } else {
            self.rejections.push(feedback.to_owned());
        }
    }

    /// Whether the last `rounds` rejections asked for the same changes.
    pub fn echo(&self, rounds: u32) -> Option<Pattern> {
        let rounds = rounds.max(2) as usize;
        let last = self.rejections.len().checked_sub(rounds)?;
        let recent = &self.rejections[last..];
        let first = words(&recent[0]);
        recent[1..]
            .iter()
            .all(|r| similar(&first, &words(r)))
            .then_some(Pattern::ReworkEcho {
                rounds: rounds as u32,
            })
    }
}

/// The words of a text, lower-cased, without punctuation or numbering.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !w.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_lowercase)
        .collect()
}

/// Feedback reworded a little is still the same feedback: at least 80% of
/// the words in common.
fn similar(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    let union = a.union(b).count();
    if union == 0 {
        return true;
    }
    let common = a.intersection(b).count();
    common * 5 >= union * 4
}

/// Tasks the shepherd times, and since when (any monotonic milliseconds).
#[derive(Debug, Clone, Default)]
pub struct StateClock {
    since: HashMap<super::ids::TaskId, (TaskState, u64)>,
}

impl StateClock {
    /// Looks at every task's state at `now_ms`: tasks running or reviewing
    /// for longer than the limit are reported, and timed afresh, so a task
    /// still stuck a limit later is reported again.
    pub fn observe<'a>(
        &mut self,
        tasks: impl IntoIterator<Item = (&'a super::ids::TaskId, TaskState)>,
        now_ms: u64,
        limits: &Thresholds,
    ) -> Vec<(super::ids::TaskId, Pattern)> {
        let mut overdue = Vec::new();
        let limit_ms = limits.max_minutes_in_state.saturating_mul(60_000);
        let mut seen = HashMap::new();
        for (task, state) in tasks {
            if !matches!(state, TaskState::Running | TaskState::Reviewing) {
                continue;
            }
            let since = match self.since.get(task) {
                Some((was, since)) if *was == state => *since,
                _ => now_ms,
            };
            let spent = now_ms.saturating_sub(since);
            let since = if limits.enabled && limit_ms > 0 && spent >= limit_ms {
                overdue.push((
                    task.clone(),
                    Pattern::SlowStep {
                        state,
                        minutes: spent / 60_000,
                    },
                ));
                now_ms
            } else {
                since
            };
            seen.insert(task.clone(), (state, since));
        }
        self.since = seen;
        overdue
    }
}

#[cfg(test)]
mod tests;
