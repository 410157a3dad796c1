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

/// The flags and the config's `eval:` section, resolved and checked.
struct EvalSettings {
    text_path: PathBuf,
    ctx: usize,
    max_tokens: Option<usize>,
    kld: bool,
    k: usize,
}

impl EvalSettings {
    fn resolve(args: &EvalArgs, cfg: &crate::config::EvalConfig) -> Result<Self> {
        let text_path = args.text.clone().or(cfg.text.clone()).unwrap_or_else(|| PathBuf::from(DEFAULT_TEXT));
        let ctx = args.ctx.or(cfg.ctx).unwrap_or(512);
        let k = args.kld_topk.or(cfg.kld_topk).unwrap_or(64);
        if ctx < 2 {
            return Err(Error::input("--ctx must be at least 2"));
        }
        let max_k = crate::sensitivity::settings::MAX_KLD_TOPK;
        if k == 0 || k > max_k {
            return Err(Error::input(format!("--kld-topk must be in 1..={max_k}, got {k}")));
        }
        let (max_tokens, kld) = (args.max_tokens.or(cfg.max_tokens), args.kld || cfg.kld.unwrap_or(false));
        Ok(Self { text_path, ctx, max_tokens, kld, k })
    }

    /// Fails on a window or top-k that the loaded model cannot serve.
    fn check_model(&self, model_ctx: usize, vocab: usize) -> Result<()> {
        let (ctx, k) = (self.ctx, self.k);
        if ctx > model_ctx {
            return Err(Error::input(format!("--ctx {ctx} is larger than the model's context of {model_ctx} tokens")));
        }
        if self.kld && k > vocab {
            return Err(Error::input(format!(
                "--kld-topk {k} is larger than the model's vocabulary of {vocab} tokens"
            )));
        }
        Ok(())
    }
}

/// Runs `minilab eval`.
pub fn run(args: &EvalArgs) -> Result<()> {
    let setup = Setup::new(&args.model)?;
    let set = EvalSettings::resolve(args, &setup.config.eval)?;
    let (plan, plan_name) = setup.plan(&args.plan)?;
    let synthetic_text = synthetic::is_synthetic(&set.text_path);
    if setup.spec.is_synthetic() && !synthetic_text {
        return Err(Error::input("synthetic models have random weights: pass --text synthetic (timings only)"));
    }
    // The text is opened and checked before the (slower) model load so bad input fails fast, and
    // read only once (a pipe works), only as far as --max-tokens needs.
    let source = if synthetic_text { None } else { Some(text::TextSource::open(&set.text_path)?) };
    let mut loaded = setup.load(!synthetic_text)?;
    let warning = (synthetic_text || setup.spec.is_synthetic()).then_some(synthetic::WARNING);
    let vocab = loaded.model.config().vocab_size;
    set.check_model(loaded.model.config().max_position_embeddings, vocab)?;
    let tokens = match source {
        None => synthetic::tokens(vocab, set.max_tokens.unwrap_or(8192).max(2), 2),
        Some(source) => {
            let tok = loaded.tokenizer.as_ref().ok_or_else(|| Error::input("the model has no tokenizer"))?;
            let tokens = source.tokens(tok, set.max_tokens)?;
            text::check_tokens(&tokens, &set.text_path)?;
            tokens
        }
    };
    let windows = text::windows(&tokens, set.ctx);
    let model = &mut loaded.model;
    let refs = if set.kld {
        let pb = crate::progress::bar(windows.len() as u64, "f16 ref");
        let r = eval::references(model, &windows, set.k, &pb)?;
        pb.finish_and_clear();
        Some(r)
    } else {
        None
    };
    let assignment = apply_plan(model, &plan, &plan_name)?;
    if !set.kld {
        model.drop_masters();
    }
    let pb = crate::progress::bar(windows.len() as u64, "eval");
    let stats = eval::score(model, &windows, refs.as_ref(), &pb)?;
    pb.finish_and_clear();
    let s = eval::summarize(&stats);
    s.check_finite()?;
    let shown = Shown { set: &set, s: &s, windows: windows.len(), weight_bytes: model.weight_bytes(), warning };
    let (model_name, layers) = (setup.spec.short_name(), describe(&assignment));
    if args.json {
        let doc = json!({
            "ppl": s.ppl, "ppl_stderr": s.ppl_stderr, "tokens": s.tokens, "weight_bytes": shown.weight_bytes,
            "kld": s.kld, "nll_mean": s.nll_mean, "ctx": set.ctx, "windows": shown.windows,
            "plan": plan_name, "layers": layers, "model": model_name,
            "text": set.text_path.display().to_string(), "kld_topk": refs.as_ref().map(|_| set.k),
            "warning": warning,
        });
        return crate::report::console::print(&format!("{doc}\n"));
    }
    crate::report::console::print(&shown.text(&model_name, &layers))
}

/// What `minilab eval` prints without `--json`.
struct Shown<'a> {
    set: &'a EvalSettings,
    s: &'a eval::EvalSummary,
    windows: usize,
    weight_bytes: u64,
    warning: Option<&'static str>,
}

impl Shown<'_> {
    fn text(&self, model_name: &str, layers: &str) -> String {
        let (s, ctx) = (self.s, self.set.ctx);
        let mut out = String::new();
        if let Some(w) = self.warning {
            outln!(out, "{}", w.to_uppercase());
        }
        outln!(out, "model   {model_name}  ({layers})");
        let text = self.set.text_path.display();
        outln!(out, "text    {text}  ({} tokens scored, {} windows of ≤{ctx})", s.tokens, self.windows);
        outln!(out, "weights {:.1} MB", self.weight_bytes as f64 / 1e6);
        outln!(out, "PPL     {:.4} ± {:.4}", s.ppl, s.ppl_stderr);
        if let Some(k) = &s.kld {
            let (mean, se, median, p99, max) = (k.mean, k.mean_stderr, k.median, k.p99, k.max);
            outln!(out, "KLD     mean {mean:.6} ± {se:.6}  median {median:.6}  p99 {p99:.6}  max {max:.6}");
            outln!(out, "top-1   {:.3} % same as f16", 100.0 * k.top1_agreement);
        }
        out
    }
}
