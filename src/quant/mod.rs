//! Weight formats and the switchable linear layer.

pub mod precision;
pub mod dq;
pub mod int8;
pub mod nf4;

pub use precision::{Precision, UnknownPrecision};
pub mod linear;

pub use linear::SwitchableLinear;
