//! `memofab bench`: runs the benchmark sections and prints their tables.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::args::{BenchArgs, BenchSection};
use crate::bench::{self, Scale, Table};

/// `store`: a PostgreSQL URL (`--store`) to measure too.
pub async fn run(args: BenchArgs, store: Option<String>) -> Result<ExitCode> {
    let scale = if args.quick {
        Scale::QUICK
    } else if args.huge {
        Scale::HUGE
    } else {
        Scale::FULL
    };
    let sections = if args.sections.is_empty() {
        // Render first: its memory figure is the process's, and the other
        // sections leave a large heap behind.
        vec![
            BenchSection::Render,
            BenchSection::Orchestration,
            BenchSection::Store,
            BenchSection::Replay,
            BenchSection::WriteSets,
            BenchSection::Tokens,
        ]
    } else {
        args.sections
    };
    // With `store` among the sections: a PostgreSQL table after them.
    let store = store.filter(|_| sections.contains(&BenchSection::Store));
    let temp;
    let root = match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("memofab-bench-")
                .tempdir()
                .context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    println!(
        "memofab bench ({}), scripted provider: the model takes no time\n",
        if args.quick { "quick" } else { "full" }
    );
    let mut all_met = true;
    for section in sections {
        let dir = root.join(format!("{section:?}").to_lowercase());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let table: Table = match section {
            BenchSection::Orchestration => bench::orchestration::run(&dir, scale).await?,
            BenchSection::Store => bench::store::run(&dir, scale)?,
            BenchSection::Render => bench::render::run(scale)?,
            BenchSection::Replay => bench::replay::run(&dir, scale)?,
            BenchSection::WriteSets => {
                let seeds = if args.quick { 3 } else { 50 };
                bench::write_sets::run(&dir, seeds).await?
            }
            BenchSection::Tokens => bench::tokens::run(&dir).await?,
        };
        println!("{}", table.render());
        all_met &= table.all_met();
    }
    if let Some(url) = store {
        // Blocking clients: off the runtime's threads.
        let table = tokio::task::spawn_blocking(move || bench::postgres::run(&url, scale))
            .await
            .context("the PostgreSQL bench")??;
        println!("{}", table.render());
    }
    if !all_met && !args.quick {
        println!("some targets were missed (marked MISSED above)");
    }
    Ok(ExitCode::SUCCESS)
}
