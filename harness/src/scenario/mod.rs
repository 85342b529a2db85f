//! Scenario files (TOML): the broker, topics, a producer, the members and a timeline of
//! actions with times or triggers. See `harness/scenarios/` for the shipped ones and
//! `docs/SCENARIOS.md` for every field.
//!
//! One responsibility, the file format: its types and every rule a file must follow (ranges,
//! names, the settings each action and protocol takes), checked before anything runs.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::member::Bug;
use crate::net::Direction;
use crate::process_member::Client;

/// A whole scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (reports, file names).
    pub name: String,
    /// What it exercises, for people.
    #[serde(default)]
    pub description: String,
    /// How long the timeline and the producer run; the run then drains and checks.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Seed when none is given on the command line.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Which broker.
    #[serde(default)]
    pub broker: BrokerSpec,
    /// Broker behaviours the scenario depends on (names of `cohort conformance` checks); the
    /// scenario is reported as not run on a broker that lacks one.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Topics to create.
    pub topics: Vec<TopicSpec>,
    /// The producer.
    #[serde(default)]
    pub producer: ProducerSpec,
    /// Settings every member starts from.
    #[serde(default)]
    pub defaults: MemberSettings,
    /// Members (or groups of identical members).
    pub members: Vec<MemberSpec>,
    /// The timeline.
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    /// Play the timeline again from its first action whenever it ends, until `duration` is
    /// over (a soak: `--scale` then multiplies the faults as well as the time). `at` times are
    /// then counted from the start of each round.
    #[serde(default)]
    pub repeat_timeline: bool,
    /// Bounds for the checker.
    #[serde(default)]
    pub checks: CheckSpec,
    /// How every client connects (Kafka's `security.protocol`, `sasl.*` and `ssl.*` settings,
    /// with underscores; the password comes from the environment variable
    /// `sasl_password_env` names). For a cluster given with `--bootstrap`: the brokers a run
    /// starts listen in plaintext.
    #[serde(default)]
    pub security: crate::security::SecuritySpec,
}

/// Which broker to run against. Every field is optional: by default the scenario runs on the
/// broker the environment names (`COHORT_BROKER_KIND`, `COHORT_BROKER`, see `cohort-testbroker`),
/// which is Apache Kafka, one node, as a child process.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BrokerSpec {
    /// `apache-kafka` or `tansu`.
    #[serde(default)]
    pub kind: Option<BrokerSoftware>,
    /// `process` or `container`.
    #[serde(default)]
    pub backend: Option<BrokerBackend>,
    /// Nodes of an Apache Kafka cluster (process backend); 1 by default.
    #[serde(default)]
    pub nodes: Option<u32>,
    /// A Testcontainers image to run (e.g. `apache/kafka:4.4.0`).
    #[serde(default)]
    pub image: Option<String>,
    /// An existing cluster to run against instead.
    #[serde(default)]
    pub bootstrap: Option<String>,
}

/// See [`BrokerSpec::kind`].
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerSoftware {
    /// Apache Kafka, the reference.
    ApacheKafka,
    /// Tansu: fast to start, unfaithful in group behaviour.
    Tansu,
}

/// See [`BrokerSpec::backend`].
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerBackend {
    /// Child processes.
    Process,
    /// A Testcontainers container.
    Container,
}

/// A topic.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Name (made unique per run).
    pub name: String,
    /// Partitions.
    pub partitions: i32,
}

/// How record keys are drawn.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Keys {
    /// No keys: records go round-robin over partitions.
    #[default]
    None,
    /// Keys drawn uniformly from `key_space`, partitioned by murmur2 as Java does.
    Uniform,
    /// One key in ten gets half the traffic (a hot key).
    Hot,
}

/// The producer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSpec {
    /// Records per second, over all topics.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Key distribution.
    #[serde(default)]
    pub keys: Keys,
    /// Distinct keys.
    #[serde(default = "default_key_space")]
    pub key_space: u32,
    /// Value size in bytes.
    #[serde(default = "default_record_size")]
    pub record_size: usize,
}

fn default_rate() -> u32 {
    200
}
fn default_key_space() -> u32 {
    1000
}
fn default_record_size() -> usize {
    100
}

