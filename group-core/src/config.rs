//! Configuration, with the Java client's defaults and up-front validation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cohort_balancers::Balancer;

use crate::conn::Dialer;
use crate::error::Error;

/// Where a partition without a committed offset starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The log end: only records produced after the assignment.
    Latest,
    /// No default: the partition's start is an error unless a starting-offset hook decides.
    None,
}

/// Subscribed topics: a fixed list or a pattern over the cluster's topics.
#[derive(Debug, Clone)]
pub enum Subscription {
    /// These topics.
    Topics(Vec<String>),
    /// Every topic whose whole name matches the pattern (refreshed with metadata).
    Pattern(regex::Regex),
}

impl Subscription {
    /// Whether a topic name belongs to the subscription.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Subscription::Topics(ts) => ts.iter().any(|t| t == topic),
            Subscription::Pattern(re) => re
                .find(topic)
                .is_some_and(|m| m.start() == 0 && m.end() == topic.len()),
        }
    }
}

/// Client settings shared by every connection. Made with [`ClientConfig::new`], then adjusted
/// field by field (new fields can come without breaking callers).
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `host:port` addresses to bootstrap from.
    pub bootstrap: Vec<String>,
    /// `client.id` sent in request headers.
    pub client_id: String,
    /// Deadline of a request unless the API has its own (`request.timeout.ms`, 30 s).
    pub request_timeout: Duration,
    /// First reconnect delay (`reconnect.backoff.ms`, 50 ms).
    pub reconnect_backoff: Duration,
    /// Largest reconnect delay (`reconnect.backoff.max.ms`, 1 s).
    pub reconnect_backoff_max: Duration,
    /// Delay before retrying a failed request (`retry.backoff.ms`, 100 ms).
    pub retry_backoff: Duration,
    /// Largest retry delay (`retry.backoff.max.ms`, 1 s, KIP-580).
    pub retry_backoff_max: Duration,
    /// How often cached metadata is refreshed (`metadata.max.age.ms`, 5 min; the group leader
    /// refreshes more often to watch partition counts).
    pub metadata_max_age: Duration,
    /// Largest frame accepted from a broker.
    pub max_frame_size: usize,
    /// Opens connections; replace it for TLS, a proxy, a custom resolver or fault injection.
    pub dialer: Arc<dyn Dialer>,
    /// `client.rack`, sent in the subscription for rack-aware assignment (KIP-881).
    pub rack: Option<String>,
    /// SASL authentication of every connection (`security.protocol=SASL_PLAINTEXT`, or
    /// `SASL_SSL` with a TLS dialer): mechanism and credentials.
    pub sasl: Option<crate::conn::SaslConfig>,
}

/// Kafka's `isolation.level` for consumers (KIP-98).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record, including those of open and aborted transactions (Kafka's default).
    #[default]
    ReadUncommitted,
    /// Records of committed transactions and non-transactional records only, up to the last
    /// stable offset; aborted transactions' records are dropped using the aborted-transactions
    /// list of each Fetch response, and lag is measured to the last stable offset.
    ReadCommitted,
}

impl IsolationLevel {
    /// The value Fetch and ListOffsets carry.
    pub(crate) fn wire(self) -> i8 {
        match self {
            Self::ReadUncommitted => 0,
            Self::ReadCommitted => 1,
        }
    }
}

