#!/usr/bin/env bash
# Hostile and careless use of the `cohort` command, each probe with what it must do: refuse
# with a clear error (exit 2 or 1 and a message), never panic, never abort on memory, never
# leave a process behind. Every probe runs under a 4 GiB address-space limit, so an
# allocation sized from the input aborts the probe (and fails it) instead of the machine.
# The fetch path's memory is probed by `group-core/tests/hostile_fetch.rs`, the decoders by
# `scripts/fuzz.sh`; this script covers the command line, files, the network and signals.
#
#   scripts/probes.sh [path/to/cohort]     (default: target/release/cohort, built if missing)
#
# Prints one line per probe and a summary; exits 1 when any probe fails.
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/cohort}"
[ -x "$bin" ] || cargo build --release -p cohort-harness >&2 || exit 1
bin="$(realpath "$bin")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
limit_kb=$((4 << 20))
pass=0 fail=0 panics=0 aborts=0 leaks=0

# probe NAME WANT_EXIT PATTERN -- COMMAND...: runs the command (stdin from $work/stdin if it
# exists), expects its exit status in WANT_EXIT (a regex) and PATTERN in its output.
probe() {
  local name="$1" want="$2" pattern="$3"
  shift 4
  local out="$work/out" status
  if [ -f "$work/stdin" ]; then
    (ulimit -v "$limit_kb"; timeout -s KILL 120 "$@" <"$work/stdin") >"$out" 2>&1
  else
    (ulimit -v "$limit_kb"; timeout -s KILL 120 "$@" </dev/null) >"$out" 2>&1
  fi
  status=$?
  rm -f "$work/stdin"
  local why=""
  if grep -q "panicked" "$out"; then why="panicked"; panics=$((panics + 1))
  elif [ "$status" -ge 128 ] || grep -qE "memory allocation of .* failed|out of memory" "$out"; then
    why="killed or aborted (exit $status)"; aborts=$((aborts + 1))
  elif ! [[ "$status" =~ ^($want)$ ]]; then why="exit $status, wanted $want"
  elif ! grep -qE -- "$pattern" "$out"; then why="no /$pattern/ in the output"
  fi
  if [ -z "$why" ]; then
    pass=$((pass + 1)); printf "ok    %s\n" "$name"
  else
    fail=$((fail + 1)); printf "FAIL  %s: %s\n" "$name" "$why"; head -c 600 "$out" | sed 's/^/      /'
  fi
}

stdin() { printf "%s" "$1" >"$work/stdin"; }

