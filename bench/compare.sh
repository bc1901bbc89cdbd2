#!/usr/bin/env bash
# Compares Chorus with Redis and etcd on this machine: the same YCSB workloads, driven by
# `chorus bench --driver chorus|redis|etcd`, against
#   - a 3-node Chorus cluster (`chorus dev`), N=3, R=W=quorum, no fsync per write;
#   - Redis 7: a primary and 2 replicas, no persistence, each SET followed by WAIT 1;
#   - Redis again without WAIT (asynchronous replication), if REDIS_NO_WAIT=1;
#   - etcd 3.4: a 3-member cluster, WAL fsync on every commit (etcd's default);
#   - etcd again with --unsafe-no-fsync, if ETCD_NO_FSYNC=1.
# Everything listens on 127.0.0.1 and is stopped when the script exits. Results go to
# docs/benchmarks.md (between the compare markers) and docs/benchmarks-compare.svg.
#
# Run from the repository root as root on Debian 12: bash bench/compare.sh
# Knobs (environment): RECORDS, CLOSED_SECONDS, CONCURRENCY, RATE, OPEN_SECONDS, VALUE_SIZE,
# REDIS_NO_WAIT, ETCD_NO_FSYNC, BASE_PORT, CHORUS_BIN (skip the build), KEEP_TMP.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=${RECORDS:-10000}          # records loaded before each run
CLOSED_SECONDS=${CLOSED_SECONDS:-20} # closed loop: how long each run lasts
CONCURRENCY=${CONCURRENCY:-16}     # requests in flight in the closed loop
RATE=${RATE:-1000}                 # open loop: operations per second
OPEN_SECONDS=${OPEN_SECONDS:-10}   # open loop: how long
VALUE_SIZE=${VALUE_SIZE:-1000}     # bytes per value
REDIS_NO_WAIT=${REDIS_NO_WAIT:-1}  # also run Redis with asynchronous replication
ETCD_NO_FSYNC=${ETCD_NO_FSYNC:-1}  # also run etcd with --unsafe-no-fsync
BASE_PORT=${BASE_PORT:-31100}      # Chorus BASE..+2 (UDP) and +1000..; Redis +300..; etcd +400.. and +500..
OUT_MD=docs/benchmarks.md
OUT_SVG=docs/benchmarks-compare.svg

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for v in RECORDS CLOSED_SECONDS CONCURRENCY RATE OPEN_SECONDS VALUE_SIZE BASE_PORT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done

# --- Packages -------------------------------------------------------------------------
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v python3 >/dev/null || need+=(python3)
if [[ -z ${CHORUS_BIN:-} ]] && ! dpkg -s libclang-dev >/dev/null 2>&1; then
  need+=(libclang-dev) # RocksDB's bindings
