//! Weight formats and the switchable linear layer.

pub mod dq;
mod fused;
pub mod int8;
pub mod nf4;
pub mod precision;

pub use precision::{Precision, UnknownPrecision};
pub mod linear;
pub mod stacked;

pub use linear::{HostEncoded, SwitchableLinear};
pub use stacked::Stacked;
