#!/usr/bin/env bash
# The NAT lab: real plasm processes on network namespaces, started the way the
# README starts them (no --public on executors, no extra flags).
#
#   internet (bridge, 11.0.0.0/24, a routed range that never leaves this lab)
#     boot    11.0.0.10   bootstrap node + relay (plasm-bootstrap's flags)
#     rA      11.0.0.2 -> home A 192.168.1.0/24 (MASQUERADE, drops unsolicited inbound)
#         a1  192.168.1.10  default executor (--bootstrap only)
#         a2  192.168.1.11  default executor with no bootstrap (found by mDNS)
#         a3  192.168.1.12  a client on the same LAN with no bootstrap
#     rB      11.0.0.3 -> home B 192.168.2.0/24
#         b1  192.168.2.10  the client (plasm run --remote --bootstrap)
#
# Checks: the job runs on the NATed executor unpinned and pinned (--peer); with
# 20% random loss and 50 ms delay on both routers (tests/netns/nfqdelay.py); behind port-randomising NATs
# (MASQUERADE --random-fully) where the relay must carry it; and two hosts on one
# LAN with no bootstrap find each other by mDNS. Every namespace, link and process
# is removed on exit, on failure and on signals. Needs root and iptables.
set -euo pipefail
cd "$(dirname "$0")/../.."
pass=0
fail=0
# shellcheck source=tests/netns/lab.sh
source tests/netns/lab.sh

ok() { pass=$((pass + 1)); echo "netns test: ok - $*"; }
bad() { fail=$((fail + 1)); echo "netns test: FAILED - $*"; }

# remote CHECK_NAME NS EXPECT_EXECUTOR EXPECT_PATH_REGEX ARGS...: one plasm run --remote.
remote() {
  local name=$1 n=$2 want=$3 path=$4
  shift 4
  local t0 t1 out err
  t0=$(date +%s%N)
  if out=$(ns "$n" timeout 60 "$bin" run --remote --data-dir "$work/client-$n" "$@" "$hello" 2> "$work/run.err"); then
    t1=$(date +%s%N)
    err=$(cat "$work/run.err")
    if [ "$out" = "hello from plasm" ] && grep -Eq "ran on $want" <<<"$err" && grep -Eq "$path" <<<"$err"; then
      ok "$name: $(grep -o 'ran on .*' <<<"$err") in $(( (t1 - t0) / 1000000 )) ms"
      return 0
    fi
    bad "$name: output '$out', stderr: $err"
  else
    bad "$name: exit $?: $(cat "$work/run.err")"
  fi
}

node boot boot --mode bootstrap --public \
  --listen /ip4/0.0.0.0/udp/4620/quic-v1 --listen /ip4/0.0.0.0/tcp/4620
boot_id=$(peer_of boot)
boot_addr=/ip4/11.0.0.10/udp/4620/quic-v1/p2p/$boot_id

# The README's executor, in a home behind NAT.
started=$(date +%s%N)
node a1 a1 --bootstrap "$boot_addr"
a1_pid=$!
a1_id=$(peer_of a1)

# Time from start to the first remote job: poll until the job lands.
first=""
for _ in $(seq 60); do
  if ns b1 timeout 20 "$bin" run --remote --data-dir "$work/first" --bootstrap "$boot_addr" "$hello" >/dev/null 2>&1; then
    first=$(( ($(date +%s%N) - started) / 1000000 ))
    break
  fi
  sleep 0.25
done
if [ -n "$first" ]; then ok "NATed executor served its first remote job $first ms after it started"; else bad "NATed executor never served a job"; fi

remote "unpinned, across two NATs" b1 "$a1_id" "hole-punched|relayed" --bootstrap "$boot_addr"
remote "pinned with --peer" b1 "$a1_id" "hole-punched|relayed" --bootstrap "$boot_addr" --peer "$a1_id"

# 20% random loss on both routers' forwarding (each way) and 50 ms of delay on
# both routers' outside links (NFQUEUE: tc netem does not exist on these kernels).
for r in rA rB; do
  ns "$r" iptables -I FORWARD 1 -m statistic --mode random --probability 0.2 -j DROP
  ns "$r" iptables -t mangle -A POSTROUTING -o wan -j NFQUEUE --queue-num 7 --queue-bypass
  ns "$r" /usr/bin/python3 tests/netns/nfqdelay.py 7 50 &
done
sleep 0.5
remote "20% loss and 50 ms delay on both routers" b1 "$a1_id" "hole-punched|relayed" --bootstrap "$boot_addr"
for r in rA rB; do
  ns "$r" iptables -D FORWARD 1
  ns "$r" iptables -t mangle -F POSTROUTING
  for pid in $(ip netns pids "$p$r"); do kill "$pid" 2>/dev/null || true; done
done

# Port-randomising NATs: punching cannot work; the relay carries the job.
for r in rA rB; do
  net=192.168.$([ "$r" = rA ] && echo 1 || echo 2).0/24
  ns "$r" iptables -t nat -F POSTROUTING
  ns "$r" iptables -t nat -A POSTROUTING -s "$net" -o wan -j MASQUERADE --random-fully
  echo 1 > /dev/null
done
remote "behind MASQUERADE --random-fully" b1 "$a1_id" "relayed via $boot_id" --bootstrap "$boot_addr"

# The LAN: no bootstrap at all, found by mDNS. The job must land on a2, the
# executor started with no bootstrap: pinned first (only mDNS can have told the
# client its address), then unpinned with a1 (which has a bootstrap) stopped.
node a2 a2
a2_id=$(peer_of a2)
remote "LAN, pinned to the executor with no bootstrap (mDNS address)" a3 "$a2_id" "direct" --peer "$a2_id"
kill "$a1_pid" 2>/dev/null || true
pkill -f -- "--data-dir $work/a1 " 2>/dev/null || true
wait "$a1_pid" 2>/dev/null || true
remote "LAN, no bootstrap (mDNS): found the executor with no bootstrap" a3 "$a2_id" "direct"

if [ "$fail" -gt 0 ]; then
  for f in "$work"/*.err; do echo "--- $(basename "$f")"; grep -v "^\s*$" "$f" | tail -n 25 | cut -c1-240; done
fi
echo "netns: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
