//! `cohort member` on a SASL_PLAINTEXT listener of Apache Kafka: a cohort member (SCRAM-SHA-512,
//! the password from COHORT_SASL_PASSWORD) and a librdkafka member (PLAIN) share one secured
//! group and consume everything; a wrong password ends the member with an error that does not
//! show the password; settings that cannot apply are refused.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use cohort::{ClientConfig, Producer, ProducerRecord, SaslConfig, SaslMechanism};
use cohort_testbroker::{BrokerOptions, SaslListener, TestBroker, unique_name};
use serde_json::Value;

fn member(
    sasl_addr: &str,
    group: &str,
    topic: &str,
    name: &str,
    client: &str,
    mechanism: &str,
    password: &str,
) -> (Child, Receiver<Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args([
            "member",
            "--bootstrap",
            sasl_addr,
            "--group",
            group,
            "--topic",
            topic,
        ])
        .args(["--balancer", "range", "--name", name, "--client", client])
        .args([
            "--session-timeout-ms",
            "6000",
            "--heartbeat-interval-ms",
            "500",
        ])
        .args([
            "--security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-mechanism",
            mechanism,
        ])
        .args(["--sasl-username", "alice"])
        .env("COHORT_SASL_PASSWORD", password)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cohort member");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[test]
fn cohort_and_librdkafka_members_share_a_secured_group() {
    let mut o = BrokerOptions::from_env().expect("options");
    o.sasl = Some(SaslListener {
        users: vec![("alice".into(), "alice-secret".into())],
        max_reauth_ms: None,
    });
    let broker = TestBroker::start_with(o).expect("Apache Kafka with a SASL listener");
    let addr = broker.sasl_bootstrap().expect("SASL listener");
    let (topic, group) = (unique_name("secured"), unique_name("g"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = ClientConfig::new(&addr);
        c.sasl = Some(SaslConfig::new(
            SaslMechanism::ScramSha256,
            "alice",
            "alice-secret",
        ));
        let p = Producer::new(c);
        p.create_topic(&topic, 4, 1).await.expect("topic");
        for part in 0..4 {
            let recs: Vec<ProducerRecord> = (0..10)
                .map(|i| ProducerRecord::value(format!("{i}")))
                .collect();
            p.send(&topic, part, &recs).await.expect("produce");
        }
    });

    let members = [
        member(
            &addr,
            &group,
            &topic,
            "ours",
            "cohort",
            "SCRAM-SHA-512",
            "alice-secret",
        ),
        member(
            &addr,
            &group,
            &topic,
            "theirs",
            "librdkafka",
            "PLAIN",
            "alice-secret",
        ),
    ];
    // Between them, the two commit every partition's end (10) and each owns two partitions.
    let mut committed: BTreeMap<String, i64> = BTreeMap::new();
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    while Instant::now() < end
        && !(committed.len() == 4 && committed.values().all(|&o| o == 10) && owners.len() == 2)
    {
        for (_, rx) in &members {
            while let Ok(v) = rx.try_recv() {
                if v["event"] == "committed"
                    && let Some(m) = v["offsets"][&topic].as_object()
                {
                    for (p, o) in m {
                        committed.insert(p.clone(), o.as_i64().unwrap_or(-1));
                    }
                }
                if v["event"] == "assigned"
                    && v["partitions"][&topic]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
                {
                    owners.insert(v["source"].as_str().unwrap_or("").to_owned(), 1);
                }
                assert_ne!(v["event"], "error", "{v}");
                seen.push(v);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        committed.len() == 4 && committed.values().all(|&o| o == 10) && owners.len() == 2,
        "committed {committed:?}, owners {owners:?}; saw {seen:#?}"
    );
    for (mut child, _) in members {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        assert!(status.success(), "exit status {status}");
    }

    // A wrong password: the member gives up with an error naming the mechanism, and nothing it
    // prints shows the password.
    let (mut child, rx) = member(
        &addr,
        &unique_name("g"),
        &topic,
        "wrong",
        "cohort",
        "SCRAM-SHA-256",
        "not-her-password",
    );
    let end = Instant::now() + Duration::from_secs(40);
    let mut error = None;
    while Instant::now() < end && error.is_none() {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(200))
            && v["event"] == "error"
        {
            error = Some(v);
        }
    }
    let error = error.expect("an error event");
    let text = error.to_string();
    assert!(
        text.contains("SCRAM-SHA-256") && text.contains("authentication failed"),
        "{text}"
    );
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not-her-password"));
    assert!(!text.contains("not-her-password"));

    // Settings that cannot apply are refused, naming what.
    for (args, why) in [
        (
            vec!["--sasl-mechanism", "PLAIN"],
            "need --security-protocol SASL_PLAINTEXT",
        ),
        (
            vec![
                "--security-protocol",
                "SASL_PLAINTEXT",
                "--sasl-mechanism",
                "GSSAPI",
            ],
            "expected PLAIN",
        ),
        (
            vec!["--security-protocol", "SASL_SSL"],
            "SASL_SSL needs --sasl-mechanism",
        ),
        (
            vec!["--security-protocol", "SSL", "--ssl-key-location", "k.pem"],
            "go together",
        ),
        (
            vec![
                "--security-protocol",
                "SASL_PLAINTEXT",
                "--sasl-mechanism",
                "PLAIN",
                "--sasl-username",
                "a",
                "--sasl-password",
                "b",
                "--client",
                "java",
            ],
            "does not take security settings",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cohort"))
            .args([
                "member",
                "--bootstrap",
                &addr,
                "--group",
                "g",
                "--topic",
                "t",
            ])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains(why), "{args:?}: {said}");
    }
}
