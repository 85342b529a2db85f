//! The harness on a secured Apache Kafka (issue: TLS and SASL): a chaos run through `cohort run
//! --bootstrap` with the security flags (SASL_SSL, SCRAM-SHA-512) and one with a scenario
//! file's `[security]` table (SASL_PLAINTEXT, PLAIN, with a librdkafka member), `cohort member`
//! over mutual TLS, and `cohort conformance` over TLS. The password never reaches a command
//! line: flags and files name the environment variable that holds it.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cohort::{ClientConfig, Producer, ProducerRecord, SecurityProtocol, TlsConfig};
use cohort_testbroker::unique_name;
use cohort_testbroker::{BrokerOptions, SaslListener, TestBroker, TestCerts, TlsListener};
use serde_json::Value;

const PASSWORD: &str = "alice-secret";

struct Secured {
    broker: TestBroker,
    certs: TestCerts,
    dir: PathBuf,
}

/// One broker with SASL_PLAINTEXT, SSL (client certificates required) and SASL_SSL listeners,
/// shared by the tests of this file (its watchdog stops it when the process ends).
fn secured() -> &'static Secured {
    static S: OnceLock<Secured> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(unique_name("cohort-secured"));
        let certs = TestCerts::generate(&dir, "127.0.0.1").expect("certificates");
        let mut o = BrokerOptions::from_env().expect("options");
        o.sasl = Some(SaslListener {
            users: vec![("alice".into(), PASSWORD.into())],
            max_reauth_ms: None,
        });
        o.tls = Some(TlsListener {
            certs: certs.clone(),
            client_auth: true,
        });
        let broker = TestBroker::start_with(o).expect("Apache Kafka with secured listeners");
        Secured { broker, certs, dir }
    })
}

fn listener(protocol: &str) -> String {
    secured()
        .broker
        .listener_bootstrap(protocol)
        .unwrap_or_else(|| panic!("{protocol} listener"))
}

fn mutual_tls() -> TlsConfig {
    let c = &secured().certs;
    TlsConfig {
        ca_location: Some(c.ca.clone()),
        certificate_location: Some(c.client_cert.clone()),
        key_location: Some(c.client_key.clone()),
        ..TlsConfig::default()
    }
}

fn tls_flags(with_client_cert: bool) -> Vec<String> {
    let c = &secured().certs;
    let mut f = vec!["--ssl-ca-location".to_owned(), c.ca.display().to_string()];
    if with_client_cert {
        f.extend([
            "--ssl-certificate-location".to_owned(),
            c.client_cert.display().to_string(),
            "--ssl-key-location".to_owned(),
            c.client_key.display().to_string(),
        ]);
    }
    f
}

/// Runs a scenario file with `cohort run`; returns the report's verdict and the run's stderr.
fn run_scenario(file: &Path, args: &[String], env: (&str, &str)) -> (String, String) {
    let out = file.with_extension("out");
    let run = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .arg("run")
        .arg(file)
        .arg("--out")
        .arg(&out)
        .args(args)
        .env(env.0, env.1)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("cohort run");
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(
        !stderr.contains(PASSWORD),
        "the password reached the output"
    );
    let report = std::fs::read_to_string(out.join("report.json"))
        .unwrap_or_else(|e| panic!("no report ({e}); stderr:\n{stderr}"));
    assert!(
        !report.contains(PASSWORD),
        "the password reached the report"
    );
    let v: Value = serde_json::from_str(&report).expect("report JSON");
    let verdict = v["verdict"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        run.status.success(),
        verdict == "passed",
        "exit status {} and verdict {verdict}",
        run.status
    );
    (verdict, stderr)
}

const SCENARIO: &str = r#"
name = "secured"
description = "A group on a secured cluster: a crash, a dropped connection, a join."
duration = "40s"
seed = 7

[[topics]]
name = "secured"
partitions = 6

[producer]
rate = 100

[defaults]
balancers = ["cooperative-sticky"]
processing = "500us"

[[members]]
name = "m"
count = 2

[[members]]
name = "p"
placement = "process"

[[actions]]
when = "stable"
after = "2s"
action = "drop"
target = "m1"

[[actions]]
when = "stable"
after = "2s"
action = "crash"
target = "p"

