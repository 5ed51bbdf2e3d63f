//! The Markdown account of a run, for people: its requirement and
//! blueprint, a transcript per agent, and what happened, worded by
//! [`super::narrate`] as the cockpit's Log tab words it. Pure: events in,
//! text out; `memofab export` writes it.
//!
//! Invariant: nothing an agent or a person wrote can add a section to the
//! account or swallow what follows ([`escape_markdown`]); transcripts keep
//! the order the run went in.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::event::{
    AgentMessage, BlueprintAccepted, Event, EventKind, McpToolsListed, MessageAuthor, RunStarted,
    ToolCalled, ToolResult,
};
use super::ids::AgentId;
use super::narrate;

/// Tool results longer than this are cut in the account.
const MAX_RESULT_CHARS: usize = 2_000;

/// The account of a run's events, in order; empty without events.
pub fn markdown(events: &[Event]) -> String {
    let mut out = String::new();
    let Some(first) = events.first() else {
        return out;
    };
    line(&mut out, format_args!("# memofab run {}\n", first.run));
    let mut transcripts = Transcripts::default();
    let mut outcomes = Vec::new();
    for event in events {
        heading(&mut out, event);
        transcript(&mut transcripts, event);
        if let Some(told) = narrate::line(event) {
            outcomes.push(format!("- {}", escape_markdown(&told.text)));
        }
    }
    line(&mut out, format_args!("## Transcripts\n"));
    for (agent, lines) in &transcripts.agents {
        line(&mut out, format_args!("### {agent}\n"));
        for text in lines {
            line(&mut out, format_args!("{text}"));
        }
    }
    line(&mut out, format_args!("## Outcomes\n"));
    for text in outcomes {
        line(&mut out, format_args!("{text}"));
    }
    out
}

fn line(out: &mut String, text: std::fmt::Arguments<'_>) {
    // Writing to a String cannot fail.
    let _ = out.write_fmt(text);
    out.push('\n');
}

/// The run's settings, requirement and blueprint, at the top.
fn heading(out: &mut String, event: &Event) {
    match &event.kind {
        EventKind::RunStarted(RunStarted {
            requirement,
            repo,
            mainline,
            settings,
            ..
        }) => {
            line(
                out,
                format_args!("- repository: `{repo}`, mainline `{mainline}`"),
            );
            line(
                out,
                format_args!(
                    "- concurrency {}, rework bound {}, conflict rework bound {}, provider `{}`\n",
                    settings.concurrency,
                    settings.max_rework,
                    settings.max_conflict_rework,
                    settings.provider
                ),
            );
            line(
                out,
                format_args!(
                    "## Requirement\n\n{}\n",
                    escape_markdown(requirement.trim())
                ),
            );
        }
        EventKind::BlueprintAccepted(BlueprintAccepted { blueprint }) => {
            line(
                out,
                format_args!("## Blueprint: {}\n", escape_markdown(&blueprint.title)),
            );
            for task in &blueprint.tasks {
                let deps: Vec<&str> = task.depends_on.iter().map(|d| d.as_str()).collect();
                let after = if deps.is_empty() {
                    String::new()
                } else {
                    format!(" (after {})", deps.join(", "))
                };
                line(
                    out,
                    format_args!("- **{}** {}{after}", task.id, escape_markdown(&task.title)),
                );
            }
            out.push('\n');
        }
        _ => {}
    }
}

/// The lines `event` adds to its agent's transcript.
fn transcript(transcripts: &mut Transcripts, event: &Event) {
    let (agent, text) = match &event.kind {
        EventKind::AgentMessage(AgentMessage { agent, from, text }) => {
            let who = match from {
                MessageAuthor::System => "system",
                MessageAuthor::User => "factory",
                MessageAuthor::Assistant => "agent",
                MessageAuthor::Thinking => "thinking",
            };
            (
                agent,
                format!("**{who}:** {}\n", escape_markdown(text.trim())),
            )
        }
        EventKind::ToolCalled(ToolCalled {
            agent,
            tool,
            arguments,
            ..
        }) => {
            let args = serde_json::to_string_pretty(arguments).unwrap_or_default();
            (agent, format!("→ `{tool}`\n```json\n{args}\n```\n"))
        }
        EventKind::ToolResult(ToolResult {
            agent, ok, output, ..
        }) => {
            let shown: String = output.chars().take(MAX_RESULT_CHARS).collect();
            let cut = if output.chars().count() > MAX_RESULT_CHARS {
                "\n[… cut]"
            } else {
                ""
            };
            let mark = if *ok { "ok" } else { "error" };
            (agent, format!("← {mark}\n```\n{shown}{cut}\n```\n"))
        }
        EventKind::McpToolsListed(McpToolsListed { agent, servers }) => {
            let lines = transcripts.lines(agent.clone());
            for server in servers {
                lines.push(format!("**system:** {}\n", server.line()));
            }
            return;
        }
        EventKind::ReplyBrokenOff(e) => (
            &e.agent,
            format!("**warning:** {}\n", narrate::broken_off(e)),
        ),
        EventKind::ContextCompacted(e) => {
            let note = e
                .note
                .as_deref()
                .map(|n| format!("\n\n{}", escape_markdown(n.trim())))
                .unwrap_or_default();
            (
                &e.agent,
                format!("**system:** {}{note}\n", narrate::compaction(e)),
            )
        }
        EventKind::ShepherdIntervened(e) => match &e.agent {
            Some(agent) => (
                agent,
                format!("**shepherd:** {}\n", narrate::intervention(e)),
            ),
            None => return,
        },
        _ => return,
    };
    transcripts.lines(agent.clone()).push(text);
}