# --- cohort assign: documents sized to exhaust memory, malformed ones ----------------------
assign() { stdin "$2"; probe "assign: $1" 2 "$3" -- "$bin" assign; }
assign "a topic of 2^32-2 partitions" '{"balancer":"range","topics":{"t":4294967294},"members":[{"id":"m","topics":["t"]}]}' "partition count"
assign "two topics of 2^31-1 partitions" '{"balancer":"range","topics":{"a":2147483647,"b":2147483647},"members":[{"id":"m","topics":["a","b"]}]}' "partition count"
assign "10^8 partitions" '{"balancer":"sticky","topics":{"t":100000000},"members":[{"id":"m","topics":["t"]}]}' "partition count"
assign "a negative partition count" '{"balancer":"range","topics":{"t":-1},"members":[{"id":"m","topics":["t"]}]}' "t"
assign "a partition count that is text" '{"balancer":"range","topics":{"t":"many"},"members":[{"id":"m","topics":["t"]}]}' "t"
assign "duplicate member ids" '{"balancer":"range","topics":{"t":3},"members":[{"id":"m","topics":["t"]},{"id":"m","topics":["t"]}]}' "more than once"
assign "weight 0" '{"balancer":"cohort-weighted-sticky","topics":{"t":3},"members":[{"id":"m","topics":["t"],"weight":0}]}' "weight"
assign "weight 2^32-1" '{"balancer":"cohort-weighted-sticky","topics":{"t":3},"members":[{"id":"m","topics":["t"],"weight":4294967295}]}' "weight"
assign "an unknown balancer" '{"balancer":"nope","topics":{"t":3},"members":[{"id":"m","topics":["t"]}]}' "nope"
assign "not JSON" '{"balancer": ' "JSON|EOF|expected"
# A claim a leader cannot honour is what a real group sends too: ignored, with a warning.
stdin '{"balancer":"sticky","topics":{"t":3},"members":[{"id":"m","topics":["t"],"owned":{"t":[2147483647]}}]}'
probe "assign: an owned partition past the topic's end (a warning)" 0 "ignored" -- "$bin" assign
stdin '{"balancer":"range","topics":{},"members":[{"id":"m","topics":["ghost"]}]}'
probe "assign: a topic nobody has (a warning)" 0 "not in metadata" -- "$bin" assign
gen_max='{"balancer":"sticky","topics":{"t":3},"members":[{"id":"m","topics":["t"],"generation":2147483647}],"steps":["rebalance","rebalance"]}'
stdin "$gen_max"; probe "assign --steps: generations past i32::MAX" 2 "generation" -- "$bin" assign --steps
members=$(python3 -c 'import json;print(json.dumps({"balancer":"range","topics":{"t":10},"members":[{"id":f"m{i}","topics":["t"]} for i in range(200000)]}))')
stdin "$members"; probe "assign: 200,000 members" 2 "members" -- "$bin" assign

# --- cohort run: scenario values out of range, malformed files, flags ----------------------
scenario() {
  printf 'name = "p"\nduration = "10s"\n[[topics]]\nname = "t"\npartitions = 3\n[[members]]\nname = "m"\n%s\n' "$2" >"$work/s.toml"
  probe "run: $1" 2 "$3" -- "$bin" run "$work/s.toml" --broker tansu --out "$work/r"
}
scenario "a member count of 4e9" $'count = 4000000000' "count"
scenario "an action at 10^9 hours" $'[[actions]]\nat = "1000000000h"\naction = "crash"\ntarget = "m"' "at"
scenario "a record size of 1e10" $'[producer]\nrate = 10\nrecord_size = 10000000000' "record_size"
scenario "a rate of 2^32-1" $'[producer]\nrate = 4294967295' "rate"
scenario "a negative rate" $'[producer]\nrate = -5' "rate|invalid"
scenario "an unknown action" $'[[actions]]\nat = "1s"\naction = "explode"\ntarget = "m"' "explode|unknown"
scenario "a target that is no member" $'[[actions]]\nat = "1s"\naction = "crash"\ntarget = "ghost"' "ghost"
scenario "a repeat of 10^12" $'[[actions]]\nat = "1s"\naction = "drop"\ntarget = "m"\nrepeat = 1000000000000\nevery = "1s"' "repeat"
scenario "12 nodes" $'[broker]\nnodes = 12' "nodes"
printf 'name = "p"\nduration = "1000000000h"\n[[topics]]\nname = "t"\npartitions = 3\n[[members]]\nname = "m"\n' >"$work/long.toml"
probe "run: a duration of 10^9 hours" 2 "duration" -- "$bin" run "$work/long.toml" --broker tansu --out "$work/r"
probe "run: --scale 2^32-1" 2 "scale" -- "$bin" run smoke --scale 4294967295 --broker tansu --out "$work/r"
probe "run: --duration 0s" 2 "duration" -- "$bin" run smoke --duration 0s --broker tansu --out "$work/r"
printf '\x00\xff garbage [[[' >"$work/bad.toml"
probe "run: a file that is not TOML" 2 "." -- "$bin" run "$work/bad.toml" --broker tansu --out "$work/r"
probe "run: a scenario that does not exist" 2 "no such" -- "$bin" run /nonexistent.toml --out "$work/r"

