//! Consume throughput of every client side by side, on one Apache Kafka broker in one run: one
//! member of a fresh group reads a prefilled 12-partition topic (100 B records, then 1 KiB
//! records) with cohort, librdkafka, the Java consumer of the pinned release, kafka-go, sarama,
//! franz-go and the pure-Rust krafka and kacrab, each with its own defaults (offsets from the
//! earliest, each client's commit defaults); `krafka-tuned` is krafka with the settings its own
//! documentation gives for throughput, since its default read-ahead (500 records) throttles it.
//! Timed from the first record to the last; the client's CPU time over the same span comes from
//! the process's own accounting (cohort and librdkafka run in this process: its threads'
//! `schedstat`; the others are processes of their own: getrusage / the JVM's process CPU time),
//! so the shared machine's noise matters less. Rounds rotate the clients; medians are reported.
//! Prints a Markdown table; with `COHORT_BENCH_SVG=FILE` also draws it.
//!
//! `cargo run --release -p cohort-benches --example consume_clients [-- ROUNDS]`
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::process::Command;
use std::time::{Duration, Instant};

use cohort::{ClientConfig, GroupConfig, OffsetReset, Producer, ProducerRecord};
use cohort_harness::clients::{self, Program};
use cohort_testbroker::{TestBroker, unique_name};
use rdkafka::consumer::{BaseConsumer, Consumer as _};

const PARTITIONS: i32 = 12;
const CLIENTS: [&str; 9] = [
    "cohort",
    "librdkafka",
    "java",
    "kafka-go",
    "sarama",
    "franz-go",
    "krafka",
    "krafka-tuned",
    "kacrab",
];

use cohort_benches::process_cpu_ns as cpu_ns;

use cohort_benches::Run;

async fn cohort_run(bootstrap: &str, topic: &str, records: usize) -> Run {
    let mut cfg = GroupConfig::new(bootstrap, &unique_name("g"), &[topic]);
    cfg.offset_reset = OffsetReset::Earliest;
    cohort_benches::cohort_consume(cfg, records).await
}

fn rd_run(bootstrap: &str, topic: &str, records: usize) -> Run {
    let c: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("g"))
        .set("auto.offset.reset", "earliest")
        .set("broker.address.family", "v4")
        .create()
        .expect("librdkafka");
    c.subscribe(&[topic]).expect("subscribes");
    let (mut n, mut sink) = (0usize, 0u64);
    let mut first: Option<(Instant, u64)> = None;
    while n < records {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(|| (Instant::now(), cpu_ns()));
                if let Some(v) = rdkafka::message::Message::payload(&m).and_then(|v| v.last()) {
                    sink += u64::from(*v);
                }
                n += 1;
            }
            Some(Err(e)) => panic!("librdkafka: {e}"),
            None => {}
        }
    }
    let (start, cpu) = first.expect("records");
    std::hint::black_box(sink);
    Run {
        ms: start.elapsed().as_secs_f64() * 1e3,
        cpu_ms: cpu_ns().saturating_sub(cpu) as f64 / 1e6,
    }
}

