//! A fresh, running Kafka-compatible broker for a test, and its bootstrap address.
//!
//! ```no_run
//! let broker = cohort_testbroker::TestBroker::start().expect("broker");
//! println!("bootstrap: {}", broker.bootstrap());
//! // ... run the test against broker.bootstrap() ...
//! drop(broker); // stops the broker (kills the process or removes the container)
//! ```
//!
//! The broker is **Tansu** (Apache-2.0, github.com/tansu-io/tansu), a Kafka-compatible broker
//! written in Rust, installed by `harness/scripts/install-tansu.sh` into a cache folder (pinned
//! version and SHA-256; the script is embedded here, so any binary of the project can install
//! it). Three backends:
//!
//! | backend | when | how |
//! |---|---|---|
//! | [`Backend::External`] | `COHORT_BOOTSTRAP=host:port` is set | nothing is started; the address is used as is |
//! | [`Backend::Container`] | a Docker engine answers (or `COHORT_BROKER=container`) | testcontainers-rs runs an image built locally `FROM scratch` with the static binary, or `COHORT_BROKER_IMAGE` (for instance `apache/kafka:4.0.0` where a registry can be reached) |
//! | [`Backend::Process`] | no Docker engine (or `COHORT_BROKER=process`) | a child process on a free loopback port |
//!
//! Kafka's advertised-listener rule: clients reconnect to the address a broker advertises in
//! Metadata and FindCoordinator, so the container advertises `127.0.0.1:<host port>` with the host
//! port chosen before the container starts and mapped to the broker's port.
//!
//! Startup waits until the broker answers an ApiVersions request (timeout 60 s by default) and
//! fails with an error that names the backend, the address and the broker's last log lines.

mod container;
mod install;
mod probe;
mod process;

use std::fmt;
use std::net::TcpListener;
use std::time::Duration;

pub use crate::install::{TANSU_VERSION, install_tansu};
pub use crate::probe::probe_api_versions;

/// Which kind of broker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A Testcontainers container.
    Container,
    /// A child process.
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
    /// The Tansu binary could not be installed.
    #[error("installing the Tansu broker failed: {0}")]
    Install(String),
    /// The broker did not start or did not answer in time.
    #[error(
        "{backend} broker at {addr} did not become ready: {reason}\n--- broker log (tail) ---\n{log}"
    )]
    NotReady {
        /// Backend tried.
        backend: Backend,
        /// Address probed.
        addr: String,
        /// What failed.
        reason: String,
        /// Last lines the broker printed.
        log: String,
    },
    /// Docker or testcontainers failed.
    #[error("container backend: {0}")]
    Container(String),
    /// Starting, signalling or stopping the child process failed.
    #[error("process backend: {0}")]
    Process(String),
    /// The operation makes no sense for this backend.
    #[error("{operation} is not supported by the {backend} backend")]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// The backend.
        backend: Backend,
    },
    /// A configuration value (environment variable) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// How to start a broker. `Default` reads the environment (see the crate docs).
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Backend to use; `None` picks one from the environment.
    pub backend: Option<Backend>,
    /// Container image to run instead of the locally built Tansu image.
    pub image: Option<String>,
    /// Bootstrap address of an external cluster.
    pub bootstrap: Option<String>,
    /// How long to wait for the broker to answer.
    pub startup_timeout: Duration,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            backend: None,
            image: None,
            bootstrap: None,
            startup_timeout: Duration::from_secs(60),
        }
    }
}

impl BrokerOptions {
    /// Options from `COHORT_BOOTSTRAP`, `COHORT_BROKER` and `COHORT_BROKER_IMAGE`.
    pub fn from_env() -> Result<Self, BrokerError> {
        let mut o = Self::default();
        if let Ok(b) = std::env::var("COHORT_BOOTSTRAP")
            && !b.trim().is_empty()
        {
            o.bootstrap = Some(b.trim().to_owned());
            o.backend = Some(Backend::External);
        }
        if let Ok(b) = std::env::var("COHORT_BROKER") {
            o.backend = Some(match b.trim() {
                "container" | "docker" | "testcontainers" => Backend::Container,
                "process" => Backend::Process,
                "external" => Backend::External,
                "" | "auto" => o.backend.unwrap_or_else(auto_backend),
                other => {
                    return Err(BrokerError::Config(format!(
                        "COHORT_BROKER={other}: expected container, process, external or auto"
                    )));
                }
            });
        }
        if let Ok(i) = std::env::var("COHORT_BROKER_IMAGE")
            && !i.trim().is_empty()
        {
            o.image = Some(i.trim().to_owned());
        }
        Ok(o)
    }

    /// Forces a backend.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }
}

/// Container when a Docker engine answers on its socket, else process.
pub fn auto_backend() -> Backend {
    if container::docker_available() {
        Backend::Container
    } else {
        Backend::Process
    }
}

enum Inner {
    Process(process::ProcessBroker),
    Container(container::ContainerBroker),
    External,
}