/// Kafka's `security.protocol`: whether connections use TLS, SASL, both or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// Neither (Kafka's default).
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL on a plain connection.
    SaslPlaintext,
    /// SASL on TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// The protocol of a name, in any case (Java accepts any case too).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Plaintext,
            Self::Ssl,
            Self::SaslPlaintext,
            Self::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether connections use TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("bootstrap", &self.bootstrap)
            .field("client_id", &self.client_id)
            .field("request_timeout", &self.request_timeout)
            .field("rack", &self.rack)
            .field("sasl", &self.sasl)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults for a bootstrap address list (`host:port,host:port`).
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            client_id: "cohort".into(),
            request_timeout: Duration::from_secs(30),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            metadata_max_age: Duration::from_secs(300),
            max_frame_size: cohort_protocol::frame::DEFAULT_MAX_FRAME_SIZE,
            dialer: Arc::new(crate::conn::TcpDialer::default()),
            rack: None,
            sasl: None,
        }
    }

    /// Connections as Kafka's `security.protocol` names them: TLS (through `tls`, or the
    /// platform's roots when `None`) for `SSL` and `SASL_SSL`, SASL (through `sasl`) for
    /// `SASL_PLAINTEXT` and `SASL_SSL`. A setting the protocol would not use is an error rather
    /// than ignored (credentials configured for a plaintext listener are a mistake that would
    /// otherwise show only as a broker closing connections), as is a SASL protocol without
    /// credentials. Wraps the dialer configured so far, like [`ClientConfig::with_tls`].
    pub fn with_security(
        mut self,
        protocol: SecurityProtocol,
        sasl: Option<crate::conn::SaslConfig>,
        tls: Option<&crate::conn::TlsConfig>,
    ) -> Result<Self, crate::Error> {
        let mut problems = Vec::new();
        if sasl.is_some() && !protocol.uses_sasl() {
            problems.push(format!(
                "SASL settings need security.protocol SASL_PLAINTEXT or SASL_SSL, not {protocol}"
            ));
        }
        if sasl.is_none() && protocol.uses_sasl() {
            problems.push(format!(
                "security.protocol {protocol} needs SASL settings (sasl.mechanism and credentials)"
            ));
        }
        if tls.is_some() && !protocol.uses_tls() {
            problems.push(format!(
                "TLS settings need security.protocol SSL or SASL_SSL, not {protocol}"
            ));
        }
        if !problems.is_empty() {
            return Err(crate::Error::Config(problems));
        }
        self.sasl = sasl;
        if protocol.uses_tls() {
            self = self.with_tls(tls.unwrap_or(&crate::conn::TlsConfig::default()))?;
        }
        Ok(self)
    }

    /// TLS on every connection (`security.protocol=SSL`; with [`ClientConfig::sasl`] set,
    /// `SASL_SSL`): wraps the dialer configured so far. Reads the certificate files now, so a
    /// missing or malformed one is an [`crate::Error::Config`] naming it.
    pub fn with_tls(mut self, tls: &crate::conn::TlsConfig) -> Result<Self, crate::Error> {
        self.dialer = Arc::new(crate::conn::TlsDialer::wrap(self.dialer, tls)?);
        Ok(self)
    }

    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        if let Some(s) = &self.sasl {
            s.validate(problems);
        }
        if self.bootstrap.is_empty() {
            problems.push("bootstrap: at least one host:port is required".into());
        }
        for b in &self.bootstrap {
            if b.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                problems.push(format!("bootstrap: {b:?} is not host:port"));
            }
        }
        if self.request_timeout.is_zero() {
            problems.push("request_timeout must be positive".into());
        }
        if self.request_timeout.as_millis() > i32::MAX as u128 {
            problems.push(format!(
                "request_timeout must be at most {} ms, the protocol's int32 bound",
                i32::MAX
            ));
        }
        if self.reconnect_backoff > self.reconnect_backoff_max {
            problems.push("reconnect_backoff must not exceed reconnect_backoff_max".into());
        }
        if self.retry_backoff > self.retry_backoff_max {
            problems.push("retry_backoff must not exceed retry_backoff_max".into());
        }
    }
}

/// The rebalance protocol of a consumer group (Kafka's `group.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup/Heartbeat with client-side balancers; every Kafka-compatible broker
    /// serves it (the default, as in the Java client).
    #[default]
    Classic,
    /// The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat; Apache Kafka 4.0+): the
    /// broker computes the assignment, members reconcile incrementally, no global barrier.
    Consumer,
}

