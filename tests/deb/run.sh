#!/usr/bin/env bash
# The operator's path under a real systemd (PID 1): debootstrap a minimal Debian 12
# (cached as a tarball), boot it with systemd-nspawn, `apt install` the .deb, wait for
# the service, reach the API with curl, run a job and verify its receipt, check the
# hardening score and the journal, reinstall (the key survives), `apt purge` and check
# nothing is left. Needs root. See shared/systemd-in-ci.md for how this was found to work.
set -euo pipefail
cd "$(dirname "$0")/../.."

deb=$(ls -t target/debian/plasm_*_amd64.deb 2>/dev/null | head -1 || true)
[ -n "$deb" ] || { echo "deb test: no package; run packaging/build-deb.sh first" >&2; exit 1; }
for p in debootstrap systemd-container zstd; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="${missing:-} $p"
done
if [ -n "${missing:-}" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

cache=${PLASM_ROOTFS_CACHE:-/var/cache/plasm-test/bookworm-systemd.tar.zst}
work=$(mktemp -d /tmp/plasm-deb.XXXXXX)
root="$work/root"
nspawn_pid=""
cleanup() {
  if [ -n "$nspawn_pid" ]; then kill -TERM "$nspawn_pid" 2>/dev/null || true; wait "$nspawn_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$root" "$work/pkg"
if [ -f "$cache" ]; then
  tar -C "$root" --zstd -xpf "$cache"
else
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl,ca-certificates,libnss-systemd \
    bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >/dev/null
  chroot "$root" apt-get clean
  : > "$root/etc/machine-id"
  mkdir -p "$(dirname "$cache")"
  tar -C "$root" --zstd -cpf "$cache" .
fi
cp "$deb" "$work/pkg/plasm.deb"
cp tests/deb/inside.sh "$work/inside.sh"
chmod +x "$work/inside.sh"

systemd-nspawn -D "$root" -b --register=no --keep-unit --machine="plasm-test-$$" --console=pipe \
  --private-network --bind-ro="$work/pkg:/mnt/pkg" --bind-ro="$work/inside.sh:/mnt/test.sh" \
  > "$work/console.log" 2>&1 &
nspawn_pid=$!
pid=""
for _ in $(seq 100); do
  pid=$(pgrep -P "$nspawn_pid" -x systemd || true)
  [ -n "$pid" ] && [ -e "/proc/$pid/root/run/systemd/private" ] && break
  sleep 0.2
done
[ -n "$pid" ] || { cat "$work/console.log"; echo "deb test: the container did not boot" >&2; exit 1; }
nsenter -t "$pid" -a systemctl is-system-running --wait >/dev/null || true
nsenter -t "$pid" -a /mnt/test.sh
echo "deb: 1 passed, 0 failed"
