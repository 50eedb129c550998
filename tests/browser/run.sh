#!/usr/bin/env bash
# The dashboard in headless chromium (Selenium): see dashboard_test.py.
# Needs chromium, chromium-driver and python3-selenium (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
plasm=${PLASM_BIN:-target/debug/plasm}
[ -x "$plasm" ] || { echo "browser test: $plasm is missing (cargo build --bin plasm)"; exit 1; }
[ -f examples/build/sieve.wasm ] || examples/build.sh
exec /usr/bin/python3 tests/browser/dashboard_test.py "$(realpath "$plasm")" "$(pwd)"
