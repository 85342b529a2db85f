//! The container backend: testcontainers-rs on a thread of its own.
//!
//! testcontainers' API is async and its containers must be dropped inside a tokio runtime. Tests
//! may be sync or async, so the container lives on a dedicated thread with a current-thread
//! runtime, and the public methods talk to it over channels; they can be called from anywhere,
//! including from inside another runtime.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use testcontainers::core::{ContainerPort, IntoContainerPort};
use testcontainers::runners::{AsyncBuilder, AsyncRunner};
use testcontainers::{ContainerAsync, GenericBuildableImage, GenericImage, ImageExt};

use crate::{Backend, BrokerError, BrokerKind, TANSU_VERSION, free_port, install_tansu, probe};

/// Name of the locally built image.
const TANSU_IMAGE: &str = "cohort-tansu";
/// Port the broker listens on inside the container.
const BROKER_PORT: u16 = 9092;

/// Whether a Docker engine answers: `DOCKER_HOST` is set, or `/var/run/docker.sock` answers a
/// ping.
pub(crate) fn docker_available() -> bool {
    if std::env::var_os("DOCKER_HOST").is_some() {
        return true;
    }
    let Ok(mut s) = std::os::unix::net::UnixStream::connect("/var/run/docker.sock") else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.") && reply.contains(" 200 ")
}

enum Cmd {
    Pause(mpsc::Sender<Result<(), String>>),
    Unpause(mpsc::Sender<Result<(), String>>),
    Logs(mpsc::Sender<String>),
    Restart(mpsc::Sender<Result<(), String>>),
}

pub(crate) struct ContainerBroker {
    tx: Option<tokio::sync::mpsc::UnboundedSender<Cmd>>,
    thread: Option<JoinHandle<()>>,
    addr: String,
    image: String,
    id: String,
    kind: BrokerKind,
    version: Option<String>,
    /// Removes the container if this process dies without dropping the broker (see
    /// `watchdog`): testcontainers removes it on drop only.
    watchdog: Option<std::process::Child>,
}

struct Started {
    addr: String,
    image: String,
    id: String,
}

/// What to run: the locally built Tansu image, or a user-supplied image.
enum Source {
    Tansu(std::path::PathBuf),
    Image(String),
}