impl Default for ProducerSpec {
    fn default() -> Self {
        Self {
            rate: default_rate(),
            keys: Keys::default(),
            key_space: default_key_space(),
            record_size: default_record_size(),
        }
    }
}

/// Where a member runs.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// A task of the harness (network faults through its dialer; freeze = black hole).
    #[default]
    InProcess,
    /// A `cohort member` process (crash = SIGKILL, freeze = SIGSTOP).
    Process,
    /// A `cohort member` process in a network namespace of its own, behind a veth pair:
    /// network faults become nftables rules, resets and delay in the kernel, so they reach
    /// real TCP and members of every client (`harness/src/netns.rs`; needs root).
    Netns,
}

/// Member settings; every field optional so members override the defaults field by field.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSettings {
    /// Balancers in priority order.
    #[serde(default)]
    pub balancers: Option<Vec<String>>,
    /// Which client.
    #[serde(default)]
    pub client: Option<Client>,
    /// Where it runs.
    #[serde(default)]
    pub placement: Option<Placement>,
    /// Static membership: the member's name is its `group.instance.id`.
    #[serde(default, rename = "static")]
    pub static_membership: Option<bool>,
    /// Session timeout.
    #[serde(default, with = "humantime_serde")]
    pub session_timeout: Option<Duration>,
    /// Heartbeat interval.
    #[serde(default, with = "humantime_serde")]
    pub heartbeat_interval: Option<Duration>,
    /// Rebalance timeout.
    #[serde(default, with = "humantime_serde")]
    pub rebalance_timeout: Option<Duration>,
    /// Processing bound.
    #[serde(default, with = "humantime_serde")]
    pub max_poll_interval: Option<Duration>,
    /// Time to process one record.
    #[serde(default, with = "humantime_serde")]
    pub processing: Option<Duration>,
    /// Weight for the weighted sticky balancer.
    #[serde(default)]
    pub weight: Option<u32>,
    /// A deliberate bug (checker tests).
    #[serde(default)]
    pub bug: Option<Bug>,
    /// `group.protocol`: `classic` (the default) or `consumer` (KIP-848). A consumer-protocol
    /// member refuses `balancers`, `session_timeout` and `heartbeat_interval` (the broker owns
    /// them) and does not inherit them from `[defaults]`.
    #[serde(default)]
    pub group_protocol: Option<ProtocolSetting>,
    /// `group.remote.assignor` of a consumer-protocol member (`uniform`, `range`).
    #[serde(default)]
    pub group_remote_assignor: Option<String>,
}

/// `group.protocol` in a scenario file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolSetting {
    /// JoinGroup/SyncGroup with client-side balancers.
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat; the broker assigns.
    Consumer,
}

impl MemberSettings {
    /// Whether the member runs the consumer protocol (KIP-848).
    pub fn consumer_protocol(&self) -> bool {
        self.group_protocol == Some(ProtocolSetting::Consumer)
    }

    /// `self` with unset fields taken from `base`; a consumer-protocol member takes none of the
    /// settings the broker owns.
    pub fn over(&self, base: &MemberSettings) -> MemberSettings {
        let group_protocol = self.group_protocol.or(base.group_protocol);
        let classic = group_protocol != Some(ProtocolSetting::Consumer);
        let inherit =
            |own: Option<Duration>, theirs: Option<Duration>| own.or(theirs.filter(|_| classic));
        MemberSettings {
            balancers: self
                .balancers
                .clone()
                .or_else(|| base.balancers.clone().filter(|_| classic)),
            client: self.client.or(base.client),
            placement: self.placement.or(base.placement),
            static_membership: self.static_membership.or(base.static_membership),
            session_timeout: inherit(self.session_timeout, base.session_timeout),
            heartbeat_interval: inherit(self.heartbeat_interval, base.heartbeat_interval),
            rebalance_timeout: self.rebalance_timeout.or(base.rebalance_timeout),
            max_poll_interval: self.max_poll_interval.or(base.max_poll_interval),
            processing: self.processing.or(base.processing),
            weight: self.weight.or(base.weight),
            bug: self.bug.or(base.bug),
            group_protocol,
            group_remote_assignor: self
                .group_remote_assignor
                .clone()
                .or_else(|| base.group_remote_assignor.clone()),
        }
    }
}

