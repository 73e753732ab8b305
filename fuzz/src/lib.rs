//! What the fuzz targets check, kept apart from the libFuzzer entry points so each target is
//! one line and a new parser joins by adding a function here.
//!
//! Every check must hold for any input: no panic, and the invariants stated per function. A
//! refused input (an `Err`) is an answer, not a failure.
#![forbid(unsafe_code)]

pub mod data_api;
pub mod key_ids;
pub mod policy;
