//! Balancer compute side by side, in one run: cohort's sticky and cooperative-sticky against the
//! Java client's `StickyAssignor` and `CooperativeStickyAssignor` (kafka-clients of the pinned
//! Apache Kafka release, one JVM, warmed by the earlier runs), twmb/franz-go's sticky balancer and
//! IBM/sarama's sticky strategy, on 1,000,000 partitions (500 topics x 2,000) and 2,000 members:
//! fresh, a second round where every member reports what it got, and one member joining that
//! stable group. Each client's whole leader step (decode every member's subscription, assign,
//! encode every assignment, with the client's own code) and its assignment alone, best of
//! `--rounds`, with the partitions moved. Prints a Markdown table; with `COHORT_BENCH_SVG=FILE`
//! also draws it.
//!
//! `cargo run --release -p cohort-benches --example balancer_clients [-- ROUNDS [SARAMA_SECS]]`
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort::unstable::lead;
use cohort_balancers::{Balancer, CooperativeSticky, GroupMember, Plan, Sticky, TopicInfo};
use cohort_benches::groups::{joiner, members, run, topics, with_previous};
use cohort_harness::agreement::{JavaAssignors, JavaGroup};
use cohort_harness::clients;
use cohort_protocol::StrBytes;

type PlanMap = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// One client's figures for one workload.
struct Row {
    client: String,
    workload: &'static str,
    /// Whole leader step and assignment alone, ms; `None`: did not finish.
    step: Option<f64>,
    assign: Option<f64>,
    moves: Option<u64>,
}

const WORKLOADS: [&str; 3] = ["fresh", "second round", "one joins"];

fn metadata(group: &[GroupMember]) -> Vec<(StrBytes, Option<StrBytes>, Bytes)> {
    cohort_benches::groups::join_metadata(group)
}

/// Partitions owned in `prev` that have another owner in `next`.
fn moves(prev: &PlanMap, next: &PlanMap) -> u64 {
    let mut owner: BTreeMap<(&str, i32), &str> = BTreeMap::new();
    for (m, ts) in next {
        for (t, ps) in ts {
            for &p in ps {
                owner.insert((t.as_str(), p), m.as_str());
            }
        }
    }
    let mut n = 0;
    for (m, ts) in prev {
        for (t, ps) in ts {
            n += ps
                .iter()
                .filter(|&&p| owner.get(&(t.as_str(), p)) != Some(&m.as_str()))
                .count() as u64;
        }
    }
    n
}

fn best(mut f: impl FnMut() -> Duration, rounds: usize) -> f64 {
    (0..rounds)
        .map(|_| f())
        .min()
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let sarama_secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(120);
    let t: Vec<TopicInfo> = topics(500, 2000);
    let java = JavaAssignors::install().expect("the Java assignors build (scripts/install.sh)");
    let mut rows: Vec<Row> = Vec::new();
    eprintln!(
        "balancer_clients: 1M partitions / 2,000 members, best of {rounds}; {}",
        chrono_free_date()
    );
    for (name, b) in [
        ("sticky", &Sticky::default() as &dyn Balancer),
        ("cooperative-sticky", &CooperativeSticky),
    ] {
        let fresh = members(2000, &t, false);
        let first: Plan = run(b, &fresh, &t);
        let first_map = first.to_map();
        let second = with_previous(&fresh, &first, 0, 1);
        let mut joined = second.clone();
        joined.push(joiner(&t));
        for (workload, group) in WORKLOADS.iter().zip([&fresh, &second, &joined]) {
            let md = metadata(group);
            eprintln!("  cohort {name}, {workload}");
            let step = best(
                || {
                    let start = Instant::now();
                    let led = lead(b, &md, &t).expect("leads");
                    let d = start.elapsed();
                    drop(led);
                    d
                },
                rounds,
            );
            let assign = best(
                || {
                    let start = Instant::now();
                    let plan = run(b, group, &t);
                    let d = start.elapsed();
                    drop(plan);
                    d
                },
                rounds,
            );
            let plan = run(b, group, &t).to_map();
            rows.push(Row {
                client: format!("cohort {name}"),
                workload,
                step: Some(step),
                assign: Some(assign),
                moves: (*workload != "fresh").then(|| moves(&first_map, &plan)),
            });
            eprintln!("  Java {name}, {workload}");
            let answer = java
                .plan(&[JavaGroup {
                    assignor: name.to_owned(),
                    repeat: rounds as u32,
                    topics: t.clone(),
                    members: md.clone(),
                }])
                .expect("Java runs")
                .pop()
                .expect("one answer")
                .expect("Java assigns");
            rows.push(Row {
                client: format!("Java {name}"),
                workload,
                step: Some(answer.step_ns as f64 / 1e6),
                assign: Some(answer.assign_ns as f64 / 1e6),
                moves: (*workload != "fresh").then(|| moves(&first_map, &answer.assignment)),
            });
        }
    }
    let go = clients::go_program("assignbench").expect("the Go programs build");
    for (client, limit) in [("franz-go", 1800), ("sarama", sarama_secs)] {
        eprintln!("  {client} (at most {limit} s)");
        rows.extend(go_rows(&go.program, client, rounds, limit));
    }
    print_table(&rows);
    if let Some(path) = std::env::var_os("COHORT_BENCH_SVG") {
        std::fs::write(&path, svg(&rows)).expect("write the chart");
    }
}

