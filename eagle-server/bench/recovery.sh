#!/usr/bin/env bash
# Restart after kill -9: time from process start to the first served GET, eagle-server against
# redis-server (Debian's 7.0) reloading its AOF and its RDB, with the same keys; and memory per
# key (eagle's pool bytes used, redis's used_memory).
#
#   eagle-server/bench/recovery.sh [KEYS] [ROUNDS]      (default 1000000 keys, 3 rounds)
#
# Data: KEYS 16-byte keys `key:<i, 12 digits>` with 16-byte values (plus a 100-byte-value pass for memory), loaded
# with `redis-cli --pipe`. Every server keeps its files on /dev/shm (DRAM), so the disk is out of
# the comparison. Configurations:
#   eagle     pool on /dev/shm (emulated pool, flush mode as detected);
#   redis-aof appendonly yes, appendfsync everysec (Redis 7's default AOF with an RDB preamble
#             after a rewrite); killed 2 s after the load so the last second is fsynced;
#   redis-rdb save '' and one SAVE after the load (what a restart from the last snapshot loads).
# Each round: start, load, (SAVE), kill -9, start again and poll GET key:000000000001 every ~1 ms until it
# answers the loaded value; the figure is the time from the restart's exec to that answer.
# Needs a release build: cargo build --release -p eagle-server
set -euo pipefail
cd "$(dirname "$0")/../.."
KEYS=${1:-1000000}
ROUNDS=${2:-3}
BIN=$PWD/target/release/eagle-server
[ -x "$BIN" ] || { echo "build first: cargo build --release -p eagle-server" >&2; exit 2; }
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
  echo "needs redis-server and redis-cli (apt-get install redis-server redis-tools)" >&2; exit 2; }
WORK=$(mktemp -d /dev/shm/eagle-recovery.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=7398
POOL_SIZE=$(( (KEYS / 1000000 + 1) * 512 ))mb

# The load, as RESP: SET key:<i, 12 digits> <value padded to SIZE bytes>.
gen() { # size
  awk -v n="$KEYS" -v size="$1" 'BEGIN {
    pad = sprintf("%" size "s", ""); gsub(/ /, "v", pad);
    for (i = 0; i < n; i++) {
      k = sprintf("key:%012d", i); v = substr(i pad, 1, size);
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
    }
  }'
}

launch_cmd() { # config: its command line
  case "$1" in
    eagle) echo "$BIN --port $PORT --pool $WORK/eagle.pool --pool-size $POOL_SIZE --metrics-addr off --loglevel warning" ;;
    redis-aof) echo "redis-server --port $PORT --dir $WORK --save '' --appendonly yes --appendfsync everysec --daemonize no" ;;
    redis-rdb) echo "redis-server --port $PORT --dir $WORK --save '' --appendonly no --daemonize no" ;;
  esac
}

launch() { # config  (sets PID; returns at once)
  eval "$(launch_cmd "$1")" '>/dev/null 2>&1 &'
  PID=$!
}

# Restarts `config` from Python (started beforehand, so its own start-up is not timed) and
# polls GET key:000000000001 (a connection attempt every ~1 ms) until it returns the loaded value. Prints
# "<ms from the server's exec to that answer> <server pid>".
restart_timed() { # config want
  python3 - "$2" "$PORT" "$(launch_cmd "$1")" <<'PY'
import shlex, socket, subprocess, sys, time
want, port, cmd = sys.argv[1].encode(), int(sys.argv[2]), shlex.split(sys.argv[3])
expect = b"$%d\r\n%s\r\n" % (len(want), want)
t0 = time.monotonic_ns()
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000001\r\n")
            got = b""
            while len(got) < len(expect) and not got.startswith((b"-", b"$-1")):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            if got == expect:
                print((time.monotonic_ns() - t0) // 1_000_000, proc.pid)
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.001)
print("timeout", proc.pid)
sys.exit(1)
PY
}

