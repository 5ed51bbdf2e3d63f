//! `memofab overseer`: review recent runs, show a report, apply a proposal.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::args::{GlobalArgs, OverseerAction, OverseerArgs};
use crate::domain::RunId;
use crate::engine::overseer;
use crate::engine::providers;

pub async fn run(global: &GlobalArgs, repo: &Path, args: OverseerArgs) -> Result<ExitCode> {
    let repo = super::open_repo(repo)?;
    if args.action.is_some() && !crate::engine::run::session::store_path(&repo).exists() {
        // Opening the store would create it: say there is nothing instead.
        bail!(
            "{} has no overseer reports (no runs at all); `memofab overseer` writes one",
            repo.display()
        );
    }
    match args.action {
        Some(OverseerAction::List) => super::records::overseer_reports(&repo),
        Some(OverseerAction::Apply { report, proposal }) => {
            let by = std::env::var("USER").unwrap_or_else(|_| "human".into());
            let path = overseer::apply(&repo, &RunId::new(report), proposal, &by)?;
            println!(
                "applied proposal {proposal}: {} updated (approval recorded)",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(OverseerAction::Review { report }) => {
            let run = RunId::new(report);
            let (markdown, proposals, decided) = overseer::stored_report(&repo, &run)?;
            let config = super::load_config(&repo, global.config.as_deref())?;
            super::require_terminal(
                "the proposals review",
                "`memofab overseer show` and `memofab overseer apply` work without one",
            )?;
            let options = super::headless::cockpit_options(&config, "memofab overseer")?;
            let view = crate::tui::proposals::ProposalsView {
                report: markdown,
                proposals,
                decided,
                selected: 0,
                note: None,
                show_report: false,
                scroll: 0,
            };
            let by = std::env::var("USER").unwrap_or_else(|_| "human".into());
            crate::tui::run_proposals(view, options, |n| {
                overseer::apply(&repo, &run, n, &by)
                    .map(|path| format!("applied proposal {n} to {}", path.display()))
                    .map_err(|e| e.to_string())
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(OverseerAction::Show { report }) => {
            let (markdown, proposals, decided) =
                overseer::stored_report(&repo, &RunId::new(report))?;
            println!("{markdown}");
            for (i, _) in proposals.iter().enumerate() {
                let n = i as u32 + 1;
                let status = if decided.contains(&n) {
                    "applied"
                } else {
                    "open"
                };
                println!("proposal {n}: {status}");
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let since = since_ms(&args.since)?;
            let config = super::load_config(&repo, global.config.as_deref())?;
            let choice = providers::build(&config, args.provider.as_deref(), None, Duration::ZERO)?;
            super::init_logging(&crate::engine::run::session::factory_dir(&repo));
            let report = overseer::review(&repo, since, &config, &choice.set).await?;
            println!("{}", report.markdown);
            eprintln!(
                "report {} stored; nothing is applied without your approval",
                report.run
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Unix ms of the window's start, from `24h`, `30m`, `7d` or `all`.
fn since_ms(spec: &str) -> Result<u64> {
    if spec == "all" {
        return Ok(0);
    }
    let (number, unit) = spec.split_at(spec.len().saturating_sub(1));
    let n: u64 = number.parse().with_context(|| {
        format!("--since {spec:?}: use a number and a unit, like 24h, 30m, 7d, or all")
    })?;
    let secs = match unit {
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--since {spec:?}: the unit must be m, h or d"),
    };
    Ok(crate::effects::clock::now_ms().saturating_sub(secs * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse() {
        assert_eq!(since_ms("all").unwrap(), 0);
        let day = since_ms("1d").unwrap();
        let now = crate::effects::clock::now_ms();
        assert!(now - day >= 86_400_000 && now - day < 86_500_000);
        assert!(since_ms("5y").is_err());
        assert!(since_ms("h").is_err());
    }
}
