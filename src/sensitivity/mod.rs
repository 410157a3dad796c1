//! Allocation of formats to layers under a memory budget, and the sensitivity scan.

pub mod allocate;
pub mod journal;
pub mod lock;
pub mod scan;
pub mod summary;
pub mod validate;
