# The NAT lab's topology and helpers, sourced by tests/netns/run.sh (checks) and
# scripts/bench-nat.sh (figures). See run.sh for the picture. Needs root, iptables.
# The sourcing script sets `set -euo pipefail` and `cd`s to the repository root.

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

