//! `minilab inspect`: every linear layer with its shape and bytes per format, from the config and
//! the files' headers only (no weight is read or generated: see `model::shapes`).

use super::args::ModelArgs;
use super::Setup;
use crate::error::Result;
use crate::outln;
use crate::quant::Precision;
use clap::Args;
use serde_json::json;

/// `minilab inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `minilab inspect`.
pub fn run(args: &InspectArgs) -> Result<()> {
    let setup = Setup::new(&args.model)?;
    let d = crate::model::shapes::describe(&setup.spec)?;
    let fixed = d.fixed_bytes;
    let mut totals = [fixed; 4];
    let rows: Vec<(String, usize, usize, Vec<u64>)> = d
        .layers
        .iter()
        .map(|&(id, o, i)| {
            let bytes: Vec<u64> = Precision::ALL.iter().map(|p| p.weight_bytes(o, i)).collect();
            for (t, b) in totals.iter_mut().zip(&bytes) {
                *t += b;
            }
            (id.to_string(), o, i, bytes)
        })
        .collect();
    let mut out = String::new();
    if args.json {
        let layers: Vec<_> = rows
            .iter()
            .map(|(id, o, i, b)| json!({"id": id, "out_features": o, "in_features": i, "bytes": Precision::ALL.iter().zip(b).map(|(p, b)| (p.name().to_string(), json!(b))).collect::<serde_json::Map<_, _>>()}))
            .collect();
        let totals: serde_json::Map<_, _> =
            Precision::ALL.iter().zip(&totals).map(|(p, t)| (p.name().to_string(), json!(t))).collect();
        let doc = json!({"model": setup.spec.short_name(), "config": d.config, "fixed_bytes": fixed, "layers": layers, "totals": totals});
        outln!(out, "{doc}");
        return crate::report::console::print(&out);
    }
    let c = &d.config;
    outln!(
        out,
        "{}: {} blocks, hidden {}, ffn {}, heads {}/{} kv, vocab {}, tied head: {}",
        setup.spec.short_name(),
        c.num_hidden_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.vocab_size,
        c.tie_word_embeddings
    );
    outln!(out, "{:<22} {:>8} {:>8} {:>12} {:>12} {:>12} {:>12}", "layer", "out", "in", "f16", "int8", "nf4", "nf4_dq");
    for (id, o, i, b) in &rows {
        outln!(out, "{id:<22} {o:>8} {i:>8} {:>12} {:>12} {:>12} {:>12}", b[0], b[1], b[2], b[3]);
    }
    outln!(out, "embedding + norms (always 16-bit): {fixed} bytes");
    let gb = |b: u64| format!("{:.3} GB ({:.3} GiB)", b as f64 / 1e9, b as f64 / (1u64 << 30) as f64);
    for (p, t) in Precision::ALL.iter().zip(&totals) {
        outln!(out, "all-{:<7} {}  (output layer too)", p.name(), gb(*t));
    }
    crate::report::console::print(&out)
}
