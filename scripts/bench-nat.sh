#!/usr/bin/env bash
# Reachability figures in the NAT lab (tests/netns/lab.sh: a public bootstrap +
# relay, two homes behind MASQUERADE routers that drop unsolicited inbound).
# Every figure is the wall-clock time of whole `plasm` processes, measured here
# with `date +%s%N` around them, on the release binary. Needs root.
#
#   scripts/bench-nat.sh [TRIALS]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-20}
export PLASM_BIN=${PLASM_BIN:-$PWD/target/release/plasm}
[ -x "$PLASM_BIN" ] || cargo build --release --bin plasm
# shellcheck source=tests/netns/lab.sh
source tests/netns/lab.sh

ms() { echo $(( ($2 - $1) / 1000000 )); }
# pct P FILE: the P-th percentile (nearest rank) of the numbers in FILE.
pct() { sort -n "$2" | awk -v p="$1" '{a[NR]=$1} END {i=int((p/100)*NR+0.999); if (i<1) i=1; print a[i]}'; }

node boot boot --mode bootstrap --public \
  --listen /ip4/0.0.0.0/udp/4620/quic-v1 --listen /ip4/0.0.0.0/tcp/4620
boot_addr=/ip4/11.0.0.10/udp/4620/quic-v1/p2p/$(peer_of boot)

echo "== time from starting a NATed executor to its first remote job (5 fresh executors)"
: > "$work/first"
for i in 1 2 3 4 5; do
  t0=$(date +%s%N)
  node a1 "exec$i" --bootstrap "$boot_addr"
  until ns b1 timeout 20 "$PLASM_BIN" run --remote --data-dir "$work/c" --peer "$(peer_of "exec$i")" \
      --bootstrap "$boot_addr" "$hello" >/dev/null 2>&1; do
    sleep 0.1
  done
  ms "$t0" "$(date +%s%N)" >> "$work/first"
  for pid in $(ip netns pids "${p}a1"); do kill "$pid"; done
  sleep 0.5
done
echo "   start -> first job done (ms): $(tr '\n' ' ' < "$work/first")"

node a1 exec --bootstrap "$boot_addr"
exec_id=$(peer_of exec)

# trials LABEL: TRIALS fresh `plasm run --remote` processes from home B (each a new
# identity, so each needs a new relayed connection and a new hole punch).
trials() {
  local label=$1 done=0 punched=0 relayed=0 direct=0
  : > "$work/t-$label"
  for _ in $(seq "$trials"); do
    local t0 t1
    t0=$(date +%s%N)
    if ns b1 timeout 60 "$PLASM_BIN" run --remote --data-dir "$work/c" --bootstrap "$boot_addr" \
        "$hello" > /dev/null 2> "$work/err"; then
      t1=$(date +%s%N)
      done=$((done + 1))
      ms "$t0" "$t1" >> "$work/t-$label"
      cp "$work/err" "/tmp/bench-nat-last-$label.txt"
      if grep -q "ran on $exec_id (hole-punched)" "$work/err"; then punched=$((punched + 1));
      elif grep -q "ran on $exec_id (relayed" "$work/err"; then relayed=$((relayed + 1));
      else direct=$((direct + 1)); fi
    elif [ -z "${shown:-}" ]; then
      shown=1
      rm -rf /tmp/bench-nat-failure && mkdir -p /tmp/bench-nat-failure
      cp "$work"/*.err "$work/err" /tmp/bench-nat-failure/
      echo "   (first failure: logs in /tmp/bench-nat-failure)"
    fi
  done
  echo "   $label: $done/$trials jobs completed; paths: $punched hole-punched, $relayed relayed, $direct other"
  echo "   $label: whole process p50 $(pct 50 "$work/t-$label") ms, p95 $(pct 95 "$work/t-$label") ms"
}

echo "== endpoint-independent NAT (MASQUERADE keeps ports) on both homes, $trials trials"
trials eim
echo "== port-randomising NAT (MASQUERADE --random-fully) on both homes, $trials trials"
for r in rA rB; do
  net=192.168.$([ "$r" = rA ] && echo 1 || echo 2).0/24
  ns "$r" iptables -t nat -F POSTROUTING
  ns "$r" iptables -t nat -A POSTROUTING -s "$net" -o wan -j MASQUERADE --random-fully
done
# The executor keeps its old mapping while its connection to the relay lives; a new
# one gets a random port.
trials random
