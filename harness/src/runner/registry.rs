//! The shipped scenarios, by name, and how a scenario's text is found.

use crate::error::HarnessError;

/// The scenario `cohort demo` runs.
pub const DEMO: &str = include_str!("../../scenarios/demo.toml");

/// The shipped scenarios, by name, so the binary finds them wherever it runs.
pub const SHIPPED: &[(&str, &str)] = &[
    ("demo", DEMO),
    ("smoke", include_str!("../../scenarios/smoke.toml")),
    (
        "rolling-restart",
        include_str!("../../scenarios/rolling-restart.toml"),
    ),
    (
        "scale-out-in",
        include_str!("../../scenarios/scale-out-in.toml"),
    ),
    (
        "crash-storm",
        include_str!("../../scenarios/crash-storm.toml"),
    ),
    (
        "flapping-network",
        include_str!("../../scenarios/flapping-network.toml"),
    ),
    (
        "kernel-network",
        include_str!("../../scenarios/kernel-network.toml"),
    ),
    (
        "stalled-consumer",
        include_str!("../../scenarios/stalled-consumer.toml"),
    ),
    (
        "partitions-added",
        include_str!("../../scenarios/partitions-added.toml"),
    ),
    (
        "eager-to-cooperative",
        include_str!("../../scenarios/eager-to-cooperative.toml"),
    ),
    (
        "mixed-clients",
        include_str!("../../scenarios/mixed-clients.toml"),
    ),
    (
        "static-restart",
        include_str!("../../scenarios/static-restart.toml"),
    ),
    (
        "broker-restart",
        include_str!("../../scenarios/broker-restart.toml"),
    ),
    (
        "rebalance-timeout",
        include_str!("../../scenarios/rebalance-timeout.toml"),
    ),
    (
        "leader-leaves-mid-rebalance",
        include_str!("../../scenarios/leader-leaves-mid-rebalance.toml"),
    ),
    (
        "coordinator-failover",
        include_str!("../../scenarios/coordinator-failover.toml"),
    ),
    (
        "leader-change",
        include_str!("../../scenarios/leader-change.toml"),
    ),
    ("soak", include_str!("../../scenarios/soak.toml")),
    (
        "consumer-protocol",
        include_str!("../../scenarios/consumer-protocol.toml"),
    ),
    (
        "protocol-upgrade",
        include_str!("../../scenarios/protocol-upgrade.toml"),
    ),
    (
        "mixed-java",
        include_str!("../../scenarios/mixed-java.toml"),
    ),
    ("mixed-go", include_str!("../../scenarios/mixed-go.toml")),
    ("mixed-all", include_str!("../../scenarios/mixed-all.toml")),
    (
        "mixed-rust",
        include_str!("../../scenarios/mixed-rust.toml"),
    ),
];

/// A scenario's text from a path or a shipped name.
pub fn load(path_or_name: &str) -> Result<String, HarnessError> {
    let p = std::path::Path::new(path_or_name);
    if p.exists() {
        return std::fs::read_to_string(p).map_err(HarnessError::io(path_or_name));
    }
    let name = path_or_name.trim_end_matches(".toml");
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| (*t).to_owned())
        .ok_or_else(|| {
            HarnessError::invalid(format!(
                "{path_or_name}: no such file or shipped scenario (shipped: {})",
                SHIPPED.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
            ))
        })
}