/// One member, or `count` identical ones named `{name}1`, `{name}2`, ...
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    /// Name (or prefix when `count > 1`).
    pub name: String,
    /// How many.
    #[serde(default = "one")]
    pub count: u32,
    /// Whether they start with the run (else a `join` action starts them).
    #[serde(default = "yes")]
    pub start: bool,
    /// Settings over the defaults.
    #[serde(flatten)]
    pub settings: MemberSettings,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// What an action does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Start a member that is not running.
    Join,
    /// Close a member cleanly (commit, LeaveGroup).
    Leave,
    /// Kill a member: no commit, no LeaveGroup.
    Crash,
    /// Stop a member for `for` (SIGSTOP for a process; a black hole plus paused processing
    /// in-process).
    Freeze,
    /// Make processing take `processing` per record for `for`.
    Slow,
    /// Stop (cleanly, or as a crash with `crash = true`) and start again with the same name
    /// and instance id, optionally with new `balancers`.
    Restart,
    /// Add latency to a member's traffic for `for`.
    Latency,
    /// Close a member's connections.
    Drop,
    /// Black-hole a member's traffic for `for`.
    Blackhole,
    /// Cut one direction of a member's traffic for `for`.
    Cut,
    /// Drop `loss` percent of a member's packets, both ways, at random, for `for` (members
    /// in network namespaces: the kernel drops them and TCP retransmits).
    Loss,
    /// Lift every network fault of a member.
    Heal,
    /// Swallow a member's requests of the APIs named in `apis` for `for` (never forwarded,
    /// never answered): with `SyncGroup` held, a leader stays between JoinGroup and SyncGroup.
    HoldRequests,
    /// Freeze the broker, or the nodes `target` names, for `for` (SIGSTOP/SIGCONT).
    BrokerPause,
    /// Kill the broker, or the nodes `target` names, and start them again with their data.
    BrokerRestart,
    /// Kill nodes (SIGKILL, as in a crash); they come back after `for`, or at a `broker-start`.
    BrokerKill,
    /// Stop nodes cleanly (SIGTERM: a controlled shutdown that moves their leaderships away);
    /// they come back after `for`, or at a `broker-start`.
    BrokerStop,
    /// Start nodes that a `broker-kill` or `broker-stop` took down (all of them by default).
    BrokerStart,
    /// Grow a topic to `partitions`.
    AddPartitions,
    /// Wait for the group to be stable (a pure trigger).
    Wait,
}

impl Action {
    /// Whether the action is done to the broker (its nodes) rather than to members or topics.
    pub fn is_broker(self) -> bool {
        matches!(
            self,
            Action::BrokerPause
                | Action::BrokerRestart
                | Action::BrokerKill
                | Action::BrokerStop
                | Action::BrokerStart
        )
    }
}

/// When an action fires.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Once every running member has an assignment and every partition one owner.
    Stable,
}

/// One step of the timeline. Actions run in order: each waits for its `at` time (from the
/// start of the run) or its `when` trigger (after the previous action), plus `after`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Time from the start.
    #[serde(default, with = "humantime_serde")]
    pub at: Option<Duration>,
    /// Or a trigger.
    #[serde(default)]
    pub when: Option<Trigger>,
    /// Delay after the time or trigger.
    #[serde(default, with = "humantime_serde")]
    pub after: Option<Duration>,
    /// What.
    pub action: Action,
    /// A member name, `random` (a running member, from the seed), `all`, `leader` (the member
    /// that led the latest generation), a topic for
    /// `add-partitions`. For broker actions, the nodes: `all` (the default), a node id,
    /// `coordinator` (the node coordinating the group, looked up when the action runs) or
    /// `leader` (the leader of partition 0 of the first topic).
    #[serde(default)]
    pub target: Option<String>,
    /// How long a fault lasts before it is lifted.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub lasting: Option<Duration>,
    /// Repeat the action this many times.
    #[serde(default = "one")]
    pub repeat: u32,
    /// Time between repeats.
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
    /// Latency for `latency`.
    #[serde(default, with = "humantime_serde")]
    pub latency: Option<Duration>,
    /// Processing time for `slow`.
    #[serde(default, with = "humantime_serde")]
    pub processing: Option<Duration>,
    /// Partition count for `add-partitions`.
    #[serde(default)]
    pub partitions: Option<i32>,
    /// Or, for `add-partitions`, how many partitions to add each time it plays (a repeated
    /// action or a repeated timeline keeps growing the topic).
    #[serde(default)]
    pub grow_by: Option<i32>,
    /// Direction for `cut`.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// Percent of packets dropped by `loss` (1-100).
    #[serde(default)]
    pub loss: Option<u8>,
    /// New balancers for `restart`.
    #[serde(default)]
    pub balancers: Option<Vec<String>>,
    /// A new `group.protocol` for `restart` (a rolling upgrade to KIP-848, or a downgrade): the
    /// member comes back with it, without the settings the other protocol does not take.
    #[serde(default)]
    pub group_protocol: Option<ProtocolSetting>,
    /// `restart` as a crash (no LeaveGroup).
    #[serde(default)]
    pub crash: bool,
    /// APIs for `hold-requests`, by Kafka's names (`SyncGroup`, `JoinGroup`, `Heartbeat`, ...).
    #[serde(default)]
    pub apis: Option<Vec<String>>,
}

