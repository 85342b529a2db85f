//! Balancer quality and memory at the 1M-partition scale, to go with the criterion timings:
//! moves for one join and one leave, and peak memory of `assign` against the input's size.
//!
//! `cargo run --release -p cohort-benches --example balancer_scale`
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use cohort_balancers::{Balancer, CooperativeSticky, Sticky, metrics};
use cohort_benches::groups::{joiner, members, run, topics, with_previous};

struct Counting;
static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, adding only counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(l.size() as isize, Ordering::Relaxed) + l.size() as isize;
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn measure<T>(f: impl FnOnce() -> T) -> (T, isize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - base)
}

fn main() {
    let (t, topics_bytes) = measure(|| topics(500, 2000));
    let p = 1_000_000u64;
    for (name, b) in [
        ("sticky", &Sticky::default() as &dyn Balancer),
        ("cooperative-sticky", &CooperativeSticky),
    ] {
        let fresh = members(2000, &t, false);
        let first = run(b, &fresh, &t);
        let (all, input_bytes) = measure(|| with_previous(&fresh, &first, 0, 1));
        let input = input_bytes + topics_bytes;

        let start = Instant::now();
        let (second, peak) = measure(|| run(b, &all, &t));
        let elapsed = start.elapsed();
        let prev = metrics::previous_from_subscriptions(&all);
        let m = metrics::measure(&second, &all, &t, &prev, None).unwrap();
        println!(
            "{name}: steady round {elapsed:?}, moved {}, peak assign memory {:.1} MiB vs input {:.1} MiB",
            m.moved,
            peak as f64 / 1048576.0,
            input as f64 / 1048576.0
        );

        let mut join = all.clone();
        join.push(joiner(&t));
        let plan = run(b, &join, &t);
        let prev = metrics::previous_from_subscriptions(&join);
        let e = metrics::evaluate(b, &join, &t, &prev).unwrap();
        let _ = plan;
        println!(
            "{name}: one joins: moved {} (floor(P/(N+1)) = {}), lower bound {}, spread {}, rounds {:?}",
            e.metrics.moved,
            p / 2001,
            e.metrics.moved_lower_bound,
            e.metrics.spread,
            e.metrics.rounds
        );
        assert_eq!(e.metrics.moved, p / 2001);

        let leave: Vec<_> = all[1..].to_vec();
        let prev = metrics::previous_from_subscriptions(&leave);
        let e = metrics::evaluate(b, &leave, &t, &prev).unwrap();
        println!(
            "{name}: one leaves: moved {}, lower bound {}, spread {}",
            e.metrics.moved, e.metrics.moved_lower_bound, e.metrics.spread
        );
        assert_eq!(e.metrics.moved, 0);
    }
}
