//! The commands: each turns parsed flags + config into calls into the library and prints results.

pub mod args;
pub mod bench;
pub mod completions;
pub mod eval;
pub mod export;
pub mod inspect;
pub mod interrupt;
pub mod plot;
pub mod sensitivity;

use crate::config::{Config, DEFAULT_MODEL};
use crate::error::{Error, Result};
use crate::model::{self, Loaded, ModelSpec};
use crate::plan::PrecisionPlan;
use crate::quant::Precision;
use args::{ModelArgs, PlanArgs};
use candle_core::{DType, Device};
use std::collections::BTreeMap;

/// Model, device and dtype resolved from flags, config and defaults.
pub struct Setup {
    pub config: Config,
    pub spec: ModelSpec,
    pub device: Device,
    pub dtype: DType,
}

impl Setup {
    /// Resolves the shared options (flags override the config file, which overrides defaults).
    pub fn new(args: &ModelArgs) -> Result<Self> {
        let config = Config::load(args.config.as_deref())?;
        let model = args.model.clone().or(config.model.clone()).unwrap_or_else(|| DEFAULT_MODEL.into());
        let spec = ModelSpec::parse(&model).map_err(|e| {
            if model == DEFAULT_MODEL {
                Error::input(format!("{e}; fetch the demo model with scripts/fetch-demo-model.sh"))
            } else {
                e
            }
        })?;
        let device = crate::device::parse_device(args.device.as_deref().or(config.device.as_deref()).unwrap_or("cpu"))?;
        let dtype = crate::device::parse_dtype(args.dtype.as_deref().or(config.dtype.as_deref()), &device)?;
        Ok(Self { config, spec, device, dtype })
    }

    /// Loads the model; text commands refuse synthetic weights.
    pub fn load(&self, needs_text: bool) -> Result<Loaded> {
        if needs_text && self.spec.is_synthetic() {
            return Err(Error::input("synthetic models have random weights: use them for bench and inspect only"));
        }
        let started = std::time::Instant::now();
        let loaded = model::load(&self.spec, &self.device, self.dtype)?;
        tracing::info!("loaded {} in {:.1}s", self.spec.short_name(), started.elapsed().as_secs_f64());
        if needs_text && loaded.tokenizer.is_none() {
            return Err(Error::input(format!("{}: the model has no tokenizer", self.spec.short_name())));
        }
        Ok(loaded)
    }

    /// The plan from `--plan`/`--precision` or the config (default: all f16).
    pub fn plan(&self, args: &PlanArgs) -> Result<(PrecisionPlan, String)> {
        let plan_path =
            args.plan.clone().or_else(|| if args.precision.is_some() { None } else { self.config.plan.clone() });
        if let Some(p) = plan_path {
            return Ok((PrecisionPlan::from_file(&p)?, p.display().to_string()));
        }
        let name = args.precision.clone().or(self.config.precision.clone()).unwrap_or_else(|| "f16".into());
        let p: Precision = name.parse().map_err(|e| Error::input(format!("--precision: {e}")))?;
        Ok((PrecisionPlan::uniform(p), p.name().to_string()))
    }
}

/// Applies a resolved plan to a model, layer by layer, re-encoding from the masters.
pub fn apply_plan(
    model: &mut crate::model::Model,
    plan: &PrecisionPlan,
    origin: &str,
) -> Result<BTreeMap<crate::model::LayerId, Precision>> {
    let assignment = plan.resolve(&model.layer_ids(), origin)?;
    let pb = crate::progress::bar(assignment.len() as u64, "encoding");
    for (id, p) in &assignment {
        model.set_precision(*id, *p)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(assignment)
}

/// A one-line summary such as `nf4 ×196, f16 ×15` of an assignment.
pub fn describe(assignment: &BTreeMap<crate::model::LayerId, Precision>) -> String {
    let mut counts: BTreeMap<Precision, usize> = BTreeMap::new();
    for p in assignment.values() {
        *counts.entry(*p).or_default() += 1;
    }
    counts.iter().map(|(p, n)| format!("{p}×{n}")).collect::<Vec<_>>().join(" ")
}