/// Each agent's transcript lines, agents in the order they first spoke, so
/// the account reads as the run went (the planner before the coders).
#[derive(Default)]
struct Transcripts {
    agents: Vec<(AgentId, Vec<String>)>,
    index: HashMap<AgentId, usize>,
}

impl Transcripts {
    fn lines(&mut self, agent: AgentId) -> &mut Vec<String> {
        let at = match self.index.get(&agent) {
            Some(at) => *at,
            None => {
                self.index.insert(agent.clone(), self.agents.len());
                self.agents.push((agent, Vec::new()));
                self.agents.len() - 1
            }
        };
        &mut self.agents[at].1
    }
}

/// Text written by agents or people, made safe to place inside the account:
/// a line that would open a heading (`## Diff against mainline` in a
/// prompt) or a setext underline is escaped, so it cannot become a section
/// of the export, and a code fence left open is closed, so it cannot
/// swallow what follows. Lines inside fences are code and stay as they are.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let body = line.trim_start_matches(' ');
        let indent = line.len() - body.len();
        let opens = ["```", "~~~"].into_iter().find(|f| body.starts_with(f));
        match (fence, opens) {
            (Some(open), Some(f)) if indent < 4 && f == open => fence = None,
            (None, Some(f)) if indent < 4 => fence = Some(f),
            (None, _) if indent < 4 && needs_escape(body) => {
                out.push_str(&line[..indent]);
                out.push('\\');
                out.push_str(body);
                continue;
            }
            _ => {}
        }
        out.push_str(line);
    }
    if let Some(open) = fence {
        out.push('\n');
        out.push_str(open);
    }
    out
}

/// Whether a line (leading spaces removed) would be read as a heading or a
/// setext underline turning the line above into one.
fn needs_escape(body: &str) -> bool {
    let trimmed = body.trim_end();
    body.starts_with('#')
        || (!trimmed.is_empty() && trimmed.chars().all(|c| c == '='))
        || (!trimmed.is_empty() && trimmed.chars().all(|c| c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{QuestionAsked, Warning};
    use crate::domain::{Blueprint, RunId, RunSettings, TaskSpec};

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            run: RunId::from("r1"),
            seq,
            at_ms: seq,
            kind,
        }
    }

    /// Hostile text reaches the account through narrated lines and the
    /// blueprint too: none of it may open a section of its own.
    #[test]
    fn narrated_text_cannot_forge_a_section_of_the_account() {
        let forged = "look\n## Forged section\n===\n```\n# still forged";
        let events = vec![
            event(
                1,
                EventKind::RunStarted(RunStarted {
                    requirement: "do it".into(),
                    repo: "/r".into(),
                    mainline: "main".into(),
                    base_commit: "abc".into(),
                    settings: RunSettings::default(),
                }),
            ),
            event(
                2,
                EventKind::BlueprintAccepted(BlueprintAccepted {
                    blueprint: Blueprint {
                        title: "# Forged title".into(),
                        tasks: vec![TaskSpec {
                            id: "t1".into(),
                            title: "## Forged task".into(),
                            description: String::new(),
                            acceptance: Vec::new(),
                            paths: Vec::new(),
                            depends_on: Vec::new(),
                        }],
                    },
                }),
            ),
            event(
                3,
                EventKind::QuestionAsked(QuestionAsked {
                    agent: "coder:t1#1".into(),
                    call_id: "c1".into(),
                    task: Some("t1".into()),
                    question: forged.into(),
                }),
            ),
            event(
                4,
                EventKind::Warning(Warning {
                    task: None,
                    message: forged.into(),
                }),
            ),
        ];
        let account = markdown(&events);
        // Outside code fences, the lines a Markdown reader takes for headings.
        let mut in_fence = false;
        let mut headings = Vec::new();
        for line in account.lines() {
            if line.starts_with("```") {
                in_fence = !in_fence;
            } else if !in_fence
                && (line.starts_with('#') || (!line.is_empty() && line.chars().all(|c| c == '=')))
            {
                headings.push(line);
            }
        }
        assert!(!in_fence, "a fence left open: {account}");
        assert_eq!(
            headings,
            [
                "# memofab run r1",
                "## Requirement",
                "## Blueprint: \\# Forged title",
                "## Transcripts",
                "## Outcomes",
            ],
            "{account}"
        );
        assert!(account.contains("coder:t1#1 asks: look"), "{account}");
    }
}
