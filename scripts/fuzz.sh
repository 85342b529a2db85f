#!/usr/bin/env bash
# Bounded fuzz runs of the wire codecs: the frame decoder, every response decoder, the record
# batch decoder and the consumer protocol, FUZZ_SECONDS each (default 60).
#
# cargo-fuzz wants nightly compiler flags; RUSTC_BOOTSTRAP lets the pinned stable toolchain take
# them, and `-s none` skips the sanitizer runtime (the code under test is safe Rust: a panic,
# an overflow or an allocation beyond the limit is what we look for).
set -euo pipefail
cd "$(dirname "$0")/../kafka-protocol/fuzz"
secs="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-frame_decoder responses record_batch consumer_protocol}"
export RUSTC_BOOTSTRAP=1
# Built first, unfiltered: a target that does not compile must fail the run, not vanish in the
# output filter below.
for t in $targets; do cargo fuzz build -O -s none "$t"; done
for t in $targets; do
  echo "fuzz: $t for ${secs}s"
  mkdir -p "corpus/$t"
  # -rss_limit_mb and -malloc_limit_mb: a decoder that allocates beyond what the input allows
  # is a finding, not just a slow run.
  cargo fuzz run -O -s none "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=1024 -malloc_limit_mb=256 -print_final_stats=1 \
    2>&1 | grep -E "^(#[0-9]+ *DONE|INFO: Running|stat::number_of_executed_units|==|SUMMARY|thread|panicked)" || true
  if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz: $t found a crash:"; ls "artifacts/$t"; exit 1
  fi
done
echo "fuzz: no findings"
