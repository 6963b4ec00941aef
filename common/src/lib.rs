//! Pieces every imcloud role shares: configuration, the registry and queue adapters, shutdown.

pub mod accept;
pub mod auth;
pub mod config;
pub mod engine_errors;
pub mod etcd_members;
pub mod fd_budget;
pub mod grpc_channel;
pub mod grpc_telemetry;
pub mod im;
pub mod internal_auth;
pub mod kafka_broker_watch;
pub mod node;
pub mod queue;
#[cfg(test)]
mod queue_conformance;
pub mod queue_kafka;
pub mod queue_memory;
pub mod rate_limit;
pub mod readiness;
pub mod redis_conn;
pub mod registry;
#[cfg(test)]
mod registry_conformance;
pub mod registry_etcd;
pub mod registry_memory;
pub mod room_history;
#[cfg(test)]
mod room_history_conformance;
pub mod room_history_memory;
pub mod room_history_redis;
pub mod shutdown;
/// Test-only: unique names for the resources tests create (the `test-support` feature, which only
/// dev-dependencies enable, so it is never in a release build).
#[cfg(any(test, feature = "test-support"))]
pub mod test_name;
pub mod tls;
pub mod trace_context;

pub use config::{Config, ConfigArgs, ConfigError};
pub use node::{NodeInfo, Role};