/// The session timeout of [`GroupConfig::new`] (Java's `session.timeout.ms`, and Kafka's
/// `group.consumer.session.timeout.ms` for KIP-848 groups).
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// The heartbeat interval of [`GroupConfig::new`] (Java's `heartbeat.interval.ms`).
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// Consumer-group settings. Made with [`GroupConfig::new`], then adjusted field by field (new
/// fields can come without breaking callers).
#[non_exhaustive]
pub struct GroupConfig {
    /// Client settings.
    pub client: ClientConfig,
    /// `group.id`.
    pub group_id: String,
    /// What to consume.
    pub subscription: Subscription,
    /// `group.protocol`: classic (default) or the KIP-848 consumer protocol. With
    /// [`GroupProtocol::Consumer`] the broker decides the session timeout, the heartbeat
    /// interval and the assignment: setting `session_timeout`, `heartbeat_interval` or
    /// `balancers` away from their defaults is an error, as in the Java client.
    pub group_protocol: GroupProtocol,
    /// `group.remote.assignor`: the broker-side assignor a [`GroupProtocol::Consumer`] member
    /// asks for (`uniform`, `range`); `None` for the broker's default.
    pub group_remote_assignor: Option<String>,
    /// Balancers in priority order; the coordinator picks the first all members support
    /// (classic protocol only).
    pub balancers: Vec<Box<dyn Balancer>>,
    /// `group.instance.id` for static membership (KIP-345).
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms` (45 s).
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` (3 s).
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms` (5 min) doubles as the rebalance timeout sent in JoinGroup, as in
    /// the Java client: how long the group waits for members to rejoin.
    pub rebalance_timeout: Duration,
    /// Bound on the time between two calls into the consumer (`max.poll.interval.ms`): past it,
    /// the member is considered stalled, leaves the group (dynamic members) and reports it.
    /// Calls are counted a few times a second (every 200 ms, or a quarter of this bound if
    /// shorter), so a stall is reported up to that much after the bound.
    pub max_poll_interval: Duration,
    /// Where partitions without a commit start.
    pub offset_reset: OffsetReset,
    /// Commit automatically on this interval (and on revocation); `None` for manual commits.
    pub auto_commit_interval: Option<Duration>,
    /// Also commit on revocation when auto-commit is off.
    pub commit_on_revoke: bool,
    /// Send LeaveGroup on close (dynamic members only; static members never leave, KIP-345).
    pub leave_on_close: bool,
    /// Pause before the follow-up JoinGroup of a cooperative rebalance (KIP-429's second
    /// round). Zero (the default) rejoins at once, as the Java client does. Brokers that answer
    /// a follower's SyncGroup late can strand the followers' assignments when the leader
    /// rejoins at once: Tansu checks pending SyncGroups once a second, so against it a delay
    /// of about a second makes cooperative rebalances converge in two rounds instead of four or
    /// more (measured in `docs/BENCHMARKS.md`).
    pub cooperative_rejoin_delay: Duration,
    /// How often the leader checks partition counts of subscribed topics.
    pub partition_watch_interval: Duration,
    /// Fetch: bytes per partition per request (`max.partition.fetch.bytes`, 1 MiB).
    pub max_partition_fetch_bytes: u32,
    /// Fetch: bytes per request (`fetch.max.bytes`, 50 MiB).
    pub fetch_max_bytes: u32,
    /// Fetch: how long the broker may wait for data (`fetch.max.wait.ms`, 500 ms).
    pub fetch_max_wait: Duration,
    /// Records buffered per partition (backpressure): a partition is fetched again once its
    /// buffer is down to half of this, and a fetch never decodes more of its records than the
    /// buffer has room for.
    pub max_buffered_records: usize,
    /// Decompressed bytes one Fetch response may expand to (128 MiB). Cohort's own bound, with
    /// no Java equivalent: Java decompresses batch by batch as the application reads, Cohort
    /// ahead of it, and a few kilobytes of zstd can claim hundreds of megabytes. Batches past
    /// the bound are fetched again later; a single batch larger than it is reported as an
    /// error on its partition.
    pub fetch_max_decompressed_bytes: usize,
    /// Skip records older than this when starting or resuming (optional maximum message age).
    pub max_record_age: Option<Duration>,
    /// `isolation.level`: whether records of open and aborted transactions are delivered
    /// (`read_uncommitted`, Kafka's default) or only those of committed ones, up to the last
    /// stable offset (`read_committed`).
    pub isolation_level: IsolationLevel,
    /// Seed of the member's retry jitter (KIP-580). `None` (the default) draws one per
    /// consumer; a test or a chaos scenario sets it so that a seed replays the retry timing too.
    pub jitter_seed: Option<u64>,
}

impl fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupConfig")
            .field("client", &self.client)
            .field("group_id", &self.group_id)
            .field("subscription", &self.subscription)
            .field(
                "balancers",
                &self
                    .balancers
                    .iter()
                    .map(|b| b.protocol_name())
                    .collect::<Vec<_>>(),
            )
            .field("group_instance_id", &self.group_instance_id)
            .field("session_timeout", &self.session_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("rebalance_timeout", &self.rebalance_timeout)
            .finish_non_exhaustive()
    }
}

impl GroupConfig {
    /// Defaults (Java client's) for a group consuming `topics`.
    pub fn new(bootstrap: &str, group_id: &str, topics: &[&str]) -> Self {
        Self {
            client: ClientConfig::new(bootstrap),
            group_id: group_id.into(),
            subscription: Subscription::Topics(topics.iter().map(|t| (*t).to_owned()).collect()),
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
            balancers: vec![
                Box::new(cohort_balancers::Range),
                Box::new(cohort_balancers::CooperativeSticky),
            ],
            group_instance_id: None,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            rebalance_timeout: Duration::from_secs(300),
            max_poll_interval: Duration::from_secs(300),
            offset_reset: OffsetReset::Latest,
            auto_commit_interval: Some(Duration::from_secs(5)),
            commit_on_revoke: true,
            leave_on_close: true,
            cooperative_rejoin_delay: Duration::ZERO,
            partition_watch_interval: Duration::from_secs(5),
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_max_bytes: 50 * 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            max_buffered_records: 10_000,
            fetch_max_decompressed_bytes: 128 * 1024 * 1024,
            max_record_age: None,
            isolation_level: IsolationLevel::ReadUncommitted,
            jitter_seed: None,
        }
    }

    /// Checks the configuration, reporting every problem at once (like kafka-go's `Validate`).
    pub fn validate(&self) -> Result<(), Error> {
        let mut p = Vec::new();
        self.client.validate(&mut p);
        if self.group_id.is_empty() {
            p.push("group_id must not be empty".into());
        }
        match &self.subscription {
            Subscription::Topics(ts) if ts.is_empty() => p.push("subscription: no topics".into()),
            Subscription::Topics(ts) => {
                for t in ts {
                    if t.is_empty()
                        || t.len() > 249
                        || !t
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    {
                        p.push(format!("subscription: {t:?} is not a legal topic name"));
                    }
                }
            }
            Subscription::Pattern(_) => {}
        }
        if self.balancers.is_empty() {
            p.push("balancers: at least one is required".into());
        }
        let mut names: Vec<&str> = self.balancers.iter().map(|b| b.protocol_name()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            p.push("balancers: the same protocol is listed twice".into());
        }
        if self.heartbeat_interval.is_zero() {
            p.push("heartbeat_interval must be positive".into());
        }
        if self.heartbeat_interval >= self.session_timeout {
            p.push(format!(
                "heartbeat_interval ({:?}) must be lower than session_timeout ({:?}); a third of it is usual",
                self.heartbeat_interval, self.session_timeout
            ));
        }
        if self.session_timeout < Duration::from_millis(1)
            || self.session_timeout > Duration::from_secs(3600)
        {
            p.push(
                "session_timeout must be between 1 ms and 1 h (brokers narrow it further)".into(),
            );
        }
        // A rebalance timeout below the session timeout is allowed, as in Java (where it is
        // `max.poll.interval.ms`, unchecked against `session.timeout.ms`): the coordinator then
        // removes a member that stops rejoining before its session would expire.
        if self.max_poll_interval.is_zero() {
            p.push("max_poll_interval must be positive".into());
        }
        // Kafka's JoinGroup and Fetch carry these as int32 milliseconds.
        for (name, d) in [
            ("rebalance_timeout", self.rebalance_timeout),
            ("max_poll_interval", self.max_poll_interval),
            ("fetch_max_wait", self.fetch_max_wait),
        ] {
            if d.as_millis() > i32::MAX as u128 {
                p.push(format!(
                    "{name} ({d:?}) must be at most {} ms, the protocol's int32 bound",
                    i32::MAX
                ));
            }
        }
        if let Some(i) = &self.group_instance_id
            && i.is_empty()
        {
            p.push("group_instance_id must not be empty when set".into());
        }
        if self.auto_commit_interval.is_some_and(|d| d.is_zero()) {
            p.push("auto_commit_interval must be positive when set".into());
        }
        // Fetch carries both as int32.
        for (name, n) in [
            ("max_partition_fetch_bytes", self.max_partition_fetch_bytes),
            ("fetch_max_bytes", self.fetch_max_bytes),
        ] {
            if n == 0 || n > i32::MAX as u32 {
                p.push(format!(
                    "{name} ({n}) must be between 1 and {}, the protocol's int32 bound",
                    i32::MAX
                ));
            }
        }
        if self.max_buffered_records == 0 {
            p.push("max_buffered_records must be positive".into());
        }
        if self.fetch_max_decompressed_bytes == 0 {
            p.push("fetch_max_decompressed_bytes must be positive".into());
        }
        self.validate_protocol(&mut p);
        if p.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(p))
        }
    }

    /// The Java client's rules for `group.protocol` (`ConsumerConfig`,
    /// `GroupRebalanceConfig`): with the consumer protocol the broker owns the session timeout,
    /// the heartbeat interval and the assignment, so setting them is an error; a remote assignor
    /// is for the consumer protocol only.
    fn validate_protocol(&self, p: &mut Vec<String>) {
        match self.group_protocol {
            GroupProtocol::Consumer => {
                let moved = "is set by the broker with group.protocol=consumer (KIP-848); leave it at its default";
                if self.session_timeout != DEFAULT_SESSION_TIMEOUT {
                    p.push(format!(
                        "session_timeout {moved} (the broker's group.consumer.session.timeout.ms)"
                    ));
                }
                if self.heartbeat_interval != DEFAULT_HEARTBEAT_INTERVAL {
                    p.push(format!(
                        "heartbeat_interval {moved} (the broker's group.consumer.heartbeat.interval.ms)"
                    ));
                }
                let names: Vec<&str> = self.balancers.iter().map(|b| b.protocol_name()).collect();
                if names != ["range", "cooperative-sticky"] {
                    p.push(format!(
                        "balancers {moved}: the broker assigns (choose its assignor with group_remote_assignor)"
                    ));
                }
                if let Some(a) = &self.group_remote_assignor
                    && a.is_empty()
                {
                    p.push("group_remote_assignor must not be empty when set".into());
                }
            }
            GroupProtocol::Classic => {
                if self.group_remote_assignor.is_some() {
                    p.push(
                        "group_remote_assignor applies to group.protocol=consumer only; the classic protocol uses balancers".into(),
                    );
                }
            }
        }
    }

    /// Whether this member runs the cooperative protocol (every balancer supports it: Java's rule).
    pub fn cooperative(&self) -> bool {
        cohort_balancers::runs_cooperative(&self.balancers)
    }
}

/// A duration as the int32 milliseconds Kafka's requests carry, saturating at `i32::MAX`
/// (validation refuses larger settings; this keeps a member built without validation from
/// sending a negative timeout).
pub(crate) fn millis_i32(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timeouts Kafka carries as int32 milliseconds are refused past that bound instead of
    /// going out negative (3e9 ms used to be sent as -1294967296).
    #[test]
    fn timeouts_past_the_int32_bound_are_refused() {
        let ok = GroupConfig::new("127.0.0.1:9092", "g", &["t"]);
        assert!(ok.validate().is_ok());
        for set in [
            |c: &mut GroupConfig| c.rebalance_timeout = Duration::from_millis(3_000_000_000),
            |c: &mut GroupConfig| c.max_poll_interval = Duration::from_millis(3_000_000_000),
            |c: &mut GroupConfig| c.fetch_max_wait = Duration::from_millis(3_000_000_000),
            |c: &mut GroupConfig| c.client.request_timeout = Duration::from_millis(3_000_000_000),
        ] {
            let mut c = GroupConfig::new("127.0.0.1:9092", "g", &["t"]);
            set(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("int32 bound"), "{e}");
        }
        assert_eq!(millis_i32(Duration::from_millis(3_000_000_000)), i32::MAX);
        assert_eq!(millis_i32(Duration::from_millis(1500)), 1500);
    }

    #[test]
    fn security_settings_must_match_the_protocol() {
        use crate::conn::{SaslConfig, SaslMechanism, TlsConfig};
        let sasl = || Some(SaslConfig::new(SaslMechanism::Plain, "u", "p"));
        let tls = TlsConfig::default();
        let cfg = || ClientConfig::new("127.0.0.1:9092");
        for name in ["plaintext", "SSL", "Sasl_Plaintext", "SASL_SSL"] {
            let p = SecurityProtocol::parse(name).unwrap();
            assert!(p.name().eq_ignore_ascii_case(name));
        }
        assert_eq!(SecurityProtocol::parse("TLS"), None);
        assert!(
            cfg()
                .with_security(SecurityProtocol::Plaintext, None, None)
                .is_ok()
        );
        let c = cfg()
            .with_security(SecurityProtocol::SaslPlaintext, sasl(), None)
            .unwrap();
        assert!(c.sasl.is_some());
        assert!(
            cfg()
                .with_security(SecurityProtocol::SaslSsl, sasl(), Some(&tls))
                .is_ok()
        );
        assert!(
            cfg()
                .with_security(SecurityProtocol::Ssl, None, None)
                .is_ok()
        );
        for (p, s, t, why) in [
            (
                SecurityProtocol::Plaintext,
                sasl(),
                None,
                "SASL settings need",
            ),
            (SecurityProtocol::Ssl, sasl(), None, "SASL settings need"),
            (SecurityProtocol::SaslSsl, None, None, "needs SASL settings"),
            (
                SecurityProtocol::Plaintext,
                None,
                Some(&tls),
                "TLS settings need",
            ),
            (
                SecurityProtocol::SaslPlaintext,
                sasl(),
                Some(&tls),
                "TLS settings need",
            ),
        ] {
            let e = cfg().with_security(p, s, t).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
