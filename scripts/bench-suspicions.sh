#!/usr/bin/env bash
# False suspicions of the failure detector per peer-hour under random loss
# (issue 23's figure). Network namespaces on one bridge: a requester and N
# executors started the README's way (`plasm start`, no extra flags); every host
# drops the given share of the packets it receives (iptables statistic, so each
# way between two hosts loses that share). The requester (`plasm bench --watch`)
# watches every executor as while one of its jobs is there (a beat every 5 s, two
# missed and an unanswered probe make it failed) for the window; the executors
# never stop, so every suspicion is false. Needs root and iptables.
#
#   scripts/bench-suspicions.sh [LOSS_PERCENT] [SECONDS] [EXECUTORS]   (default 1 900 4)
#
# The control (CONTROL=1): executor 1 is stopped (SIGSTOP) 20 s into the window
# for 20 s, so the bench must count it suspect and failed: a run that counts
# nothing then shows the instrument cannot see a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
loss=${1:-1}
secs=${2:-900}
n=${3:-4}
[ "$(id -u)" -eq 0 ] || { echo "bench-suspicions: needs root (network namespaces)"; exit 1; }
command -v iptables >/dev/null || { echo "bench-suspicions: iptables missing"; exit 1; }
bin=${PLASM_BIN:-$PWD/target/debug/plasm}
[ -x "$bin" ] || cargo build --bin plasm
p="su$$"
work=$(mktemp -d /tmp/plasm-suspicions.XXXXXX)
cleanup() {
  for ns in $(ip netns list | awk -v p="$p" '$1 ~ "^"p {print $1}'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM HUP
ns() { ip netns exec "$p$1" "${@:2}"; }
ip netns add "${p}lan"
ns lan ip link set lo up
ns lan ip link add br0 type bridge
ns lan ip link set br0 up
# host NAME OCTET: a namespace on the bridge at 10.66.0.OCTET, dropping LOSS% of what it receives.
host() {
  ip netns add "$p$1"
  ns "$1" ip link set lo up
  ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip link add "$p$1a" type veth peer name "$p$1b"
  ip link set "$p$1a" netns "$p$1"
  ip link set "$p$1b" netns "${p}lan"
  ns "$1" ip link set "$p$1a" name eth0
  ns "$1" ip link set eth0 up
  ns "$1" ip addr add "10.66.0.$2/24" dev eth0
  ns lan ip link set "$p$1b" master br0
  ns lan ip link set "$p$1b" up
  ns "$1" iptables -I INPUT 1 -i eth0 -m statistic --mode random \
    --probability "$(awk -v l="$loss" 'BEGIN {printf "%.4f", l / 100}')" -j DROP
}
host req 2
addrs=()
for i in $(seq "$n"); do
  host "e$i" $((10 + i))
  ns "e$i" "$bin" start --data-dir "$work/e$i" > "$work/e$i.out" 2> "$work/e$i.err" &
done
for i in $(seq "$n"); do
  for _ in $(seq 100); do grep -q ' started$' "$work/e$i.out" 2>/dev/null && break; sleep 0.1; done
  id=$(awk '/ started$/ {print $3; exit}' "$work/e$i.out")
  [ -n "$id" ] || { echo "bench-suspicions: executor $i did not start"; cat "$work/e$i.err"; exit 1; }
  addrs+=(--watch "/ip4/10.66.0.$((10 + i))/udp/4610/quic-v1/p2p/$id")
done
echo "bench-suspicions: $n executors started the default way, ${loss}% loss on every host's input, ${secs} s"
if [ -n "${CONTROL:-}" ]; then
  e1=$(ip netns pids "${p}e1" | head -n 1)
  ( sleep 20; kill -STOP "$e1"; echo "bench-suspicions: control: executor 1 stopped"; sleep 20
    kill -CONT "$e1"; echo "bench-suspicions: control: executor 1 continued" ) &
fi
ns req "$bin" bench --seconds "$secs" "${addrs[@]}"
# The loss as the kernel counted it (each host's DROP rule and its INPUT total).
for h in req $(seq -f 'e%g' "$n"); do
  ns "$h" iptables -L INPUT -v -n -x | awk -v h="$h" \
    '/statistic/ {d=$1} END {printf "bench-suspicions: %s dropped %d packets of its input\n", h, d}'
  ns "$h" cat /proc/net/snmp | awk -v h="$h" '/^Ip: [0-9]/ {printf "bench-suspicions: %s delivered %d IP packets\n", h, $10}'
done
