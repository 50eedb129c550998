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
# 20% random loss on both routers; behind port-randomising NATs
# (MASQUERADE --random-fully) where the relay must carry it; and two hosts on one
# LAN with no bootstrap find each other by mDNS. Every namespace, link and process
# is removed on exit, on failure and on signals. Needs root and iptables.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "netns test: skipped (needs root for network namespaces); run as root to include it"
  exit 0
fi
command -v iptables >/dev/null || { echo "netns test: iptables missing (scripts/setup.sh installs it)" >&2; exit 1; }

bin=${PLASM_BIN:-$PWD/target/debug/plasm}
[ -x "$bin" ] || { echo "netns test: $bin missing (cargo build --bin plasm)" >&2; exit 1; }
hello=$PWD/examples/wat/hello.wat
p="pl$$"                       # a unique prefix per run
work=$(mktemp -d /tmp/plasm-netns.XXXXXX)
pass=0
fail=0

cleanup() {
  for ns in $(ip netns list | awk -v p="$p" '$1 ~ "^"p {print $1}'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM HUP

ns() { ip netns exec "$p$1" "${@:2}"; }
mkns() {
  ip netns add "$p$1"
  ns "$1" ip link set lo up
  ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
# link NS_A IF_A NS_B IF_B: a veth pair between two namespaces.
link() {
  ip link add "$p$2" type veth peer name "$p$4"
  ip link set "$p$2" netns "$p$1"
  ip link set "$p$4" netns "$p$3"
  ns "$1" ip link set "$p$2" name "$2"
  ns "$3" ip link set "$p$4" name "$4"
  ns "$1" ip link set "$2" up
  ns "$3" ip link set "$4" up
}

# --- topology ---------------------------------------------------------------
mkns inet
ns inet ip link add br0 type bridge
ns inet ip link set br0 up
mkns boot
link boot eth0 inet vboot
ns inet ip link set vboot master br0
ns boot ip addr add 11.0.0.10/24 dev eth0

# home NAME OCTET ROUTER_IP: a router namespace with a LAN bridge behind NAT.
home() {
  local r=r$1 net=192.168.$2
  mkns "$r"
  link "$r" wan inet "v$r"
  ns inet ip link set "v$r" master br0
  ns "$r" ip addr add "$3/24" dev wan
  ns "$r" ip link add lan type bridge
  ns "$r" ip link set lan type bridge mcast_snooping 0
  ns "$r" ip link set lan up
  ns "$r" ip addr add "$net.1/24" dev lan
  ns "$r" sysctl -qw net.ipv4.ip_forward=1
  ns "$r" iptables -t nat -A POSTROUTING -s "$net.0/24" -o wan -j MASQUERADE
  # A home router: nothing unsolicited comes in.
  ns "$r" iptables -P FORWARD DROP
  ns "$r" iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  ns "$r" iptables -A FORWARD -i lan -o wan -j ACCEPT
  # Hosts on the LAN talk freely (bridged traffic meets iptables where br_netfilter is loaded).
  ns "$r" iptables -A FORWARD -i lan -o lan -j ACCEPT
  ns "$r" iptables -A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  ns "$r" iptables -A INPUT -i wan -j DROP
}
# host NAME HOME OCTET.HOST
host() {
  local h=$1 r=r$2
  mkns "$h"
  link "$h" eth0 "$r" "v$h"
  ns "$r" ip link set "v$h" master lan
  ns "$h" ip addr add "192.168.$3/24" dev eth0
  ns "$h" ip route add default via "192.168.${3%.*}.1"
}
home A 1 11.0.0.2
home B 2 11.0.0.3
host a1 A 1.10
host a2 A 1.11
host a3 A 1.12
host b1 B 2.10

# --- processes ----------------------------------------------------------------
# node NS NAME ARGS...: `plasm start` in a namespace; waits for its api line.
node() {
  local n=$1 name=$2
  shift 2
  ns "$n" "$bin" start --data-dir "$work/$name" --api 127.0.0.1:4611 "$@" \
    > "$work/$name.out" 2> "$work/$name.err" &
  for _ in $(seq 100); do grep -q '^api ' "$work/$name.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "netns test: $name did not start"; cat "$work/$name.err"; exit 1
}
peer_of() { awk '/ started$/ {print $3; exit}' "$work/$1.out"; }

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

remote "unpinned, across two NATs" b1 "$a1_id" "hole-punched|relayed|direct" --bootstrap "$boot_addr"
remote "pinned with --peer" b1 "$a1_id" "hole-punched|relayed|direct" --bootstrap "$boot_addr" --peer "$a1_id"

# 20% random loss on both routers' forwarding (each way).
for r in rA rB; do ns "$r" iptables -I FORWARD 1 -m statistic --mode random --probability 0.2 -j DROP; done
remote "20% loss on both routers" b1 "$a1_id" "hole-punched|relayed|direct" --bootstrap "$boot_addr"
for r in rA rB; do ns "$r" iptables -D FORWARD 1; done

# Port-randomising NATs: punching cannot work; the relay carries the job.
for r in rA rB; do
  net=192.168.$([ "$r" = rA ] && echo 1 || echo 2).0/24
  ns "$r" iptables -t nat -F POSTROUTING
  ns "$r" iptables -t nat -A POSTROUTING -s "$net" -o wan -j MASQUERADE --random-fully
  echo 1 > /dev/null
done
remote "behind MASQUERADE --random-fully" b1 "$a1_id" "relayed via $boot_id" --bootstrap "$boot_addr"

# The LAN: no bootstrap at all, found by mDNS.
node a2 a2
a2_id=$(peer_of a2)
remote "LAN, no bootstrap (mDNS)" a3 "($a1_id|$a2_id)" "direct"

if [ "$fail" -gt 0 ]; then
  for f in "$work"/*.err; do echo "--- $(basename "$f")"; grep -v "^\s*$" "$f" | tail -n 25 | cut -c1-240; done
fi
echo "netns: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
