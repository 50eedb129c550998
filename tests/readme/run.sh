#!/usr/bin/env bash
# Runs the README's blocks marked `<!-- readme-test -->`, in order, in one shell, as a
# user would paste them: `plasm` on the PATH (this tree's build), a scratch working
# directory with the repository's examples/, a scratch HOME (so the default data dir
# is not the caller's). Nodes a block starts in the background are stopped at the end.
# A block fails when any of its commands fails (set -e), and the test with it.
#
#   tests/readme/run.sh [PLASM]     (default target/debug/plasm)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
bin=${1:-$repo/target/debug/plasm}
[ -x "$bin" ] || { echo "readme test: $bin is missing (cargo build --bin plasm)"; exit 1; }
work=$(mktemp -d)
mkdir -p "$work/bin" "$work/home" "$work/cwd" "$work/tmp"
ln -s "$bin" "$work/bin/plasm"
ln -s "$repo/examples" "$work/cwd/examples"
# The blocks, each to its own file.
python3 - "$repo/README.md" "$work" <<'PY'
import re, sys
text = open(sys.argv[1]).read().split("\n")
n, i = 0, 0
while i < len(text):
    if text[i].strip() == "<!-- readme-test -->":
        j = i + 1
        assert text[j].startswith("```sh"), f"README line {j + 1}: a marked block must follow its marker"
        k = j + 1
        while not text[k].startswith("```"):
            k += 1
        n += 1
        with open(f"{sys.argv[2]}/block{n:02d}.sh", "w") as f:
            f.write(f"# README.md lines {j + 2}-{k}\n" + "\n".join(text[j + 1:k]) + "\n")
        i = k
    i += 1
print(f"readme test: {n} marked blocks")
PY
trap 'rm -rf "$work"' EXIT
fail=0
{
  echo "set -euo pipefail"
  # The nodes the blocks start in the background stop with the script.
  echo 'trap '"'"'kill $(jobs -p) 2>/dev/null; wait'"'"' EXIT'
  for b in "$work"/block*.sh; do
    echo "echo; echo \"== $(head -1 "$b" | sed 's/^# //')\""
    tail -n +2 "$b"
  done
} > "$work/all.sh"
(
  cd "$work/cwd"
  TMPDIR="$work/tmp" HOME="$work/home" XDG_DATA_HOME="$work/home/.local/share" PATH="$work/bin:$PATH" \
    PLASM_LOG=error timeout 300 bash "$work/all.sh"
) > "$work/out.txt" 2>&1 || fail=1
if [ "$fail" -ne 0 ]; then
  echo "readme test: FAILED; the blocks' output:"
  tail -n 60 "$work/out.txt"
  exit 1
fi
[ -n "${README_TEST_VERBOSE:-}" ] && cat "$work/out.txt"
grep "^== README" "$work/out.txt" | sed "s/^== /readme test: ok - /"
