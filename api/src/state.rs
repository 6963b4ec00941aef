//! What every handler shares: the logic client, the API key, the Prometheus handle and the readiness.
//! `AppState::authed` makes a logic request carrying the API key (marked sensitive), a `LOGIC_TIMEOUT` of
//! 10 s, and the time the api accepted it (where a push's end-to-end latency starts).

use std::time::Duration;

use imcloud_common::grpc_telemetry::{ACCEPTED_HEADER, NodeChannel, now_unix_us};
use imcloud_common::readiness::Readiness;
use imcloud_proto::logic::logic_client::LogicClient;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::envelope::ApiError;

/// Longest wait for logic on behalf of one HTTP request.
pub const LOGIC_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub logic: LogicClient<NodeChannel>,
    pub api_key: String,
    pub metrics: Option<PrometheusHandle>,
    pub readiness: Readiness,
}

impl AppState {
    /// A request to logic carrying the API key, and when the api accepted it (a push's end-to-end
    /// latency starts there).
    pub fn authed<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(LOGIC_TIMEOUT);
        if let Ok(mut v) =
            tonic::metadata::MetadataValue::try_from(format!("Bearer {}", self.api_key))
        {
            // Never shown in debug output.
            v.set_sensitive(true);
            req.metadata_mut().insert("authorization", v);
        }
        if let Ok(v) = now_unix_us().to_string().parse() {
            req.metadata_mut().insert(ACCEPTED_HEADER, v);
        }
        req
    }

    pub fn logic(&self) -> LogicClient<NodeChannel> {
        self.logic.clone()
    }
}

/// Maps a logic call's result into the API's error type.
pub fn from_logic<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ApiError> {
    r.map(tonic::Response::into_inner).map_err(ApiError::from)
}
