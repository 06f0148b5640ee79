#!/usr/bin/env bash
# Long mode of harness 1 (simulated power failures): every power-failure workload with
# EAGLE_CRASH_LONG=1 (every eviction policy at every fence, second crashes inside recovery),
# in two lanes (one per core), then one total line:
#   crash-images: N checked, M violations (long mode, K workloads)
# Logs go to $OUT (default target/crash-long). Usage: crash-tests/long-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/crash-long}
mkdir -p "$OUT"
export EAGLE_CRASH_LONG=1 EAGLE_CRASH_PROGRESS=${EAGLE_CRASH_PROGRESS:-50000}

rm -rf "$OUT/bin" && mkdir -p "$OUT/bin" && rm -f "$OUT"/*.log
# Build once and copy the test binaries, so edits and rebuilds during the run change nothing.
cargo test -p crash-tests --tests --no-run 2>&1 |
    sed -n 's/.*Executable tests\/\([a-z0-9_]*\)\.rs (\(.*\))$/\1 \2/p' |
    while read -r name exe; do cp "$exe" "$OUT/bin/$name"; done

run() { # test-file test-name
    local log="$OUT/$2.log" start
    start=$(date +%s)
    if "$OUT/bin/$1" --exact "$2" --nocapture >"$log" 2>&1; then
        echo "$2: $(grep -h '^crash-images:' "$log" | tail -1) in $(($(date +%s) - start)) s"
    else
        echo "$2: FAILED in $(($(date +%s) - start)) s (see $log)"
    fi
}

lane1() {
    run dash_power_failure recovery_survives_a_power_failure_at_every_fence_of_splits_and_doublings
    run concurrent_power_failure concurrent_batches_are_all_or_nothing_at_every_fence
    run keyspace_power_failure transactions_are_all_or_nothing_at_every_fence
    run keyspace_power_failure large_hash_table_doublings_and_part_splits_are_all_or_nothing_at_every_fence
    run keyspace_power_failure splits_of_blocks_named_by_four_words_are_all_or_nothing_at_every_fence
    run eviction_power_failure writes_that_evict_keep_every_acknowledged_key_or_lose_only_what_they_evicted_at_every_fence
}
lane2() {
    run keyspace_power_failure multi_key_commands_are_all_or_nothing_at_every_fence
    run keyspace_power_failure large_hash_writes_are_all_or_nothing_at_every_fence
    run keyspace_power_failure batches_that_split_the_index_before_they_are_logged_are_all_or_nothing_at_every_fence
    run wal_power_failure wal_recovery_survives_a_power_failure_at_every_fence
    run deleted_values deleted_values_are_gone_after_a_power_failure_and_the_next_open
    run deleted_values deleted_keys_are_gone_from_the_log_after_a_power_failure_and_the_next_open
    run deleted_values deleted_hash_fields_are_gone_after_a_power_failure_and_the_next_open
}
start=$(date +%s)
lane1 >"$OUT/lane1.txt" &
lane2 >"$OUT/lane2.txt"
wait
cat "$OUT/lane1.txt" "$OUT/lane2.txt"
# Totals from each workload's own summary line (the last `crash-images:` line of its log).
total=0 bad=0 n=0 failed=0
for f in "$OUT"/*.log; do
    line=$(grep -h '^crash-images:' "$f" | tail -1 || true)
    [[ $line =~ crash-images:\ ([0-9]+)\ checked,\ ([0-9]+)\ violations ]] || { failed=1; continue; }
    total=$((total + BASH_REMATCH[1])) bad=$((bad + BASH_REMATCH[2])) n=$((n + 1))
done
echo "crash-images: $total checked, $bad violations (long mode, $n workloads, $(($(date +%s) - start)) s)"
grep -q FAILED "$OUT/lane1.txt" "$OUT/lane2.txt" && failed=1
exit $((failed || bad > 0))
