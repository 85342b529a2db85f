//! Every backend starts a broker that answers, can be paused, resumed and restarted, and is gone
//! after it is dropped; a three-node Apache Kafka cluster survives the loss of a node, and a
//! restarted node keeps its data. These tests fail (never skip) when a broker cannot start; the
//! container backend says "not run" with the reason where no Docker engine can run.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::time::Duration;

use cohort_testbroker::{
    Backend, BrokerKind, BrokerOptions, TestBroker, probe_api_versions, probe_brokers,
};

/// Held by every test that pauses a broker or runs a container. Docker publishes a container's
/// port with a DNAT rule on 127.0.0.1 (besides its proxy), and in two CI runs a paused Tansu
/// *process* "answered" while the container test ran beside it: its connections were being
/// answered by the container's Tansu. One at a time, the process tests test the process.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Who listens on and who redirects `addr`'s port, for a failure message.
fn who_serves(addr: &str) -> String {
    let port = addr.rsplit(':').next().unwrap_or_default();
    let run = |cmd: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    format!(
        "listeners: {}; nat rules: {}; containers: {}",
        run(&format!("ss -ltnp 'sport = :{port}' 2>/dev/null")),
        run(&format!("iptables -t nat -S 2>/dev/null | grep -w {port}")),
        run("docker ps --format '{{.ID}} {{.Image}} {{.Ports}}' 2>/dev/null"),
    )
}

fn exercise(kind: BrokerKind, backend: Backend) {
    let broker = TestBroker::start_with(BrokerOptions::default().kind(kind).backend(backend))
        .unwrap_or_else(|e| panic!("{kind} {backend} broker: {e}"));
    assert_eq!(broker.backend(), backend);
    assert_eq!(broker.kind(), Some(kind));
    assert_eq!(broker.info().kind, kind.name());
    assert!(broker.info().version.is_some(), "{:?}", broker.info());
    let addr = broker.bootstrap().to_owned();
    let apis = probe_api_versions(&addr, Duration::from_secs(5)).expect("ApiVersions");
    // The pinned Tansu build lists 36 APIs; Apache Kafka 4 lists more.
    assert!(apis >= 20, "only {apis} APIs listed");

    broker.pause().expect("pause");
    let frozen = probe_api_versions(&addr, Duration::from_millis(500));
    assert!(
        frozen.is_err(),
        "a paused broker answered: {frozen:?} ({}; {})",
        broker.info(),
        who_serves(&addr)
    );
    broker.resume().expect("resume");
    probe_api_versions(&addr, Duration::from_secs(5)).expect("ApiVersions after resume");

    // A restart (also of a paused broker) comes back at the same address.
    broker.pause().expect("pause before restart");
    broker.restart().expect("restart");
    assert_eq!(broker.bootstrap(), addr);
    probe_api_versions(&addr, Duration::from_secs(5)).expect("ApiVersions after restart");

    drop(broker);
    // Stopped: nothing answers on the address any more (a new broker may reuse the port later,
    // but not within these milliseconds).
    assert!(probe_api_versions(&addr, Duration::from_millis(500)).is_err());
}

#[test]
fn apache_kafka_process_backend() {
    let _one = serial();
    exercise(BrokerKind::ApacheKafka, Backend::Process);
}

#[test]
fn tansu_process_backend() {
    let _one = serial();
    exercise(BrokerKind::Tansu, Backend::Process);
}

/// The container backend runs where a Docker engine does; `ensure_docker` installs and starts
/// one where this machine allows it. Where none can run, the test says so and why, rather than
/// pass as if it had run.
#[test]
fn container_backend() {
    let _one = serial();
    if let Err(why) = cohort_testbroker::ensure_docker() {
        eprintln!("container backend: not run ({why})");
        return;
    }
    exercise(BrokerKind::Tansu, Backend::Container);
    exercise(BrokerKind::ApacheKafka, Backend::Container);
}

