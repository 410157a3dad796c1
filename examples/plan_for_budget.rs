//! The library's front door: load a model, run a sensitivity analysis for a memory budget and
//! print the plan. `cargo run --release --example plan_for_budget -- [MODEL] [BUDGET_GB]`
//! (default: the demo model and 0.12 GB; small scan settings so it finishes in minutes on a CPU).

use minilab::model::{self, ModelSpec};
use minilab::sensitivity::pipeline::{self, Outcome, Unattended};
use minilab::sensitivity::settings::Settings;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map_or(minilab::config::DEFAULT_MODEL, String::as_str);
    let budget_gb: f64 = args.get(1).map_or(Ok(0.12), |s| s.parse())?;
    let device = minilab::device::parse_device("cpu")?;
    let mut loaded = model::load(&ModelSpec::parse(model)?, &device, candle_core::DType::F32)?;

    let mut s = Settings::new((budget_gb * 1e9) as u64, "runs/plan-for-budget".into());
    (s.calib_tokens, s.max_tokens, s.frontier_points, s.baselines, s.bench_reps) = (512, 1024, 0, 0, 0);
    s.resume = true; // a second run reuses the finished scan
    let Outcome::Finished(summary) = pipeline::run(&mut loaded, &s, &Unattended, started)? else {
        return Err("the run stopped early".into());
    };
    println!("{}", std::fs::read_to_string(s.out.join("plan.yaml"))?);
    let kld = summary.measured.kld.map_or(0.0, |k| k.mean);
    println!("# {} bytes, held-out KLD {kld:.5} vs f16", summary.plan_weight_bytes);
    Ok(())
}
