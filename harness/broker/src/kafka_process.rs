//! The Apache Kafka process backend: one node or a cluster of nodes, each a JVM running
//! `kafka.Kafka` in KRaft mode on free loopback ports.
//!
//! Every node is a combined broker and controller (`process.roles=broker,controller`), and all of
//! them are voters of one static quorum (`controller.quorum.voters`). For three nodes that is the
//! smallest cluster in which any one node can be killed, paused or restarted while the others keep
//! both a controller majority and the group coordinator's replicas (the internal topics are
//! replicated to all nodes), with three JVMs instead of the six a separate controller quorum
//! would need on a 2-core machine. With `BrokerOptions::controllers`, only the first nodes are
//! controllers and the others brokers only (`process.roles=broker`): a test of unclean leader
//! election stops every replica but one, which a quorum of all nodes would not survive.
//!
//! Settings differ from Kafka's defaults only where a test needs it; each one is commented in
//! [`server_properties`]. A node keeps its folder (`server.properties`, `data/`, `broker.log`)
//! across stop and restart, so its data survives; the folder is removed when the cluster is
//! dropped, or by the watchdog when the test process ends first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::install::{KafkaInstall, install_kafka};
use crate::probe::{self, Readiness};
use crate::{Backend, BrokerError, SaslListener, TlsListener, free_port, watchdog};

/// How long a node may take to shut down after SIGTERM before it is killed.
const STOP_BOUND: Duration = Duration::from_secs(15);

/// One node's process: the JVM and its watchdog.
struct Running {
    jvm: Child,
    watchdog: Option<Child>,
}

pub(crate) struct KafkaNode {
    id: i32,
    /// The address clients reach the node at (its PLAINTEXT listener, advertised as is).
    host: String,
    port: u16,
    /// The ports of its SASL_PLAINTEXT, SSL and SASL_SSL listeners, where the cluster has
    /// them.
    sasl_port: Option<u16>,
    ssl_port: Option<u16>,
    sasl_ssl_port: Option<u16>,
    dir: PathBuf,
    /// [`crate::BrokerOptions::request_log`].
    request_log: bool,
    proc: Mutex<Option<Running>>,
}

pub(crate) struct KafkaCluster {
    install: KafkaInstall,
    sasl: Option<SaslListener>,
    root: PathBuf,
    nodes: Vec<KafkaNode>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A KRaft cluster id: 16 random bytes in unpadded base64url, as `kafka-storage random-uuid`
/// prints them. The bytes need not be strong randomness, only unique per cluster.
fn cluster_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        chunk.copy_from_slice(&h.finish().to_be_bytes());
    }
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    // An id that starts with '-' reads as an option to `kafka-storage format` (Kafka's own
    // `Uuid.randomUuid` draws again in that case, and never returns one).
    if out.starts_with('-') {
        out.replace_range(..1, "A");
    }
    out
}