impl ActionSpec {
    /// The API keys of `apis`; an unknown name is an error.
    pub fn api_keys(&self) -> Result<Vec<i16>, HarnessError> {
        self.apis
            .iter()
            .flatten()
            .map(|name| {
                cohort_protocol::ApiKey::ALL
                    .iter()
                    .find(|k| k.name() == name)
                    .map(|k| *k as i16)
                    .ok_or_else(|| {
                        HarnessError::invalid(format!(
                            "unknown API {name:?} (Kafka's names: SyncGroup, ...)"
                        ))
                    })
            })
            .collect()
    }
}

/// Bounds the checker applies.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Most duplicate deliveries allowed (default: what the faults explain, unbounded).
    #[serde(default)]
    pub max_duplicates: Option<u64>,
    /// Longest any rebalance may take, from its trigger to a stable group.
    #[serde(default, with = "humantime_serde")]
    pub max_rebalance: Option<Duration>,
    /// Time after the last fault by which the group must be stable (default: derived from
    /// the timeouts).
    #[serde(default, with = "humantime_serde")]
    pub convergence: Option<Duration>,
    /// Time the run may take to drain after the producer stops.
    #[serde(default, with = "humantime_serde")]
    pub drain: Option<Duration>,
}

/// The ranges scenario values must fall in: generous for any real run, small enough that no
/// arithmetic on them overflows and nothing sized from them exhausts the machine.
pub mod limits {
    use std::time::Duration;

    /// Any duration or instant of the timeline: a week.
    pub const DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
    /// Members of a run, counts included.
    pub const MEMBERS: u64 = 1_000;
    /// Topics of a run.
    pub const TOPICS: u64 = 100;
    /// Partitions of one topic (Kafka has no hard limit; this is far past any test's need).
    pub const PARTITIONS: u64 = 10_000;
    /// Records per second.
    pub const RATE: u64 = 1_000_000;
    /// Distinct keys.
    pub const KEY_SPACE: u64 = 100_000_000;
    /// Bytes per record value: 16 MiB (Kafka's `max.message.bytes` defaults to 1 MiB).
    pub const RECORD_SIZE: u64 = 16 << 20;
    /// Repetitions of one action.
    pub const REPEAT: u64 = 1_000_000;
    /// Nodes of a broker cluster.
    pub const NODES: u64 = 9;
    /// A member's weight for the weighted balancer (0 would give it nothing, and the balancer
    /// sums weights).
    pub const WEIGHT: u64 = 1_000;
}

impl Scenario {
    /// Parses and validates a scenario file's text.
    pub fn parse(text: &str) -> Result<Self, HarnessError> {
        let s: Scenario = toml::from_str(text).map_err(HarnessError::parse("scenario"))?;
        s.validate()?;
        Ok(s)
    }

    /// Member names, expanded.
    pub fn member_names(&self) -> Vec<String> {
        self.members
            .iter()
            .flat_map(|m| expand(&m.name, m.count))
            .collect()
    }