[[actions]]
after = "3s"
action = "join"
target = "all"
"#;

#[test]
fn a_chaos_run_on_sasl_ssl_passes_every_check() {
    let s = secured();
    let file = s.dir.join("sasl-ssl.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let mut args: Vec<String> = [
        "--bootstrap",
        &listener("SASL_SSL"),
        "--security-protocol",
        "SASL_SSL",
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        "alice",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(tls_flags(false));
    let (verdict, stderr) = run_scenario(&file, &args, ("COHORT_SASL_PASSWORD", PASSWORD));
    assert_eq!(verdict, "passed", "{stderr}");
}

#[test]
fn a_scenario_file_names_the_security_settings_and_librdkafka_joins() {
    let s = secured();
    let file = s.dir.join("sasl-plain.toml");
    let text = SCENARIO.replace(
        "[[members]]\nname = \"p\"",
        "[[members]]\nname = \"rd\"\nclient = \"librdkafka\"\n\n[[members]]\nname = \"p\"",
    ) + r#"
[security]
security_protocol = "SASL_PLAINTEXT"
sasl_mechanism = "PLAIN"
sasl_username = "alice"
sasl_password_env = "SECURED_TEST_PASSWORD"
"#;
    std::fs::write(&file, text).unwrap();
    let args = vec!["--bootstrap".to_owned(), listener("SASL_PLAINTEXT")];
    let (verdict, stderr) = run_scenario(&file, &args, ("SECURED_TEST_PASSWORD", PASSWORD));
    assert_eq!(verdict, "passed", "{stderr}");

    // Without the variable, the run says what is missing before it starts.
    let out = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .arg("run")
        .arg(&file)
        .args(&args)
        .env_remove("SECURED_TEST_PASSWORD")
        .output()
        .expect("cohort run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("SECURED_TEST_PASSWORD"), "{err}");
}

#[test]
fn a_member_process_consumes_over_mutual_tls() {
    let ssl = listener("SSL");
    let topic = unique_name("tls-member");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = ClientConfig::new(&ssl)
            .with_security(SecurityProtocol::Ssl, None, Some(&mutual_tls()))
            .expect("TLS settings");
        let p = Producer::new(c);
        p.create_topic(&topic, 2, 1).await.expect("topic");
        for part in 0..2 {
            let recs: Vec<ProducerRecord> = (0..10)
                .map(|i| ProducerRecord::value(format!("{i}")))
                .collect();
            p.send(&topic, part, &recs).await.expect("produce");
        }
    });
    let member = |with_client_cert: bool| {
        Command::new(env!("CARGO_BIN_EXE_cohort"))
            .args(["member", "--bootstrap", &ssl, "--group", &unique_name("g")])
            .args(["--topic", &topic, "--balancer", "range", "--name", "tls"])
            .args(["--security-protocol", "SSL"])
            .args(tls_flags(with_client_cert))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cohort member")
    };
    let mut child = member(true);
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let end = Instant::now() + Duration::from_secs(60);
    let mut committed = [0i64; 2];
    for line in lines {
        let v: Value = serde_json::from_str(&line.unwrap()).expect("JSON line");
        if v["event"] == "committed" {
            for (p, c) in committed.iter_mut().enumerate() {
                if let Some(o) = v["offsets"][&topic][p.to_string()].as_i64() {
                    *c = o;
                }
            }
        }
        if committed == [10, 10] || Instant::now() > end {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(committed, [10, 10], "everything consumed and committed");

    // Without a client certificate, the broker refuses the handshake: an error event, and the
    // member ends (authentication failures are fatal).
    let out = member(false).wait_with_output().expect("member");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r#""event":"error""#), "{text}");
}

#[test]
fn conformance_runs_over_tls() {
    let mut args = vec![
        "conformance".to_owned(),
        "--bootstrap".to_owned(),
        listener("SSL"),
        "--security-protocol".to_owned(),
        "SSL".to_owned(),
    ];
    args.extend(tls_flags(true));
    for check in [
        "api-versions",
        "unsupported-version-answered",
        "member-id-required",
    ] {
        args.extend(["--check".to_owned(), check.to_owned()]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(&args)
        .output()
        .expect("cohort conformance");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("3/3 checks pass"), "{table}");
}
