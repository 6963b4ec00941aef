//! The counter `imcloud_engine_errors_total{engine}`: calls to an external engine that failed, counted
//! where each adapter turns the client library's error into its own (`etcd`, `kafka`, `redis`, `database`).
//! Alert on its rate: a steady rate means an engine is unreachable or refusing work.

/// Counts one failed call to `engine`.
pub fn count(engine: &'static str) {
    metrics::counter!("imcloud_engine_errors_total", "engine" => engine).increment(1);
}
