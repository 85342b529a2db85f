#!/usr/bin/env bash
# Bounded fuzz runs: the frame decoder, every response decoder, the record batch decoder, the
# consumer protocol, the fetch path as the consumer runs it (response, batches, decompression,
# decode budget) and the member state machine fed arbitrary answers; FUZZ_SECONDS each
# (default 60). Prints the executions per target; fails when a target cannot be built or run,
# or finds a crash.
#
# cargo-fuzz wants nightly compiler flags; RUSTC_BOOTSTRAP lets the pinned stable toolchain take
# them, and `-s none` skips the sanitizer runtime (the code under test is safe Rust: a panic,
# an overflow or an allocation beyond the limit is what we look for). `-O -a`: optimised, with
# debug assertions and overflow checks on (`-O` alone turns them off).
set -euo pipefail
cd "$(dirname "$0")/../kafka-protocol/fuzz"
secs="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-frame_decoder responses record_batch consumer_protocol fetch_path member}"
export RUSTC_BOOTSTRAP=1
# Built first, unfiltered: a target that does not compile must fail the run, not vanish in the
# output filter below.
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is not installed (scripts/install.sh installs it)" >&2; exit 1; }
for t in $targets; do cargo fuzz build -O -a -s none "$t"; done
summary=""
for t in $targets; do
  echo "fuzz: $t for ${secs}s"
  # corpus/ is this machine's working corpus (ignored by git); regressions/ is the committed,
  # minimised corpus of earlier campaigns and every input that once crashed a target: each run
  # replays all of it first, so a fixed finding that comes back fails CI.
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "regressions/$t" ] && seeds=("regressions/$t")
  # -rss_limit_mb and -malloc_limit_mb: a decoder that allocates beyond what the input allows
  # is a finding, not just a slow run.
  log="$(mktemp)"
  status=0
  cargo fuzz run -O -a -s none "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=1024 -malloc_limit_mb=256 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^(#[0-9]+ *DONE|INFO: Running|stat::number_of_executed_units|==|SUMMARY|thread|panicked)" "$log" || true
  if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz: $t found a crash:"; ls "artifacts/$t"; tail -40 "$log"; exit 1
  fi
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $t did not run (exit $status):"; tail -40 "$log"; exit 1
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  if [ -z "$execs" ]; then
    echo "fuzz: $t printed no execution count:"; tail -40 "$log"; exit 1
  fi
  summary="$summary$t: $execs executions in ${secs}s"$'\n'
  rm -f "$log"
done
printf "%s" "$summary"
echo "fuzz: no findings"
