#!/usr/bin/env bash
# Builds rustbench (harness/clients/rust: the krafka and kacrab consumers timed, for the
# benchmarks beside Cohort) and prints the path of the binary. Idempotent: the build is keyed by
# the sources' hash (Cargo.toml, Cargo.lock, src/) and reused; the crates come from crates.io the
# first time, at the versions Cargo.lock pins. A package of its own, outside Cohort's workspace,
# so those clients' dependency trees never enter Cohort's.
#
# Usage: install-rust-clients.sh [SOURCE_DIR]   (default: harness/clients/rust beside this script)
# Environment: COHORT_CACHE_DIR (cache root), CARGO (the cargo command; default cargo on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" 2>/dev/null && pwd || true)"
src="${1:-$here/../clients/rust}"
if [ ! -f "$src/Cargo.toml" ] || [ ! -f "$src/Cargo.lock" ]; then
  echo "install-rust-clients: no $src/Cargo.toml and Cargo.lock" >&2
  exit 1
fi
cargo="${CARGO:-cargo}"
cache="${COHORT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cohort}"
key="$(cd "$src" && find . -name '*.rs' -o -name 'Cargo.toml' -o -name 'Cargo.lock' | grep -v '^./target' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)"
dest="$cache/clients/rust/$key/rustbench"
if [ -x "$dest" ]; then
  echo "$dest"
  exit 0
fi
mkdir -p "$cache/clients/rust"
echo "install-rust-clients: building rustbench (krafka, kacrab) in release mode" >&2
# One target folder for every version of the sources, so a change rebuilds only what changed.
"$cargo" build --release --locked --manifest-path "$src/Cargo.toml" \
  --target-dir "$cache/clients/rust/target" >&2
tmp="$(mktemp "$cache/clients/rust/.rustbench.XXXXXX")"
cp "$cache/clients/rust/target/release/rustbench" "$tmp"
chmod 755 "$tmp"
mkdir -p "$(dirname "$dest")"
mv -f "$tmp" "$dest"
echo "$dest"
