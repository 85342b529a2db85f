//! SASL on Apache Kafka: a SASL_PLAINTEXT listener with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
//! users (SCRAM credentials made by Kafka's own `kafka-storage format --add-scram`), sessions
//! of 4 s (`connections.max.reauth.ms`, KIP-368). Groups consume through each mechanism; a wrong
//! password, an unknown user and a mechanism the broker does not offer give a typed error that
//! names the broker and the mechanism and never the password, without retrying for ever; and a
//! connection is replaced before its session ends, so requests keep succeeding past it.
#![allow(
    clippy::disallowed_methods,
    reason = "integration tests read the clock and do I/O"
)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cohort::protocol::messages::MetadataRequest;
use cohort::unstable::{Cluster, Target};
use cohort::{ClientConfig, Consumer, Error, Producer, SaslConfig, SaslMechanism};
use cohort_balancers::CooperativeSticky;
use cohort_testbroker::{BrokerOptions, SaslListener, TestBroker};
use common::{group_config, produce, unique_name};

const SESSION_MS: u64 = 4000;

fn broker() -> TestBroker {
    let mut o = BrokerOptions::from_env().expect("options");
    o.sasl = Some(SaslListener {
        users: vec![
            ("alice".into(), "alice-secret".into()),
            ("bob".into(), "bob-secret".into()),
            ("carol".into(), "carol-secret".into()),
        ],
        max_reauth_ms: Some(SESSION_MS),
    });
    TestBroker::start_with(o).expect("Apache Kafka with a SASL listener")
}

fn client(bootstrap: &str, sasl: SaslConfig) -> ClientConfig {
    let mut c = ClientConfig::new(bootstrap);
    c.sasl = Some(sasl);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_consume_through_every_mechanism_and_bad_credentials_fail_fast() {
    common::init_logs();
    let broker = broker();
    let sasl_addr = broker.sasl_bootstrap().expect("a SASL listener");

    for (mechanism, user) in [
        (SaslMechanism::Plain, "alice"),
        (SaslMechanism::ScramSha256, "bob"),
        (SaslMechanism::ScramSha512, "alice"),
    ] {
        let creds = SaslConfig::new(mechanism, user, format!("{user}-secret"));
        let (topic, group) = (unique_name("sasl"), unique_name("g"));
        let p = Producer::new(client(&sasl_addr, creds.clone()));
        p.create_topic(&topic, 4, 1)
            .await
            .expect("create over SASL");
        let want = produce(&p, &topic, 4, 25, mechanism.name()).await;
        let mut seen = BTreeSet::new();
        let mut members = Vec::new();
        for _ in 0..2 {
            let mut cfg = group_config(&sasl_addr, &group, &[&topic], Box::new(CooperativeSticky));
            cfg.client.sasl = Some(creds.clone());
            members.push(Consumer::new(cfg).await.expect("consumer over SASL"));
        }
        let end = Instant::now() + Duration::from_secs(60);
        'all: while seen.len() < want.len() && Instant::now() < end {
            for c in &mut members {
                if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(50), c.recv()).await
                {
                    let r = r.expect("record");
                    seen.insert(
                        String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                            .into_owned(),
                    );
                    c.ack(&r);
                    if seen.len() == want.len() {
                        break 'all;
                    }
                }
            }
        }
        assert_eq!(
            seen, want,
            "{mechanism}: every record consumed by the group"
        );
        for c in members {
            c.close().await.expect("close");
        }
    }

    // Refused credentials: a typed error, quickly, naming broker and mechanism, not the
    // password; the consumer stops instead of retrying them.
    let bad = [
        (
            SaslConfig::new(SaslMechanism::ScramSha256, "alice", "wrong-password"),
            "SASL_AUTHENTICATION_FAILED",
        ),
        (
            SaslConfig::new(SaslMechanism::Plain, "alice", "wrong-password"),
            "SASL_AUTHENTICATION_FAILED",
        ),
        (
            SaslConfig::new(SaslMechanism::ScramSha512, "mallory", "wrong-password"),
            "SASL_AUTHENTICATION_FAILED",
        ),
        (
            SaslConfig::oauthbearer(std::sync::Arc::new(NoToken)),
            "UNSUPPORTED_SASL_MECHANISM",
        ),
    ];
    for (creds, code) in bad {
        let mechanism = creds.mechanism;
        let mut cfg = group_config(
            &sasl_addr,
            &unique_name("g"),
            &["nothing"],
            Box::new(CooperativeSticky),
        );
        cfg.client.sasl = Some(creds);
        let started = Instant::now();
        let err = match Consumer::new(cfg).await {
            Err(e) => e,
            Ok(mut c) => match tokio::time::timeout(Duration::from_secs(30), c.recv()).await {
                Ok(Some(Err(e))) => e,
                other => panic!("{mechanism}: expected an authentication error, got {other:?}"),
            },
        };
        let text = err.to_string();
        assert!(
            matches!(err, Error::Authentication { .. }),
            "{mechanism}: {err:?}"
        );
        assert!(err.is_fatal() && !err.is_retriable(), "{mechanism}");
        assert!(text.contains(code), "{mechanism}: {text}");
        assert!(text.contains(mechanism.name()), "{text}");
        assert!(sasl_addr.split(',').any(|a| text.contains(a)), "{text}");
        assert!(!text.contains("wrong-password") && !format!("{err:?}").contains("wrong-password"));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{mechanism}: {:?}",
            started.elapsed()
        );
    }
    mechanism_offered_check(&sasl_addr).await;

    // Sessions of 4 s: requests on one broker every 250 ms for three sessions all succeed,
    // because the connection is replaced before the broker would close it.
    let cluster = Cluster::new(client(
        &sasl_addr,
        SaslConfig::new(SaslMechanism::ScramSha512, "bob", "bob-secret"),
    ));
    cluster.refresh_metadata(None).await.expect("metadata");
    let start = Instant::now();
    let end = start + Duration::from_millis(3 * SESSION_MS);
    let mut n = 0;
    while Instant::now() < end {
        cluster
            .send(
                Target::Broker(1),
                &MetadataRequest::default(),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|e| panic!("request {n} after {:?}: {e}", start.elapsed()));
        n += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(n >= 30, "{n} requests");
}

