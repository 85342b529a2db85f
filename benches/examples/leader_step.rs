//! The whole leader step at the 1M-partition scale, phase by phase: decoding every member's
//! JoinGroup subscription, the assignment, encoding every member's SyncGroup assignment, and the
//! group core's `lead` that does all three (what `cohort assign` times). Median of `ROUNDS`.
//!
//! `cargo run --release -p cohort-benches --example leader_step`
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort::member::decode_members;
use cohort::unstable::lead;
use cohort_balancers::{Balancer, CooperativeSticky, Sticky};
use cohort_benches::groups::{join_metadata, joiner, members, run, topics, with_previous};

const ROUNDS: usize = 5;

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut d: Vec<Duration> = (0..ROUNDS).map(|_| f()).collect();
    d.sort();
    d[ROUNDS / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn profile(phase: &str, t: &[cohort_balancers::TopicInfo]) {
    let sticky = Sticky::default();
    let b: &dyn Balancer = if std::env::var_os("LEADER_STEP_STICKY").is_some() {
        &sticky
    } else {
        &CooperativeSticky
    };
    let mut group = members(2000, t, false);
    if let Ok(second) = std::env::var("LEADER_STEP_SECOND") {
        group = with_previous(&group, &run(b, &group, t), 0, 1);
        if second == "join" {
            group.push(joiner(t));
        }
    }
    let metadata = join_metadata(&group);
    if std::env::var_os("LEADER_STEP_DECODED").is_some() {
        group = decode_members(&metadata).members;
    }
    let plan = run(b, &group, t);
    let mut rounds = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        match phase {
            "decode" => drop(decode_members(&metadata)),
            "assign" => drop(run(b, &group, t)),
            "encode" => drop(plan.encode_assignments(3).expect("encodes")),
            _ => drop(lead(b, &metadata, t).expect("leads")),
        }
        rounds.push(ms(start.elapsed()));
    }
    println!("{phase}: {}", rounds.join(", "));
}

fn main() {
    let t = topics(500, 2000);
    // `LEADER_STEP_PROFILE=decode|assign|encode|lead`: repeat one phase of the fresh
    // cooperative-sticky step (sticky with `LEADER_STEP_STICKY=1`, the second round with `LEADER_STEP_SECOND=1`, one joining it with `=join`; the assignment on the members as
    // `lead` decodes them with `LEADER_STEP_DECODED=1`) for `perf record`, printing
    // each round's time (the first rounds pay for the allocator's growth).
    if let Ok(phase) = std::env::var("LEADER_STEP_PROFILE") {
        profile(&phase, &t);
        return;
    }
    println!("| balancer | workload | decode | assign | encode | whole `lead` |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, b) in [
        ("sticky", &Sticky::default() as &dyn Balancer),
        ("cooperative-sticky", &CooperativeSticky),
    ] {
        let fresh = members(2000, &t, false);
        let first = run(b, &fresh, &t);
        let second = with_previous(&fresh, &first, 0, 1);
        let mut joined = second.clone();
        joined.push(joiner(&t));
        for (workload, group) in [
            ("fresh", &fresh),
            ("second round", &second),
            ("one joins", &joined),
        ] {
            let metadata = join_metadata(group);
            // Decoding as `lead` does it (on the machine's cores, a repeated topic list
            // shared).
            let decode = median(|| {
                let start = Instant::now();
                let decoded = decode_members(&metadata);
                let d = start.elapsed();
                drop(decoded);
                d
            });
            let assign = median(|| {
                let start = Instant::now();
                let plan = run(b, group, &t);
                let d = start.elapsed();
                drop(plan);
                d
            });
            let plan = run(b, group, &t);
            let encode = median(|| {
                let start = Instant::now();
                let out: Vec<Bytes> = plan.encode_assignments(3).expect("encodes");
                let d = start.elapsed();
                drop(out);
                d
            });
            let whole = median(|| {
                let start = Instant::now();
                let led = lead(b, &metadata, &t).expect("leads");
                let d = start.elapsed();
                drop(led);
                d
            });
            println!(
                "| {name} | {workload} | {} | {} | {} | **{}** |",
                ms(decode),
                ms(assign),
                ms(encode),
                ms(whole)
            );
        }
    }
}