    /// Settings of each member with the defaults applied, in order.
    pub fn resolved_members(&self) -> Vec<(String, bool, MemberSettings)> {
        self.members
            .iter()
            .flat_map(|m| {
                let s = m.settings.over(&self.defaults);
                expand(&m.name, m.count)
                    .into_iter()
                    .map(move |n| (n, m.start, s.clone()))
            })
            .collect()
    }

    /// The scenario with another duration (`cohort run --duration`), within the same limit.
    pub fn lasting(mut self, duration: Option<Duration>) -> Result<Self, HarnessError> {
        if let Some(d) = duration {
            if d.is_zero() || d > limits::DURATION {
                return Err(HarnessError::invalid(format!(
                    "--duration {}: a scenario lasts more than 0 s and at most {}",
                    humantime::format_duration(d),
                    humantime::format_duration(limits::DURATION)
                )));
            }
            self.duration = d;
        }
        Ok(self)
    }

    /// The scenario with its duration multiplied by `factor` (a soak: `--scale 10`), within
    /// the same bounds as a file's values.
    pub fn scaled(mut self, factor: u32) -> Result<Self, HarnessError> {
        self.duration = self
            .duration
            .checked_mul(factor.max(1))
            .filter(|d| *d <= limits::DURATION)
            .ok_or_else(|| {
                HarnessError::invalid(format!(
                    "--scale {factor}: the duration would exceed {}",
                    humantime::format_duration(limits::DURATION)
                ))
            })?;
        Ok(self)
    }

    /// Every value within a stated range, checked before anything is sized from them (member
    /// names are expanded from counts, timers are added to `Instant`s).
    fn check_ranges(&self) -> Result<(), HarnessError> {
        use limits::*;
        let duration = |what: &str, d: Option<Duration>| match d {
            Some(d) if d > DURATION => Err(HarnessError::invalid(format!(
                "{what}: {} is more than the {} a scenario may last",
                humantime::format_duration(d),
                humantime::format_duration(DURATION)
            ))),
            _ => Ok(()),
        };
        let count = |what: &str, n: u64, range: std::ops::RangeInclusive<u64>| {
            if range.contains(&n) {
                Ok(())
            } else {
                Err(HarnessError::invalid(format!(
                    "{what}: {n} is outside {}..={}",
                    range.start(),
                    range.end()
                )))
            }
        };
        duration("duration", Some(self.duration))?;
        count("topics", self.topics.len() as u64, 1..=TOPICS)?;
        for t in &self.topics {
            count(
                &format!("topic {}: partitions", t.name),
                u64::try_from(t.partitions).unwrap_or(0),
                1..=PARTITIONS,
            )?;
        }
        let p = &self.producer;
        count("producer: rate", u64::from(p.rate), 0..=RATE)?;
        count("producer: key_space", u64::from(p.key_space), 1..=KEY_SPACE)?;
        count(
            "producer: record_size",
            p.record_size as u64,
            1..=RECORD_SIZE,
        )?;
        for m in &self.members {
            count(
                &format!("member {}: count", m.name),
                u64::from(m.count),
                1..=MEMBERS,
            )?;
        }
        let members: u64 = self.members.iter().map(|m| u64::from(m.count)).sum();
        count("members (with their counts)", members, 1..=MEMBERS)?;
        if let Some(n) = self.broker.nodes {
            count("broker: nodes", u64::from(n), 1..=NODES)?;
        }
        let settings = std::iter::once(("defaults".to_owned(), &self.defaults)).chain(
            self.members
                .iter()
                .map(|m| (format!("member {}", m.name), &m.settings)),
        );
        for (who, s) in settings {
            duration(&format!("{who}: session_timeout"), s.session_timeout)?;
            duration(&format!("{who}: heartbeat_interval"), s.heartbeat_interval)?;
            duration(&format!("{who}: rebalance_timeout"), s.rebalance_timeout)?;
            duration(&format!("{who}: max_poll_interval"), s.max_poll_interval)?;
            duration(&format!("{who}: processing"), s.processing)?;
            if let Some(w) = s.weight {
                count(&format!("{who}: weight"), u64::from(w), 1..=WEIGHT)?;
            }
        }
        for (i, a) in self.actions.iter().enumerate() {
            let what = |field: &str| format!("action {} ({:?}): {field}", i + 1, a.action);
            duration(&what("at"), a.at)?;
            duration(&what("after"), a.after)?;
            duration(&what("for"), a.lasting)?;
            duration(&what("every"), a.every)?;
            duration(&what("latency"), a.latency)?;
            duration(&what("processing"), a.processing)?;
            count(&what("repeat"), u64::from(a.repeat), 1..=REPEAT)?;
            if let Some(n) = a.partitions {
                count(
                    &what("partitions"),
                    u64::try_from(n).unwrap_or(0),
                    1..=PARTITIONS,
                )?;
            }
            if let Some(n) = a.grow_by {
                count(
                    &what("grow_by"),
                    u64::try_from(n).unwrap_or(0),
                    1..=PARTITIONS,
                )?;
            }
        }
        let c = &self.checks;
        duration("checks: max_rebalance", c.max_rebalance)?;
        duration("checks: convergence", c.convergence)?;
        duration("checks: drain", c.drain)?;
        Ok(())
    }

