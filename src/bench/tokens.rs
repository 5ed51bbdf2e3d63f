//! `memofab bench tokens`: what a long coder conversation is billed, with
//! and without prompt caching and compaction. A real agent (real recorder,
//! store, tools and Anthropic provider) reads 40 files of 8 KB over 30
//! turns against a local fake Anthropic server that counts tokens and
//! reports cache reads and writes the way the real one does. Figures are
//! billed input-token equivalents: uncached input, plus cache reads at 10 %
//! and cache writes at 125 %.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use super::fake_anthropic::{Answer, FakeAnthropic, Script};
use super::{Table, thousands};
use crate::domain::event::{RunStarted, TokensUsed};
use crate::domain::policy::Policy;
use crate::domain::{AgentRole, EventKind, RunId, RunSettings, TokenUsage};
use crate::effects::file_fence::Sandbox;
use crate::effects::process::Isolation;
use crate::effects::store::Store;
use crate::engine::agent::{AgentJob, AgentRunner};
use crate::engine::prompts::Prompts;
use crate::engine::recorder::Recorder;
use crate::engine::tools::{ToolBox, ToolLimits, ToolSet};
use crate::llm::anthropic::AnthropicProvider;
use crate::llm::compaction::SUMMARY_INSTRUCTIONS;
use crate::llm::governor::{Governor, GovernorConfig};
use crate::llm::http::{Endpoint, RetryPolicy};
use crate::llm::{LlmProvider, ReplyLimits};

const FILES: usize = 40;
const FILE_BYTES: usize = 8 * 1024;
const TURNS: usize = 30;
/// Turns that read files (two a turn); the rest write, then finish.
const READING_TURNS: usize = FILES / 2;
/// The window of the compacting configuration: smaller than the whole
/// conversation, as a local model's would be.
pub const WINDOW: u64 = 64_000;
/// The share of the naive resend that caching and compaction must reach.
const TARGET_PERCENT: f64 = 30.0;

/// One configuration's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub usage: TokenUsage,
    pub requests: usize,
    pub largest_request: u64,
    pub compactions: usize,
}

impl Outcome {
    /// Input tokens as billed: cache reads at 10 %, writes at 125 %.
    pub fn billed(&self) -> f64 {
        let u = &self.usage;
        let fresh = u
            .input
            .saturating_sub(u.cached)
            .saturating_sub(u.cache_write);
        fresh as f64 + 0.1 * u.cached as f64 + 1.25 * u.cache_write as f64
    }

    pub fn hit_rate(&self) -> f64 {
        self.usage.cached as f64 / self.usage.input.max(1) as f64
    }
}

pub async fn run(dir: &Path) -> Result<Table> {
    let naive = conversation(&dir.join("naive"), false, None).await?;
    let cached = conversation(&dir.join("cached"), true, None).await?;
    let compacted = conversation(&dir.join("compacted"), true, Some(WINDOW)).await?;
    let share = |o: &Outcome| 100.0 * o.billed() / naive.billed().max(1.0);
    let mut t = Table::new(format!(
        "tokens: a coder reading {FILES} files of {} KB over {TURNS} turns (billed input-token \
         equivalents: cache reads 10 %, writes 125 %)",
        FILE_BYTES / 1024
    ));
    t.row(
        "naive resend (no caching, no compaction)",
        thousands(naive.billed() as u64),
    );
    t.row(
        "prompt caching",
        format!(
            "{} ({:.0} %, cache hits {:.0} %)",
            thousands(cached.billed() as u64),
            share(&cached),
            100.0 * cached.hit_rate()
        ),
    );
    t.checked(
        format!("caching + compaction ({}k window)", WINDOW / 1000),
        format!(
            "{} ({:.0} %, cache hits {:.0} %)",
            thousands(compacted.billed() as u64),
            share(&compacted),
            100.0 * compacted.hit_rate()
        ),
        format!("≤ {TARGET_PERCENT:.0} % of naive"),
        share(&compacted) <= TARGET_PERCENT,
    );
    t.row(
        "compactions / requests",
        format!("{} / {}", compacted.compactions, compacted.requests),
    );
    t.row(
        "largest request without compaction",
        format!(
            "{} tokens ({:.0} % of {}k)",
            thousands(cached.largest_request),
            100.0 * cached.largest_request as f64 / WINDOW as f64,
            WINDOW / 1000
        ),
    );
    t.checked(
        "largest request with compaction",
        format!(
            "{} tokens ({:.0} % of {}k)",
            thousands(compacted.largest_request),
            100.0 * compacted.largest_request as f64 / WINDOW as f64,
            WINDOW / 1000
        ),
        "≤ the window",
        compacted.largest_request <= WINDOW,
    );
    Ok(t)
}

