//! `minilab export`: a plan as a mixed GGUF for llama.cpp, as llama-quantize overrides, or as a
//! transformers + bitsandbytes `quantization_config`.

use super::Setup;
use crate::cmd::args::ModelArgs;
use crate::error::{Error, Result};
use crate::export::{self, bnb, llamacpp, FourBit};
use crate::plan::PrecisionPlan;
use clap::Args;
use std::path::{Path, PathBuf};

/// `minilab export` flags.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The precision plan (YAML) to export.
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// Write a mixed GGUF here (loads in llama.cpp: llama-cli, llama-server, llama-perplexity).
    #[arg(long, value_name = "OUT")]
    pub gguf: Option<PathBuf>,
    /// GGML type for nf4 layers: q4_0, iq4_nl (llama-quantize lines only: candle cannot write it) or
    /// q4_k (q5_0 where rows are not multiples of 256, as llama-quantize does). Default: q4_0.
    #[arg(long = "gguf-4bit", value_name = "T")]
    pub gguf_4bit: Option<String>,
    /// Write the `--tensor-type-file` list for llama-quantize here.
    #[arg(long, value_name = "OUT")]
    pub tensor_type_file: Option<PathBuf>,
    /// Write a transformers + bitsandbytes quantization_config (JSON) here (two-level plans only).
    #[arg(long, value_name = "OUT")]
    pub bnb: Option<PathBuf>,
}

/// Runs `minilab export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    if args.gguf.is_none() && args.tensor_type_file.is_none() && args.bnb.is_none() {
        return Err(Error::input("export: give at least one of --gguf, --tensor-type-file, --bnb"));
    }
    let setup = Setup::new(&args.model)?;
    let four_bit: FourBit = args.gguf_4bit.as_deref().map(str::parse::<FourBit>).transpose()?.unwrap_or_default();
    let plan = PrecisionPlan::from_file(&args.plan)?;
    let origin = args.plan.display().to_string();
    let cfg = export::gguf::model_config(&setup.spec)?;
    let assignment = plan.resolve(&export::layer_ids(&cfg), &origin)?;
    if let Some(out) = &args.tensor_type_file {
        let types = export::tensor_types(&assignment, &cfg, four_bit)?;
        write(out, llamacpp::tensor_type_file(&types).as_bytes())?;
        crate::report::console::note(&format!(
            "wrote {} ({}); use: {}",
            out.display(),
            export::describe(&types),
            llamacpp::quantize_command(&out.display().to_string())
        ));
    }
    if let Some(out) = &args.bnb {
        let cfg = bnb::quantization_config(&assignment).map_err(|e| {
            Error::input(format!(
                "{origin}: {e}; `minilab sensitivity` writes the nearest two-level plan as plan.bnb.yaml"
            ))
        })?;
        let text = serde_json::to_string_pretty(&cfg).map_err(|e| Error::Runtime(e.to_string()))?;
        write(out, text.as_bytes())?;
        crate::report::console::note(&format!("wrote {}", out.display()));
    }
    if let Some(out) = &args.gguf {
        let w = export::gguf::export(&setup.spec, &plan, &origin, four_bit, out)?;
        crate::report::console::note(&format!(
            "wrote {} ({:.1} MB, {} tensors; {})",
            out.display(),
            w.file_bytes as f64 / 1e6,
            w.n_tensors,
            export::describe(&w.types)
        ));
        warn_fallbacks(&w.types);
    }
    Ok(())
}

/// One line for the tensors whose rows forced another type than the plan's (q4_k → q5_0).
fn warn_fallbacks(types: &[export::TensorType]) {
    let fell: Vec<&export::TensorType> = types.iter().filter(|t| t.wanted.is_some()).collect();
    if let Some(first) = fell.first() {
        let (want, got) = (first.wanted.map_or("", |w| w.name()), first.ty.name());
        tracing::warn!(
            "{} of {} tensors have rows that are not whole {want} blocks: written as {got}, as llama-quantize does",
            fell.len(),
            types.len()
        );
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::report::write_atomic(path, bytes).map_err(|e| Error::io(path, e))
}
