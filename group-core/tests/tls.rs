//! TLS on Apache Kafka, with a PKI made for the test (rcgen): an SSL listener that requires a
//! client certificate (mutual TLS) and a SASL_SSL listener (SCRAM-SHA-512 over TLS). Groups
//! consume through both; a client trusting another CA, one checking another host name, and one
//! without a client certificate are refused with the reason.
#![allow(
    clippy::disallowed_methods,
    reason = "integration tests read the clock and do I/O"
)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cohort::{ClientConfig, Consumer, Producer, SaslConfig, SaslMechanism, TlsConfig};
use cohort_balancers::Range;
use cohort_testbroker::{BrokerOptions, SaslListener, TestBroker, TestCerts, TlsListener};
use common::{group_config, produce, unique_name};

async fn consume_all(bootstrap: &str, client: &ClientConfig, topic: &str, want: &BTreeSet<String>) {
    let mut cfg = group_config(bootstrap, &unique_name("g"), &[topic], Box::new(Range));
    cfg.client = client.clone();
    let mut c = Consumer::new(cfg).await.expect("consumer");
    let mut seen = BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(60);
    while seen.len() < want.len() && Instant::now() < end {
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(200), c.recv()).await {
            let r = r.expect("record");
            seen.insert(
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
            );
            c.ack(&r);
        }
    }
    assert_eq!(&seen, want);
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_consume_over_tls_and_untrusted_brokers_are_refused() {
    common::init_logs();
    let dir = std::env::temp_dir().join(unique_name("cohort-pki"));
    let certs = TestCerts::generate(&dir, "127.0.0.1").expect("certificates");
    let mut o = BrokerOptions::from_env().expect("options");
    o.sasl = Some(SaslListener {
        users: vec![("alice".into(), "alice-secret".into())],
        max_reauth_ms: None,
    });
    o.tls = Some(TlsListener {
        certs: certs.clone(),
        client_auth: true,
    });
    let broker = TestBroker::start_with(o).expect("Apache Kafka with TLS listeners");
    let ssl = broker.listener_bootstrap("SSL").expect("SSL listener");
    let sasl_ssl = broker
        .listener_bootstrap("SASL_SSL")
        .expect("SASL_SSL listener");

    let mutual = TlsConfig {
        ca_location: Some(certs.ca.clone()),
        certificate_location: Some(certs.client_cert.clone()),
        key_location: Some(certs.client_key.clone()),
        ..Default::default()
    };
    let topic = unique_name("tls");
    let ssl_client = ClientConfig::new(&ssl)
        .with_tls(&mutual)
        .expect("TLS config");
    let p = Producer::new(ssl_client.clone());
    p.create_topic(&topic, 3, 1)
        .await
        .expect("create over mutual TLS");
    let want = produce(&p, &topic, 3, 20, "tls").await;
    // SSL with mutual TLS.
    consume_all(&ssl, &ssl_client, &topic, &want).await;
    // SASL_SSL: SCRAM over TLS, the CA verified, no client certificate.
    let mut sasl_client = ClientConfig::new(&sasl_ssl)
        .with_tls(&TlsConfig {
            ca_location: Some(certs.ca.clone()),
            ..Default::default()
        })
        .expect("TLS config");
    sasl_client.sasl = Some(SaslConfig::new(
        SaslMechanism::ScramSha512,
        "alice",
        "alice-secret",
    ));
    consume_all(&sasl_ssl, &sasl_client, &topic, &want).await;

    // Refusals: each names what failed.
    let refused = [
        (
            "another CA",
            sasl_ssl.clone(),
            TlsConfig {
                ca_location: Some(certs.other_ca.clone()),
                ..Default::default()
            },
            "UnknownIssuer",
        ),
        (
            "another name",
            sasl_ssl.clone(),
            TlsConfig {
                ca_location: Some(certs.ca.clone()),
                server_name: Some("kafka.example.com".into()),
                ..Default::default()
            },
            "not valid for name",
        ),
        (
            "no client certificate",
            ssl.clone(),
            TlsConfig {
                ca_location: Some(certs.ca.clone()),
                ..Default::default()
            },
            "TLS authentication failed",
        ),
        (
            "an expired client certificate",
            ssl.clone(),
            TlsConfig {
                ca_location: Some(certs.ca.clone()),
                certificate_location: Some(certs.expired_client_cert.clone()),
                key_location: Some(certs.expired_client_key.clone()),
                ..Default::default()
            },
            "TLS authentication failed",
        ),
    ];
    for (what, addr, tls, reason) in refused {
        let mut c = ClientConfig::new(&addr).with_tls(&tls).expect("TLS config");
        c.sasl = Some(SaslConfig::new(
            SaslMechanism::ScramSha512,
            "alice",
            "alice-secret",
        ));
        c.request_timeout = Duration::from_secs(5);
        let p = Producer::new(c);
        let e = tokio::time::timeout(
            Duration::from_secs(60),
            p.create_topic(&unique_name("x"), 1, 1),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in 60 s"))
        .expect_err(what);
        let text = e.to_string();
        assert!(text.contains(reason), "{what}: {text}");
        // Refused certificates are not retried: a certificate does not change by dialing again.
        assert!(
            matches!(e, cohort::Error::Authentication { .. }) && e.is_fatal(),
            "{what}: {e:?}"
        );
        assert!(
            text.contains(addr.split(',').next().unwrap()),
            "{what}: {text}"
        );
    }

    // A consumer of a broker it does not trust stops with the error instead of retrying for
    // ever (Java's poll throws SslAuthenticationException).
    let mut cfg = group_config(&ssl, &unique_name("g"), &[&topic], Box::new(Range));
    cfg.client = ClientConfig::new(&ssl)
        .with_tls(&TlsConfig {
            ca_location: Some(certs.other_ca.clone()),
            ..Default::default()
        })
        .expect("TLS config");
    let mut c = Consumer::new(cfg).await.expect("consumer");
    let r = tokio::time::timeout(Duration::from_secs(60), c.recv())
        .await
        .expect("the consumer gave up within 60 s");
    match r {
        Some(Err(e)) => assert!(
            e.is_fatal() && e.to_string().contains("UnknownIssuer"),
            "{e}"
        ),
        other => panic!("expected the refusal, got {other:?}"),
    }
    c.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