/// The node's ports for the listeners beside PLAINTEXT and CONTROLLER.
#[derive(Clone, Copy)]
struct Extra<'a> {
    sasl: Option<(u16, &'a SaslListener)>,
    tls: Option<(u16, &'a TlsListener)>,
    /// SASL_SSL, when the cluster has both.
    sasl_ssl: Option<u16>,
    /// `broker.rack=rack-<node id>` (KIP-36), for rack-aware assignment tests.
    racks: bool,
    /// Whether the node is a controller (a voter of the metadata quorum) as well as a broker.
    voter: bool,
}

/// The node's configuration. Everything not written here is Apache Kafka's default, so that
/// what the tests exercise is what users get.
#[allow(
    clippy::too_many_arguments,
    reason = "one node's settings, written once"
)]
fn server_properties(
    id: i32,
    host: &str,
    port: u16,
    cport: u16,
    extra: Extra<'_>,
    voters: &str,
    nodes: usize,
    data: &Path,
) -> String {
    let rf = nodes.min(3);
    // A broker-only node has no controller listener but must know the controllers' (voters).
    let (roles, controller_listener) = if extra.voter {
        (
            "broker,controller",
            format!(",CONTROLLER://127.0.0.1:{cport}"),
        )
    } else {
        ("broker", String::new())
    };
    let rack = if extra.racks {
        format!("broker.rack=rack-{id}\n")
    } else {
        String::new()
    };
    let mut extra_listener = String::new();
    let mut extra_map = String::new();
    let mut sasl_props = String::new();
    let jaas = |listener: &str, l: &SaslListener| {
        let plain_users: String = l
            .users
            .iter()
            .map(|(u, p)| format!(" user_{u}=\"{p}\""))
            .collect();
        format!(
            "listener.name.{listener}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};
listener.name.{listener}.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.{listener}.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
"
        )
    };
    let keystore = |listener: &str, t: &TlsListener| -> String {
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        let c = &t.certs;
        let chain = crate::certs::pem_property(&read(&c.server_cert));
        let key = crate::certs::pem_property(&read(&c.server_key));
        let ca = crate::certs::pem_property(&read(&c.ca));
        format!(
            "listener.name.{listener}.ssl.keystore.type=PEM
listener.name.{listener}.ssl.keystore.certificate.chain={chain}
listener.name.{listener}.ssl.keystore.key={key}
listener.name.{listener}.ssl.truststore.type=PEM
listener.name.{listener}.ssl.truststore.certificates={ca}
"
        )
    };
    if let Some((sport, l)) = extra.sasl {
        extra_listener.push_str(&format!(",SASL_PLAINTEXT://{host}:{sport}"));
        extra_map.push_str(",SASL_PLAINTEXT:SASL_PLAINTEXT");
        sasl_props.push_str(
            "
# A SASL_PLAINTEXT listener for the authentication tests: PLAIN users in JAAS, SCRAM users
# created at format time (kafka-storage format --add-scram, KIP-900).
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
",
        );
        sasl_props.push_str(&jaas("sasl_plaintext", l));
        if let Some(ms) = l.max_reauth_ms {
            sasl_props.push_str(&format!(
                "# Sessions end this soon, so clients must re-authenticate (KIP-368).\nconnections.max.reauth.ms={ms}\n"
            ));
        }
    }
    if let Some((tport, t)) = extra.tls {
        extra_listener.push_str(&format!(",SSL://{host}:{tport}"));
        extra_map.push_str(",SSL:SSL");
        sasl_props
            .push_str("\n# An SSL listener with the test PKI (harness/broker/src/certs.rs).\n");
        sasl_props.push_str(&keystore("ssl", t));
        sasl_props.push_str(&format!(
            "listener.name.ssl.ssl.client.auth={}\n",
            if t.client_auth { "required" } else { "none" }
        ));
        if let (Some(p), Some((_, l))) = (extra.sasl_ssl, extra.sasl) {
            extra_listener.push_str(&format!(",SASL_SSL://{host}:{p}"));
            extra_map.push_str(",SASL_SSL:SASL_SSL");
            sasl_props.push_str(&keystore("sasl_ssl", t));
            sasl_props.push_str(&jaas("sasl_ssl", l));
        }
    }
    format!(
        "\
# Written by cohort-testbroker for a test cluster of {nodes} node(s).
process.roles={roles}
node.id={id}
{rack}controller.quorum.voters={voters}
listeners=PLAINTEXT://{host}:{port}{controller_listener}{extra_listener}
advertised.listeners=PLAINTEXT://{host}:{port}{extra_listener}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{extra_map}
log.dirs={data}
{sasl_props}
# The internal topics are replicated to every node (at most 3), so that the group coordinator
# and the transaction log survive the loss of one node; Kafka's default of 3 cannot be met by
# fewer nodes.
offsets.topic.replication.factor={rf}
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr=1

# A new group's first rebalance waits this long for more members (3 s by default); tests start
# their members together and would pay it in every group.
group.initial.rebalance.delay.ms=0

# Tests and scenarios use session timeouts down to 1 s to keep crash detection short; Kafka's
# minimum of 6 s would refuse them with INVALID_SESSION_TIMEOUT. Members that ask for nothing
# still get the client's default (45 s in Java), so this changes no default behaviour.
group.min.session.timeout.ms=1000

# Consumer-protocol groups (KIP-848): the broker sets their heartbeat interval (5 s by default)
# and a member learns of a new target assignment only with its next heartbeat, so every test
# would wait up to that long per step. 500 ms, the heartbeat interval the tests and benchmarks
# give classic members, keeps them quick and the two protocols comparable; the session timeout
# stays Kafka's (45 s), which members of that protocol assume.
group.consumer.heartbeat.interval.ms=500
group.consumer.min.heartbeat.interval.ms=500
# The broker resolves a consumer-protocol member's regular expression again at most this often
# (10 min by default; 10 s is the least it takes): a test creating a matching topic would wait
# that long for it.
group.consumer.regex.refresh.interval.ms=10000
",
        data = data.display()
    )
}

/// The brokers' logging configuration (`harness/kafka/log4j2.properties`, shared with the
/// container image): warnings, the broker's lifecycle and the group coordinator's decisions.
pub(crate) const LOG4J2: &str = include_str!("../../kafka/log4j2.properties");