# --- the network: nothing listening, garbage, hostile frames --------------------------------
# A member given an address nobody answers says so as a JSON error event, and keeps trying.
probe "member: nothing listens" 124 '"event":"error"' -- timeout -s TERM 8 "$bin" member --bootstrap 127.0.0.1:1 --group g --topic t
probe "member: an address that is not one" "1|2|124" "." -- timeout -s TERM 8 "$bin" member --bootstrap "not an address" --group g --topic t
# A broker that answers every request with hostile bytes: a frame claiming 2 GiB, a frame of
# garbage, a response for another correlation id, a trickle of one byte per second.
hostile() {
  python3 - "$1" "$work/port-$1" <<'EOF' &
import socket, struct, sys, threading, time
mode, portfile = sys.argv[1], sys.argv[2]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(64)
open(portfile, "w").write(str(s.getsockname()[1]))
def serve(c):
    try:
        while True:
            head = c.recv(4)
            if len(head) < 4: return
            n = struct.unpack(">i", head)[0]
            body = b""
            while len(body) < n:
                chunk = c.recv(n - len(body))
                if not chunk: return
                body += chunk
            corr = body[4:8]
            if mode == "huge": c.sendall(struct.pack(">i", 0x7fffffff) + corr + b"\0" * 64)
            elif mode == "garbage": c.sendall(struct.pack(">i", 40) + corr + bytes(range(36)))
            elif mode == "wrongid": c.sendall(struct.pack(">i", 8) + b"\x7f\x7f\x7f\x7f" + b"\0\0\0\0")
            elif mode == "trickle":
                for b in struct.pack(">i", 1000) + corr:
                    c.sendall(bytes([b])); time.sleep(1)
    except OSError:
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
  local pid=$!
  for _ in $(seq 50); do [ -s "$work/port-$1" ] && break; sleep 0.1; done
  # The trickle is only noticed when the request times out (30 s by default).
  local secs=10; [ "$1" = trickle ] && secs=45
  probe "member: a broker answering with $2" 124 '"event":"error"' -- timeout -s TERM "$secs" "$bin" member --bootstrap "127.0.0.1:$(cat "$work/port-$1")" --group g --topic t
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}
hostile huge "a 2 GiB frame"
hostile garbage "garbage"
hostile wrongid "another correlation id"
hostile trickle "one byte a second"

# --- signals: a run or a broker stopped by SIGINT, SIGTERM or SIGKILL leaves nothing ---------
# The probes start Tansu only; member processes are this binary's.
leftovers() { pgrep -f "tansu broker|$bin member" | grep -v "^$$\$" || true; }
before="$(leftovers | sort)"
# stopped NAME SIG WAIT -- COMMAND...: starts the command, sends SIG after WAIT seconds, and
# fails when a process of the probes outlives it.
stopped() {
  local name="$1" sig="$2" wait="$3"
  shift 4
  "$@" >"$work/stopped.log" 2>&1 &
  local pid=$!
  sleep "$wait"
  kill -s "$sig" "$pid"; wait "$pid" 2>/dev/null
  sleep 3
  local left
  left="$(comm -13 <(echo "$before") <(leftovers | sort))"
  if [ -n "$left" ]; then
    fail=$((fail + 1)); leaks=$((leaks + 1)); printf "FAIL  %s stopped by SIG%s left: %s\n" "$name" "$sig" "$left"
    kill -9 $left 2>/dev/null
  else
    pass=$((pass + 1)); printf "ok    %s stopped by SIG%s leaves no process\n" "$name" "$sig"
  fi
}
for sig in INT TERM KILL; do
  stopped run "$sig" 6 -- "$bin" run smoke --broker tansu --out "$work/sig-$sig"
done
for sig in INT TERM; do
  stopped broker "$sig" 3 -- "$bin" broker --broker tansu
done

echo "probes: $((pass + fail)) run, $pass ok, $fail failed ($panics panics, $aborts aborts, $leaks leaks)"
[ "$fail" -eq 0 ]