#[test]
fn a_three_node_cluster_survives_the_loss_of_a_node() {
    let cluster = TestBroker::cluster(3).expect("cluster");
    assert_eq!(cluster.node_ids(), vec![1, 2, 3]);
    assert_eq!(cluster.info().nodes, 3);
    assert_eq!(cluster.bootstrap().split(',').count(), 3);
    let a1 = cluster.node_addr(1).unwrap();
    let a2 = cluster.node_addr(2).unwrap();
    assert_eq!(
        probe_brokers(&a2, Duration::from_secs(5)).unwrap(),
        vec![1, 2, 3]
    );

    // Killed: the others go on, and (after the controller notices) no longer list it.
    cluster.kill_node(1).expect("kill");
    assert!(probe_api_versions(&a1, Duration::from_millis(500)).is_err());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let listed = probe_brokers(&a2, Duration::from_secs(5)).unwrap();
        if listed == vec![2, 3] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 1 still listed: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Back with its data: the same node id and address, listed again.
    cluster.start_node(1).expect("start node 1");
    assert_eq!(
        probe_brokers(&a1, Duration::from_secs(5)).unwrap(),
        vec![1, 2, 3]
    );

    // Paused: it stops answering, and answers again after resume.
    cluster.pause_node(3).expect("pause");
    let a3 = cluster.node_addr(3).unwrap();
    assert!(probe_api_versions(&a3, Duration::from_millis(500)).is_err());
    cluster.resume_node(3).expect("resume");
    probe_api_versions(&a3, Duration::from_secs(5)).expect("resumed");

    // A clean stop, then a start.
    cluster.stop_node(2).expect("stop");
    assert!(probe_api_versions(&a2, Duration::from_millis(500)).is_err());
    cluster.start_node(2).expect("start node 2");
    probe_api_versions(&a2, Duration::from_secs(5)).expect("restarted");
}

/// Run by `no_broker_outlives_a_test_process_that_aborts` in a child process: starts a broker,
/// prints its process ids, and aborts without dropping it (as a panic in a test whose broker is
/// the shared `static` one would leave it).
#[test]
fn orphan_helper() {
    if std::env::var_os("COHORT_ORPHAN_HELPER").is_none() {
        return;
    }
    let broker = TestBroker::shared().expect("broker");
    println!("PIDS {:?}", broker.pids());
    std::process::abort();
}

#[test]
fn no_broker_outlives_a_test_process_that_aborts() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "orphan_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("COHORT_ORPHAN_HELPER", "1")
        .env("COHORT_BROKER_KIND", "apache-kafka")
        .output()
        .expect("helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the helper aborts: {stdout}");
    let pids: Vec<u32> = stdout
        .lines()
        .find_map(|l| l.split_once("PIDS ").map(|(_, p)| p))
        .unwrap_or_else(|| {
            panic!(
                "helper printed no pids: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(!pids.is_empty());
    let alive = |pid: &u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pids.iter().any(alive) {
        assert!(
            std::time::Instant::now() < deadline,
            "broker processes {pids:?} outlived the test process that started them"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn external_backend_fails_clearly_when_nothing_listens() {
    let port = cohort_testbroker::free_port().unwrap();
    let err = TestBroker::start_with(BrokerOptions {
        backend: Some(Backend::External),
        bootstrap: Some(format!("127.0.0.1:{port}")),
        startup_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("external broker at 127.0.0.1"), "{msg}");
    assert!(msg.contains("did not become ready"), "{msg}");
}

/// `BrokerOptions::request_log`: every request the broker completes is a line of its node's
/// request log, the epoch milliseconds then Kafka's JSON, which the rebalance benchmark reads.
#[test]
fn the_request_log_has_a_line_per_request() {
    let _serial = serial();
    let broker = TestBroker::start_with(BrokerOptions {
        kind: Some(BrokerKind::ApacheKafka),
        backend: Some(Backend::Process),
        request_log: true,
        ..Default::default()
    })
    .expect("Apache Kafka process broker");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    probe_api_versions(broker.bootstrap(), Duration::from_secs(5)).expect("ApiVersions");
    let logs = broker.request_logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&logs[0]).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("\"API_VERSIONS\"")) {
            break l.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ApiVersions in {}:\n{text}",
            logs[0].display()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ms, rest) = line.split_once(' ').expect("a time, then the request");
    let ms: u128 = ms.parse().expect("epoch milliseconds");
    assert!(ms + 1000 >= before, "{line}");
    assert!(rest.starts_with("Completed request:{"), "{line}");
}
