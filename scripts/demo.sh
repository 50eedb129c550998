#!/usr/bin/env bash
# plasm's main job on embedded defaults: a three-node mesh on loopback (a bootstrap
# node and two executors, temporary data dirs) runs a WebAssembly job on another peer
# through the HTTP API, shows its progress and output, and a third node verifies the
# signed receipt (and catches a forged copy). Then the mesh shuts down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
echo "== building plasm"
cargo build -q --bin plasm
exec target/debug/plasm demo
