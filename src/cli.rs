//! The command line's top level (clap): the commands and global flags. Each command's flags and
//! work live in `crate::cmd` (which never imports this module).

use crate::cmd;
use clap::{Parser, Subcommand};

/// minilab: which linear layers of an LLM can be squeezed to INT8 or NF4, and what it costs.
#[derive(Debug, Parser)]
#[command(name = "minilab", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v info, -vv debug); logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Perplexity and KL divergence on held-out text.
    ///
    /// Example: minilab eval --precision nf4 --kld --json
    Eval(cmd::eval::EvalArgs),
    /// Prefill (ppN) and decode (tgN) speed, weight and device memory, roofline.
    ///
    /// Example: minilab bench --model synthetic:llama-3.2-3b --precision int8 -p 512 -n 128
    Bench(cmd::bench::BenchArgs),
    /// Per-layer sensitivity scan, allocation under a memory budget, validation and frontier plots.
    ///
    /// Example: minilab sensitivity --budget-gb 0.12 --out runs/demo
    Sensitivity(cmd::sensitivity::SensitivityArgs),
    /// Re-render the plots and report of a sensitivity run from its saved files (no model needed).
    ///
    /// Example: minilab plot --run runs/demo
    Plot(cmd::plot::PlotArgs),
    /// A plan as a mixed GGUF for llama.cpp, llama-quantize overrides or a bitsandbytes config.
    ///
    /// Example: minilab export --plan runs/demo/plan.yaml --gguf demo-plan.gguf
    Export(cmd::export::ExportArgs),
    /// Every linear layer with its shape and bytes per format.
    ///
    /// Example: minilab inspect --model models/SmolLM2-135M-Instruct-Q4_1.gguf
    Inspect(cmd::inspect::InspectArgs),
    /// Shell completion script on stdout (bash, zsh, fish, powershell, elvish).
    ///
    /// Example: minilab completions bash > ~/.local/share/bash-completion/completions/minilab
    Completions(cmd::completions::CompletionsArgs),
}
