//! The consumer's metrics, through the [`metrics`](https://docs.rs/metrics) facade: the
//! application installs whichever recorder it likes (Prometheus, StatsD, OpenTelemetry through
//! a bridge, or none, which costs nothing), and Cohort only names and updates figures. The
//! facade was chosen over OpenTelemetry's SDK because it is a single small crate with no
//! runtime of its own, and exporters for every common backend exist on top of it.
//!
//! Names follow the Java consumer's metrics (`records-lag`, `records-consumed-rate`, ...) in
//! Prometheus form: prefixed `kafka_consumer_`, with `_` for `-`, counters ending in `_total`
//! (a rate is the backend's `rate()` of the counter) and latencies as histograms in seconds.
//! Every series has the labels `client_id` and `group`; per-partition ones also `topic` and
//! `partition`.
//!
//! | Name | Kind | Java's metric |
//! |---|---|---|
//! | `kafka_consumer_records_lag` | gauge, per partition | `records-lag` |
//! | `kafka_consumer_records_consumed_total` | counter | `records-consumed-rate` / `-total` |
//! | `kafka_consumer_fetch_latency_seconds` | histogram | `fetch-latency-avg` / `-max` |
//! | `kafka_consumer_commit_latency_seconds` | histogram | `commit-latency-avg` / `-max` |
//! | `kafka_consumer_rebalance_latency_seconds` | histogram | `rebalance-latency-avg` / `-max` |
//! | `kafka_consumer_rebalance_total` | counter | `rebalance-total` |
//! | `kafka_consumer_assigned_partitions` | gauge | `assigned-partitions` |
//! | `kafka_consumer_heartbeat_total` | counter | `heartbeat-rate` / `-total` |
//! | `kafka_consumer_last_rebalance_seconds_ago` | gauge | `last-rebalance-seconds-ago` |
//!
//! Handles are registered once per consumer (the recorder installed when it is created gets
//! them), so the per-record counter is one atomic add.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

/// Metric names (see the module's table).
pub mod names {
    /// Gauge per partition: the log end (or last stable offset) minus the position.
    pub const RECORDS_LAG: &str = "kafka_consumer_records_lag";
    /// Counter: records handed to the application.
    pub const RECORDS_CONSUMED: &str = "kafka_consumer_records_consumed_total";
    /// Histogram: Fetch round trips, in seconds.
    pub const FETCH_LATENCY: &str = "kafka_consumer_fetch_latency_seconds";
    /// Histogram: offset commits, from request to answer, in seconds.
    pub const COMMIT_LATENCY: &str = "kafka_consumer_commit_latency_seconds";
    /// Histogram: rebalances, from their start to the new assignment, in seconds.
    pub const REBALANCE_LATENCY: &str = "kafka_consumer_rebalance_latency_seconds";
    /// Counter: rebalances completed.
    pub const REBALANCES: &str = "kafka_consumer_rebalance_total";
    /// Gauge: partitions assigned now.
    pub const ASSIGNED_PARTITIONS: &str = "kafka_consumer_assigned_partitions";
    /// Counter: heartbeats sent (both group protocols).
    pub const HEARTBEATS: &str = "kafka_consumer_heartbeat_total";
    /// Gauge: seconds since the last rebalance completed.
    pub const LAST_REBALANCE_SECONDS_AGO: &str = "kafka_consumer_last_rebalance_seconds_ago";
}

/// One consumer's registered metrics.
pub(crate) struct Telemetry {
    client_id: String,
    group: String,
    pub(crate) records_consumed: Counter,
    pub(crate) fetch_latency: Histogram,
    pub(crate) commit_latency: Histogram,
    pub(crate) assigned_partitions: Gauge,
    pub(crate) last_rebalance_seconds_ago: Gauge,
}

impl Telemetry {
    pub(crate) fn new(client_id: &str, group: &str) -> Self {
        let labels = [
            ("client_id", client_id.to_owned()),
            ("group", group.to_owned()),
        ];
        Self {
            client_id: client_id.to_owned(),
            group: group.to_owned(),
            records_consumed: metrics::counter!(names::RECORDS_CONSUMED, &labels),
            fetch_latency: metrics::histogram!(names::FETCH_LATENCY, &labels),
            commit_latency: metrics::histogram!(names::COMMIT_LATENCY, &labels),
            assigned_partitions: metrics::gauge!(names::ASSIGNED_PARTITIONS, &labels),
            last_rebalance_seconds_ago: metrics::gauge!(names::LAST_REBALANCE_SECONDS_AGO, &labels),
        }
    }

    /// A partition's `records-lag` gauge.
    pub(crate) fn records_lag(&self, topic: &str, partition: i32) -> Gauge {
        metrics::gauge!(
            names::RECORDS_LAG,
            "client_id" => self.client_id.clone(),
            "group" => self.group.clone(),
            "topic" => topic.to_owned(),
            "partition" => partition.to_string(),
        )
    }
}

/// A completed rebalance of `group` (called by the members, which know when one ends).
pub(crate) fn rebalanced(client_id: &str, group: &str, took: Duration) {
    let labels = [
        ("client_id", client_id.to_owned()),
        ("group", group.to_owned()),
    ];
    metrics::histogram!(names::REBALANCE_LATENCY, &labels).record(took.as_secs_f64());
    metrics::counter!(names::REBALANCES, &labels).increment(1);
}

/// A heartbeat sent for `group`.
pub(crate) fn heartbeat(client_id: &str, group: &str) {
    metrics::counter!(
        names::HEARTBEATS,
        "client_id" => client_id.to_owned(),
        "group" => group.to_owned(),
    )
    .increment(1);
}
