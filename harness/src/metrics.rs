//! `--metrics-addr`: the consumers' metrics (see `cohort::telemetry`) in Prometheus' text
//! format over HTTP, through `metrics-exporter-prometheus`, the exporter of the facade Cohort
//! records to. Scrape `http://<addr>/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use metrics_util::MetricKindMask;

use crate::error::HarnessError;

/// Buckets of the latency histograms, in seconds: from a fast fetch (1 ms) to a slow rebalance
/// (2 min).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Installs the exporter as this process's metrics recorder and serves it on `addr`. Call it
/// before the consumers are created (they register their metrics with the recorder installed
/// then), from inside the Tokio runtime, at most once per process.
pub fn serve(addr: SocketAddr) -> Result<(), HarnessError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(LATENCY_BUCKETS)
        .map_err(|e| HarnessError::Invalid(format!("--metrics-addr: {e}")))?
        // The lag of a partition this member no longer owns stops being updated; after a
        // minute it is dropped rather than shown for ever at its last value.
        .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(60)))
        .install()
        .map_err(|e| HarnessError::Invalid(format!("--metrics-addr {addr}: {e}")))
}