fn io_err(what: &str, path: &Path, e: std::io::Error) -> BrokerError {
    BrokerError::Process(format!("{what} {}: {e}", path.display()))
}

impl KafkaNode {
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    fn log_tail(&self) -> String {
        crate::tansu_process::tail(&self.log(), 40)
    }

    fn jvm_command(&self, install: &KafkaInstall) -> Command {
        let mut cmd = Command::new(&install.java);
        // A small heap and the serial collector: on a 2-core machine shared with the tests, G1's
        // concurrent threads (Kafka's default) compete with the clients under test, and a test
        // broker's young generation is small enough for short stop-the-world pauses.
        cmd.args([
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseSerialGC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
        ]);
        if self.request_log {
            // Read by `log4j2.properties`: the request logger's level.
            cmd.env("COHORT_BROKER_REQUEST_LOG", "debug");
        }
        if let Ok(extra) = std::env::var("COHORT_KAFKA_JVM_OPTS") {
            cmd.args(extra.split_whitespace());
        }
        cmd.arg(format!(
            "-Dlog4j2.configurationFile={}",
            self.dir.join("log4j2.properties").display()
        ))
        .arg(format!(
            "-Dkafka.logs.dir={}",
            self.dir.join("logs").display()
        ))
        .arg("-cp")
        .arg(install.libs.join("*"));
        cmd
    }

    fn format(
        &self,
        install: &KafkaInstall,
        cluster_id: &str,
        sasl: Option<&SaslListener>,
    ) -> Result<(), BrokerError> {
        let mut cmd = self.jvm_command(install);
        cmd.args(["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c"])
            .arg(self.dir.join("server.properties"));
        // SCRAM credentials live in the metadata log; format writes them in (KIP-900).
        for (u, p) in sasl.iter().flat_map(|l| &l.users) {
            for m in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                cmd.args(["--add-scram", &format!("{m}=[name={u},password={p}]")]);
            }
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io_err("running", &install.java, e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(BrokerError::Process(format!(
                "formatting node {} failed ({}): {}{}",
                self.id,
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    fn spawn(&self, install: &KafkaInstall, root: &Path) -> Result<(), BrokerError> {
        let log = self.log();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| io_err("opening", &log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| BrokerError::Process(e.to_string()))?;
        let jvm = self
            .jvm_command(install)
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| io_err("spawning", &install.java, e))?;
        let watchdog = watchdog::watch(jvm.id(), Some(root));
        *lock(&self.proc) = Some(Running { jvm, watchdog });
        Ok(())
    }

    /// `Some(why)` once the JVM has exited (or was never started).
    fn gone(&self) -> Option<String> {
        let mut p = lock(&self.proc);
        match p.as_mut() {
            None => Some(format!("node {} is stopped", self.id)),
            Some(r) => match r.jvm.try_wait() {
                Ok(Some(status)) => Some(format!("node {} exited ({status})", self.id)),
                _ => None,
            },
        }
    }

    /// Ready only counts when this node's JVM holds the listener: a JVM that could not bind its
    /// port exits, and another broker answering there would otherwise pass for it.
    fn check_owns_port(&self) -> Result<(), String> {
        match self.pid() {
            Some(pid) if probe::owns_listener(pid, self.port) == Some(false) => Err(format!(
                "port {} answers, but not from node {}'s process {pid}",
                self.port, self.id
            )),
            _ => Ok(()),
        }
    }

    fn pid(&self) -> Option<u32> {
        lock(&self.proc).as_ref().map(|r| r.jvm.id())
    }

    fn signal(&self, sig: &str) -> Result<(), BrokerError> {
        let pid = self
            .pid()
            .ok_or_else(|| BrokerError::Process(format!("node {} is not running", self.id)))?;
        crate::tansu_process::kill(pid, sig)
    }

    /// SIGTERM (after SIGCONT, for a paused node), then SIGKILL once `bound` has passed.
    fn stop(&self, bound: Duration) {
        let Some(mut r) = lock(&self.proc).take() else {
            return;
        };
        let pid = r.jvm.id();
        let _ = crate::tansu_process::kill(pid, "CONT");
        let _ = crate::tansu_process::kill(pid, "TERM");
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = r.jvm.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = r.jvm.kill();
        let _ = r.jvm.wait();
        watchdog::dismiss(r.watchdog);
    }

    /// SIGKILL: the node dies as in a crash (its data, flushed or in the page cache, stays).
    fn kill(&self) {
        if let Some(mut r) = lock(&self.proc).take() {
            let _ = r.jvm.kill();
            let _ = r.jvm.wait();
            watchdog::dismiss(r.watchdog);
        }
    }
}

/// Sends `f` to every node on its own thread and collects the results in node order.
fn each<T: Send>(
    nodes: &[KafkaNode],
    f: impl Fn(&KafkaNode) -> Result<T, BrokerError> + Sync,
) -> Result<Vec<T>, BrokerError> {
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes.iter().map(|n| s.spawn(|| f(n))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BrokerError::Process("node thread panicked".into())))
            })
            .collect()
    })
}