async fn run_container(
    source: &Source,
    host_port: u16,
    timeout: Duration,
) -> Result<(ContainerAsync<GenericImage>, String), String> {
    let advertised = format!("127.0.0.1:{host_port}");
    match source {
        Source::Tansu(bin) => {
            let image = GenericBuildableImage::new(TANSU_IMAGE, TANSU_VERSION)
                // The binary is static, so the image needs nothing else: no base image is
                // pulled, which matters where no registry can be reached.
                .with_dockerfile_string(
                    "FROM scratch\nCOPY tansu /tansu\nENTRYPOINT [\"/tansu\"]\n",
                )
                .with_file(bin.clone(), "tansu")
                .build_image_with(
                    testcontainers::core::BuildImageOptions::new().with_skip_if_exists(true),
                )
                .await
                .map_err(|e| format!("building {TANSU_IMAGE}:{TANSU_VERSION}: {e}"))?;
            let c = image
                .with_cmd([
                    "broker".to_owned(),
                    "--listener-url".into(),
                    format!("tcp://0.0.0.0:{BROKER_PORT}"),
                    "--advertised-listener-url".into(),
                    format!("tcp://{advertised}"),
                    "--storage-engine".into(),
                    "memory://tansu/".into(),
                ])
                .with_env_var("RUST_LOG", "warn")
                .with_mapped_port(host_port, BROKER_PORT.tcp())
                .with_host_config_modifier(loopback_only)
                .with_startup_timeout(timeout)
                .start()
                .await
                .map_err(|e| format!("starting container: {e}"))?;
            Ok((c, format!("{TANSU_IMAGE}:{TANSU_VERSION}")))
        }
        Source::Image(reference) => {
            let (name, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
            let mut req = GenericImage::new(name, tag)
                .with_exposed_port(ContainerPort::Tcp(BROKER_PORT))
                .with_mapped_port(host_port, BROKER_PORT.tcp())
                .with_host_config_modifier(loopback_only)
                .with_startup_timeout(timeout);
            if name.contains("kafka") {
                // Apache Kafka in KRaft mode (the apache/kafka image, or cohort-kafka, which takes
                // the same variables), one combined broker/controller, listening on 9092 and
                // advertising the host's mapped port. The test settings are those of the process
                // backend (`kafka_process::server_properties`, where each is explained).
                for (k, v) in [
                    ("KAFKA_NODE_ID", "1".to_owned()),
                    ("KAFKA_PROCESS_ROLES", "broker,controller".into()),
                    (
                        "KAFKA_LISTENERS",
                        format!("PLAINTEXT://0.0.0.0:{BROKER_PORT},CONTROLLER://0.0.0.0:9093"),
                    ),
                    (
                        "KAFKA_ADVERTISED_LISTENERS",
                        format!("PLAINTEXT://{advertised}"),
                    ),
                    (
                        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".into(),
                    ),
                    ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".into()),
                    ("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093".into()),
                    ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1".into()),
                    ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1".into()),
                    ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1".into()),
                    (
                        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
                        "1".into(),
                    ),
                    ("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "1".into()),
                    ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0".into()),
                    ("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "1000".into()),
                    ("KAFKA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", "500".into()),
                    (
                        "KAFKA_GROUP_CONSUMER_MIN_HEARTBEAT_INTERVAL_MS",
                        "500".into(),
                    ),
                    (
                        "KAFKA_GROUP_CONSUMER_REGEX_REFRESH_INTERVAL_MS",
                        "10000".into(),
                    ),
                ] {
                    req = req.with_env_var(k, v);
                }
            } else {
                // Anything else is assumed to take Tansu's command line.
                req = req.with_cmd([
                    "broker".to_owned(),
                    "--listener-url".into(),
                    format!("tcp://0.0.0.0:{BROKER_PORT}"),
                    "--advertised-listener-url".into(),
                    format!("tcp://{advertised}"),
                ]);
            }
            let c = req
                .start()
                .await
                .map_err(|e| format!("starting {reference}: {e}"))?;
            Ok((c, reference.clone()))
        }
    }
}

/// Publishes the broker's port on the loopback interface only: the address the tests print
/// and use is `127.0.0.1`, and a test broker without authentication must not be reachable
/// from the network (testcontainers binds every interface by default).
fn loopback_only(host: &mut testcontainers::bollard::models::HostConfig) {
    for bindings in host
        .port_bindings
        .iter_mut()
        .flat_map(|m| m.values_mut())
        .flatten()
    {
        for b in bindings {
            b.host_ip = Some("127.0.0.1".into());
        }
    }
}

async fn logs_of(c: &ContainerAsync<GenericImage>) -> String {
    let mut out = c.stdout_to_vec().await.unwrap_or_default();
    out.extend(c.stderr_to_vec().await.unwrap_or_default());
    let text = String::from_utf8_lossy(&out).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl ContainerBroker {
    pub(crate) fn start(
        kind: BrokerKind,
        image: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let source = match (image, kind) {
            (Some(i), _) => Source::Image(i.to_owned()),
            (None, BrokerKind::Tansu) => Source::Tansu(install_tansu()?),
            (None, BrokerKind::ApacheKafka) => Source::Image(crate::image::kafka_image()?),
        };
        // An image's name says what it runs; anything else is taken to be what was asked for.
        let (kind, version) = match &source {
            Source::Tansu(_) => (BrokerKind::Tansu, Some(TANSU_VERSION.to_owned())),
            Source::Image(i) => {
                let tag = i.rsplit_once(':').map(|(_, t)| t.to_owned());
                if i.contains("tansu") {
                    (BrokerKind::Tansu, tag)
                } else if i.contains("kafka") {
                    (BrokerKind::ApacheKafka, tag)
                } else {
                    (kind, tag)
                }
            }
        };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Started, String>>();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Cmd>();
        let thread = std::thread::Builder::new()
            .name("cohort-testbroker-container".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("tokio runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut result = Err(String::from("no attempt"));
                    for _attempt in 0..3 {
                        let port = match free_port() {
                            Ok(p) => p,
                            Err(e) => {
                                result = Err(format!("free port: {e}"));
                                break;
                            }
                        };
                        result = run_container(&source, port, timeout)
                            .await
                            .map(|(c, img)| (c, img, port));
                        // Retry only when the host port was taken in the meantime.
                        match &result {
                            Err(e)
                                if e.contains("address already in use")
                                    || e.contains("port is already allocated") =>
                            {
                                continue;
                            }
                            _ => break,
                        }
                    }
                    let (container, image, port) = match result {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(Started {
                        addr: format!("127.0.0.1:{port}"),
                        image,
                        id: container.id().to_owned(),
                    }));
                    while let Some(cmd) = rx.recv().await {
                        match cmd {
                            Cmd::Pause(reply) => {
                                let _ =
                                    reply.send(container.pause().await.map_err(|e| e.to_string()));
                            }
                            Cmd::Unpause(reply) => {
                                let _ = reply
                                    .send(container.unpause().await.map_err(|e| e.to_string()));
                            }
                            Cmd::Logs(reply) => {
                                let _ = reply.send(logs_of(&container).await);
                            }
                            Cmd::Restart(reply) => {
                                // The host port is mapped explicitly, so it survives the
                                // restart and the advertised address stays right.
                                let _ = container.unpause().await;
                                let r = async {
                                    container.stop_with_timeout(Some(0)).await?;
                                    container.start().await
                                }
                                .await
                                .map_err(|e| e.to_string());
                                let _ = reply.send(r);
                            }
                        }
                    }
                    // The sender is gone: the broker is being dropped. A paused container must be
                    // resumed before it can be removed.
                    let _ = container.unpause().await;
                    drop(container);
                });
            })
            .map_err(|e| BrokerError::Container(format!("spawning thread: {e}")))?;
        let started = match ready_rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(BrokerError::Container(e));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(BrokerError::Container("container thread ended".into()));
            }
        };
        let broker = ContainerBroker {
            watchdog: crate::watchdog::watch_container(&started.id),
            tx: Some(tx),
            thread: Some(thread),
            addr: started.addr,
            image: started.image,
            id: started.id,
            kind,
            version,
        };
        // Apache Kafka (node 1) is ready once it lists itself and a group coordinator exists.
        let want = match broker.kind {
            BrokerKind::ApacheKafka => probe::Readiness {
                brokers: vec![1],
                coordinator: true,
            },
            BrokerKind::Tansu => probe::Readiness::default(),
        };
        if let Err(reason) = probe::wait_until(&broker.addr, timeout, &want, || None) {
            return Err(BrokerError::NotReady {
                backend: Backend::Container,
                addr: broker.addr.clone(),
                reason,
                log: broker.log_tail(),
            });
        }
        Ok(broker)
    }

    pub(crate) fn addr(&self) -> String {
        self.addr.clone()
    }

    pub(crate) fn kind(&self) -> BrokerKind {
        self.kind
    }

    pub(crate) fn version(&self) -> Option<String> {
        self.version.clone()
    }

    pub(crate) fn description(&self) -> String {
        format!(
            "image {} in container {}",
            self.image,
            &self.id[..self.id.len().min(12)]
        )
    }

    fn call<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Cmd) -> Option<T> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx.as_ref()?.send(make(reply_tx)).ok()?;
        reply_rx.recv().ok()
    }

    pub(crate) fn restart(&self, timeout: Duration) -> Result<(), BrokerError> {
        self.call(Cmd::Restart)
            .unwrap_or_else(|| Err("container thread ended".into()))
            .map_err(BrokerError::Container)?;
        probe::wait_ready(&self.addr, timeout).map_err(|reason| BrokerError::NotReady {
            backend: Backend::Container,
            addr: self.addr.clone(),
            reason,
            log: self.log_tail(),
        })
    }

    pub(crate) fn pause(&self) -> Result<(), BrokerError> {
        // runc's cgroup v1 freezer gives up ("unable to freeze") when the container's threads
        // keep it in FREEZING through its retries, which a JVM on a loaded 2-core machine does
        // (seen in CI); runc's maintainers leave the retry to the caller
        // (opencontainers/runc#4388). A failed attempt leaves the container thawed.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .call(Cmd::Pause)
                .unwrap_or_else(|| Err("container thread ended".into()))
            {
                Err(e) if attempt < PAUSE_ATTEMPTS && e.contains("unable to freeze") => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                r => return r.map_err(BrokerError::Container),
            }
        }
    }

    pub(crate) fn unpause(&self) -> Result<(), BrokerError> {
        self.call(Cmd::Unpause)
            .unwrap_or_else(|| Err("container thread ended".into()))
            .map_err(BrokerError::Container)
    }

    pub(crate) fn log_tail(&self) -> String {
        self.call(Cmd::Logs).unwrap_or_default()
    }
}

/// Attempts at freezing a container before its pause fails.
const PAUSE_ATTEMPTS: u32 = 5;

impl Drop for ContainerBroker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        crate::watchdog::dismiss(self.watchdog.take());
    }
}
