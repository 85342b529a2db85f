//! Both local backends start a broker that answers ApiVersions, pause, resume and restart it,
//! and stop it on drop. These tests fail (never skip) when a broker cannot start.

use std::time::Duration;

use cohort_testbroker::{Backend, BrokerOptions, TestBroker, probe_api_versions};

fn exercise(backend: Backend) {
    let broker = TestBroker::start_with(BrokerOptions::default().backend(backend))
        .unwrap_or_else(|e| panic!("{backend} broker: {e}"));
    assert_eq!(broker.backend(), backend);
    assert!(broker.is_tansu());
    let addr = broker.bootstrap().to_owned();
    let apis = probe_api_versions(&addr, Duration::from_secs(5)).expect("ApiVersions");
    // BROKER.md: the pinned Tansu build lists 36 APIs.
    assert!(apis >= 20, "only {apis} APIs listed");

    broker.pause().expect("pause");
    let frozen = probe_api_versions(&addr, Duration::from_millis(500));
    assert!(frozen.is_err(), "a paused broker answered: {frozen:?}");
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
fn process_backend() {
    exercise(Backend::Process);
}

#[test]
fn container_backend() {
    // The machines this project targets run a Docker engine; a missing engine fails the test
    // rather than skipping it.
    assert!(
        cohort_testbroker::auto_backend() == Backend::Container,
        "no Docker engine answers; the container backend cannot be tested"
    );
    exercise(Backend::Container);
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
