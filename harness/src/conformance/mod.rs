//! `cohort conformance`: probes a broker's group coordinator and offset handling, one named
//! check per behaviour clients rely on, with evidence. The harness runs the checks a scenario
//! `requires` before running it, and reports the scenario as not run when one fails.
//!
//! Every check talks the protocol directly (each simulated member on a connection of its own,
//! since a broker serves one request per connection at a time), on a group and topic of its
//! own, so the checks run concurrently.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::error::HarnessError;
use crate::security::Security;
use serde::Serialize;

mod checks;
mod raw;

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Name (what scenarios list in `requires`).
    pub name: &'static str,
    /// What the behaviour is.
    pub description: &'static str,
    /// Whether the broker behaves as Apache Kafka does.
    pub passed: bool,
    /// What was observed.
    pub evidence: String,
    /// How long the check took (ms).
    pub elapsed_ms: u64,
}

/// What a check found: `Ok(evidence)` when the broker behaves as Apache Kafka does,
/// `Err(evidence)` when it does not or could not be asked. A failed check is a finding about
/// the broker, reported with its evidence, not an error of the harness.
type Outcome<T = String> = Result<T, String>;

type CheckFn = fn(Addr) -> Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Every check: name, description, function. `Ok(evidence)` passes, `Err(evidence)` fails.
pub const CHECKS: &[(&str, &str, CheckFn)] = &[
    (
        "api-versions",
        "ApiVersions lists the group and offset APIs at the versions clients use (JoinGroup v4+, LeaveGroup v3+)",
        |b| Box::pin(checks::api_versions(b)),
    ),
    (
        "unsupported-version-answered",
        "an ApiVersions request at a version the broker does not know gets UNSUPPORTED_VERSION with the supported range, not a closed connection",
        |b| Box::pin(checks::unsupported_version(b)),
    ),
    (
        "member-id-required",
        "JoinGroup v4+ without a member id is answered MEMBER_ID_REQUIRED with an id to use (KIP-394)",
        |b| Box::pin(checks::member_id_required(b)),
    ),
    (
        "join-sync-heartbeat",
        "a member joins, leads, receives its assignment through SyncGroup and heartbeats",
        |b| Box::pin(checks::join_sync_heartbeat(b)),
    ),
    (
        "rebalance-on-join",
        "a second member joining makes the first one's heartbeat answer REBALANCE_IN_PROGRESS, and both land in the next generation",
        |b| Box::pin(checks::rebalance_on_join(b)),
    ),
    (
        "leave-triggers-rebalance",
        "LeaveGroup starts a rebalance at once",
        |b| Box::pin(checks::leave_triggers_rebalance(b)),
    ),
    (
        "session-expiry",
        "a member that stops heartbeating is removed after the session timeout",
        |b| Box::pin(checks::session_expiry(b)),
    ),
    (
        "rebalance-timeout-expiry",
        "a member that keeps heartbeating but does not rejoin is removed after the rebalance timeout",
        |b| Box::pin(checks::rebalance_timeout_expiry(b)),
    ),
    (
        "leader-rejoin-rebalances",
        "a JoinGroup from the leader of a stable group starts a new generation (how a leader acts on new partitions)",
        |b| Box::pin(checks::leader_rejoin_rebalances(b)),
    ),
    (
        "leader-leaves-mid-rebalance",
        "when the leader leaves during a rebalance, another member is elected and the group completes the generation",
        |b| Box::pin(checks::leader_leaves_mid_rebalance(b)),
    ),
    (
        "protocol-vote",
        "the coordinator picks a protocol every member supports",
        |b| Box::pin(checks::protocol_vote(b)),
    ),
    (
        "static-member-fencing",
        "a second member with the same group.instance.id fences the first (FENCED_INSTANCE_ID, KIP-345)",
        |b| Box::pin(checks::static_fencing(b)),
    ),
    (
        "static-member-rejoin",
        "a static member that rejoins with new metadata (a restart, a cooperative second round) leads to a generation every member completes",
        |b| Box::pin(checks::static_member_rejoin(b)),
    ),
    (
        "stale-generation",
        "a heartbeat with an old generation is answered ILLEGAL_GENERATION",
        |b| Box::pin(checks::stale_generation(b)),
    ),
    (
        "stale-commit",
        "a commit with an old generation is answered ILLEGAL_GENERATION",
        |b| Box::pin(checks::stale_commit(b)),
    ),
    (
        "offset-commit-fetch",
        "a committed offset is fetched back; an uncommitted partition answers -1",
        |b| Box::pin(checks::offset_commit_fetch(b)),
    ),
    (
        "list-offsets-latest",
        "ListOffsets LATEST returns the log end offset",
        |b| Box::pin(checks::list_offsets_latest(b)),
    ),
    (
        "fetch-inside-batch",
        "a Fetch starting in the middle of a record batch returns the records from that offset",
        |b| Box::pin(checks::fetch_inside_batch(b)),
    ),
    (
        "fetch-beyond-end",
        "a Fetch from an offset beyond the log end is answered OFFSET_OUT_OF_RANGE, so a consumer resets",
        |b| Box::pin(checks::fetch_beyond_end(b)),
    ),
    (
        "fetch-max-wait-zero",
        "a Fetch with max_wait_ms = 0 returns the records already there at once",
        |b| Box::pin(checks::fetch_max_wait_zero(b)),
    ),
    ("create-partitions", "CreatePartitions grows a topic", |b| {
        Box::pin(checks::create_partitions(b))
    }),
    (
        "describe-groups",
        "DescribeGroups reports the members with their client ids and assignments",
        |b| Box::pin(checks::describe_groups(b)),
    ),
    (
        "consumer-protocol",
        "ConsumerGroupHeartbeat (KIP-848): a member joins with epoch 0 and its own member id, gets an epoch and every partition; a second member gets half only after the first reported them released; a leave with epoch -1 is answered",
        |b| Box::pin(checks::consumer_protocol(b)),
    ),
];

