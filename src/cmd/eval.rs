//! `minilab eval`: perplexity ± stderr and, with `--kld`, KL divergence against the all-f16 model.

use super::args::{ModelArgs, PlanArgs};
use super::{apply_plan, describe, Setup};
use crate::config::DEFAULT_TEXT;
use crate::error::{Error, Result};
use crate::eval::{self, synthetic, text};
use crate::outln;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

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

/// Runs `minilab eval`.
pub fn run(args: &EvalArgs) -> Result<()> {
    let setup = Setup::new(&args.model)?;
    let cfg = &setup.config.eval;
    let text_path = args.text.clone().or(cfg.text.clone()).unwrap_or_else(|| PathBuf::from(DEFAULT_TEXT));
    let ctx = args.ctx.or(cfg.ctx).unwrap_or(512);
    let max_tokens = args.max_tokens.or(cfg.max_tokens);
    let kld = args.kld || cfg.kld.unwrap_or(false);
    let k = args.kld_topk.or(cfg.kld_topk).unwrap_or(64);
    if ctx < 2 {
        return Err(Error::input("--ctx must be at least 2"));
    }
    let max_k = crate::sensitivity::settings::MAX_KLD_TOPK;
    if k == 0 || k > max_k {
        return Err(Error::input(format!("--kld-topk must be in 1..={max_k}, got {k}")));
    }
    let (plan, plan_name) = setup.plan(&args.plan)?;
    let synthetic_text = synthetic::is_synthetic(&text_path);
    if setup.spec.is_synthetic() && !synthetic_text {
        return Err(Error::input("synthetic models have random weights: pass --text synthetic (timings only)"));
    }
    // The text is opened and checked before the (slower) model load so bad input fails fast, and
    // read only once (a pipe works), only as far as --max-tokens needs.
    let source = if synthetic_text { None } else { Some(text::TextSource::open(&text_path)?) };
    let mut loaded = setup.load(!synthetic_text)?;
    let warning = (synthetic_text || setup.spec.is_synthetic()).then_some(synthetic::WARNING);
    let model_ctx = loaded.model.config().max_position_embeddings;
    if ctx > model_ctx {
        return Err(Error::input(format!("--ctx {ctx} is larger than the model's context of {model_ctx} tokens")));
    }
    let vocab = loaded.model.config().vocab_size;
    if kld && k > vocab {
        return Err(Error::input(format!("--kld-topk {k} is larger than the model's vocabulary of {vocab} tokens")));
    }
    let tokens = match source {
        None => synthetic::tokens(vocab, max_tokens.unwrap_or(8192).max(2), 2),
        Some(source) => {
            let tok = loaded.tokenizer.as_ref().ok_or_else(|| Error::input("the model has no tokenizer"))?;
            let tokens = source.tokens(tok, max_tokens)?;
            text::check_tokens(&tokens, &text_path)?;
            tokens
        }
    };
    let windows = text::windows(&tokens, ctx);
    let model = &mut loaded.model;
    let refs = if kld {
        let pb = crate::progress::bar(windows.len() as u64, "f16 ref");
        let r = eval::references(model, &windows, k, &pb)?;
        pb.finish_and_clear();
        Some(r)
    } else {
        None
    };
    let assignment = apply_plan(model, &plan, &plan_name)?;
    if !kld {
        model.drop_masters();
    }
    let pb = crate::progress::bar(windows.len() as u64, "eval");
    let stats = eval::score(model, &windows, refs.as_ref(), &pb)?;
    pb.finish_and_clear();
    let s = eval::summarize(&stats);
    s.check_finite()?;
    let weight_bytes = model.weight_bytes();
    if args.json {
        let doc = json!({
            "ppl": s.ppl, "ppl_stderr": s.ppl_stderr, "tokens": s.tokens, "weight_bytes": weight_bytes,
            "kld": s.kld, "nll_mean": s.nll_mean, "ctx": ctx, "windows": windows.len(),
            "plan": plan_name, "layers": describe(&assignment), "model": setup.spec.short_name(),
            "text": text_path.display().to_string(), "kld_topk": refs.as_ref().map(|_| k), "warning": warning,
        });
        return crate::report::console::print(&format!("{doc}\n"));
    }
    let mut out = String::new();
    if let Some(w) = warning {
        outln!(out, "{}", w.to_uppercase());
    }
    outln!(out, "model   {}  ({})", setup.spec.short_name(), describe(&assignment));
    outln!(out, "text    {}  ({} tokens scored, {} windows of ≤{ctx})", text_path.display(), s.tokens, windows.len());
    outln!(out, "weights {:.1} MB", weight_bytes as f64 / 1e6);
    outln!(out, "PPL     {:.4} ± {:.4}", s.ppl, s.ppl_stderr);
    if let Some(k) = &s.kld {
        outln!(
            out,
            "KLD     mean {:.6} ± {:.6}  median {:.6}  p99 {:.6}  max {:.6}",
            k.mean,
            k.mean_stderr,
            k.median,
            k.p99,
            k.max
        );
        outln!(out, "top-1   {:.3} % same as f16", 100.0 * k.top1_agreement);
    }
    crate::report::console::print(&out)
}
