//! Command-line parsing only (clap). Each command's work lives in `crate::cmd`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    Eval(EvalArgs),
    /// Prefill (ppN) and decode (tgN) speed, weight and device memory, roofline.
    ///
    /// Example: minilab bench --model synthetic:llama-3.2-3b --precision int8 -p 512 -n 128
    Bench(crate::cmd::bench::BenchArgs),
    /// Per-layer sensitivity scan, allocation under a memory budget, validation and frontier plots.
    ///
    /// Example: minilab sensitivity --budget-gb 0.12 --out runs/demo
    Sensitivity(crate::cmd::sensitivity::SensitivityArgs),
    /// Re-render the plots and report of a sensitivity run from its saved files (no model needed).
    ///
    /// Example: minilab plot --run runs/demo
    Plot(crate::cmd::plot::PlotArgs),
    /// A plan as a mixed GGUF for llama.cpp, llama-quantize overrides or a bitsandbytes config.
    ///
    /// Example: minilab export --plan runs/demo/plan.yaml --gguf demo-plan.gguf
    Export(crate::cmd::export::ExportArgs),
    /// Every linear layer with its shape and bytes per format.
    ///
    /// Example: minilab inspect --model models/SmolLM2-135M-Instruct-Q4_1.gguf
    Inspect(InspectArgs),
    /// Shell completion script on stdout (bash, zsh, fish, powershell, elvish).
    ///
    /// Example: minilab completions bash > ~/.local/share/bash-completion/completions/minilab
    Completions(crate::cmd::completions::CompletionsArgs),
}

/// Model, device and precision options shared by the commands.
#[derive(Debug, Args, Clone, Default)]
pub struct ModelArgs {
    /// YAML config file; its values are overridden by flags.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A .gguf file, a Hugging Face folder, a hub id (org/name) or synthetic:NAME
    /// (smollm2-135m, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, tiny). Default: the demo model.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// cpu, cuda or cuda:N. Default: cpu.
    #[arg(long, value_name = "DEV")]
    pub device: Option<String>,
    /// Compute dtype: f32, f16 or bf16. Default: f32 on cpu, bf16 on cuda (sensitivity: f32 on both,
    /// see README "Running on a GPU").
    #[arg(long, value_name = "T")]
    pub dtype: Option<String>,
}

/// Which formats the layers take.
#[derive(Debug, Args, Clone, Default)]
pub struct PlanArgs {
    /// A precision plan (YAML): per-layer formats.
    #[arg(long, value_name = "FILE", conflicts_with = "precision")]
    pub plan: Option<PathBuf>,
    /// Every block linear in this format (f16, int8, nf4, nf4_dq); the LM head stays f16.
    #[arg(long, value_name = "P")]
    pub precision: Option<String>,
}

/// `minilab eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// UTF-8 text to evaluate. Default: eval-data/heldout.txt.
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Window length in tokens (non-overlapping windows). Default: 512.
    #[arg(long, value_name = "N")]
    pub ctx: Option<usize>,
    /// Evaluate only the first N tokens of the text.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Also compute KL divergence against the all-f16 model on the same windows.
    #[arg(long)]
    pub kld: bool,
    /// Reference log-probs kept per position for KLD (the rest is one tail bucket). Default: 64.
    #[arg(long, value_name = "K")]
    pub kld_topk: Option<usize>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `minilab inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
