#!/usr/bin/env bash
# Alternates server builds (and redis-server) under pipelined commands (SET and GET unless TESTS
# says otherwise): for comparing two builds of eagle-server on a noisy machine, each on a fresh pool.
#
#   eagle-server/bench/alternate.sh ROUNDS REQUESTS SIZE SERVER...
#
# SERVER is the path of an eagle-server binary (or of a script that runs one with extra options,
# e.g. `exec /path/eagle-server --threads 1 "$@"`), or `redis` for redis-server without
# persistence. Each round starts each SERVER in turn on a pool in /dev/shm (4 GiB) and runs
#   redis-benchmark -c 50 -n REQUESTS -r 1000000 -d SIZE -P $PIPE -t $TESTS
# (PIPE 16 and TESTS set,get unless set in the environment), printing one line per server:
# requests per second and p99 (ms) of each test.
# (docs/benchmarks.md calls it /tmp/srvab2.sh, and /tmp/srvab.sh with SIZE 16 and no redis.)
set -uo pipefail
[ $# -ge 4 ] || { sed -n 2,13p "$0" >&2; exit 2; }
ROUNDS=$1; N=$2; SIZE=$3; shift 3
PORT=${PORT:-7411}
PIPE=${PIPE:-16}
TESTS=${TESTS:-set,get}
WORK=$(mktemp -d /dev/shm/eagle-alternate.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for _ in $(seq "$ROUNDS"); do
  for server in "$@"; do
    rm -rf "$WORK"/*
    if [ "$server" = redis ]; then
      redis-server --port "$PORT" --save '' --appendonly no --dir "$WORK" --daemonize no >/dev/null &
    else
      "$server" --port "$PORT" --pool "$WORK/pool" --pool-size 4gb --metrics-addr off \
        --loglevel warning >/dev/null 2>&1 &
    fi
    pid=$!
    for _ in $(seq 200); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
    out=$(redis-benchmark -p "$PORT" -c 50 -n "$N" -r 1000000 -d "$SIZE" -P "$PIPE" -t "$TESTS" --csv \
      2>/dev/null | tail -n +2 | tr -d '"' | awk -F, '{printf "%s %s p99=%s  ", $1, $2, $7}')
    echo "$(basename "$server") $out"
    redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1
    wait "$pid" 2>/dev/null
  done
done