stop() { # the server on $PORT, and wait until the port is free
  redis-cli -p $PORT shutdown nosave >/dev/null 2>&1 || kill -9 "$PID" 2>/dev/null || true
  while kill -0 "$PID" 2>/dev/null; do sleep 0.01; done
  PID=
}

wait_up() { for _ in $(seq 2000); do redis-cli -p $PORT ping >/dev/null 2>&1 && return; sleep 0.01; done; echo "no answer" >&2; exit 1; }

used_bytes() { # config
  case "$1" in
    eagle) redis-cli -p $PORT info eagle | tr -d '\r' | awk -F: '/^pool_bytes_used:/ {print $2}' ;;
    *) redis-cli -p $PORT info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}' ;;
  esac
}

gen 16 > "$WORK/load16.resp"
gen 100 > "$WORK/load100.resp"
WANT=$(awk -v size=16 'BEGIN { pad = sprintf("%" size "s", ""); gsub(/ /, "v", pad); print substr(1 pad, 1, size) }')
RAW=$WORK/raw
: > "$RAW"
for round in $(seq "$ROUNDS"); do
  for cfg in eagle redis-aof redis-rdb; do
    rm -rf "${WORK:?}"/eagle.pool "$WORK"/appendonlydir "$WORK"/dump.rdb
    launch "$cfg"; wait_up
    redis-cli -p $PORT --pipe < "$WORK/load16.resp" >/dev/null
    used=$(used_bytes "$cfg")
    [ "$cfg" = redis-rdb ] && redis-cli -p $PORT save >/dev/null
    [ "$cfg" = redis-aof ] && sleep 2
    kill -9 "$PID"; wait "$PID" 2>/dev/null || true
    read -r ms PID < <(restart_timed "$cfg" "$WANT")
    [ "$ms" = timeout ] && { echo "$cfg: no answer after restart" >&2; exit 1; }
    keys=$(redis-cli -p $PORT dbsize)
    echo "$cfg $ms $keys $used" >> "$RAW"
    stop
  done
done
# Memory with 100-byte values (one load per server, no restart).
for cfg in eagle redis-rdb; do
  rm -rf "${WORK:?}"/eagle.pool "$WORK"/appendonlydir "$WORK"/dump.rdb
  launch "$cfg"; wait_up
  redis-cli -p $PORT --pipe < "$WORK/load100.resp" >/dev/null
  echo "mem100 $cfg $(used_bytes "$cfg")" >> "$RAW"
  stop
done
python3 - "$RAW" "$KEYS" "$ROUNDS" <<'PY'
import sys, statistics, collections, datetime
raw, keys, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3]
times, mem, mem100, seen = collections.defaultdict(list), {}, {}, {}
for line in open(raw):
    f = line.split()
    if f[0] == "mem100":
        mem100[f[1]] = int(f[2]); continue
    cfg, ms, n, used = f
    times[cfg].append(int(ms)); seen[cfg] = int(n); mem[cfg] = int(used)
cpu = next((l.split(':',1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
print(f"# {datetime.date.today()} {cpu}; {keys:,} keys; files on /dev/shm; {rounds} rounds")
print("| server | first GET after kill -9 (ms, each round) | median | eagle faster by | keys after restart | bytes/key (16 B values) | bytes/key (100 B values) |")
print("|---|---|---:|---:|---:|---:|---:|")
e = statistics.median(times["eagle"])
for cfg in ("eagle", "redis-aof", "redis-rdb"):
    med = statistics.median(times[cfg])
    ratio = "" if cfg == "eagle" else f"{med / max(e, 1):.1f}x"
    m100 = mem100.get(cfg if cfg != "redis-aof" else "redis-rdb")
    print(f"| {cfg} | {', '.join(map(str, times[cfg]))} | {med:.0f} | {ratio} | {seen[cfg]:,} | {mem[cfg]/keys:.1f} | {'' if m100 is None else f'{m100/keys:.1f}'} |")
PY
