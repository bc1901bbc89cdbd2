#!/usr/bin/env bash
# Scaling curve of Chorus on one machine: closed-loop YCSB-A and -C throughput for 1, 3 and
# 5 local nodes, and latency against concurrency on 3 nodes. Prints Markdown tables.
#
#   bash bench/scaling.sh            # from the repository root
#
# Knobs (environment): RECORDS (default 20000), OPS (100000), NODES ("1 3 5"),
# CONCURRENCY (64, for the node sweep), SWEEP ("1 4 16 64 128", on 3 nodes).
set -euo pipefail

RECORDS=${RECORDS:-20000}
OPS=${OPS:-100000}
NODES=${NODES:-"1 3 5"}
CONCURRENCY=${CONCURRENCY:-64}
SWEEP=${SWEEP:-"1 4 16 64 128"}
BASE_PORT=${BASE_PORT:-29100}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/chorus-target}

cargo build --release -p chorus-node --bin chorus >&2
CHORUS=$CARGO_TARGET_DIR/release/chorus
WORK=$(mktemp -d)
DEV_PID=""
stop_cluster() {
  if [ -n "$DEV_PID" ]; then
    kill "$DEV_PID" 2>/dev/null || true
    wait "$DEV_PID" 2>/dev/null || true
    DEV_PID=""
  fi
}
trap 'stop_cluster; rm -rf "$WORK"' EXIT

start_cluster() { # nodes
  local dir=$WORK/cluster-$1
  "$CHORUS" dev --nodes "$1" --dir "$dir" --base-port "$BASE_PORT" >"$WORK/dev-$1.log" 2>&1 &
  DEV_PID=$!
  for _ in $(seq 1 240); do
    grep -q '^ready' "$WORK/dev-$1.log" && break
    kill -0 "$DEV_PID" 2>/dev/null || { cat "$WORK/dev-$1.log" >&2; exit 1; }
    sleep 0.5
  done
  grep -q '^ready' "$WORK/dev-$1.log" || { echo "cluster of $1 did not start" >&2; exit 1; }
  export CHORUS_CONFIG=$dir/client.toml
}

row() { # label json
  python3 - "$1" "$2" <<'PY'
import json, sys
label, d = sys.argv[1], json.loads(sys.argv[2])
l = d["latency_us"]
print(f"| {label} | {d['ops_per_sec']:.0f} | {l['p50']} | {l['p99']} | {l['p999']} | {d['errors']} |")
PY
}

bench() { # workload concurrency [extra]
  "$CHORUS" bench --workload "$1" --records "$RECORDS" --ops "$OPS" --concurrency "$2" \
    --skip-load --json
}

load() {
  "$CHORUS" bench --workload a --records "$RECORDS" --ops 1 --concurrency 64 --json >/dev/null
}

echo "### Throughput by cluster size (closed loop, concurrency $CONCURRENCY, R=W=quorum)"
echo
echo "| nodes, workload | ops/s | p50 µs | p99 µs | p99.9 µs | errors |"
echo "|---|---|---|---|---|---|"
for n in $NODES; do
  start_cluster "$n"
  load
  for w in a c; do
    row "$n, $w" "$(bench "$w" "$CONCURRENCY")"
  done
  stop_cluster
done

echo
echo "### Latency against concurrency (3 nodes, YCSB-A, R=W=quorum)"
echo
echo "| concurrency | ops/s | p50 µs | p99 µs | p99.9 µs | errors |"
echo "|---|---|---|---|---|---|"
start_cluster 3
load
for c in $SWEEP; do
  row "$c" "$(bench a "$c")"
done
stop_cluster
