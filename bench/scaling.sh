#!/usr/bin/env bash
# Scaling curve of Chorus on one machine: closed-loop YCSB-A and -C throughput and CPU cost
# for 3, 5 and 7 local nodes, and latency against concurrency on 3 nodes. Prints Markdown
# tables.
#
#   bash bench/scaling.sh            # from the repository root
#
# CPU cost is CPU time (user + system, from /proc/PID/stat) per operation: for each node
# process (the children of `chorus dev`) between the start and the end of a run, and for
# the load generator over its whole life (its rusage). Every process shares the machine's
# cores, so the numbers say where the CPU goes, not what each would do alone.
#
# Knobs (environment): RECORDS (default 20000), DURATION (seconds per run, 20), NODES
# ("3 5 7"), CONCURRENCY (64, for the node sweep), SWEEP ("1 4 16 64 128", on 3 nodes).
set -euo pipefail

RECORDS=${RECORDS:-20000}
DURATION=${DURATION:-20}
NODES=${NODES:-"3 5 7"}
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

start_cluster() { # nodes name
  # A fresh directory each time: a reused one holds the earlier runs' siblings, and the
  # load phase (blind writes) would pile more on.
  local dir=$WORK/$2
  "$CHORUS" dev --nodes "$1" --dir "$dir" --base-port "$BASE_PORT" >"$dir.log" 2>&1 &
  DEV_PID=$!
  for _ in $(seq 1 240); do
    grep -q '^ready' "$dir.log" && break
    kill -0 "$DEV_PID" 2>/dev/null || { cat "$dir.log" >&2; exit 1; }
    sleep 0.5
  done
  grep -q '^ready' "$dir.log" || { echo "cluster of $1 did not start" >&2; exit 1; }
  export CHORUS_CONFIG=$dir/client.toml
  NODE_PIDS=$(pgrep -P "$DEV_PID" | tr '\n' ' ')
  local found
  found=$(wc -w <<<"$NODE_PIDS")
  [ "$found" -eq "$1" ] || { echo "expected $1 node processes under chorus dev, found $found" >&2; exit 1; }
}

# measure LABEL BENCH_ARGS...: runs one bench and prints its table row, with the CPU time
# each node process and the generator spent per operation.
measure() {
  local label=$1
  shift
  python3 - "$label" "$NODE_PIDS" "$CHORUS" bench "$@" <<'PY'
import json, os, subprocess, sys

label, pids, cmd = sys.argv[1], [int(p) for p in sys.argv[2].split()], sys.argv[3:]
tick_us = 1e6 / os.sysconf("SC_CLK_TCK")

def cpu_us(pid):
    # utime and stime are fields 14 and 15; the command name (field 2) may hold spaces,
    # so count from the last ')'.
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * tick_us

before = [cpu_us(p) for p in pids]
gen = subprocess.Popen(cmd, stdout=subprocess.PIPE)
out = gen.stdout.read()
# Reaped here rather than by Popen, to get the generator's own CPU time.
_, status, usage = os.wait4(gen.pid, 0)
gen.returncode = os.waitstatus_to_exitcode(status)
after = [cpu_us(p) for p in pids]
if gen.returncode != 0:
    sys.exit(f"{label}: chorus bench failed ({gen.returncode})")
d = json.loads(out.decode().strip().splitlines()[-1])
ops = max(d["ops"], 1)
nodes = [(a - b) / ops for a, b in zip(after, before)]
gen_us = (usage.ru_utime + usage.ru_stime) * 1e6 / ops
l = d["latency_us"]
per_node = " / ".join(f"{n:.0f}" for n in nodes)
print(
    f"| {label} | {d['ops_per_sec']:.0f} | {l['p50']} | {l['p99']} | {l['p999']} | {d['errors']} "
    f"| {per_node} | {sum(nodes):.0f} | {gen_us:.0f} |"
)
PY
}

bench_args() { # workload concurrency
  echo --workload "$1" --records "$RECORDS" --duration "${DURATION}s" --concurrency "$2" --skip-load --json
}

load() {
  "$CHORUS" bench --workload a --records "$RECORDS" --ops 1 --concurrency 64 --json >/dev/null
}

header() { # first column
  echo "| $1 | ops/s | p50 µs | p99 µs | p99.9 µs | errors | CPU µs/op per node | CPU µs/op, all nodes | CPU µs/op, generator |"
  echo "|---|---|---|---|---|---|---|---|---|"
}

echo "### Throughput and CPU cost by cluster size (closed loop, ${DURATION} s, concurrency $CONCURRENCY, R=W=quorum)"
echo
header "nodes, workload"
for n in $NODES; do
  start_cluster "$n" "nodes-$n"
  load
  for w in a c; do
    # shellcheck disable=SC2046 # the arguments are words by design
    measure "$n, $w" $(bench_args "$w" "$CONCURRENCY")
  done
  stop_cluster
done

echo
echo "### Latency against concurrency (3 nodes, YCSB-A, ${DURATION} s, R=W=quorum)"
echo
header "concurrency"
start_cluster 3 sweep
load
for c in $SWEEP; do
  # shellcheck disable=SC2046
  measure "$c" $(bench_args a "$c")
done
stop_cluster
