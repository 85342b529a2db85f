#!/usr/bin/env bash
# Every client side by side on one Apache Kafka broker, in one run, with the machine and date:
# consume throughput and client CPU (cohort, librdkafka, Java, kafka-go, sarama, franz-go, and the
# pure-Rust krafka and kacrab), then balancer compute at 1M partitions / 2,000 members (cohort,
# Java, franz-go, sarama). Prints the Markdown tables docs/BENCHMARKS.md quotes and redraws its
# charts in docs/img; then rebalance latency (a member joins a group of 4, leaves, a static
# member restarts) for every client. About 35 minutes.
#
# Usage: scripts/bench-clients.sh [ROUNDS]   (default 3; the balancer compute takes the best of
# twice as many, since every client's first steps of a process pay for warming up: glibc's
# allocator thresholds for cohort, the JIT for Java, the heap for the Go clients)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), rustc $(rustc --version | cut -d' ' -f2)"
scripts/install.sh >/dev/null
cargo build --release -q -p cohort-benches --example consume_clients --example balancer_clients
echo
echo "## Consume throughput"
COHORT_BENCH_SVG=docs/img/consume_clients.svg ./target/release/examples/consume_clients "$rounds"
echo
echo "## Balancer compute, 1M partitions / 2,000 members"
COHORT_BENCH_SVG=docs/img/balancer_clients.svg ./target/release/examples/balancer_clients "$((rounds * 2))" 120
echo
echo "## Rebalance latency, a group of 4: a member joins, then leaves"
cargo build --release -q -p cohort-benches --example protocol_rebalance
COHORT_BENCH_SVG=docs/img/rebalance_clients.svg ./target/release/examples/protocol_rebalance --all-clients "$rounds" 4
