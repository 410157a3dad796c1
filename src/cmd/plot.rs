//! `minilab plot --run DIR`: re-renders a sensitivity run's plots and report from its files.

use crate::error::{Error, Result};
use clap::Args;
use std::path::PathBuf;

/// `minilab plot` flags.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// A `minilab sensitivity --out` folder (summary.json, frontier.csv, scan.jsonl).
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Also copy the SVGs into this folder (e.g. plots/ for the README).
    #[arg(long, value_name = "DIR")]
    pub copy_to: Option<PathBuf>,
}

/// Runs `minilab plot`.
pub fn run(args: &PlotArgs) -> Result<()> {
    if !args.run.is_dir() {
        return Err(Error::input(format!("{}: not a run folder", args.run.display())));
    }
    crate::report::run::render(&args.run)?;
    if let Some(dst) = &args.copy_to {
        std::fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
        for name in ["frontier_memory.svg", "frontier_speed.svg", "sensitivity_heatmap.svg"] {
            let src = args.run.join(name);
            if src.is_file() {
                let bytes = crate::error::read_capped(&src, crate::report::RUN_FILE_CAP)?;
                crate::report::write_atomic(&dst.join(name), &bytes).map_err(|e| Error::io(dst, e))?;
            }
        }
    }
    crate::report::console::note(&format!("rendered {}/report.md and its plots", args.run.display()));
    Ok(())
}
