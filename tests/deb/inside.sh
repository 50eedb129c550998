#!/bin/sh
# Runs inside the booted container (see run.sh).
set -eu
step() { echo "deb test: $*"; }

step "apt install the package"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /mnt/pkg/plasm.deb >/dev/null
for i in $(seq 100); do systemctl is-active -q plasm && break; sleep 0.1; done
systemctl is-active plasm
step "the API answers"
for i in $(seq 50); do curl -fsS http://127.0.0.1:4611/healthz >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS http://127.0.0.1:4611/healthz
echo

step "a job through the API, and its receipt verified"
cat > /tmp/hello.wat <<'WAT'
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory 1) (data (i32.const 16) "hello from the package\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 23))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
WAT
out=$(plasm submit /tmp/hello.wat --wait --placement local)
[ "$out" = "hello from the package" ] || { echo "unexpected output: $out"; exit 1; }
id=$(plasm submit /tmp/hello.wat --placement local)
for i in $(seq 100); do plasm status "$id" | grep -q '"succeeded"' && break; sleep 0.05; done
plasm job status "$id" | grep -q '"succeeded"'
plasm job output "$id" | grep -q "hello from the package"
plasm node status | grep -q "^peer_id"
plasm receipt get "$id" > /tmp/receipt.json
plasm receipt verify /tmp/receipt.json
# The default engine is wasmtime, a JIT, running under the hardened unit.
grep -q '"wasmtime"' /tmp/receipt.json || { echo "job did not run on wasmtime"; cat /tmp/receipt.json; exit 1; }
curl -fsS -X POST --data-binary @/tmp/receipt.json http://127.0.0.1:4611/v1/receipts/verify | grep -q '"valid":true'

step "the packaged unit keeps the worker sandbox on (decision 0034)"
curl -fsS http://127.0.0.1:4611/v1/node > /tmp/node.json
sed 's/.*"sandbox":\({[^}]*}\).*/\1/' /tmp/node.json
for want in '"worker_processes":true' '"seccomp":true' '"no_new_privs":true' '"env_cleared":true'; do
  grep -q "$want" /tmp/node.json || { echo "sandbox under systemd lacks $want"; exit 1; }
done
# Landlock: whatever this container allows a plain service, plasm.service must allow too
# (systemd-nspawn's own syscall filter may lack landlock_*; the unit must not add to that).
systemd-run --wait --pipe --quiet /usr/bin/plasm worker --probe-sandbox > /tmp/probe.json
echo "the same measures in a transient service without the unit's filters: $(cat /tmp/probe.json)"
if grep -q '"landlock":"full"' /tmp/probe.json; then
  grep -q '"landlock":"full"' /tmp/node.json || { echo "plasm.service blocks Landlock"; exit 1; }
else
  echo "deb test: Landlock is not available in this container at all (not the unit's doing)"
fi
grep -q '"memory_limit_bytes":0' /tmp/node.json && { echo "no worker memory limit under systemd"; exit 1; }

step "man pages follow the command tree"
for page in plasm plasm-job plasm-job-submit plasm-job-watch plasm-node-status plasm-receipt-verify; do
  [ -e "/usr/share/man/man1/$page.1.gz" ] || { echo "missing man page $page"; exit 1; }
done

step "identity key private to the service"
key=/var/lib/private/plasm/identity.key
[ "$(stat -c %a "$key")" = "600" ] || { echo "key mode $(stat -c %a "$key")"; exit 1; }
peer=$(curl -fsS http://127.0.0.1:4611/v1/node | sed 's/.*"peer_id":"\([^"]*\)".*/\1/')

step "hardening score"
score=$(systemd-analyze security plasm.service | awk '/Overall exposure level/ {print $(NF-2)}')
echo "systemd-analyze security plasm.service: $score"
awk -v s="$score" 'BEGIN { exit !(s <= 1.5) }'

step "the journal shows the start"
journalctl -u plasm --no-pager | grep -q "Started plasm" || { journalctl -u plasm --no-pager | tail -20; exit 1; }

step "reinstall keeps the identity"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall /mnt/pkg/plasm.deb >/dev/null
for i in $(seq 100); do curl -fsS http://127.0.0.1:4611/healthz >/dev/null 2>&1 && break; sleep 0.1; done
again=$(curl -fsS http://127.0.0.1:4611/v1/node | sed 's/.*"peer_id":"\([^"]*\)".*/\1/')
[ "$peer" = "$again" ] || { echo "identity changed: $peer -> $again"; exit 1; }

step "reload keeps the node serving"
systemctl reload plasm || { journalctl -u plasm --no-pager | tail -30; exit 1; }
systemctl is-active plasm
curl -fsS http://127.0.0.1:4611/healthz >/dev/null
journalctl -u plasm --no-pager | grep -q "SIGHUP: " || { journalctl -u plasm --no-pager | tail -20; exit 1; }

step "the bootstrap unit starts from the same package, and survives a reload"
systemctl start plasm-bootstrap
for i in $(seq 100); do systemctl is-active -q plasm-bootstrap && break; sleep 0.1; done
systemctl is-active plasm-bootstrap
systemctl reload plasm-bootstrap
sleep 0.5
systemctl is-active plasm-bootstrap
systemctl stop plasm-bootstrap

step "API tokens as a systemd credential: the dynamic user reads a 0600 root file"
(umask 077; printf 'package-token-0123456789 admin\n' > /etc/plasm/tokens)
mkdir -p /etc/systemd/system/plasm.service.d
printf '[Service]\nLoadCredential=tokens:/etc/plasm/tokens\n' > /etc/systemd/system/plasm.service.d/tokens.conf
sed -i 's|^token_file = ""|token_file = "/run/credentials/plasm.service/tokens"|' /etc/plasm/plasm.toml
systemctl daemon-reload
systemctl restart plasm
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:4611/healthz && break; sleep 0.1; done
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:4611/v1/node)
[ "$code" = 401 ] || { echo "without a token: $code"; journalctl -u plasm --no-pager | tail -20; exit 1; }
curl -fsS -H 'Authorization: Bearer package-token-0123456789' http://127.0.0.1:4611/v1/node >/dev/null
rm -r /etc/systemd/system/plasm.service.d /etc/plasm/tokens
systemctl daemon-reload

step "apt purge leaves nothing"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq plasm >/dev/null
for path in /usr/bin/plasm /etc/plasm /var/lib/plasm /var/lib/private/plasm /var/lib/plasm-bootstrap \
            /lib/systemd/system/plasm.service /usr/share/man/man1/plasm.1.gz \
            /usr/share/man/man1/plasm-job-submit.1.gz; do
  if [ -e "$path" ]; then echo "left behind: $path"; exit 1; fi
done
if dpkg -l plasm 2>/dev/null | grep -q '^ii'; then echo "still installed"; exit 1; fi
step "all checks passed"
