#!/usr/bin/env bash
# Server benchmark: eagle-server against redis-server (Debian's 7.0) in one run on this machine.
#
#   eagle-server/bench/compare.sh [REQUESTS] [ROUNDS]
#
# Configurations: redis without persistence; redis appendonly + appendfsync everysec; redis
# appendfsync always; eagle with its pool on /dev/shm; eagle with its pool on disk (./target).
# Workloads: redis-benchmark -c 50, -P 1 and -P 16, SET/GET/INCR/HSET/MSET, keyspace 1,000,000,
# values of 16 B and 1 KiB. Servers are interleaved (A B C D E, repeated ROUNDS times) so a
# noisy machine hits them alike; the table gives the median over rounds of throughput, p50 and
# p99, and eagle's ratio to each redis row. Needs a release build:
#   cargo build --release -p eagle-server
#
# A focused run narrows it with CONFIGS, TESTS, SIZES and PIPES (defaults: all of the above), e.g.
#   CONFIGS="redis-nopersist eagle-shm" TESTS=set,get SIZES=16 PIPES=16 compare.sh 1000000 7
# EAGLE_HUGE_DIR=DIR adds eagle-huge: eagle with its pool in DIR, a tmpfs mounted with
# huge=advise (2 MiB pages, as on DAX; see docs/operations.md).
# The configuration `null` (in CONFIGS) is a server that stores nothing and answers at once
# (eagle-server/examples/null_server.rs): the most any server can do under this client on this
# machine. Its column, null / this, bounds every ratio a real server can reach. Build it with
#   cargo build --release -p eagle-server --example null_server
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200000}
ROUNDS=${2:-3}
BIN=target/release/eagle-server
[ -x "$BIN" ] || { echo "build first: cargo build --release -p eagle-server" >&2; exit 2; }
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || {
  echo "needs redis-server and redis-benchmark (apt-get install redis-server redis-tools)" >&2; exit 2; }
WORK=$(mktemp -d /dev/shm/eagle-bench.XXXXXX)
DISK=$(mktemp -d "$PWD/target/eagle-bench-disk.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true; rm -rf "$WORK" "$DISK"; }
trap cleanup EXIT
PORT=7399
start() { # name
  case "$1" in
    redis-nopersist) redis-server --port $PORT --save '' --appendonly no --dir "$WORK" --daemonize no >/dev/null & ;;
    redis-everysec) redis-server --port $PORT --save '' --appendonly yes --appendfsync everysec --dir "$DISK" --daemonize no >/dev/null & ;;
    redis-always) redis-server --port $PORT --save '' --appendonly yes --appendfsync always --dir "$DISK" --daemonize no >/dev/null & ;;
    eagle-shm) "$BIN" --port $PORT --pool "$WORK/eagle.pool" --pool-size 4gb --metrics-addr off --loglevel warning >/dev/null 2>&1 & ;;
    eagle-disk) "$BIN" --port $PORT --pool "$DISK/eagle.pool" --pool-size 4gb --metrics-addr off --loglevel warning >/dev/null 2>&1 & ;;
    null) target/release/examples/null_server $PORT >/dev/null 2>&1 & ;;
    eagle-huge) "$BIN" --port $PORT --pool "$EAGLE_HUGE_DIR/eagle-bench.pool" --pool-size 4gb --metrics-addr off --loglevel warning >/dev/null 2>&1 & ;;
  esac
  PID=$!
  for _ in $(seq 200); do redis-cli -p $PORT ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "$1 did not start" >&2; exit 1
}
stop() {
  redis-cli -p $PORT shutdown nosave >/dev/null 2>&1 || true; wait "$PID" 2>/dev/null || true; PID=
  rm -rf "$WORK"/* "$DISK"/*; [ -z "${EAGLE_HUGE_DIR:-}" ] || rm -f "$EAGLE_HUGE_DIR/eagle-bench.pool"
}
CONFIGS=${CONFIGS:-"redis-nopersist redis-everysec redis-always eagle-shm eagle-disk"}
case " $CONFIGS " in *" null "*) [ -x target/release/examples/null_server ] || {
  echo "build first: cargo build --release -p eagle-server --example null_server" >&2; exit 2; } ;; esac
[ -z "${EAGLE_HUGE_DIR:-}" ] || CONFIGS="$CONFIGS eagle-huge"
TESTS=${TESTS:-set,get,incr,hset,mset}
SIZES=${SIZES:-"16 1024"}
PIPES=${PIPES:-"1 16"}
RAW=$WORK/../eagle-bench-raw.$$
: > "$RAW"
for round in $(seq "$ROUNDS"); do
  for cfg in $CONFIGS; do
    start "$cfg"
    for size in $SIZES; do
      for pipe in $PIPES; do
        redis-benchmark -p $PORT -c 50 -n "$N" -r 1000000 -d $size -P $pipe -t "$TESTS" --csv 2>/dev/null \
          | tail -n +2 | tr -d '"' | while IFS=, read -r test rps avg min p50 p95 p99 max; do
              echo "$cfg $size $pipe ${test%% *} $rps $p50 $p99" >> "$RAW"
            done
      done
    done
    stop
  done
done
python3 - "$RAW" "$N" "$ROUNDS" <<'PY'
import sys, statistics, collections, platform, datetime
raw, n, rounds = sys.argv[1], sys.argv[2], sys.argv[3]
rows = collections.defaultdict(list)
for line in open(raw):
    cfg, size, pipe, test, rps, p50, p99 = line.split()
    rows[(test, size, pipe, cfg)].append((float(rps), float(p50), float(p99)))
cpu = next((l.split(':',1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
print(f"# {datetime.date.today()} {cpu}, {len(open('/proc/cpuinfo').read().split('processor'))-1} vCPU; redis-benchmark -c 50 -n {n} -r 1000000, median of {rounds} rounds")
extra_cols = [c for c in ("eagle-huge", "null") if any(k[3] == c for k in rows)]
print("| test | value | -P | config | ops/s | p50 ms | p99 ms | eagle-shm / this |" + "".join(f" {c} / this |" for c in extra_cols))
print("|---|---:|---:|---|---:|---:|---:|---:|" + "---:|" * len(extra_cols))
tests = sorted({k[0] for k in rows}, key=lambda t: ["SET","GET","INCR","HSET","MSET"].index(t) if t in ["SET","GET","INCR","HSET","MSET"] else 9)
sizes = sorted({k[1] for k in rows}, key=int)
pipes = sorted({k[2] for k in rows}, key=int)
for test in tests:
    for size in sizes:
        for pipe in pipes:
            med = {}
            for cfg in "redis-nopersist redis-everysec redis-always eagle-shm eagle-disk eagle-huge null".split():
                v = rows.get((test, size, pipe, cfg))
                if v:
                    med[cfg] = tuple(statistics.median(x[i] for x in v) for i in range(3))
            def ratio(eagle, cfg, rps):
                e = med.get(eagle)
                return f"{e[0]/rps:.2f}x" if e and cfg.startswith("redis") else ""
            for cfg, (rps, p50, p99) in med.items():
                extra = "".join(f" {ratio(c, cfg, rps)} |" for c in extra_cols)
                print(f"| {test} | {size} | {pipe} | {cfg} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {ratio('eagle-shm', cfg, rps)} |{extra}")
PY
rm -f "$RAW"
