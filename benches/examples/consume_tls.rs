//! What TLS and SASL cost a consumer: one cohort member of a fresh group reads a prefilled
//! 12-partition topic through each listener of one Apache Kafka broker (PLAINTEXT, SSL with a
//! client certificate, SASL_SSL with SCRAM-SHA-512), in the same run, rounds rotating the
//! listeners. Timed from the first record to the last, with the process's CPU time over the same
//! span; medians, and each listener's ratio to plaintext (the shared machine's noise cancels
//! best in ratios). TLS is rustls with the ring provider; the broker's side is Java's JSSE.
//!
//! `cargo run --release -p cohort-benches --example consume_tls [-- ROUNDS]`
#![allow(
    clippy::disallowed_methods,
    reason = "benchmark code does I/O and reads the clock"
)]

use std::time::Duration;

use cohort::{
    ClientConfig, GroupConfig, OffsetReset, Producer, ProducerRecord, SaslConfig, SaslMechanism,
    SecurityProtocol, TlsConfig,
};
use cohort_testbroker::{
    BrokerOptions, SaslListener, TestBroker, TestCerts, TlsListener, unique_name,
};

const PARTITIONS: i32 = 12;
const LISTENERS: [&str; 3] = ["PLAINTEXT", "SSL", "SASL_SSL"];

use cohort_benches::Run;

async fn consume(client: ClientConfig, topic: &str, records: usize) -> Run {
    let bootstrap = client.bootstrap.join(",");
    let mut cfg = GroupConfig::new(&bootstrap, &unique_name("g"), &[topic]);
    cfg.client = client;
    cfg.offset_reset = OffsetReset::Earliest;
    cohort_benches::cohort_consume(cfg, records).await
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(unique_name("cohort-bench-pki"));
    let certs = TestCerts::generate(&dir, "127.0.0.1").expect("certificates");
    let mut o = BrokerOptions::from_env().expect("options");
    o.sasl = Some(SaslListener {
        users: vec![("bench".into(), "bench-secret".into())],
        max_reauth_ms: None,
    });
    o.tls = Some(TlsListener {
        certs: certs.clone(),
        client_auth: true,
    });
    let broker = TestBroker::start_with(o).expect("Apache Kafka with TLS listeners");
    eprintln!("consume_tls: {}, {rounds} rounds", broker.description());
    let tls = TlsConfig {
        ca_location: Some(certs.ca.clone()),
        certificate_location: Some(certs.client_cert.clone()),
        key_location: Some(certs.client_key.clone()),
        ..TlsConfig::default()
    };
    let config = |listener: &str| -> ClientConfig {
        let addr = broker.listener_bootstrap(listener).expect("listener");
        let c = ClientConfig::new(&addr);
        match listener {
            "SSL" => c.with_security(SecurityProtocol::Ssl, None, Some(&tls)),
            "SASL_SSL" => c.with_security(
                SecurityProtocol::SaslSsl,
                Some(SaslConfig::new(
                    SaslMechanism::ScramSha512,
                    "bench",
                    "bench-secret",
                )),
                Some(&TlsConfig {
                    ca_location: Some(certs.ca.clone()),
                    ..TlsConfig::default()
                }),
            ),
            _ => Ok(c),
        }
        .expect("security settings")
    };
    let p = Producer::new(ClientConfig::new(broker.bootstrap()));
    println!(
        "| records | listener | records/s | MiB/s | CPU per record | vs plaintext (time, CPU) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (size, records) in [(100usize, 600_000usize), (1024, 120_000)] {
        let topic = unique_name("t");
        p.create_topic(&topic, PARTITIONS, 1).await.expect("topic");
        let value = vec![b'x'; size];
        let per = records / PARTITIONS as usize;
        for part in 0..PARTITIONS {
            for chunk in 0..per.div_ceil(1000) {
                let n = (per - chunk * 1000).min(1000);
                let recs: Vec<ProducerRecord> = (0..n)
                    .map(|_| ProducerRecord::value(value.clone()))
                    .collect();
                p.send(&topic, part, &recs).await.expect("produce");
            }
        }
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); LISTENERS.len()];
        for round in 0..rounds {
            for k in 0..LISTENERS.len() {
                let i = (k + round) % LISTENERS.len();
                tokio::time::sleep(Duration::from_secs(1)).await;
                let run = consume(config(LISTENERS[i]), &topic, records).await;
                eprintln!(
                    "  {size} B, round {round}: {} {:.1} ms, CPU {:.1} ms",
                    LISTENERS[i], run.ms, run.cpu_ms
                );
                runs[i].push(run);
            }
        }
        let med: Vec<(f64, f64)> = runs
            .iter()
            .map(|r| {
                (
                    median(r.iter().map(|x| x.ms).collect()),
                    median(r.iter().map(|x| x.cpu_ms).collect()),
                )
            })
            .collect();
        for (i, (ms, cpu_ms)) in med.iter().enumerate() {
            let rate = records as f64 / (ms / 1e3);
            println!(
                "| {records} x {size} B | {} | {:.2} M | {:.0} | {:.0} ns | {:.2}x, {:.2}x |",
                LISTENERS[i],
                rate / 1e6,
                rate * size as f64 / (1024.0 * 1024.0),
                cpu_ms * 1e6 / records as f64,
                ms / med[0].0,
                cpu_ms / med[0].1,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