/// A running broker; dropping it stops the broker (except an external one).
pub struct TestBroker {
    inner: Inner,
    bootstrap: String,
    backend: Backend,
    description: String,
}

impl fmt::Debug for TestBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestBroker")
            .field("backend", &self.backend)
            .field("bootstrap", &self.bootstrap)
            .field("description", &self.description)
            .finish()
    }
}

impl TestBroker {
    /// Starts a broker as the environment says (see the crate docs).
    pub fn start() -> Result<Self, BrokerError> {
        Self::start_with(BrokerOptions::from_env()?)
    }

    /// Starts a broker with explicit options.
    pub fn start_with(opts: BrokerOptions) -> Result<Self, BrokerError> {
        let backend = match (opts.backend, &opts.bootstrap) {
            (Some(b), _) => b,
            (None, Some(_)) => Backend::External,
            (None, None) => auto_backend(),
        };
        let broker = match backend {
            Backend::External => {
                let addr = opts.bootstrap.clone().ok_or_else(|| {
                    BrokerError::Config(
                        "the external backend needs COHORT_BOOTSTRAP=host:port".into(),
                    )
                })?;
                let first = addr.split(',').next().unwrap_or(&addr).trim().to_owned();
                probe::wait_ready(&first, opts.startup_timeout).map_err(|reason| {
                    BrokerError::NotReady {
                        backend,
                        addr: first.clone(),
                        reason,
                        log: String::from("(external broker: no log)"),
                    }
                })?;
                TestBroker {
                    inner: Inner::External,
                    bootstrap: addr.clone(),
                    backend,
                    description: format!("external cluster at {addr}"),
                }
            }
            Backend::Process => {
                let p = process::ProcessBroker::start(opts.startup_timeout)?;
                TestBroker {
                    bootstrap: p.addr(),
                    description: format!("Tansu {TANSU_VERSION} process (pid {})", p.pid()),
                    inner: Inner::Process(p),
                    backend,
                }
            }
            Backend::Container => {
                let c =
                    container::ContainerBroker::start(opts.image.as_deref(), opts.startup_timeout)?;
                TestBroker {
                    bootstrap: c.addr(),
                    description: c.description(),
                    inner: Inner::Container(c),
                    backend,
                }
            }
        };
        eprintln!(
            "cohort-testbroker: {} broker ready at {} ({})",
            broker.backend, broker.bootstrap, broker.description
        );
        Ok(broker)
    }

    /// The bootstrap address, `host:port` (comma-separated for an external cluster).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The backend that runs the broker.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What runs, for logs and reports.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether this is the embedded Tansu broker (whose departures from Apache Kafka are known).
    pub fn is_tansu(&self) -> bool {
        match &self.inner {
            Inner::Process(_) => true,
            Inner::Container(c) => c.is_tansu(),
            Inner::External => false,
        }
    }

    /// Freezes the broker: SIGSTOP for a process, `docker pause` for a container. Connections stay
    /// open and requests go unanswered, as with a broker stuck in a long GC pause.
    pub fn pause(&self) -> Result<(), BrokerError> {
        match &self.inner {
            Inner::Process(p) => p.signal("STOP"),
            Inner::Container(c) => c.pause(),
            Inner::External => Err(BrokerError::Unsupported {
                operation: "pause",
                backend: self.backend,
            }),
        }
    }

    /// Resumes a paused broker.
    pub fn resume(&self) -> Result<(), BrokerError> {
        match &self.inner {
            Inner::Process(p) => p.signal("CONT"),
            Inner::Container(c) => c.unpause(),
            Inner::External => Err(BrokerError::Unsupported {
                operation: "resume",
                backend: self.backend,
            }),
        }
    }

    /// Stops the broker and starts it again at the same address. The embedded Tansu keeps its
    /// data in memory, so topics and committed offsets are gone afterwards (see
    /// [`TestBroker::is_volatile`]).
    pub fn restart(&self) -> Result<(), BrokerError> {
        let timeout = Duration::from_secs(60);
        match &self.inner {
            Inner::Process(p) => p.restart(timeout),
            Inner::Container(c) => c.restart(timeout),
            Inner::External => Err(BrokerError::Unsupported {
                operation: "restart",
                backend: self.backend,
            }),
        }
    }

    /// Whether a restart loses the broker's data (Tansu with `memory://` storage).
    pub fn is_volatile(&self) -> bool {
        self.is_tansu()
    }

    /// The last lines the broker printed (empty for external brokers).
    pub fn log_tail(&self) -> String {
        match &self.inner {
            Inner::Process(p) => p.log_tail(),
            Inner::Container(c) => c.log_tail(),
            Inner::External => String::new(),
        }
    }
}

/// A free TCP port on the loopback interface (the port is released before it is returned, so
/// another process may take it; callers retry on a bind failure).
pub fn free_port() -> Result<u16, std::io::Error> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
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