/// The coder's script: two files a turn, then small writes, then finish.
/// Summarising requests get a summary.
fn script() -> Script {
    let turn = Arc::new(AtomicUsize::new(0));
    Arc::new(move |body| {
        let system = body["system"][0]["text"].as_str().unwrap_or("");
        if system == SUMMARY_INSTRUCTIONS {
            return Answer {
                text: "- Read the modules under src/ one by one; each defines a handler and its \
                       tests; nothing there needs changing.\n- The flag belongs in src/cli.rs."
                    .into(),
                calls: Vec::new(),
            };
        }
        let n = turn.fetch_add(1, Ordering::SeqCst);
        let calls = if n < READING_TURNS {
            (2 * n..2 * n + 2)
                .map(|f| ("read_file".to_owned(), json!({"path": file_name(f)})))
                .collect()
        } else if n + 1 < TURNS {
            let content = format!("// change {n}\n{}", "pub fn added() {}\n".repeat(40));
            vec![(
                "write_file".to_owned(),
                json!({"path": format!("src/new_{n}.rs"), "content": content}),
            )]
        } else {
            vec![("finish".to_owned(), json!({"summary": "done"}))]
        };
        Answer {
            text: format!("Turn {n}: next step."),
            calls,
        }
    })
}

fn file_name(i: usize) -> String {
    format!("src/module_{i:02}.rs")
}

/// A source file of about `FILE_BYTES`.
fn source(i: usize) -> String {
    let mut text = String::with_capacity(FILE_BYTES + 100);
    let mut line = 0;
    while text.len() < FILE_BYTES {
        text.push_str(&format!(
            "pub fn handler_{i}_{line}(input: &str) -> Result<usize, Error> {{ Ok(input.len() + {line}) }}\n"
        ));
        line += 1;
    }
    text
}

/// Runs the conversation once: `caching` on the server, compaction when a
/// window is given (else the window is too big to matter).
pub async fn conversation(dir: &Path, caching: bool, window: Option<u64>) -> Result<Outcome> {
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("src"))
        .with_context(|| format!("creating {}", work.display()))?;
    for i in 0..FILES {
        std::fs::write(work.join(file_name(i)), source(i))?;
    }
    let server = FakeAnthropic::start(caching, script()).await?;
    let endpoint = Endpoint::new(
        &server.url,
        None,
        Duration::from_secs(5),
        Duration::from_secs(30),
        RetryPolicy::new(0),
    )?;
    let provider: Arc<dyn LlmProvider> = Arc::new(
        AnthropicProvider::new("bench", endpoint)
            .with_context_tokens(Some(window.unwrap_or(10_000_000))),
    );
    let store_path = super::fresh_store(dir, "events.sqlite")?;
    let run = RunId::generate();
    let (tx, _updates) = tokio::sync::mpsc::unbounded_channel();
    let recorder = Recorder::start(
        Store::open(&store_path)?,
        run.clone(),
        EventKind::RunStarted(RunStarted {
            requirement: "bench tokens".into(),
            repo: work.display().to_string(),
            mainline: "main".into(),
            base_commit: String::new(),
            settings: RunSettings::default(),
        }),
        tx,
    )?;
    let runner = AgentRunner {
        recorder,
        provider,
        model: "claude-bench".into(),
        max_turns: TURNS as u32 + 5,
        prices: Default::default(),
        governor: Governor::new("bench", GovernorConfig::default()),
        reply: ReplyLimits::default(),
        // Measures the tokens of a long conversation, not its shepherding.
        small_model_guards: false,
        shepherd: crate::engine::shepherd::Desk::new(crate::domain::shepherd::Thresholds::off()),
    };
    let toolbox = ToolBox::new(
        Sandbox::new(&work, Policy::protected_only())?,
        ToolLimits {
            command_timeout: Duration::from_secs(10),
            output_cap: 64 * 1024,
            deny_commands: Vec::new(),
            isolation: Isolation::none(),
            max_file_bytes: crate::effects::git::DEFAULT_MAX_FILE_BYTES,
        },
    );
    let job = AgentJob {
        role: AgentRole::Coder,
        task: None,
        attempt: 1,
        prompt: Prompts::with_dirs(Vec::new()).load(AgentRole::Coder),
        first_message: "Task t1: add a --verbose flag that logs each handler call.\n\
                        Acceptance criteria:\n- `app --verbose` prints one line per call\n\
                        - without it nothing changes\nRead the handlers first."
            .into(),
        toolbox: Some((Arc::new(toolbox), ToolBox::specs(ToolSet::Coder))),
        submit: None,
    };
    runner
        .run(job)
        .await?
        .map_err(|failed| anyhow::anyhow!("the bench's coder failed: {failed}"))?;
    let events = Store::open(&store_path)?.events(&run)?;
    let mut outcome = Outcome::default();
    for event in &events {
        match &event.kind {
            EventKind::TokensUsed(TokensUsed { usage, .. }) => outcome.usage.add(*usage),
            EventKind::ContextCompacted(_) => outcome.compactions += 1,
            _ => {}
        }
    }
    let requests = server.requests();
    outcome.requests = requests.len();
    outcome.largest_request = requests.iter().map(|r| r.input()).max().unwrap_or(0);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caching_and_compaction_cut_the_bill_and_keep_requests_in_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let naive = conversation(&dir.path().join("n"), false, None)
            .await
            .unwrap();
        let compacted = conversation(&dir.path().join("c"), true, Some(WINDOW))
            .await
            .unwrap();
        assert_eq!(naive.usage.cached, 0);
        assert!(naive.largest_request > WINDOW, "{naive:?}");
        assert!(compacted.compactions > 0, "{compacted:?}");
        assert!(compacted.largest_request <= WINDOW, "{compacted:?}");
        assert!(
            compacted.billed() <= 0.3 * naive.billed(),
            "{} vs {}",
            compacted.billed(),
            naive.billed()
        );
    }
}
