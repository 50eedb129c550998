#!/usr/bin/env bash
# Fuzz smoke for CI: every corpus replays as an ordinary test on stable (always), then, when a
# nightly toolchain and cargo-fuzz are present, each target is fuzzed briefly from its corpus.
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]     (default 10 s per target)
#   scripts/fuzz-smoke.sh --build-only             (only build the targets: scripts/test.sh
#                                                    runs this in the background, niced,
#                                                    while tests that mostly wait run)
# Longer runs, by hand:  cargo +nightly fuzz run TARGET --features libfuzzer -- -runs=1000000
# A crash found here is kept by libFuzzer in fuzz/artifacts/TARGET/; copy it to
# fuzz/regressions/TARGET/ so the stable replay keeps it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_ONLY=""
if [ "${1:-}" = "--build-only" ]; then BUILD_ONLY=1; shift; fi
SECS=${1:-10}
# A target dir of its own: the instrumented build shares no artefact with the others,
# and a separate lock lets it build while the package's release build runs.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target/fuzz}
# The worker target runs jobs in `plasm worker` processes of this binary (built by scripts/test.sh).
PLASM_WORKER_EXE=${PLASM_WORKER_EXE:-$PWD/target/debug/plasm}
export PLASM_WORKER_EXE
if [ -z "$BUILD_ONLY" ] && [ -z "${FUZZ_CORPORA_REPLAYED:-}" ]; then
  # The corpora replay as a test of the workspace's own target dir (built by cargo test).
  # scripts/test.sh sets FUZZ_CORPORA_REPLAYED: its `cargo test --workspace` ran this test.
  CARGO_TARGET_DIR=$PWD/target cargo test -p plasm-fuzz --test corpus -- --nocapture 2>&1 | grep -E "replayed|test result"
fi
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz smoke: no nightly toolchain here; the corpus replay (above, or in cargo test) is the whole smoke"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz smoke: cargo-fuzz is not installed; the corpus replay (above, or in cargo test) is the whole smoke"
  exit 0
fi
# The targets that need no wasmtime (decision 0044): manifest, receipt, wire, jcs and
# instrument build without Cranelift in a fraction of the time. wasi, differential and
# worker (both engines, worker processes) are checked on stable instead: their corpora
# replay above and fuzz/tests/differential.rs runs fresh generated modules through them.
targets=$(awk '/^\[\[bin\]\]/ {n = ""} /^name = / {n = $3} /^required-features/ && !/wasmtime/ {print n}' fuzz/Cargo.toml | tr -d '"')
FEATURES=(--no-default-features --features libfuzzer)
# Release without the workspace's thin LTO and at opt-level 0: linking LTO binaries costs
# minutes, and with wasmtime (Cranelift) in the targets the opt-level 3 build took
# 1,242 s of a busy CI run and the opt-level 1 build about 11 minutes, for a smoke of
# seconds per target (wasm3's C stays at opt-level 3: Cargo.toml). -s none: no sanitizer
# (the code is safe Rust); debug assertions stay on. No debug info: a crash names its
# input, which the stable replay then keeps.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=0 \
  CARGO_PROFILE_RELEASE_DEBUG=false
t0=$(date +%s)
for t in $targets; do
  cargo +nightly fuzz build "${FEATURES[@]}" -s none --fuzz-dir fuzz "$t" 2>&1 | tail -n 1
done
echo "fuzz smoke: targets built in $(( $(date +%s) - t0 )) s"
[ -n "$BUILD_ONLY" ] && exit 0
for t in $targets; do
  # A scratch copy of the corpus: the smoke must not grow the committed one.
  work=$(mktemp -d)
  cp -r "fuzz/corpus/$t/." "$work/"
  # -rss_limit_mb bounds memory; -timeout flags hangs.
  cargo +nightly fuzz run "$t" "${FEATURES[@]}" -s none --fuzz-dir fuzz "$work" -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 |
    grep -E "^stat::number_of_executed_units|^Done|ERROR|panicked|deadly signal" | sed "s/^/fuzz $t: /"
  rm -rf "$work"
done
