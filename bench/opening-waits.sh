#!/usr/bin/env bash
# Where the opening waits: a wait-time (off-CPU) profile of `platepool-loadtest --embedded
# --preset opening`, per thread and per lock, channel and fsync.
#
#   bench/opening-waits.sh LOADTEST_BINARY OUT_DIR [more loadtest arguments]
#
# While the rehearsal runs (engine, gateway and load generator in one process) it takes:
#   - stacks.txt: every thread's stack, SAMPLES times SAMPLE_EVERY seconds apart (gdb, "poor
#     man's profiler"),
#     summarised by bench/opening-waits-summary.py into what each thread group was blocked in;
#   - syscalls-{stage1,opening}.txt: `perf trace -s`, 4 s of stage 1 (from 2 s after the first
#     arrival) and of the opening burst (from 17 s): per thread, the time spent in futex (locks,
#     condition variables, channels), fdatasync, epoll_wait, …;
#   - sched-{stage1,opening}.txt: `perf sched timehist -s` over the next 4 s of each: per thread,
#     run time, time asleep and time runnable but waiting for a CPU (scheduling delay);
#   - load.txt: load average before and after; report.json, loadtest.txt: the rehearsal's own.
# Needs gdb and perf (linux-perf) with access to tracepoints (perf_event_paranoid ≤ 2 as root).
set -euo pipefail

bin=${1:?loadtest binary}
out=${2:?output folder}
shift 2
SAMPLE_EVERY=${SAMPLE_EVERY:-2}
SAMPLES=${SAMPLES:-15}
mkdir -p "$out"
command -v gdb >/dev/null || { echo "gdb is missing" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is missing" >&2; exit 1; }

{ date -u +%FT%TZ; uptime; nproc; } >"$out/load.txt"
timeout "${RUN_TIMEOUT:-300}" "$bin" --embedded --preset opening --json "$out/report.json" "$@" \
    >"$out/loadtest.txt" 2>&1 &
wrapper=$!
sleep 0.5
pid=$(pgrep -P $wrapper -n || echo $wrapper)
trap 'kill $wrapper 2>/dev/null || true' INT TERM

# The rehearsal prepares (office, release, certificates, tokens) before its first arrival; its
# progress lines ("[  5.0 s] buyers … arrived") count from the first arrival.
for _ in $(seq 1 3000); do
    grep -q "arrived" "$out/loadtest.txt" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
since=$(grep -m1 "arrived" "$out/loadtest.txt" | sed -n 's/^\[ *\([0-9.]*\) s\].*/\1/p')
start=$(echo "$(date +%s.%N) - ${since:-0}" | bc)
echo "first arrival at $start (epoch seconds)" >>"$out/load.txt"

# perf over two windows (seconds after the first arrival): stage 1 (applications, identity)
# and the opening burst (the preset's release opens at 16 s).
window() {
    local name=$1 from=$2 seconds=$3
    local at
    at=$(echo "$start + $from - $(date +%s.%N)" | bc)
    if [ "$(echo "$at > 0" | bc)" = 1 ]; then sleep "$at"; fi
    kill -0 $pid 2>/dev/null || return 0
    perf trace -s -p $pid -o "$out/syscalls-$name.txt" -- sleep "$seconds" >/dev/null 2>&1 || true
    kill -0 $pid 2>/dev/null || return 0
    perf sched record -o "$out/sched-$name.data" -- sleep "$seconds" >/dev/null 2>&1 || true
}
(
    window stage1 2 4
    window opening 17 4
) &
windows=$!

# One gdb session for every sample: it reads the binary's symbols once, then attaches, prints
# every thread's stack and detaches SAMPLES times (each pause is a few milliseconds; re-reading
# a 90 MB binary's symbols per attach would stop the process for seconds).
{
    echo "set pagination off"
    echo "set print thread-events off"
    echo "set confirm off"
    echo "file $bin"
    for _ in $(seq 1 "$SAMPLES"); do
        echo "attach $pid"
        echo "python import time; print('=== sample %.1f' % (time.time() - $start))"
        echo "thread apply all bt 30"
        echo "detach"
        echo "shell sleep $SAMPLE_EVERY"
    done
} >"$out/gdb.cmd"
timeout 600 gdb -batch -nx -q -x "$out/gdb.cmd" >"$out/stacks.txt" 2>/dev/null || true
wait $wrapper || echo "loadtest exit status $?" >>"$out/load.txt"
wait $windows || true
for name in stage1 opening; do
    if [ -f "$out/sched-$name.data" ]; then
        perf sched timehist -i "$out/sched-$name.data" -s -p $pid 2>/dev/null \
            | sed -n '/Runtime summary/,$p' >"$out/sched-$name.txt" || true
        rm -f "$out/sched-$name.data"
    fi
done
{ date -u +%FT%TZ; uptime; } >>"$out/load.txt"
python3 "$(dirname "$0")/opening-waits-summary.py" "$out/stacks.txt" >"$out/waits.txt"
echo "wrote $out"
