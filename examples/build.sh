#!/usr/bin/env bash
# Builds the C examples into examples/build/*.wasm with Debian's clang for wasm32-wasi.
# Needs: clang lld wasi-libc libclang-rt-14-dev-wasm32 (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
for src in c/*.c; do
  name=$(basename "$src" .c)
  clang --target=wasm32-wasi -O2 -Wl,--strip-all -o "build/$name.wasm" "$src"
done
echo "built: $(ls build | tr '\n' ' ')"
