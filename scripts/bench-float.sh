#!/usr/bin/env bash
# Float-heavy kernels under `plasm run`: what instrumentation of float code costs
# (e.g. NaN canonicalisation), on both engines, for one build or two side by side.
#
#   scripts/bench-float.sh                 # $PLASM_BIN, default target/release/plasm
#   PLASM_BIN=/tmp/plasm-before scripts/bench-float.sh
#   scripts/bench-float.sh BIN_A [BIN_B]   # BIN_B given: a side-by-side table, B/A
#
# Kernels (examples/c/float/, built here with Debian's clang for wasm32-wasi, the same
# command line as examples/build.sh): gemm (PolyBench gemm, doubles), correlation
# (PolyBench correlation: sqrt, division, the eps guard) and nbody (the Benchmarks
# Game n-body, doubles). wasm3 is an interpreter (~30x slower than wasmtime here), so
# it runs smaller sizes (the table below); every size takes ~0.3-1 s.
#
# Each (kernel, engine, binary) is first run once and its stdout compared with the
# native build's (gcc -O2 -fno-math-errno): a mismatch fails the script. That run also fills the
# binary's module cache, so the timed runs measure execution, not instrumentation or
# compilation. Each binary gets its own data directory (the cache of instrumented
# modules is keyed by the module and the fuel scheme, so two builds must not share it).
# Times are whole processes (start-up, reading the module, the cache, the receipt: ~10 ms):
# $ROUNDS rounds of $RUNS runs per build, timed by hyperfine (or, without it, a loop
# timed with date +%s%N), after $WARMUP warm-up runs; a build's figure is the median
# of all its runs. With two builds the rounds alternate their order (A B, B A, A B) so
# that a change in the machine's load falls on both alike; still, run it on an idle
# machine (the load average is printed first), and rerun when B/A is within ~3% of 1.
#
# Environment: PLASM_BIN (default target/release/plasm), RUNS (5), ROUNDS (1 for one
# build, 3 for two), WARMUP (1),
# RUNTIMES ("wasmtime wasm3"), KERNELS ("gemm correlation nbody"), FUEL (1e12; the
# manifest schema allows up to 2^53-1), NATIVE (1: also time the gcc -O2 build),
# HYPERFINE (its path; set it empty to time with the date loop instead), MEMORY (passed
# as --memory; plasm's default cap is 64 MiB: gemm 1000 needs 24 MB, 1600 would not fit).
# Needs clang, lld and wasi-libc (scripts/setup.sh installs them); gcc for the
# reference output; hyperfine is optional. Runs nothing over the network.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# kernel   wasmtime args   wasm3 args   (several args joined by _, e.g. 800_933: one --arg each)
SIZES='
gemm        1000      400
correlation 800       450
nbody       5000000   600000
'
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
RUNTIMES=${RUNTIMES:-wasmtime wasm3}
KERNELS=${KERNELS:-gemm correlation nbody}
FUEL=${FUEL:-1000000000000}
NATIVE=${NATIVE:-1}
ROUNDS=${ROUNDS:-} # default below: 1 for one binary, 3 for two

die() { echo "bench-float: $*" >&2; exit 1; }