/// The broker's answer to a mechanism it does not offer lists the ones it does.
async fn mechanism_offered_check(addr: &str) {
    let p = Producer::new(client(
        addr,
        SaslConfig::oauthbearer(std::sync::Arc::new(NoToken)),
    ));
    let e = p.create_topic(&unique_name("x"), 1, 1).await.unwrap_err();
    let t = e.to_string();
    assert!(t.contains("PLAIN") && t.contains("SCRAM-SHA-512"), "{t}");
}

struct NoToken;

#[async_trait::async_trait]
impl cohort::TokenProvider for NoToken {
    async fn token(&self) -> Result<cohort::OAuthToken, String> {
        Ok(cohort::OAuthToken {
            value: "not-a-token".into(),
            extensions: Default::default(),
        })
    }
}

/// A SCRAM user revoked while its group runs (AlterUserScramCredentials, KIP-554): the member's
/// connections are replaced before their sessions end (KIP-368), the new ones are refused, and
/// the consumer stops with the refusal instead of retrying it for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_scram_user_stops_at_its_next_authentication() {
    use cohort::protocol::messages::{
        AlterUserScramCredentialsRequest, alter_user_scram_credentials_request,
    };
    common::init_logs();
    let broker = broker();
    let addr = broker.sasl_bootstrap().expect("a SASL listener");
    let admin = client(
        &addr,
        SaslConfig::new(SaslMechanism::ScramSha256, "alice", "alice-secret"),
    );
    let p = Producer::new(admin.clone());
    let topic = unique_name("revoked");
    p.create_topic(&topic, 2, 1).await.expect("topic");
    produce(&p, &topic, 2, 5, "before").await;
    let mut cfg = group_config(
        &addr,
        &unique_name("g"),
        &[&topic],
        Box::new(CooperativeSticky),
    );
    cfg.client.sasl = Some(SaslConfig::new(
        SaslMechanism::ScramSha512,
        "carol",
        "carol-secret",
    ));
    let mut c = Consumer::new(cfg).await.expect("consumer");
    let first = tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("a record as carol")
        .expect("open")
        .expect("record");
    c.ack(&first);

    // Mechanism 1 is SCRAM-SHA-256, 2 SCRAM-SHA-512 (ScramMechanism.type()); one user per
    // request (the broker refuses two changes of one user in a request).
    let cluster = Cluster::new(admin);
    for mechanism in [1i8, 2] {
        let revoke = AlterUserScramCredentialsRequest {
            deletions: vec![
                alter_user_scram_credentials_request::ScramCredentialDeletion {
                    name: "carol".to_owned().into(),
                    mechanism,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let r = cluster
            .send(Target::Any, &revoke, Duration::from_secs(10))
            .await
            .expect("AlterUserScramCredentials");
        for u in &r.results {
            assert_eq!(u.error_code, 0, "{:?}", u.error_message);
        }
    }

    // Within a few sessions of 4 s the member reconnects, is refused and stops.
    let end = Instant::now() + Duration::from_secs(60);
    let err = loop {
        assert!(Instant::now() < end, "the revoked user was never refused");
        match tokio::time::timeout(Duration::from_secs(1), c.recv()).await {
            Ok(Some(Ok(r))) => c.ack(&r),
            Ok(Some(Err(e))) if e.is_fatal() => break e,
            Ok(Some(Err(_))) | Err(_) => {}
            Ok(None) => panic!("the consumer ended without an error"),
        }
    };
    assert!(
        matches!(&err, Error::Authentication { mechanism, .. } if mechanism.contains("SCRAM-SHA-512")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("carol-secret"), "{err}");
    c.abort();
}
