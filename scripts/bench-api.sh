#!/usr/bin/env bash
# Drives POST /v1/jobs?wait=true (trivial hello.wasm, durable receipt) with an external load
# generator, wrk, so `plasm bench --only api` can be compared with a tool that is not ours.
#
#   scripts/bench-api.sh [PLASM_BINARY] [SECONDS] [CONNECTIONS]
#     defaults: target/release/plasm, 10 s, 32 connections (wrk -t2: 2 threads on 2 cores)
#
# A node (2 workers and the default queue of four per worker, as `plasm bench` starts) runs on loopback with a fresh data dir; the
# module is uploaded once with `plasm job submit`, then every wrk request names it by hash
# with its own nonce (a Lua script), exactly the body `plasm bench` sends. The script prints
# wrk's own summary, the count of 200 answers counted by the Lua script, and the node's own
# count of succeeded jobs from /metrics, so all three can be compared.
# Needs: wrk (apt-get install wrk), curl.
set -euo pipefail
cd "$(dirname "$0")/.."
PLASM=$(readlink -f "${1:-target/release/plasm}")
SECS=${2:-10}
CONNS=${3:-32}
command -v wrk >/dev/null || { echo "bench-api: wrk is needed (apt-get install wrk)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/plasm-bench-api.XXXXXX)
NODE=
cleanup() { [ -n "$NODE" ] && kill "$NODE" 2>/dev/null && wait "$NODE" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
printf 'bootstrap = []\n[network]\nmdns = false\n' > "$WORK/plasm.toml"
"$PLASM" start --config "$WORK/plasm.toml" --data-dir "$WORK/data" --no-mdns \
  --listen /ip4/127.0.0.1/udp/0/quic-v1 --api 127.0.0.1:0 --workers 2 > "$WORK/node.out" 2>"$WORK/node.err" &
NODE=$!
API=
for _ in $(seq 1 100); do
  API=$(grep -m1 -o 'http://127\.0\.0\.1:[0-9]\+' "$WORK/node.out" || true)
  [ -n "$API" ] && break
  sleep 0.1
done
[ -n "$API" ] || { cat "$WORK/node.err" >&2; exit 1; }
"$PLASM" job submit examples/wat/hello.wat --api "$API" --placement local --wait > /dev/null
# The module's hash and size, from the node's module store.
SHA=$(ls "$WORK/data/modules" | sed -n 's/\.wasm$//p' | head -n1)
SIZE=$(curl -fsS "$API/v1/modules/$SHA" | wc -c)
cat > "$WORK/jobs.lua" <<LUA
-- One fresh nonce per request; the rest of the body is fixed.
-- Globals, not locals: the done() hook reads them from each thread with thread:get.
counter = 0
ok = 0
refused = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  created = os.date("!%Y-%m-%dT%H:%M:%SZ")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  counter = counter + 1
  local nonce = string.format("wrk%04d%016d%08x", id, counter, math.random(0, 0x7fffffff))
  local body = '{"manifest":{"version":"plasm.job/v1","module":{"sha256":"$SHA","size":$SIZE},'
    .. '"nonce":"' .. nonce .. '","created_at":"' .. created .. '"},"placement":"local"}'
  return wrk.format(nil, "/v1/jobs?wait=true", nil, body)
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 elseif status == 429 then refused = refused + 1 end
end
function done(summary, latency, requests)
  local total, busy = 0, 0
  for _, t in ipairs(threads) do total = total + t:get("ok"); busy = busy + t:get("refused") end
  io.write(string.format("wrk: %d answers of 200 (%d of 429) in %.2f s: %.0f jobs/s; latency of all answers p50 %.2f ms p99 %.2f ms\n",
    total, busy, summary.duration / 1e6, total / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
before=$(curl -fsS "$API/metrics" | awk '/^plasm_jobs_total\{outcome="exited"/ {s+=$2} END {print s+0}')
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/jobs.lua" "$API/v1/jobs?wait=true"
after=$(curl -fsS "$API/metrics" | awk '/^plasm_jobs_total\{outcome="exited"/ {s+=$2} END {print s+0}')
echo "node: $((after - before)) jobs exited (signed receipts) during the run (from /metrics)"