fi
if ((${#need[@]})); then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The packages may start their own services on the default ports (6379, 2379); this script
# neither uses nor stops them.

# --- Build ----------------------------------------------------------------------------
if [[ -z ${CHORUS_BIN:-} ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/chorus-target}
  log "building chorus (target dir $CARGO_TARGET_DIR)"
  cargo build --release -p chorus-node
  CHORUS_BIN=$CARGO_TARGET_DIR/release/chorus
fi
[[ -x $CHORUS_BIN ]] || die "no chorus binary at $CHORUS_BIN"

# --- Processes and cleanup ------------------------------------------------------------
TMP=$(mktemp -d /tmp/chorus-compare.XXXXXX)
RESULTS=$TMP/results.jsonl
: >"$RESULTS"
PIDS=()

stop_pids() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 1 200); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

stop_all() {
  if ((${#PIDS[@]})); then stop_pids "${PIDS[@]}"; fi
  PIDS=()
  # `chorus dev` stops its nodes on SIGTERM; should it have died first, stop them here.
  local f pid
  for f in "$TMP"/chorus/n*/pid; do
    [[ -f $f ]] || continue
    pid=$(<"$f")
    if [[ $pid =~ ^[0-9]+$ ]] && grep -q chorus "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
}

cleanup() {
  local rc=$?
  stop_all
  if [[ -n ${KEEP_TMP:-} || $rc -ne 0 ]]; then
    echo "logs and results kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what not ready within ${secs}s (logs in $TMP)"
    sleep 0.3
  done
}

# bench SYSTEM_LABEL BENCH_ARGS...: the three runs, each line of JSON tagged with the label.
# Every run lasts a fixed time (--duration), so fast and slow systems are measured over the
# same stretch rather than the same number of operations.
# Chorus: each run that writes gets a fresh bucket, so the load phase writes new keys and
# updates always carry the context of the bench's own previous write (no siblings).
bench() {
  local label=$1
  shift
  local -a common=(--records "$RECORDS" --value-size "$VALUE_SIZE" --json "$@")
  run_one "$label" a "closed" --workload a --duration "${CLOSED_SECONDS}s" --concurrency "$CONCURRENCY" --bucket cmp-a "${common[@]}"
  run_one "$label" c "closed" --workload c --duration "${CLOSED_SECONDS}s" --concurrency "$CONCURRENCY" --bucket cmp-a --skip-load "${common[@]}"
  run_one "$label" a "open" --workload a --duration "${OPEN_SECONDS}s" --rate "$RATE" --bucket cmp-open "${common[@]}"
}

run_one() {
  local label=$1 workload=$2 mode=$3
  shift 3
  log "$label: workload $workload, $mode loop"
  local out
  out=$("$CHORUS_BIN" bench "$@") || die "chorus bench failed for $label ($workload, $mode)"
  # The histograms are for merging reports; the results file and the log do without them.
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.pop("histograms",None); d["system"]=sys.argv[2]; print(json.dumps(d))' \
    "$out" "$label" | tee -a "$RESULTS" >&2
}

# --- Chorus ---------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "Chorus: 3 nodes on 127.0.0.1:$BASE_PORT-$((BASE_PORT + 2))"
"$CHORUS_BIN" dev --nodes 3 --dir "$TMP/chorus" --base-port "$BASE_PORT" >"$TMP/chorus-dev.log" 2>&1 &
PIDS+=($!)
wait_for 150 "Chorus cluster" grep -q '^ready:' "$TMP/chorus-dev.log"
export CHORUS_CONFIG=$TMP/chorus/client.toml
bench chorus --driver chorus --r quorum --w quorum
unset CHORUS_CONFIG
stop_all

# --- Redis ----------------------------------------------------------------------------
RP=$((BASE_PORT + 300))
log "Redis: primary on $RP, replicas on $((RP + 1)) and $((RP + 2))"
for i in 0 1 2; do
  port=$((RP + i))
  mkdir -p "$TMP/redis/$port"
  args=(--port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no
    --dir "$TMP/redis/$port" --logfile "$TMP/redis/$port/redis.log")
  ((i == 0)) || args+=(--replicaof 127.0.0.1 "$RP")
  redis-server "${args[@]}" &
  PIDS+=($!)
done
replicas_online() {
  [[ $(redis-cli -p "$RP" info replication | grep -c 'state=online') -eq 2 ]]
}
wait_for 60 "Redis replication" replicas_online
bench redis --driver redis --endpoints "127.0.0.1:$RP" --w quorum
if [[ $REDIS_NO_WAIT == 1 ]]; then
  redis-cli -p "$RP" flushall >/dev/null
  bench redis-async --driver redis --endpoints "127.0.0.1:$RP" --w one
fi
stop_all

# --- etcd -----------------------------------------------------------------------------
EC=$((BASE_PORT + 400))
EP=$((BASE_PORT + 500))
ETCD_ENDPOINTS=127.0.0.1:$EC,127.0.0.1:$((EC + 1)),127.0.0.1:$((EC + 2))
start_etcd() {
  local tag=$1
  shift
  local cluster="e0=http://127.0.0.1:$EP,e1=http://127.0.0.1:$((EP + 1)),e2=http://127.0.0.1:$((EP + 2))"
  local i
  for i in 0 1 2; do
    mkdir -p "$TMP/$tag"
    etcd --name "e$i" --data-dir "$TMP/$tag/e$i" \
      --listen-client-urls "http://127.0.0.1:$((EC + i))" \
      --advertise-client-urls "http://127.0.0.1:$((EC + i))" \
      --listen-peer-urls "http://127.0.0.1:$((EP + i))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((EP + i))" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "chorus-compare-$tag" "$@" \
      >"$TMP/$tag/e$i.log" 2>&1 &
    PIDS+=($!)
  done
  wait_for 60 "etcd cluster ($tag)" env ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" \
    --command-timeout=2s endpoint health
}

log "etcd: members on $EC-$((EC + 2)) (peers $EP-$((EP + 2))), WAL fsync on"
start_etcd etcd
bench etcd --driver etcd --endpoints "$ETCD_ENDPOINTS"
stop_all
if [[ $ETCD_NO_FSYNC == 1 ]]; then
  log "etcd again with --unsafe-no-fsync"
  start_etcd etcd-nofsync --unsafe-no-fsync
  bench etcd-nofsync --driver etcd --endpoints "$ETCD_ENDPOINTS"
  stop_all
fi

# --- Report ---------------------------------------------------------------------------
log "writing $OUT_MD and $OUT_SVG"
mem_gib=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
python3 bench/report.py \
  --results "$RESULTS" --markdown "$OUT_MD" --svg "$OUT_SVG" \
  --nproc "$(nproc)" --memory-gib "$mem_gib" --cpu "${cpu_model:-unknown}" \
  --kernel "$(uname -r)" --load-before "$LOAD_BEFORE" --date "$(date -u +%Y-%m-%d)" \
  --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --records "$RECORDS" --closed-seconds "$CLOSED_SECONDS" --concurrency "$CONCURRENCY" --rate "$RATE" \
  --open-seconds "$OPEN_SECONDS" --value-size "$VALUE_SIZE" \
  --redis-version "$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')" \
  --etcd-version "$(etcd --version | sed -n 's/^etcd Version: //p')"
echo "done: $OUT_MD, $OUT_SVG" >&2
