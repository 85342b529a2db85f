#!/usr/bin/env bash
# Builds the harness's Go members (harness/clients/go: segmentio/kafka-go, IBM/sarama and
# twmb/franz-go consumer groups driven like a cohort member, and assignbench, which times
# franz-go's and sarama's sticky balancers) and prints the folder holding the four binaries. Idempotent: the build is keyed by the sources'
# hash and reused; the modules come from the Go module proxy the first time (go.sum pins them).
#
# Usage: install-go-members.sh [SOURCE_DIR]   (default: harness/clients/go beside this script)
# Environment: COHORT_CACHE_DIR (cache root), GO (the go command; default go on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" 2>/dev/null && pwd || true)"
src="${1:-$here/../clients/go}"
if [ ! -f "$src/go.mod" ]; then
  echo "install-go-members: no $src/go.mod" >&2
  exit 1
fi
go="${GO:-go}"
if ! command -v "$go" >/dev/null 2>&1; then
  echo "install-go-members: Go is missing ('$go'); the Go members need Go 1.24+" >&2
  exit 1
fi
cache="${COHORT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cohort}"
key="$(cd "$src" && find . -name '*.go' -o -name 'go.mod' -o -name 'go.sum' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)"
dest="$cache/clients/go/$key"
bins="kafka-go sarama franz-go assignbench consumebench"
complete() { for c in $bins; do [ -x "$1/$c" ] || return 1; done; }
if complete "$dest"; then
  echo "$dest"
  exit 0
fi
mkdir -p "$cache/clients/go"
tmp="$(mktemp -d "$cache/clients/go/.build-$key.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "install-go-members: building $bins" >&2
for c in $bins; do
  (cd "$src" && "$go" build -mod=readonly -o "$tmp/$c" "./$c") >&2
done
# Two builds at once (parallel tests) may both get here: the first rename wins, so a folder
# already printed is never replaced under a running member. An incomplete folder goes first.
if [ -d "$dest" ] && ! complete "$dest"; then
  rm -rf "$dest"
fi
mv -T "$tmp" "$dest" 2>/dev/null || true
echo "$dest"