BINS=()
if [ $# -gt 2 ]; then die "usage: $0 [BIN_A [BIN_B]]  (or PLASM_BIN=... $0)"; fi
if [ $# -ge 1 ]; then BINS+=("$1"); else BINS+=("${PLASM_BIN:-$ROOT/target/release/plasm}"); fi
if [ $# -ge 2 ]; then BINS+=("$2"); fi
if [ -z "$ROUNDS" ]; then ROUNDS=$([ "${#BINS[@]}" = 2 ] && echo 3 || echo 1); fi
for i in "${!BINS[@]}"; do
  b=${BINS[$i]}
  [ -x "$b" ] || die "$b: no such executable plasm binary (cargo build --release, or set PLASM_BIN)"
  BINS[$i]=$(readlink -f "$b") # relative paths: from the caller's directory
done
cd "$ROOT"

WORK=$(mktemp -d /tmp/plasm-bench-float.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# --- build -------------------------------------------------------------------
command -v clang >/dev/null || die "clang not found: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32 (scripts/setup.sh)"
echo 'int main(void){return 0;}' > "$WORK/probe.c"
if ! clang --target=wasm32-wasi -O2 -o "$WORK/probe.wasm" "$WORK/probe.c" 2> "$WORK/probe.err"; then
  cat "$WORK/probe.err" >&2
  die "clang cannot build for wasm32-wasi (missing lld, wasi-libc or libclang-rt-14-dev-wasm32?): apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32 (scripts/setup.sh)"
fi
HAVE_GCC=0
if command -v gcc >/dev/null; then HAVE_GCC=1; else echo "bench-float: gcc not found: no native reference output or time" >&2; fi
for k in $KERNELS; do
  src=examples/c/float/$k.c
  [ -f "$src" ] || die "$src: no such kernel"
  clang --target=wasm32-wasi -O2 -Wl,--strip-all -o "$WORK/$k.wasm" "$src" || die "clang failed on $src"
  # -fno-math-errno: like f64.sqrt (and clang for wasm32), sqrt does not set errno; without
  # it gcc's nbody is ~2x slower (a checked call around each sqrtsd). Same output.
  if [ "$HAVE_GCC" = 1 ]; then gcc -O2 -fno-math-errno -o "$WORK/$k.native" "$src" -lm || die "gcc failed on $src"; fi
done

# --- timing --------------------------------------------------------------------
HYPERFINE=${HYPERFINE-$(command -v hyperfine || true)} # HYPERFINE= (empty): the date loop
if [ -n "$HYPERFINE" ]; then TIMER=hyperfine; else TIMER="date +%s%N (no hyperfine)"; fi
METHOD="median of $ROUNDS x $RUNS runs per build after $WARMUP warm-up, timed by $TIMER"
if [ "$ROUNDS" -gt 1 ]; then METHOD+="; rounds alternate the builds' order"; fi

# time_runs FILE WARMUP CMD...: appends the wall times (ms) of $RUNS runs of CMD to
# FILE, after WARMUP runs (stdout and stderr discarded; a failing run fails the script).
time_runs() {
  local file=$1 warm=$2 i t0 t1; shift 2
  if [ -n "$HYPERFINE" ]; then
    local cmd="" w
    for w in "$@"; do cmd+="$(printf '%q' "$w") "; done
    "$HYPERFINE" -N -r "$RUNS" -w "$warm" --style none --export-json "$WORK/h.json" "$cmd" \
      > "$WORK/h.out" 2>&1 || { cat "$WORK/h.out" >&2; die "failed: $*"; }
    awk '/"times"/ {f = 1; next} f && /]/ {f = 0} f {gsub(/[ ,]/, ""); printf "%.3f\n", $1 * 1000}' \
      "$WORK/h.json" >> "$file"
  else
    for ((i = 0; i < warm; i++)); do "$@" >/dev/null 2>&1 || die "failed: $*"; done
    for ((i = 0; i < RUNS; i++)); do
      t0=$(date +%s%N)
      "$@" >/dev/null 2>&1 || die "failed: $*"
      t1=$(date +%s%N)
      awk -v d=$((t1 - t0)) 'BEGIN {printf "%.3f\n", d / 1e6}' >> "$file"
    done
  fi
}

median_of() { # FILE of numbers -> their median, 1 decimal
  sort -n "$1" | awk '{a[NR] = $1} END {printf "%.1f", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# plasm_cmd BIN_INDEX RUNTIME KERNEL ARGS...: the words of one plasm run.
plasm_cmd() {
  local bi=$1 rt=$2 k=$3 a; shift 3
  CMD=("${BINS[$bi]}" run --runtime "$rt" --fuel "$FUEL" --data-dir "$WORK/data$bi" "$WORK/$k.wasm")
  if [ -n "${MEMORY:-}" ]; then CMD+=(--memory "$MEMORY"); fi
  for a in "$@"; do CMD+=("--arg=$a"); done
}

sizes_for() { # kernel runtime -> args on stdout
  echo "$SIZES" | awk -v k="$1" -v col="$([ "$2" = wasm3 ] && echo 3 || echo 2)" \
    '$1 == k {print $col}' | tr '_' ' '
}

echo "plasm float benchmarks: $METHOD; fuel $FUEL"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs (other work on the machine skews every figure)"
for i in "${!BINS[@]}"; do echo "  $( [ "$i" = 0 ] && echo A || echo B ): ${BINS[$i]}"; done
echo
if [ "${#BINS[@]}" = 2 ]; then
  printf '%-12s %-9s %-10s %10s %10s %10s %8s  %s\n' kernel engine args "native ms" "A ms" "B ms" "B/A" check
else
  printf '%-12s %-9s %-10s %10s %10s %8s  %s\n' kernel engine args "native ms" "plasm ms" "/native" check
fi

for rt in $RUNTIMES; do
  case $rt in wasmtime|wasm3) ;; *) die "unknown runtime $rt (wasmtime or wasm3)";; esac
  for k in $KERNELS; do
    read -r -a ARGS <<< "$(sizes_for "$k" "$rt")"
    [ "${#ARGS[@]}" -gt 0 ] || die "no size for $k in the table"
    native_ms=-
    check=ok
    ref=""
    if [ "$HAVE_GCC" = 1 ]; then
      ref=$("$WORK/$k.native" "${ARGS[@]}")
      if [ "$NATIVE" = 1 ]; then
        : > "$WORK/native.ms"
        time_runs "$WORK/native.ms" "$WARMUP" "$WORK/$k.native" "${ARGS[@]}"
        native_ms=$(median_of "$WORK/native.ms")
      fi
    fi
    for bi in "${!BINS[@]}"; do
      : > "$WORK/bin$bi.ms"
      plasm_cmd "$bi" "$rt" "$k" "${ARGS[@]}"
      out=$("${CMD[@]}" 2> "$WORK/err") || { cat "$WORK/err" >&2; die "failed: ${CMD[*]}"; }
      if [ -z "$ref" ]; then ref=$out; fi # no gcc: binary A is the reference
      if [ "$out" != "$ref" ]; then
        echo "bench-float: $k on $rt with ${BINS[$bi]}: output differs from the reference" >&2
        echo "  expected: $(echo "$ref" | tr '\n' ' ')" >&2
        echo "  got:      $(echo "$out" | tr '\n' ' ')" >&2
        check=DIFF
      fi
    done
    # Rounds, the order alternating (A B, B A, ...) so that drift in the machine's load
    # falls on both builds alike; each build's figure is the median of all its runs.
    for ((r = 0; r < ROUNDS; r++)); do
      order=("${!BINS[@]}")
      if [ $((r % 2)) = 1 ] && [ "${#BINS[@]}" = 2 ]; then order=(1 0); fi
      for bi in "${order[@]}"; do
        plasm_cmd "$bi" "$rt" "$k" "${ARGS[@]}"
        time_runs "$WORK/bin$bi.ms" "$([ "$r" = 0 ] && echo "$WARMUP" || echo 0)" "${CMD[@]}"
      done
    done
    times=()
    for bi in "${!BINS[@]}"; do times+=("$(median_of "$WORK/bin$bi.ms")"); done
    if [ "$check" = ok ]; then check="ok ($(echo "$ref" | tail -n1))"; fi
    if [ "${#BINS[@]}" = 2 ]; then
      ratio=$(awk -v a="${times[0]}" -v b="${times[1]}" 'BEGIN {printf "%.3f", b / a}')
      printf '%-12s %-9s %-10s %10s %10s %10s %8s  %s\n' "$k" "$rt" "${ARGS[*]}" "$native_ms" \
        "${times[0]}" "${times[1]}" "$ratio" "$check"
    else
      ratio=$([ "$native_ms" = - ] && echo - || awk -v a="$native_ms" -v b="${times[0]}" 'BEGIN {printf "%.2f", b / a}')
      printf '%-12s %-9s %-10s %10s %10s %8s  %s\n' "$k" "$rt" "${ARGS[*]}" "$native_ms" \
        "${times[0]}" "$ratio" "$check"
    fi
    if [ "$check" = DIFF ]; then FAILED=1; fi
  done
done
if [ "${FAILED:-0}" = 1 ]; then die "some outputs differ from the native reference (see above)"; fi
