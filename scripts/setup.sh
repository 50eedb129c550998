#!/usr/bin/env bash
# Installs what building and testing plasm needs on Debian 12, only when missing.
#   build:    a C compiler and libclang (the wasm3x binding compiles Wasm3 and runs bindgen)
#   examples: clang, lld, wasi-libc and the wasm32 compiler runtime (C jobs for wasm32-wasi)
#   PHP SDK tests: php-cli, php-curl, phpunit (PHP 8.2 with sodium built in), composer
#     (composer validate), Debian's Guzzle and PSR-17/18 packages (the PSR-18 client test)
#   dashboard test: chromium, chromium-driver, python3-selenium (headless, --no-sandbox)
#   package tests: lintian, debootstrap, systemd-container, zstd (cargo-deb comes from crates.io)
#   NAT lab: iptables (MASQUERADE, loss), python3-minimal (the NFQUEUE delayer)
#   API contract test: python3-venv (schemathesis from PyPI, pinned, in a venv)
#   fuel-bounds-time check: hyperfine (times whole `plasm run` processes)
#   multi-process tests: curl (tests/multiprocess.rs asks the nodes' APIs with the real curl)
# Usage: scripts/setup.sh [demo]     (needs root or sudo when something is missing)
#   demo: only what building plasm needs; default: everything the tests need.
set -euo pipefail

packages=(gcc libclang-dev)
if [ "${1:-}" != "demo" ]; then
  packages+=(clang lld wasi-libc libclang-rt-14-dev-wasm32 php-cli php-curl phpunit composer php-guzzlehttp-guzzle php-guzzlehttp-psr7 php-psr-http-client php-psr-http-factory chromium chromium-driver python3-selenium lintian debootstrap systemd-container zstd iptables python3-minimal python3-venv hyperfine curl)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. Install Rust (rustup, stable >= 1.85) and run again." >&2
  exit 1
fi
# cargo-fuzz, only where a nightly toolchain exists (the fuzz smoke needs both; on stable
# alone it replays the corpora as tests and skips the fuzzing).
if [ "${1:-}" != "demo" ] && rustup toolchain list 2>/dev/null | grep -q '^nightly' \
  && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz (a nightly toolchain is present)"
  cargo install cargo-fuzz --locked --version 0.13.2 >/dev/null 2>&1 || echo "setup: cargo-fuzz did not install; the fuzz smoke will replay corpora only"
fi