/// A client that runs as its own process and prints `{"ms", "cpu_ms", ...}`.
fn process_run(p: &Program, extra: &[String]) -> Run {
    let out = Command::new(&p.program)
        .args(&p.args)
        .args(extra)
        .output()
        .expect("the client starts");
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = line
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{}: no result ({}): {}",
                p.program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    Run {
        ms: v["ms"].as_f64().unwrap_or(f64::NAN),
        cpu_ms: v["cpu_ms"].as_f64().unwrap_or(f64::NAN),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    size: usize,
    records: usize,
    client: &'static str,
    ms: f64,
    cpu_ms: f64,
}

impl Row {
    fn per_s(&self) -> f64 {
        self.records as f64 / (self.ms / 1e3)
    }
    fn mib_s(&self) -> f64 {
        (self.records * self.size) as f64 / (1 << 20) as f64 / (self.ms / 1e3)
    }
    fn cpu_ns_per_record(&self) -> f64 {
        self.cpu_ms * 1e6 / self.records as f64
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let java = clients::java_program("cohort.JavaConsume").expect("the Java programs build");
    let go = clients::go_program("consumebench").expect("the Go programs build");
    let rust = clients::rust_program().expect("rustbench (krafka, kacrab) builds");
    let broker = TestBroker::start().expect("broker");
    let bootstrap = broker.bootstrap().to_owned();
    eprintln!("consume_clients: {}, {rounds} rounds", broker.description());
    let p = Producer::new(ClientConfig::new(&bootstrap));
    let mut rows = Vec::new();
    // Half a second or more of the fastest client's reading: at 600,000 records a run lasted
    // 90 ms, and the first fetches and the shared machine's noise decided the ratios.
    for (size, records) in [(100usize, 3_000_000usize), (1024, 600_000)] {
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
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); CLIENTS.len()];
        for round in 0..rounds {
            for k in 0..CLIENTS.len() {
                let i = (k + round) % CLIENTS.len();
                let client = CLIENTS[i];
                // The previous client's abandoned fetches and group end before the next starts.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let group = unique_name("g");
                let run = match client {
                    "cohort" => cohort_run(&bootstrap, &topic, records).await,
                    "librdkafka" => {
                        let (b, t) = (bootstrap.clone(), topic.clone());
                        tokio::task::spawn_blocking(move || rd_run(&b, &t, records))
                            .await
                            .expect("librdkafka run")
                    }
                    "java" => process_run(
                        &java,
                        &[bootstrap.clone(), topic.clone(), group, records.to_string()],
                    ),
                    rust_client @ ("krafka" | "krafka-tuned" | "kacrab") => process_run(
                        &rust,
                        &[
                            format!("--client={rust_client}"),
                            format!("--bootstrap={bootstrap}"),
                            format!("--topic={topic}"),
                            format!("--group={group}"),
                            format!("--records={records}"),
                        ],
                    ),
                    go_client => process_run(
                        &go,
                        &[
                            format!("-client={go_client}"),
                            format!("-bootstrap={bootstrap}"),
                            format!("-topic={topic}"),
                            format!("-group={group}"),
                            format!("-records={records}"),
                        ],
                    ),
                };
                eprintln!(
                    "  {size} B, round {round}: {client} {:.1} ms, CPU {:.1} ms",
                    run.ms, run.cpu_ms
                );
                runs[i].push(run);
            }
        }
        for (i, client) in CLIENTS.iter().enumerate() {
            rows.push(Row {
                size,
                records,
                client,
                ms: median(runs[i].iter().map(|r| r.ms).collect()),
                cpu_ms: median(runs[i].iter().map(|r| r.cpu_ms).collect()),
            });
        }
    }
    println!("| records | client | records/s | MiB/s | client CPU per record |");
    println!("| --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} x {} B | {} | {:.2} M | {:.0} | {:.0} ns |",
            r.records,
            r.size,
            r.client,
            r.per_s() / 1e6,
            r.mib_s(),
            r.cpu_ns_per_record()
        );
    }
    for size in [100, 1024] {
        let of = |c: &str| rows.iter().find(|r| r.size == size && r.client == c);
        let (Some(cohort), Some(java)) = (of("cohort"), of("java")) else {
            continue;
        };
        let best_other = rows
            .iter()
            .filter(|r| r.size == size && r.client != "cohort")
            .max_by(|a, b| a.per_s().total_cmp(&b.per_s()))
            .expect("other clients");
        println!(
            "{size} B: cohort / best other ({}) throughput {:.2}x; cohort / Java CPU per record {:.2}",
            best_other.client,
            cohort.per_s() / best_other.per_s(),
            cohort.cpu_ns_per_record() / java.cpu_ns_per_record()
        );
    }
    if let Some(path) = std::env::var_os("COHORT_BENCH_SVG") {
        std::fs::write(&path, svg(&rows)).expect("write the chart");
    }
}

/// Two panels of horizontal bars: records/s and CPU per record, per record size and client.
fn svg(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let (left, width, bar, gap) = (120.0, 300.0, 12.0, 3.0);
    let max_rate = rows.iter().map(Row::per_s).fold(1.0, f64::max);
    let max_cpu = rows.iter().map(Row::cpu_ns_per_record).fold(1.0, f64::max);
    let height = 70.0 + rows.len() as f64 * (bar + gap) + 2.0 * 24.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"11\">",
        left + 2.0 * width + 160.0
    );
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Consume throughput, one member, 12 partitions, Apache Kafka</text><text x=\"{left}\" y=\"40\" font-weight=\"bold\">records/s (longer is better)</text><text x=\"{}\" y=\"40\" font-weight=\"bold\">client CPU ns per record (shorter is better)</text>",
        left + width + 80.0
    );
    let mut y = 44.0;
    for size in [100usize, 1024] {
        y += 18.0;
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{y:.0}\" font-weight=\"bold\">{size} B records</text>"
        );
        y += 6.0;
        for r in rows.iter().filter(|r| r.size == size) {
            let color = if r.client == "cohort" {
                "#4878d0"
            } else {
                "#999"
            };
            let w1 = r.per_s() / max_rate * width;
            let w2 = r.cpu_ns_per_record() / max_cpu * width;
            let x2 = left + width + 80.0;
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{:.0}\" text-anchor=\"end\">{}</text><rect x=\"{left}\" y=\"{y:.0}\" width=\"{w1:.1}\" height=\"{bar}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.0}\">{:.2} M</text><rect x=\"{x2}\" y=\"{y:.0}\" width=\"{w2:.1}\" height=\"{bar}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.0}\">{:.0}</text>",
                left - 6.0,
                y + bar - 2.0,
                r.client,
                left + w1 + 4.0,
                y + bar - 2.0,
                r.per_s() / 1e6,
                x2 + w2 + 4.0,
                y + bar - 2.0,
                r.cpu_ns_per_record()
            );
            y += bar + gap;
        }
    }
    out.push_str("</svg>\n");
    out
}