/// The date, from `date` (no clock crate for one line).
fn chrono_free_date() -> String {
    Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Runs assignbench for one client; workloads it did not finish within `limit` seconds have no
/// figures.
fn go_rows(program: &std::path::Path, client: &str, rounds: usize, limit: u64) -> Vec<Row> {
    let mut child = Command::new(program)
        .args(["-client", client, "-rounds", &rounds.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("assignbench starts");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(limit);
    let mut done: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    while done.len() < WORKLOADS.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
                done.insert(v["workload"].as_str().unwrap_or_default().to_owned(), v);
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let min = |v: &serde_json::Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_f64)
            .fold(f64::INFINITY, f64::min)
    };
    WORKLOADS
        .iter()
        .map(|w| {
            let v = done.get(*w);
            Row {
                client: format!("{client} sticky"),
                workload: w,
                step: v.map(|v| min(&v["step_ms"])),
                assign: v.map(|v| min(&v["assign_ms"])),
                moves: v
                    .filter(|_| *w != "fresh")
                    .and_then(|v| v["moves"].as_u64()),
            }
        })
        .collect()
}

fn print_table(rows: &[Row]) {
    let ms = |v: Option<f64>| v.map_or("did not finish".to_owned(), |v| format!("{v:.1} ms"));
    println!("| workload | client | whole leader step | assignment alone | moves |");
    println!("| --- | --- | --- | --- | --- |");
    for w in WORKLOADS {
        for r in rows.iter().filter(|r| r.workload == w) {
            println!(
                "| {w} | {} | {} | {} | {} |",
                r.client,
                ms(r.step),
                ms(r.assign),
                r.moves.map_or("".to_owned(), |m| m.to_string())
            );
        }
    }
    // The ratios the targets are stated in, per workload: cohort's faster balancer against each
    // other client's whole step.
    for w in WORKLOADS {
        let of = |prefix: &str| {
            rows.iter()
                .filter(|r| r.workload == w && r.client.starts_with(prefix))
                .filter_map(|r| r.step)
                .fold(f64::INFINITY, f64::min)
        };
        let cohort = of("cohort");
        println!(
            "{w}: Java / cohort {:.1}x, franz-go / cohort {:.1}x, sarama / cohort {}",
            of("Java") / cohort,
            of("franz-go") / cohort,
            if of("sarama").is_finite() {
                format!("{:.1}x", of("sarama") / cohort)
            } else {
                "did not finish".to_owned()
            }
        );
    }
}

/// Horizontal bars on a log scale (the clients span three orders of magnitude), grouped by
/// workload: the whole leader step of each client.
fn svg(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let (left, width, bar, gap) = (200.0, 520.0, 13.0, 3.0);
    let (lo, hi) = (1.0f64, 100_000.0f64);
    let x = |v: f64| ((v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln())) * width;
    let height = 90.0 + rows.len() as f64 * (bar + gap) + WORKLOADS.len() as f64 * 24.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"11\">",
        left + width + 110.0
    );
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Whole leader step at 1M partitions / 2,000 members, ms, log scale (shorter is better)</text>"
    );
    let mut y = 40.0;
    for tick in [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0] {
        let _ = writeln!(
            out,
            "<line x1=\"{0:.1}\" y1=\"{y}\" x2=\"{0:.1}\" y2=\"{1:.0}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2:.0}\" text-anchor=\"middle\" fill=\"#888\">{tick}</text>",
            left + x(tick),
            height - 20.0,
            height - 6.0
        );
    }
    for w in WORKLOADS {
        y += 18.0;
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{y:.0}\" font-weight=\"bold\">{w}</text>"
        );
        y += 6.0;
        for r in rows.iter().filter(|r| r.workload == w) {
            let color = if r.client.starts_with("cohort") {
                "#4878d0"
            } else if r.client.starts_with("Java") {
                "#ee854a"
            } else {
                "#6acc64"
            };
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>",
                left - 6.0,
                y + bar - 2.0,
                r.client
            );
            match r.step {
                Some(v) => {
                    let wpx = x(v);
                    let _ = writeln!(
                        out,
                        "<rect x=\"{left}\" y=\"{y:.0}\" width=\"{wpx:.1}\" height=\"{bar}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.0}\">{v:.0} ms{}</text>",
                        left + wpx + 4.0,
                        y + bar - 2.0,
                        r.moves.map_or(String::new(), |m| format!(", {m} moves"))
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "<text x=\"{}\" y=\"{:.0}\" fill=\"#c00\">did not finish</text>",
                        left + 4.0,
                        y + bar - 2.0
                    );
                }
            }
            y += bar + gap;
        }
    }
    out.push_str("</svg>\n");
    out
}
