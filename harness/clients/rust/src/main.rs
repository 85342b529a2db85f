//! `rustbench member --client krafka|kacrab ...` is a harness member (see `member.rs`).
//!
//! `rustbench --client ...` consumes a prefilled topic as one member of a fresh consumer group with krafka or
//! kacrab (offsets from the earliest, each client's own commit defaults) until it has read
//! `--records` records, touching every value, and prints one JSON line: the time from the first
//! record to the last and this process's CPU time over the same span (getrusage), the same line
//! as the Go clients' `consumebench`:
//!
//! ```text
//! {"client":"kacrab","records":600000,"bytes":60000000,"ms":123.4,"cpu_ms":98.7}
//! ```
//!
//! `--client krafka-tuned` is krafka with the settings its documentation gives for throughput
//! (the "High Throughput Consumer" of its configuration guide, and a read-ahead of 10,000
//! records, which its performance guide says to raise for high-throughput consumers).
#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark and test tool: it reads the clock"
)]

use std::time::{Duration, Instant};

mod member;

fn cpu() -> Duration {
    // SAFETY: getrusage writes into the struct it is given and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Counts records; notes the first one's time and CPU.
struct Meter {
    want: u64,
    n: u64,
    bytes: u64,
    sink: u64,
    first: Option<(Instant, Duration)>,
}

impl Meter {
    /// Counts one value; true once the last one is read.
    fn record(&mut self, v: Option<&[u8]>) -> bool {
        if self.first.is_none() {
            self.first = Some((Instant::now(), cpu()));
        }
        if let Some(v) = v {
            // Touch the value, as an application would.
            self.sink = self.sink.wrapping_add(u64::from(*v.last().unwrap_or(&0)));
            self.bytes += v.len() as u64;
        }
        self.n += 1;
        self.n >= self.want
    }
}

fn arg(name: &str) -> String {
    let flag = format!("--{name}");
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == flag {
            return args.next().unwrap_or_default();
        }
        if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
            return v.to_owned();
        }
    }
    eprintln!("rustbench: --{name} is required");
    std::process::exit(2);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("member") {
        member::run(args[1..].to_vec()).await;
    }
    let client = arg("client");
    let (bootstrap, topic, group) = (arg("bootstrap"), arg("topic"), arg("group"));
    let want: u64 = arg("records").parse()?;
    let mut m = Meter {
        want,
        n: 0,
        bytes: 0,
        sink: 0,
        first: None,
    };
    match client.as_str() {
        "krafka" | "krafka-tuned" => {
            use krafka::consumer::AutoOffsetReset;
            let kafka = krafka::Kafka::builder(bootstrap.as_str()).connect().await?;
            let mut b = kafka
                .consumer(group.as_str())
                .auto_offset_reset(AutoOffsetReset::Earliest);
            if client == "krafka-tuned" {
                b = b
                    .fetch_max_bytes(100 * 1024 * 1024)
                    .max_partition_fetch_bytes(10 * 1024 * 1024)
                    .max_poll_records(10_000)
                    .max_buffered_records(10_000);
            }
            let consumer = b.build().await?;
            consumer.subscribe([topic.as_str()]).await?;
            'outer: loop {
                for r in consumer.poll(Duration::from_secs(1)).await? {
                    if m.record(r.value.as_deref()) {
                        break 'outer;
                    }
                }
            }
            let (ms, cpu_ms) = done(&m);
            let _ = tokio::time::timeout(Duration::from_secs(5), consumer.close()).await;
            print(&client, &m, ms, cpu_ms);
        }
        "kacrab" => {
            let mut consumer = kacrab::consumer::Consumer::from_map([
                ("bootstrap.servers", bootstrap.as_str()),
                ("group.id", group.as_str()),
                ("auto.offset.reset", "earliest"),
            ])
            .await?;
            consumer.subscribe([topic.clone()])?;
            'outer: loop {
                let records = consumer.poll(Duration::from_secs(1)).await?;
                for r in &records {
                    if m.record(r.value.as_deref()) {
                        break 'outer;
                    }
                }
            }
            let (ms, cpu_ms) = done(&m);
            let _ = tokio::time::timeout(Duration::from_secs(5), consumer.close()).await;
            print(&client, &m, ms, cpu_ms);
        }
        other => {
            eprintln!("rustbench: unknown client {other} (krafka, krafka-tuned, kacrab)");
            std::process::exit(2);
        }
    }
    Ok(())
}

/// Wall and CPU milliseconds from the first record to now.
fn done(m: &Meter) -> (f64, f64) {
    let (t0, c0) = m.first.unwrap_or((Instant::now(), cpu()));
    (
        t0.elapsed().as_secs_f64() * 1e3,
        cpu().saturating_sub(c0).as_secs_f64() * 1e3,
    )
}

fn print(client: &str, m: &Meter, ms: f64, cpu_ms: f64) {
    println!(
        "{{\"client\":\"{client}\",\"records\":{},\"bytes\":{},\"ms\":{ms:.3},\"cpu_ms\":{cpu_ms:.3},\"sink\":{}}}",
        m.n, m.bytes, m.sink
    );
}
