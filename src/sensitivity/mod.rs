//! Allocation of formats to layers under a memory budget, and the sensitivity scan.

pub mod allocate;
