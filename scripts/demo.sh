#!/usr/bin/env bash
# plasm's main job, end to end, on embedded defaults: run a real WebAssembly job
# (a C program built for wasm32-wasi) in the metered sandbox, get its Ed25519-signed
# receipt, verify it, and watch a tampered copy fail verification.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== building plasm and the example jobs"
cargo build -q --bin plasm
examples/build.sh >/dev/null
plasm=target/debug/plasm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PLASM_DATA_DIR="$work/node"

echo "== this node's identity (its libp2p key signs receipts)"
$plasm id
echo
echo "== running examples/c/reverse.c as a job: stdin -> reversed stdout"
printf 'Hello from plasm, the node of Phase Open!' | $plasm run examples/build/reverse.wasm --input - --receipt "$work/receipt.json"
echo
echo
echo "== the signed receipt"
cat "$work/receipt.json"
echo "== verifying it (anyone can: plasm receipt verify FILE)"
$plasm receipt verify "$work/receipt.json"
echo
echo "== a forged copy claiming less fuel"
sed 's/"fuel_used": [0-9]*/"fuel_used": 1/' "$work/receipt.json" > "$work/forged.json"
if $plasm receipt verify "$work/forged.json"; then
  echo "demo: the forged receipt verified, which must never happen" >&2
  exit 1
fi
echo
echo "demo: done. A job ran in the sandbox, its receipt verified, and a forgery was caught."
