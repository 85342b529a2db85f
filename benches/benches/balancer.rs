//! Balancer benchmarks at the scale of the Java assignor test suite's large workloads:
//! 1,000,000 partitions (500 topics x 2,000) over 2,000 members, fresh and second round, one
//! divergent member, one join and one leave; 50,000 partitions / 1,000 members; 24,000 / 100.
//!
//! `cargo bench -p cohort-benches --bench balancer`
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::hint::black_box;
use std::time::Duration;

use cohort_balancers::{Balancer, CooperativeSticky, Sticky};
use cohort_benches::groups::{joiner, members, run, topics, with_previous};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn large(c: &mut Criterion) {
    let mut g = c.benchmark_group("balancer/1M-partitions-2000-members");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(2));
    let t = topics(500, 2000);
    for (name, b) in [
        ("sticky", &Sticky::default() as &dyn Balancer),
        ("cooperative-sticky", &CooperativeSticky),
    ] {
        for divergent in [false, true] {
            let suffix = if divergent { "-divergent" } else { "" };
            let fresh = members(2000, &t, divergent);
            g.bench_function(BenchmarkId::new(name, format!("fresh{suffix}")), |bench| {
                bench.iter(|| black_box(run(b, &fresh, &t)))
            });
            let first = run(b, &fresh, &t);
            // Second round: members 1..1999 report their previous assignment.
            let second = with_previous(&fresh, &first, 1, 1);
            g.bench_function(
                BenchmarkId::new(name, format!("second-round{suffix}")),
                |bench| bench.iter(|| black_box(run(b, &second, &t))),
            );
            if !divergent {
                let all = with_previous(&fresh, &first, 0, 1);
                let mut join = all.clone();
                join.push(joiner(&t));
                g.bench_function(BenchmarkId::new(name, "one-joins"), |bench| {
                    bench.iter(|| black_box(run(b, &join, &t)))
                });
                let leave: Vec<_> = all[1..].to_vec();
                g.bench_function(BenchmarkId::new(name, "one-leaves"), |bench| {
                    bench.iter(|| black_box(run(b, &leave, &t)))
                });
            }
        }
    }
    g.finish();
}

fn medium(c: &mut Criterion) {
    for (partitions, n) in [((50usize, 1000u32), 1000usize), ((24, 1000), 100)] {
        let t = topics(partitions.0, partitions.1);
        let total = partitions.0 * partitions.1 as usize;
        let mut g = c.benchmark_group(format!("balancer/{total}-partitions-{n}-members"));
        g.sample_size(20);
        for (name, b) in [
            ("sticky", &Sticky::default() as &dyn Balancer),
            ("cooperative-sticky", &CooperativeSticky),
        ] {
            let fresh = members(n, &t, false);
            g.bench_function(BenchmarkId::new(name, "fresh"), |bench| {
                bench.iter(|| black_box(run(b, &fresh, &t)))
            });
            let first = run(b, &fresh, &t);
            let second = with_previous(&fresh, &first, 1, 1);
            g.bench_function(BenchmarkId::new(name, "second-round"), |bench| {
                bench.iter(|| black_box(run(b, &second, &t)))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, large, medium);
criterion_main!(benches);
