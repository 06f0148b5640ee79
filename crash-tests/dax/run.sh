#!/usr/bin/env bash
# Harness 4 of the crash tests: EagleDB on real DAX, in a qemu (TCG) guest with two emulated
# NVDIMMs: region0 as fsdax (ext4 mounted -o dax, pool file mapped with MAP_SYNC) and region1 as
# devdax (/dev/dax1.0). Three boots:
#   1. probe:  a pool on each device must open as FsDax and DevDax (never the emulated fallback);
#   2. load:   the keyspace workload (SET, MSET, HSET, INCRBY) on both devices at once; once each
#              device has enough acknowledged operations on the console, qemu's own process is
#              killed with SIGKILL: a power loss, the .img files hold exactly what the guest stored;
#   3. verify: each device, reopened and recovered, holds every acknowledged operation, the one in
#              flight wholly or not at all, nothing else, and Engine::check is clean.
# Prints one summary line `dax: ...` and exits non-zero on any failure.
#
# What it cannot catch: TCG has no cache model (every executed store reaches the image), so a
# missing clwb/sfence goes unnoticed here; that is the power-failure simulator's job (the other
# crash-tests). This harness covers the real mapping path (devdax geometry, MAP_SYNC), ordering
# of stores at the kill point, and recovery on DAX.
#
# Based on the tested recipe in shared/dax-vm (README.md, run-guest.sh): the qemu command line,
# the kernel modules, `-a 2M` namespaces and the static-binary build come from there.
#
# Needs (installed by .ci/run): qemu-system-x86 linux-image-amd64 busybox-static ndctl daxctl
# cpio e2fsprogs. Installs nothing itself.
#
# Environment (all optional):
#   CARGO_TARGET_DIR   cargo's target dir (default: the workspace's target/); the guest cache and
#                      logs go to $CARGO_TARGET_DIR/daxvm
#   DAX_KILL_AT        acknowledged operations per device before the power loss (default: a
#                      random number in 300..599, printed)
#   DAX_BOOT_TIMEOUT   seconds allowed for the probe and verify boots (default 240)
#   DAX_LOAD_TIMEOUT   seconds allowed for the load boot to reach DAX_KILL_AT (default 300)
#   DAX_IMG_SIZE       size of each NVDIMM image (default 512M)
#   DAX_CORE_TESTS=1   also build eagle-core's integration tests statically and run them in a
#                      4th boot with their pools on the fsdax mount (about 70 s more, plus the
#                      build; three tests are skipped, see guest-run.sh)
#   DAX_KEEP=1         keep the NVDIMM images after a successful run
#   DAX_VERBOSE=1      copy each boot's console to stderr after the boot
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CACHE=$TARGET_DIR/daxvm
WORK=$CACHE/run
TRIPLE=x86_64-unknown-linux-gnu
IMG_SIZE=${DAX_IMG_SIZE:-512M}
BOOT_TIMEOUT=${DAX_BOOT_TIMEOUT:-240}
LOAD_TIMEOUT=${DAX_LOAD_TIMEOUT:-300}
KILL_AT=${DAX_KILL_AT:-$((300 + RANDOM % 300))}
# The load never finishes by itself: the power loss ends it.
LOAD_OPS=100000000

fail() {
    echo "dax: FAIL: $*" >&2
    exit 1
}
note() { echo "dax: $*" >&2; }

for tool in qemu-system-x86_64 cpio gzip flock ldd; do
    command -v "$tool" >/dev/null || fail "$tool not found (CI installs qemu-system-x86 linux-image-amd64 busybox-static ndctl daxctl cpio e2fsprogs)"
done
mkdir -p "$WORK"
# One run at a time per target dir: the images, logs and pid file are shared.
exec 9>"$CACHE/lock"
flock -w 900 9 || fail "another run holds $CACHE/lock"

