//! What every part of a run shares: the journal, the admin client, the broker, the members'
//! slots and the switches the timeline flips.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use cohort::Producer;
use cohort_testbroker::TestBroker;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::journal::{Event, Journal};
use crate::member::MemberOptions;
use crate::scenario::MemberSettings;

use super::fleet::Slot;

pub(super) struct Ctx {
    pub(super) journal: Journal,
    pub(super) bootstrap: String,
    /// How every client of the run connects.
    pub(super) security: crate::security::Security,
    pub(super) group: String,
    /// Scenario topic name → run topic name.
    pub(super) topic_names: BTreeMap<String, String>,
    /// Run topic name → partitions.
    pub(super) counts: std::sync::Mutex<BTreeMap<String, i32>>,
    pub(super) admin: Producer,
    pub(super) broker: Option<Arc<TestBroker>>,
    pub(super) producer_paused: AtomicBool,
    pub(super) producer_stop: AtomicBool,
    pub(super) broker_paused: AtomicBool,
    /// Nodes a `broker-kill` or `broker-stop` took down: the action and the journal's label.
    pub(super) down: std::sync::Mutex<BTreeMap<i32, (&'static str, String)>>,
    /// Replication factor of the run's topics (every node, up to 3, so that a node can fail).
    pub(super) replication: i16,
    /// Lasting faults in force (a `when = "stable"` trigger waits for them to end).
    pub(super) active_faults: AtomicU64,
    pub(super) notes: std::sync::Mutex<Vec<String>>,
    pub(super) members: Mutex<BTreeMap<String, Slot>>,
    /// Applied to every cohort member (see `GroupConfig::cooperative_rejoin_delay`).
    pub(super) cooperative_rejoin_delay: Duration,
    pub(super) rng: std::sync::Mutex<ChaCha8Rng>,
    /// The scenario's seed, from which each member's retry jitter is derived.
    pub(super) seed: u64,
    pub(super) out: PathBuf,
    pub(super) cohort_bin: PathBuf,
    pub(super) start: Instant,
    pub(super) produced: AtomicU64,
    /// The bridge and namespaces of `placement = "netns"` members, if the run has any.
    pub(super) netns: Option<Arc<crate::netns::Bridge>>,
}

impl Ctx {
    pub(super) fn note(&self, n: String) {
        let mut v = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if !v.contains(&n) {
            v.push(n);
        }
    }

    pub(super) fn chaos(&self, action: &str, target: &str, detail: &str) {
        self.journal.record(
            "chaos",
            Event::Chaos {
                action: action.to_owned(),
                target: target.to_owned(),
                detail: detail.to_owned(),
            },
        );
    }

    pub(super) fn counts(&self) -> BTreeMap<String, i32> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn topics(&self) -> Vec<String> {
        self.topic_names.values().cloned().collect()
    }

    pub(super) fn member_options(&self, name: &str, s: &MemberSettings) -> MemberOptions {
        let mut o = MemberOptions::new(name, &self.bootstrap, &self.group, &self.topics());
        o.security = self.security.clone();
        if let Some(b) = &s.balancers {
            o.balancers = b.clone();
        }
        if s.static_membership == Some(true) {
            o.instance_id = Some(name.to_owned());
        }
        if let Some(d) = s.session_timeout {
            o.session_timeout = d;
        }
        if let Some(d) = s.heartbeat_interval {
            o.heartbeat_interval = d;
        }
        if let Some(d) = s.rebalance_timeout {
            o.rebalance_timeout = d;
        }
        if let Some(d) = s.max_poll_interval {
            o.max_poll_interval = d;
        }
        if let Some(d) = s.processing {
            o.processing = d;
        }
        if let Some(w) = s.weight {
            o.weight = w;
        }
        o.bug = s.bug;
        if s.consumer_protocol() {
            o.group_protocol = cohort::GroupProtocol::Consumer;
            o.group_remote_assignor = s.group_remote_assignor.clone();
            // Not sent: the broker's group.consumer.session.timeout.ms (Kafka's default) is
            // what bounds the detection of a crashed member, and so the run's convergence.
            o.session_timeout = KIP848_SESSION_TIMEOUT;
        }
        o.cooperative_rejoin_delay = self.cooperative_rejoin_delay;
        o.jitter_seed = Some(member_seed(self.seed, name));
        o
    }
}

/// The session timeout of consumer-protocol groups: Apache Kafka's default
/// `group.consumer.session.timeout.ms`, which the test brokers keep.
const KIP848_SESSION_TIMEOUT: Duration = Duration::from_secs(45);

/// A member's jitter seed: the scenario's seed mixed with its name (FNV-1a, stable across Rust
/// releases unlike `DefaultHasher`), so members differ and a replay repeats each one's retries.
pub(super) fn member_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