    fn validate(&self) -> Result<(), HarnessError> {
        self.check_ranges()?;
        if self.duration.is_zero() {
            return Err(HarnessError::invalid("duration must be positive"));
        }
        if self.topics.is_empty() {
            return Err(HarnessError::invalid("at least one topic"));
        }
        for t in &self.topics {
            if t.partitions < 1 {
                return Err(HarnessError::invalid(format!(
                    "topic {}: partitions must be positive",
                    t.name
                )));
            }
        }
        let names = self.member_names();
        let unique: BTreeSet<&String> = names.iter().collect();
        if unique.len() != names.len() {
            return Err(HarnessError::invalid("member names must be unique"));
        }
        if names.is_empty() {
            return Err(HarnessError::invalid("at least one member"));
        }
        let b = &self.broker;
        // Not this run's Apache Kafka processes: no cluster, no listener on a bridge.
        let contradicts_cluster = b.kind == Some(BrokerSoftware::Tansu)
            || b.backend == Some(BrokerBackend::Container)
            || b.image.is_some()
            || b.bootstrap.is_some();
        match b.nodes {
            Some(0) => return Err(HarnessError::invalid("broker: `nodes` must be at least 1")),
            Some(n) if n > 1 && contradicts_cluster => {
                return Err(HarnessError::invalid(
                    "broker: a cluster of several `nodes` is an Apache Kafka process cluster",
                ));
            }
            _ => {}
        }
        if b.image.is_some() && b.bootstrap.is_some() {
            return Err(HarnessError::invalid(
                "broker: give `image` or `bootstrap`, not both",
            ));
        }
        for (name, _, s) in self.resolved_members() {
            if s.placement == Some(Placement::Netns) && contradicts_cluster {
                return Err(HarnessError::invalid(format!(
                    "member {name}: placement = \"netns\" needs the run's own Apache Kafka processes (they listen on the namespaces' bridge)"
                )));
            }
            if s.consumer_protocol() {
                let owned: Vec<&str> = [
                    ("balancers", s.balancers.is_some()),
                    ("session_timeout", s.session_timeout.is_some()),
                    ("heartbeat_interval", s.heartbeat_interval.is_some()),
                ]
                .into_iter()
                .filter_map(|(f, set)| set.then_some(f))
                .collect();
                if !owned.is_empty() {
                    return Err(HarnessError::invalid(format!(
                        "member {name}: {} cannot be set with group_protocol = \"consumer\": the broker decides them (KIP-848)",
                        owned.join(", ")
                    )));
                }
            } else if s.group_remote_assignor.is_some() {
                return Err(HarnessError::invalid(format!(
                    "member {name}: group_remote_assignor needs group_protocol = \"consumer\""
                )));
            }
            for b in s.balancers.iter().flatten() {
                if !cohort_balancers::PROTOCOL_NAMES.contains(&b.as_str()) {
                    return Err(HarnessError::invalid(format!("unknown balancer {b:?}")));
                }
            }
        }
        for (i, a) in self.actions.iter().enumerate() {
            let at = |what: &str| format!("action {} ({:?}): {what}", i + 1, a.action);
            if a.at.is_some() && a.when.is_some() {
                return Err(HarnessError::invalid(at("give `at` or `when`, not both")));
            }
            let broker_action = a.action.is_broker();
            let needs_member =
                !broker_action && !matches!(a.action, Action::AddPartitions | Action::Wait);
            if broker_action
                && let Some(t) = &a.target
                && !(matches!(t.as_str(), "all" | "coordinator" | "leader")
                    || t.parse::<i32>().is_ok_and(|n| n >= 1))
            {
                return Err(HarnessError::invalid(at(&format!(
                    "broker target {t:?}: expected all, a node id, coordinator or leader"
                ))));
            }
            match &a.target {
                Some(t)
                    if needs_member
                        && t != "random"
                        && t != "all"
                        && t != "leader"
                        && !unique.contains(t) =>
                {
                    return Err(HarnessError::invalid(at(&format!("no member {t:?}"))));
                }
                None if needs_member => {
                    return Err(HarnessError::invalid(at("needs a `target` member")));
                }
                _ => {}
            }
            let needs_for = matches!(
                a.action,
                Action::Freeze
                    | Action::Slow
                    | Action::Latency
                    | Action::Blackhole
                    | Action::Cut
                    | Action::Loss
                    | Action::BrokerPause
                    | Action::HoldRequests
            );
            if needs_for && a.lasting.is_none() {
                return Err(HarnessError::invalid(at("needs `for`")));
            }
            match a.action {
                Action::Latency if a.latency.is_none() => {
                    return Err(HarnessError::invalid(at("needs `latency`")));
                }
                Action::Slow if a.processing.is_none() => {
                    return Err(HarnessError::invalid(at("needs `processing`")));
                }
                Action::Loss if !matches!(a.loss, Some(1..=100)) => {
                    return Err(HarnessError::invalid(at(
                        "needs `loss`, a percent of packets from 1 to 100",
                    )));
                }
                Action::Cut if a.direction.is_none() => {
                    return Err(HarnessError::invalid(at("needs `direction`")));
                }
                Action::HoldRequests => {
                    let keys = a
                        .api_keys()
                        .map_err(|e| HarnessError::invalid(at(&e.to_string())))?;
                    if keys.is_empty() {
                        return Err(HarnessError::invalid(at("needs `apis`")));
                    }
                }
                Action::AddPartitions => {
                    let topic = a.target.as_deref().unwrap_or(&self.topics[0].name);
                    let Some(t) = self.topics.iter().find(|t| t.name == topic) else {
                        return Err(HarnessError::invalid(at(&format!("no topic {topic:?}"))));
                    };
                    match (a.partitions, a.grow_by) {
                        (Some(_), Some(_)) => {
                            return Err(HarnessError::invalid(at(
                                "give `partitions` or `grow_by`, not both",
                            )));
                        }
                        (None, None) => {
                            return Err(HarnessError::invalid(at(
                                "needs `partitions` or `grow_by`",
                            )));
                        }
                        (Some(p), None) if p <= t.partitions => {
                            return Err(HarnessError::invalid(at(
                                "`partitions` must grow the topic",
                            )));
                        }
                        (Some(_), None) if self.repeat_timeline || a.repeat > 1 => {
                            return Err(HarnessError::invalid(at(
                                "a repeated `add-partitions` grows the topic with `grow_by`",
                            )));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            if a.repeat > 1 && a.every.is_none() {
                return Err(HarnessError::invalid(at("`repeat` needs `every`")));
            }
        }
        if self.repeat_timeline {
            // A round that takes no time would spin: some action must wait.
            let waits = self.actions.iter().any(|a| {
                [a.at, a.after, a.every]
                    .into_iter()
                    .flatten()
                    .any(|d| d >= Duration::from_millis(100))
            });
            if !waits {
                return Err(HarnessError::invalid(
                    "repeat_timeline: some action needs an `at`, `after` or `every` of at least 100 ms",
                ));
            }
        }
        Ok(())
    }
}

fn expand(name: &str, count: u32) -> Vec<String> {
    if count <= 1 {
        vec![name.to_owned()]
    } else {
        (1..=count).map(|i| format!("{name}{i}")).collect()
    }
}

#[cfg(test)]
mod tests;