QEMU_PID=
cleanup() {
    # Leave nothing running: only the qemu this script started, by its pid.
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill -9 "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the guest: kernel + base initramfs, rebuilt when the kernel or the scripts change ---------
started=$(date +%s)
kernels=$(ls /boot/vmlinuz-* 2>/dev/null || true)
stamp=$(cat "$HERE/init" "$HERE/build-initramfs.sh" | sha256sum | cut -c1-16)-$(echo "$kernels" | sha256sum | cut -c1-16)
if [ ! -f "$CACHE/base.cpio.gz" ] || [ "$(cat "$CACHE/stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -f "$CACHE/stamp"
    "$HERE/build-initramfs.sh" "$CACHE" >&2 || fail "building the guest initramfs"
    echo "$stamp" > "$CACHE/stamp"
fi

# --- the payload: a static binary (no musl target here; glibc with crt-static works) ------------
# Without debug info: a smaller initrd boots faster under TCG (panic messages keep file:line).
STATIC_RUSTFLAGS='-C target-feature=+crt-static -C strip=debuginfo'
note "building the static payload (target $TRIPLE)"
(
    cd "$ROOT"
    RUSTFLAGS=$STATIC_RUSTFLAGS CARGO_TARGET_DIR="$TARGET_DIR" \
        "${CARGO:-cargo}" build --quiet --target "$TRIPLE" -p crash-tests --bin dax-payload
) || fail "building dax-payload"
BIN=$TARGET_DIR/$TRIPLE/debug/dax-payload
is_static() { (ldd "$1" 2>&1 || true) | grep -q -E 'statically linked|not a dynamic executable'; }
is_static "$BIN" || fail "$BIN is not static"

PAY=$WORK/payload
rm -rf "$PAY"
mkdir -p "$PAY/payload/tests"
cp "$BIN" "$PAY/payload/dax-payload"
cp "$HERE/guest-run.sh" "$PAY/payload/run"
chmod +x "$PAY/payload/run"
if [ "${DAX_CORE_TESTS:-0}" = 1 ]; then
    note "building eagle-core's integration tests statically"
    list=$(
        cd "$ROOT"
        RUSTFLAGS=$STATIC_RUSTFLAGS CARGO_TARGET_DIR="$TARGET_DIR" \
            "${CARGO:-cargo}" test --quiet --no-run --target "$TRIPLE" -p eagle-core --test '*' \
            --message-format=json
    ) || fail "building eagle-core's tests"
    # Integration-test harnesses only, not the binaries built alongside them.
    for exe in $(printf '%s\n' "$list" | grep '"kind":\["test"\]' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4); do
        cp "$exe" "$PAY/payload/tests/"
    done
fi
(cd "$PAY" && find payload | cpio -o -H newc --quiet | gzip -1) > "$WORK/payload.cpio.gz"
cat "$CACHE/base.cpio.gz" "$WORK/payload.cpio.gz" > "$WORK/initrd"
note "guest ready in $(($(date +%s) - started)) s"

# --- boots ---------------------------------------------------------------------------------------
FSDAX_IMG=$WORK/nvdimm0.img
DEVDAX_IMG=$WORK/nvdimm1.img
rm -f "$FSDAX_IMG" "$DEVDAX_IMG"
truncate -s "$IMG_SIZE" "$FSDAX_IMG"
truncate -s "$IMG_SIZE" "$DEVDAX_IMG"

BOOT_T0=
LOG=
# boot_start NAME FRESH ARGS...: starts qemu in the background, console to $WORK/NAME.log.
boot_start() {
    local name=$1 fresh=$2
    shift 2
    LOG=$WORK/$name.log
    : > "$LOG"
    rm -f "$WORK/qemu.pid"
    BOOT_T0=$(date +%s.%N)
    qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 \
        -machine pc,nvdimm=on -m 1G,slots=4,maxmem=8G \
        -object "memory-backend-file,id=mem0,share=on,mem-path=$FSDAX_IMG,size=$IMG_SIZE,align=2M" \
        -device nvdimm,id=nv0,memdev=mem0 \
        -object "memory-backend-file,id=mem1,share=on,mem-path=$DEVDAX_IMG,size=$IMG_SIZE,align=2M" \
        -device nvdimm,id=nv1,memdev=mem1 \
        -kernel "$CACHE/vmlinuz" -initrd "$WORK/initrd" \
        -append "console=ttyS0 quiet loglevel=4 panic=-1 ${fresh:+eagle.fresh=1} -- $*" \
        -pidfile "$WORK/qemu.pid" -display none -nodefaults -no-reboot -monitor none \
        -serial "file:$LOG" </dev/null >"$WORK/$name.qemu.txt" 2>&1 &
    QEMU_PID=$!
}

elapsed() { echo "$(date +%s.%N) $BOOT_T0" | awk '{ printf "%.1f", $1 - $2 }'; }

show_log() {
    echo "---- $1 console (last 40 lines; whole log: $LOG) ----" >&2
    tr -d '\r' < "$LOG" | tail -40 >&2
    cat "$WORK/$1.qemu.txt" >&2 2>/dev/null || true
    echo "----" >&2
}

# boot_wait NAME LIMIT: waits for the guest to power off; fails on timeout or a non-zero payload.
boot_wait() {
    local name=$1 limit=$2
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if awk -v l="$limit" -v e="$(elapsed)" 'BEGIN { exit !(e > l) }'; then
            kill -9 "$QEMU_PID" 2>/dev/null || true
            wait "$QEMU_PID" 2>/dev/null || true
            QEMU_PID=
            show_log "$name"
            fail "boot '$name' timed out after $limit s"
        fi
        sleep 0.2
    done
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=
    [ "${DAX_VERBOSE:-0}" = 1 ] && show_log "$name"
    local rc
    rc=$(tr -d '\r' < "$LOG" | { grep -a -o 'EAGLE_EXIT=[0-9]*' || true; } | tail -1 | cut -d= -f2)
    if [ "${rc:-none}" != 0 ]; then
        show_log "$name"
        fail "boot '$name': the guest ended with EAGLE_EXIT=${rc:-none}"
    fi
}

# The console with only complete lines and no carriage returns (the serial console writes \r\n;
# a line the power loss cut short is dropped). Checks read a copy of it in $TXT, never a pipe
# into `grep -q`, which pipefail would turn into a failure.
console() {
    if [ -n "$(tail -c1 "$LOG")" ]; then sed '$d' "$LOG"; else cat "$LOG"; fi | tr -d '\r'
}
TXT=
snap() { TXT=$WORK/$1.txt; console > "$TXT"; }

# acked KIND: acknowledged operations of KIND's load seen on the console (the highest index + 1;
# operations are acknowledged in order, so every lower one was acknowledged too).
acked() {
    console | awk -v k="$1" '$1 == k && $2 == "acked" && NF == 3 && $3 ~ /^[0-9]+$/ {
        if ($3 + 1 > n) n = $3 + 1 } END { print n + 0 }'
}

boot_time() { # NAME [HOW]: seconds in all and (guest clock) to the payload's start; after snap
    local to_payload
    to_payload=$(sed -n '/^\[init \([0-9.]*\)s\] running payload.*/{s//\1/p;q;}' "$TXT")
    echo "$1 $(elapsed) s (${2:+$2, }payload started at ${to_payload:-?} s guest time)"
}
TIMES=()

# Boot 1: fresh namespaces and ext4; a pool on each device must open as DAX.
boot_start probe 1 probe
boot_wait probe "$BOOT_TIMEOUT"
snap probe
TIMES+=("$(boot_time probe)")
grep -q '^probe /mnt/pmem/eagle.pool kind fsdax ' "$TXT" || { show_log probe; fail "the fsdax pool was not FsDax"; }
grep -q '^probe /dev/dax1.0 kind devdax ' "$TXT" || { show_log probe; fail "/dev/dax1.0 was not DevDax"; }
sed -n 's/^probe /dax: probe /p' "$TXT" >&2

if [ "${DAX_CORE_TESTS:-0}" = 1 ]; then
    boot_start tests "" tests
    boot_wait tests $((BOOT_TIMEOUT * 4))
    snap tests
    TIMES+=("$(boot_time tests)")
    note "eagle-core's integration tests passed on fsdax"
fi

# Boot 2: the workload on both devices; power loss once each has KILL_AT acknowledgements.
note "load: power loss after $KILL_AT acknowledged operations per device"
boot_start load "" load "$LOAD_OPS"
while :; do
    if ! kill -0 "$QEMU_PID" 2>/dev/null; then
        wait "$QEMU_PID" 2>/dev/null || true
        QEMU_PID=
        show_log load
        fail "the load boot ended by itself before the power loss"
    fi
    if awk -v l="$LOAD_TIMEOUT" -v e="$(elapsed)" 'BEGIN { exit !(e > l) }'; then
        show_log load
        fail "the load did not reach $KILL_AT acknowledged operations per device in $LOAD_TIMEOUT s (fsdax $(acked fsdax), devdax $(acked devdax))"
    fi
    if [ "$(console | awk '/^FAIL / { n++ } END { print n + 0 }')" != 0 ]; then
        show_log load
        fail "a load failed in the guest"
    fi
    if [ "$(acked fsdax)" -ge "$KILL_AT" ] && [ "$(acked devdax)" -ge "$KILL_AT" ]; then
        break
    fi
    sleep 0.1
done
# The power loss: SIGKILL to qemu's own process (from its pid file), not to a wrapper.
pid=$(cat "$WORK/qemu.pid" 2>/dev/null || true)
[ "$pid" = "$QEMU_PID" ] || fail "qemu's pid file says '${pid}', started $QEMU_PID"
kill -9 "$pid"
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=
snap load
TIMES+=("$(boot_time load killed)")
[ "${DAX_VERBOSE:-0}" = 1 ] && show_log load
grep -q '^fsdax load start ' "$TXT" || { show_log load; fail "the fsdax load did not start as fsdax"; }
grep -q '^devdax load start ' "$TXT" || { show_log load; fail "the devdax load did not start as devdax"; }
grep -q 'EAGLE_EXIT' "$TXT" && { show_log load; fail "the load boot finished before the power loss"; }
FS_ACKED=$(acked fsdax)
DEV_ACKED=$(acked devdax)
note "power loss at fsdax $FS_ACKED, devdax $DEV_ACKED acknowledged operations"

# Boot 3: recovery and verification on both devices.
boot_start verify "" verify "$FS_ACKED" "$DEV_ACKED"
boot_wait verify "$BOOT_TIMEOUT"
snap verify
TIMES+=("$(boot_time verify)")
sed -n -E 's/^((fsdax|devdax|FAIL) )/dax: \1/p' "$TXT" >&2
verified() { awk -v k="$1" '$1 == k && $2 == "verified" && NF == 3 { n = $3 } END { print n }' "$TXT"; }
FS_VERIFIED=$(verified fsdax)
DEV_VERIFIED=$(verified devdax)
[ -n "$FS_VERIFIED" ] && [ -n "$DEV_VERIFIED" ] || { show_log verify; fail "no 'verified' line for both devices"; }
[ "$(grep -c -E '^(fsdax|devdax) check clean$' "$TXT")" = 2 ] || { show_log verify; fail "check not clean on both devices"; }

# The emulated fallback must never have been used, in any boot.
if grep -a -E '^emulated |kind emulated|fell back to emulation' "$WORK"/{probe,load,verify}.txt >&2; then
    fail "the emulated fallback appeared on a console"
fi

[ "${DAX_KEEP:-0}" = 1 ] || rm -f "$FSDAX_IMG" "$DEVDAX_IMG"
note "boot times: $(IFS=';'; echo "${TIMES[*]}" | sed 's/;/, /g'); total $(($(date +%s) - started)) s"
echo "dax: fsdax+devdax used, power-loss kill at $((FS_ACKED + DEV_ACKED)) acked writes (fsdax $FS_ACKED, devdax $DEV_ACKED), $((FS_VERIFIED + DEV_VERIFIED)) verified (fsdax $FS_VERIFIED, devdax $DEV_VERIFIED), check clean"
