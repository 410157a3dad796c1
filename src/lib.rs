//! minilab: layer-wise mixed-precision analysis of llama-family LLMs on candle.
//!
//! Every linear layer of a [`model::Model`] holds its 16-bit master and can be re-encoded at run time
//! to FP16, INT8 or NF4 from a [`plan::PrecisionPlan`]. The commands (`eval`, `bench`, `sensitivity`,
//! `plot`, `inspect`, `export`) are thin layers over the modules here.

pub mod bench;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod device;
pub mod env_vars;
pub mod error;
pub mod eval;
pub mod export;
pub mod kernels;
pub mod model;
pub mod plan;
pub mod progress;
pub mod quant;
pub mod report;
pub mod sensitivity;
pub mod switch;

pub use error::{Error, Result};