impl KafkaCluster {
    /// Starts `n` nodes and waits until every node lists all of them in Metadata and a group
    /// coordinator is available.
    #[allow(
        clippy::too_many_arguments,
        reason = "the cluster's settings, passed on from BrokerOptions once"
    )]
    pub(crate) fn start(
        n: usize,
        host: &str,
        sasl: Option<&SaslListener>,
        tls: Option<&TlsListener>,
        racks: bool,
        controllers: Option<usize>,
        request_log: bool,
        timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let install = install_kafka()?;
        let mut last = None;
        // Ports picked by `free_port` can be taken by someone else before the JVM binds them;
        // the whole cluster is retried on new ports when a node exits early.
        for _attempt in 0..3 {
            match Self::try_start(
                &install,
                n,
                host,
                sasl,
                tls,
                racks,
                controllers,
                request_log,
                timeout,
            ) {
                Ok(c) => return Ok(c),
                Err((e, retry)) => {
                    last = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| BrokerError::Process("Apache Kafka did not start".into())))
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the cluster's settings, passed on from BrokerOptions once"
    )]
    fn try_start(
        install: &KafkaInstall,
        n: usize,
        host: &str,
        sasl: Option<&SaslListener>,
        tls: Option<&TlsListener>,
        racks: bool,
        controllers: Option<usize>,
        request_log: bool,
        timeout: Duration,
    ) -> Result<Self, (BrokerError, bool)> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let fatal = |e: BrokerError| (e, false);
        let root = std::env::temp_dir().join(format!(
            "cohort-kafka-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let mut ports = Vec::with_capacity(5 * n);
        for _ in 0..5 * n {
            ports.push(
                free_port().map_err(|e| fatal(BrokerError::Process(format!("free port: {e}"))))?,
            );
        }
        let voting = controllers.unwrap_or(n).clamp(1, n);
        let voters = (0..voting)
            .map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let id = i as i32 + 1;
            let dir = root.join(format!("node-{id}"));
            std::fs::create_dir_all(&dir).map_err(|e| fatal(io_err("creating", &dir, e)))?;
            let props = server_properties(
                id,
                host,
                ports[2 * i],
                ports[2 * i + 1],
                Extra {
                    sasl: sasl.map(|l| (ports[2 * n + i], l)),
                    tls: tls.map(|t| (ports[3 * n + i], t)),
                    sasl_ssl: (sasl.is_some() && tls.is_some()).then_some(ports[4 * n + i]),
                    racks,
                    voter: i < voting,
                },
                &voters,
                n,
                &dir.join("data"),
            );
            for (name, text) in [
                ("server.properties", props),
                ("log4j2.properties", LOG4J2.to_owned()),
            ] {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(|e| fatal(io_err("writing", &path, e)))?;
            }
            nodes.push(KafkaNode {
                id,
                host: host.to_owned(),
                port: ports[2 * i],
                sasl_port: sasl.map(|_| ports[2 * n + i]),
                ssl_port: tls.map(|_| ports[3 * n + i]),
                sasl_ssl_port: (sasl.is_some() && tls.is_some()).then_some(ports[4 * n + i]),
                dir,
                request_log,
                proc: Mutex::new(None),
            });
        }
        let cluster = KafkaCluster {
            install: install.clone(),
            sasl: sasl.cloned(),
            root,
            nodes,
        };
        let id = cluster_id();
        each(&cluster.nodes, |node| {
            node.format(&cluster.install, &id, cluster.sasl.as_ref())
        })
        .map_err(fatal)?;
        for node in &cluster.nodes {
            node.spawn(&cluster.install, &cluster.root).map_err(fatal)?;
        }
        let all: Vec<i32> = cluster.nodes.iter().map(|n| n.id).collect();
        let ready = each(&cluster.nodes, |node| {
            let want = Readiness {
                brokers: all.clone(),
                coordinator: node.id == 1,
            };
            probe::wait_until(&node.addr(), timeout, &want, || node.gone())
                .and_then(|()| node.check_owns_port())
                .map_err(|reason| cluster.not_ready(node, reason))
        });
        match ready {
            Ok(_) => Ok(cluster),
            Err(e) => {
                // A node that exited (a port taken, most likely) is worth a retry on new ports;
                // one that is merely slow is not.
                let retry = cluster
                    .nodes
                    .iter()
                    .any(|n| n.gone().is_some() || n.check_owns_port().is_err());
                Err((e, retry))
            }
        }
    }

    fn not_ready(&self, node: &KafkaNode, reason: String) -> BrokerError {
        BrokerError::NotReady {
            backend: Backend::Process,
            addr: format!("Apache Kafka node {} at {}", node.id, node.addr()),
            reason,
            log: node.log_tail(),
        }
    }

    /// The addresses of one kind of listener (`SASL_PLAINTEXT`, `SSL`, `SASL_SSL`), if the
    /// cluster has it.
    pub(crate) fn listener_bootstrap(&self, protocol: &str) -> Option<String> {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let port = match protocol {
                    "SASL_PLAINTEXT" => n.sasl_port,
                    "SSL" => n.ssl_port,
                    "SASL_SSL" => n.sasl_ssl_port,
                    "PLAINTEXT" => Some(n.port),
                    _ => None,
                };
                port.map(|p| format!("{}:{p}", n.host))
            })
            .collect();
        (!addrs.is_empty()).then(|| addrs.join(","))
    }

    pub(crate) fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(KafkaNode::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn node(&self, id: i32) -> Result<&KafkaNode, BrokerError> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| BrokerError::Config(format!("no node {id} in this cluster")))
    }

    pub(crate) fn node_addr(&self, id: i32) -> Result<String, BrokerError> {
        Ok(self.node(id)?.addr())
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(KafkaNode::pid).collect()
    }

    pub(crate) fn pause_node(&self, id: i32) -> Result<(), BrokerError> {
        self.node(id)?.signal("STOP")
    }

    pub(crate) fn resume_node(&self, id: i32) -> Result<(), BrokerError> {
        self.node(id)?.signal("CONT")
    }

    pub(crate) fn stop_node(&self, id: i32) -> Result<(), BrokerError> {
        self.node(id)?.stop(STOP_BOUND);
        Ok(())
    }

    pub(crate) fn kill_node(&self, id: i32) -> Result<(), BrokerError> {
        self.node(id)?.kill();
        Ok(())
    }

    /// Starts a stopped node again with its folder (its data and configuration) and waits until
    /// it serves Metadata that lists itself.
    pub(crate) fn start_node(&self, id: i32, timeout: Duration) -> Result<(), BrokerError> {
        let node = self.node(id)?;
        if node.gone().is_none() {
            return Ok(());
        }
        node.kill();
        // The ports were released by the old process; the kernel may take a moment.
        let deadline = Instant::now() + timeout;
        loop {
            node.spawn(&self.install, &self.root)?;
            let want = Readiness {
                brokers: vec![id],
                coordinator: false,
            };
            match probe::wait_until(&node.addr(), timeout, &want, || node.gone())
                .and_then(|()| node.check_owns_port())
            {
                Ok(()) => return Ok(()),
                Err(reason) if node.gone().is_some() && Instant::now() < deadline => {
                    let _ = reason;
                    node.kill();
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(reason) => return Err(self.not_ready(node, reason)),
            }
        }
    }

    pub(crate) fn restart_node(&self, id: i32, timeout: Duration) -> Result<(), BrokerError> {
        self.kill_node(id)?;
        self.start_node(id, timeout)
    }

    pub(crate) fn request_logs(&self) -> Vec<PathBuf> {
        self.nodes
            .iter()
            .filter(|n| n.request_log)
            .map(|n| n.dir.join("logs").join("requests.log"))
            .collect()
    }

    pub(crate) fn log_tail(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "--- node {} ({}) ---\n{}",
                    n.id,
                    n.log().display(),
                    n.log_tail()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        // All nodes at once: a node waiting for a controller majority to shut down cleanly
        // would otherwise wait for nodes not yet told to stop.
        let _ = each(&self.nodes, |n| {
            n.stop(Duration::from_secs(5));
            Ok(())
        });
        if std::env::var_os("COHORT_KEEP_BROKER_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_ids_look_like_kafkas_and_never_start_with_a_dash() {
        for _ in 0..2000 {
            let id = super::cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with('-'), "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{id}"
            );
        }
    }
}
