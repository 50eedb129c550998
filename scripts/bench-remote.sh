#!/usr/bin/env bash
# Remote-run latency on a loopback mesh, started as the README's single-host recipe
# starts it (a bootstrap node and two default executors, each with its own data dir
# and ports): TRIALS fresh `plasm run --remote` processes, each timed whole with
# `date +%s%N` around it, then p50 / p95 / max (nearest rank).
#
#   scripts/bench-remote.sh [TRIALS] [PLASM]     (default 20, target/release/plasm)
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-20}
bin=${2:-$PWD/target/release/plasm}
[ -x "$bin" ] || cargo build --release --bin plasm
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
pct() { sort -n "$2" | awk -v p="$1" '{a[NR]=$1} END {i=int((p/100)*NR+0.999); if (i<1) i=1; print a[i]}'; }
start() { # NAME PORT ARGS...
  local name=$1 port=$2; shift 2
  "$bin" start --data-dir "$work/$name" --listen "/ip4/127.0.0.1/udp/$port/quic-v1" \
    --api "127.0.0.1:$((port + 1))" "$@" > "$work/$name.out" 2> "$work/$name.err" &
  for _ in $(seq 100); do grep -q '^api ' "$work/$name.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "bench-remote: $name did not start"; cat "$work/$name.err"; exit 1
}
start boot 24610 --mode bootstrap
boot=/ip4/127.0.0.1/udp/24610/quic-v1/p2p/$(awk '/ started$/ {print $3; exit}' "$work/boot.out")
start e1 24620 --bootstrap "$boot"
start e2 24630 --bootstrap "$boot"
hello=examples/wat/hello.wat
until "$bin" run --remote --bootstrap "$boot" --data-dir "$work/c" "$hello" >/dev/null 2>&1; do sleep 0.2; done
: > "$work/t"
for _ in $(seq "$trials"); do
  t0=$(date +%s%N)
  "$bin" run --remote --bootstrap "$boot" --data-dir "$work/c" "$hello" > /dev/null 2> "$work/err" ||
    { echo "bench-remote: a run failed:"; cat "$work/err"; exit 1; }
  echo $(( ($(date +%s%N) - t0) / 1000000 )) >> "$work/t"
done
echo "remote run on a loopback mesh, $trials fresh processes: p50 $(pct 50 "$work/t") ms, p95 $(pct 95 "$work/t") ms, max $(pct 100 "$work/t") ms"
