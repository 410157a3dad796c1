//! The sensitivity analysis as a library: the scan (sharded, resumable), allocation under a
//! memory budget, held-out validation, baselines and the frontier; [`pipeline::run`] strings them
//! together.

pub mod allocate;
pub mod finish;
pub mod journal;
pub mod lock;
pub mod pipeline;
pub mod scan;
pub mod settings;
pub mod shard;
pub mod speed;
pub mod summary;
pub mod timing;
pub mod validate;
