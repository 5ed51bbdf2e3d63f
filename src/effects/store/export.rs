//! Writes a run's record for people and tools: JSON lines (one event per
//! line, lossless) or markdown (a readable account with a transcript per agent).

use std::collections::HashMap;
use std::io::{self, Write};

use crate::domain::event::{
    AgentMessage, BlueprintAccepted, CheckoutDirty, ContextCompacted, Escalated, GateDecision,
    GateHeld, McpToolsListed, MergeResult, MergeReverted, MergeVerified, NothingChanged,
    ReplyBrokenOff, RepositoryChanged, ReviewVerdict, RunFinished, RunInterrupted, RunStarted,
    ShepherdIntervened, TestRun, TesterDone, TestsOnBase, ToolCalled, ToolResult,
};
use crate::domain::ids::short_commit;
use crate::domain::{AgentId, Event, EventKind, MergeOutcome, MessageAuthor};

/// Tool results longer than this are cut in the markdown export.
const MAX_RESULT_CHARS: usize = 2_000;

pub fn export_jsonl(events: &[Event], out: &mut impl Write) -> io::Result<()> {
    for event in events {
        serde_json::to_writer(&mut *out, event)?;
        out.write_all(b"\n")?;
    }
    Ok(())
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

pub fn export_markdown(events: &[Event], out: &mut impl Write) -> io::Result<()> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    writeln!(out, "# memofab run {}\n", first.run)?;
    let mut transcripts = Transcripts::default();
    let mut outcomes = Vec::new();
    for event in events {
        match &event.kind {
            EventKind::RunStarted(RunStarted {
                requirement,
                repo,
                mainline,
                settings,
                ..
            }) => {
                writeln!(out, "- repository: `{repo}`, mainline `{mainline}`")?;
                writeln!(
                    out,
                    "- concurrency {}, rework bound {}, conflict rework bound {}, provider `{}`\n",
                    settings.concurrency,
                    settings.max_rework,
                    settings.max_conflict_rework,
                    settings.provider
                )?;
                writeln!(
                    out,
                    "## Requirement\n\n{}\n",
                    escape_markdown(requirement.trim())
                )?;
            }
            EventKind::BlueprintAccepted(BlueprintAccepted { blueprint }) => {
                writeln!(out, "## Blueprint: {}\n", blueprint.title)?;
                for task in &blueprint.tasks {
                    let deps: Vec<&str> = task.depends_on.iter().map(|d| d.as_str()).collect();
                    let after = if deps.is_empty() {
                        String::new()
                    } else {
                        format!(" (after {})", deps.join(", "))
                    };
                    writeln!(out, "- **{}** {}{after}", task.id, task.title)?;
                }
                writeln!(out)?;
            }
            EventKind::AgentMessage(AgentMessage { agent, from, text }) => {
                let who = match from {
                    MessageAuthor::System => "system",
                    MessageAuthor::User => "factory",
                    MessageAuthor::Assistant => "agent",
                    MessageAuthor::Thinking => "thinking",
                };
                transcripts
                    .lines(agent.clone())
                    .push(format!("**{who}:** {}\n", escape_markdown(text.trim())));
            }
            EventKind::ToolCalled(ToolCalled {
                agent,
                tool,
                arguments,
                ..
            }) => {
                let args = serde_json::to_string_pretty(arguments).unwrap_or_default();
                transcripts
                    .lines(agent.clone())
                    .push(format!("→ `{tool}`\n```json\n{args}\n```\n"));
            }
            EventKind::McpToolsListed(McpToolsListed { agent, servers }) => {
                let lines = transcripts.lines(agent.clone());
                for server in servers {
                    lines.push(format!("**system:** {}\n", server.line()));
                }
            }
            EventKind::ReplyBrokenOff(ReplyBrokenOff { agent, .. }) => {
                let line = event.kind.broken_off_line().unwrap_or_default();
                transcripts
                    .lines(agent.clone())
                    .push(format!("**warning:** {line}\n"));
            }
            EventKind::ContextCompacted(ContextCompacted { agent, note, .. }) => {
                let line = event.kind.compaction_line().unwrap_or_default();
                let note = note
                    .as_deref()
                    .map(|n| format!("\n\n{}", escape_markdown(n.trim())))
                    .unwrap_or_default();
                transcripts
                    .lines(agent.clone())
                    .push(format!("**system:** {line}{note}\n"));
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
                transcripts
                    .lines(agent.clone())
                    .push(format!("← {mark}\n```\n{shown}{cut}\n```\n"));
            }
            EventKind::ReviewVerdict(ReviewVerdict {
                task,
                approved,
                feedback,
            }) => outcomes.push(format!(
                "- review of {task}: {}{}",
                if *approved {
                    "approved"
                } else {
                    "changes requested"
                },
                if feedback.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", feedback.trim())
                }
            )),
            EventKind::TestsOnBase(TestsOnBase {
                task,
                round,
                command,
                failed,
                ..
            }) => outcomes.push(format!(
                "- the tester's tests of {task} on the base commit (`{command}`, round {round}): {}",
                if *failed {
                    "failed, as they must"
                } else {
                    "passed, proving nothing"
                }
            )),
            EventKind::TesterDone(TesterDone { task, tests }) => outcomes.push(match tests {
                Some(t) => format!(
                    "- the tester's tests of {task}, read-only for its coder: {}",
                    t.files.join(", ")
                ),
                None => format!("- {task} goes on without a tester's tests"),
            }),
            EventKind::TestRun(TestRun {
                task,
                command,
                passed,
                ..
            }) => outcomes.push(format!(
                "- tests of {task} (`{command}`): {}",
                if *passed { "passed" } else { "failed" }
            )),
            EventKind::MergeVerified(MergeVerified {
                task,
                check,
                candidate,
                command,
                passed,
                ..
            }) => outcomes.push(format!(
                "- {} of {task} on {} (`{command}`): {}",
                check.label(),
                short_commit(candidate),
                if *passed { "passed" } else { "failed" }
            )),
            EventKind::MergeReverted(MergeReverted {
                task,
                merge_commit,
                revert_commit,
                ..
            }) => outcomes.push(format!(
                "- {task}'s merge {} reverted on mainline by {}",
                short_commit(merge_commit),
                short_commit(revert_commit)
            )),
            EventKind::MergeResult(MergeResult { task, result }) => outcomes.push(match result {
                MergeOutcome::FastForward { commit } => {
                    format!("- {task} merged (fast-forward to {})", short_commit(commit))
                }
                MergeOutcome::MergeCommit { commit } => {
                    format!("- {task} merged (merge commit {})", short_commit(commit))
                }
                MergeOutcome::Conflict { files } => {
                    format!("- {task} conflicted in {}", files.join(", "))
                }
            }),
            EventKind::GateHeld(GateHeld { task, reasons }) => outcomes.push(format!(
                "- {task} held at the gate: {}",
                crate::domain::gate_reason::joined(reasons)
            )),
            EventKind::GateDecision(GateDecision {
                task, approved, by, ..
            }) => outcomes.push(format!(
                "- gate for {task}: {} by {by}",
                if *approved { "approved" } else { "rejected" }
            )),
            EventKind::Escalated(Escalated { task, reason }) => {
                outcomes.push(format!("- {task} escalated: {reason}"))
            }
            EventKind::RunInterrupted(RunInterrupted {}) => {
                outcomes.push("- the run was interrupted (resumable)".to_owned())
            }
            EventKind::RunResumed(_) => outcomes.push("- the run was resumed".to_owned()),
            EventKind::RepositoryChanged(RepositoryChanged { changes }) => outcomes.push(format!(
                "- the run stopped: the repository changed outside memofab ({})",
                changes.join("; ")
            )),
            EventKind::CheckoutDirty(CheckoutDirty { task, files }) => outcomes.push(format!(
                "- {task} waited to land: the checkout of mainline had changes in {}",
                files.join(", ")
            )),
            EventKind::ShepherdIntervened(ShepherdIntervened {
                task,
                agent,
                pattern,
                action,
            }) => {
                let line = crate::domain::shepherd::intervention_line(
                    task.as_ref(),
                    agent.as_ref(),
                    pattern,
                    *action,
                );
                if let Some(agent) = agent {
                    transcripts
                        .lines(agent.clone())
                        .push(format!("**shepherd:** {line}\n"));
                }
                outcomes.push(format!("- {line}"));
            }
            EventKind::NothingChanged(NothingChanged { task }) => outcomes.push(format!(
                "- {task}: the coder finished without changing anything; reworked"
            )),
            EventKind::RunFinished(RunFinished {
                merged,
                failed,
                mainline_commit,
            }) => outcomes.push(format!(
                "\n**Finished:** {merged} merged, {failed} not merged; mainline at {}",
                short_commit(mainline_commit)
            )),
            _ => {}
        }
    }
    writeln!(out, "## Transcripts\n")?;
    for (agent, lines) in &transcripts.agents {
        writeln!(out, "### {agent}\n")?;
        for line in lines {
            writeln!(out, "{line}")?;
        }
    }
    writeln!(out, "## Outcomes\n")?;
    for line in outcomes {
        writeln!(out, "{line}")?;
    }
    Ok(())
}
