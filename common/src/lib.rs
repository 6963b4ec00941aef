//! Pieces every imcloud role shares: configuration, the registry and queue adapters, shutdown.

pub mod accept;
pub mod auth;
pub mod config;
pub mod fd_budget;
pub mod grpc_channel;
pub mod im_routes;
pub mod internal_auth;
pub mod node;
pub mod queue;
#[doc(hidden)]
pub mod queue_conformance;
pub mod queue_kafka;
pub mod queue_memory;
pub mod rate_limit;
pub mod registry;
#[doc(hidden)]
pub mod registry_conformance;
pub mod registry_etcd;
pub mod registry_memory;
pub mod shutdown;
#[doc(hidden)]
pub mod test_name;
pub mod tls;

pub use config::{Config, ConfigArgs, ConfigError};
pub use node::{NodeInfo, Role};
