//! Pieces of the `imcloud` binary that its tests and tools share: the goim client and the standalone runner.

pub mod adapters;
pub mod client;
pub mod readiness_checks;
pub mod roles;
pub mod standalone;
pub mod telemetry;
