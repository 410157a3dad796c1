//! Flags shared by several commands.

use clap::Args;
use std::path::PathBuf;

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