/// The broker under test: where it is, and how to connect to it.
#[derive(Debug, Clone)]
pub struct Addr {
    pub(super) bootstrap: String,
    security: Security,
}

impl Addr {
    /// A client configuration for the broker (its security settings were checked when the
    /// run started, by [`run`]).
    pub(super) fn config(&self) -> cohort::ClientConfig {
        self.security
            .client_config(&self.bootstrap)
            .unwrap_or_else(|_| cohort::ClientConfig::new(&self.bootstrap))
    }
}

/// Runs the named checks (all when `only` is empty), concurrently, connecting with `security`.
pub async fn run(
    bootstrap: &str,
    security: &Security,
    only: &[String],
) -> Result<Vec<CheckResult>, HarnessError> {
    // Certificate files are read here, so a missing one is this error rather than every check
    // failing at once.
    security.client_config(bootstrap)?;
    for n in only {
        if !CHECKS.iter().any(|(name, _, _)| name == n) {
            return Err(HarnessError::invalid(format!(
                "unknown check {n:?} (known: {})",
                CHECKS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let mut tasks = Vec::new();
    for (name, description, f) in CHECKS {
        if !only.is_empty() && !only.iter().any(|n| n == name) {
            continue;
        }
        let b = Addr {
            bootstrap: bootstrap.to_owned(),
            security: security.clone(),
        };
        let f = *f;
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(60), f(b))
                .await
                .unwrap_or_else(|_| Err("no answer within 60 s".into()));
            let (passed, evidence) = match r {
                Ok(e) => (true, e),
                Err(e) => (false, e),
            };
            CheckResult {
                name,
                description,
                passed,
                evidence,
                elapsed_ms: start.elapsed().as_millis() as u64,
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.map_err(HarnessError::task("a conformance check"))?);
    }
    Ok(out)
}

/// A table for people.
pub fn table(results: &[CheckResult]) -> String {
    let mut s = String::new();
    let w = results.iter().map(|r| r.name.len()).max().unwrap_or(10);
    for r in results {
        s.push_str(&format!(
            "{:<w$}  {}  {}\n",
            r.name,
            if r.passed { "pass" } else { "FAIL" },
            r.evidence
        ));
    }
    let passed = results.iter().filter(|r| r.passed).count();
    s.push_str(&format!("{passed}/{} checks pass\n", results.len()));
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = super::CHECKS.iter().map(|c| c.0).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }
}
