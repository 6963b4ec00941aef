//! Pieces of the `imcloud` binary that its tests and tools share: the goim client and the standalone runner
//! (`adapters`, `client`, `malloc_policy`, `process_gauges`, `readiness_checks`, `roles`, `standalone`, `telemetry`). The load generator
//! (`bench/`) uses the client from here.

pub mod adapters;
pub mod client;
pub mod malloc_policy;
pub mod process_gauges;
pub mod readiness_checks;
pub mod roles;
pub mod standalone;
pub mod telemetry;
