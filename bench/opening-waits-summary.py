#!/usr/bin/env python3
"""Summarise gdb `thread apply all bt` samples (bench/opening-waits.sh) into a wait profile:
for each group of threads (their name without numbers), the share of samples spent in each
state — the blocking call at the top of the stack and the first frames of the project, sled,
crossbeam, tokio or actix below it that say which lock, channel or sync it was — or on CPU.

    python3 bench/opening-waits-summary.py stacks.txt [--from SECONDS] [--to SECONDS]
"""
import re
import sys
from collections import Counter, defaultdict

BLOCKING = {
    "epoll_wait": "epoll_wait",
    "__GI_epoll_pwait": "epoll_wait",
    "epoll_pwait": "epoll_wait",
    "fdatasync": "fdatasync",
    "__libc_fdatasync": "fdatasync",
    "fsync": "fsync",
    "__libc_fsync": "fsync",
    "syscall": "futex",
    "__GI___lll_lock_wait": "futex",
    "__futex_abstimed_wait_common": "futex",
    "__futex_abstimed_wait_common64": "futex",
    "futex_wait": "futex",
    "__GI___clock_nanosleep": "sleep",
    "clock_nanosleep": "sleep",
    "__GI___nanosleep": "sleep",
    "nanosleep": "sleep",
    "__libc_pread64": "pread",
    "__libc_pwrite64": "pwrite",
    "__GI___libc_write": "write",
    "__libc_write": "write",
    "__GI___libc_read": "read",
    "__libc_read": "read",
    "__libc_recv": "recv",
    "__libc_sendto": "send",
    "__GI___poll": "poll",
    "accept4": "accept",
    "sched_yield": "sched_yield",
}
# Frames that name the wait: the project's, and the libraries whose locks and channels it uses.
INTERESTING = re.compile(
    r"^(<)?(platepool_\w+|sled|crossbeam_channel|tokio|actix\w*|std::sync|parking_lot|"
    r"awc|mio|hyper|h2)"
)
SKIP = re.compile(r"^(<)?(std::sys|core::|std::thread::local|std::panicking|std::rt)")
FRAME = re.compile(r"^#(\d+)\s+(?:0x[0-9a-f]+ in )?(.+?) \(")
THREAD = re.compile(r'^Thread \d+ \(.*?"([^"]*)"\)')


def group(name):
    return re.sub(r"\d+", "N", name) or "?"


def short(fn):
    fn = re.sub(r"<[^<>]*>", "", fn)
    fn = re.sub(r"<[^<>]*>", "", fn)
    return fn.replace("{{closure}}", "{closure}")[:90]


def state(frames):
    if not frames:
        return "?"
    top = frames[0]
    kind = None
    for f in frames[:4]:
        base = f.split("::")[-1]
        if f in BLOCKING or base in BLOCKING:
            kind = BLOCKING.get(f) or BLOCKING.get(base)
            break
    sites = [short(f) for f in frames if INTERESTING.match(f) and not SKIP.match(f)][:3]
    where = " < ".join(sites) if sites else short(top)
    if kind is None:
        return "on CPU: " + where
    return f"{kind}: {where}"


def parse(path, t_from, t_to):
    samples = 0
    counts = defaultdict(Counter)
    threads_per_sample = defaultdict(Counter)
    t = None
    name = None
    frames = []

    def flush():
        if name is not None and t is not None and t_from <= t <= t_to:
            counts[group(name)][state(frames)] += 1
            threads_per_sample[group(name)][t] += 1

    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("=== sample"):
                flush()
                name, frames = None, []
                t = float(line.split()[2])
                if t_from <= t <= t_to:
                    samples += 1
                continue
            m = THREAD.match(line)
            if m:
                flush()
                name, frames = m.group(1), []
                continue
            m = FRAME.match(line)
            if m and name is not None:
                frames.append(m.group(2).strip())
    flush()
    return samples, counts, threads_per_sample


def main():
    args = sys.argv[1:]
    t_from, t_to = 0.0, 1e9
    if "--from" in args:
        t_from = float(args[args.index("--from") + 1])
    if "--to" in args:
        t_to = float(args[args.index("--to") + 1])
    samples, counts, threads = parse(args[0], t_from, t_to)
    print(f"{samples} samples of every thread (gdb), {t_from:g} s to {min(t_to, 1e8):g} s")
    order = sorted(counts, key=lambda g: -sum(counts[g].values()))
    for g in order:
        total = sum(counts[g].values())
        n = max(threads[g].values()) if threads[g] else 0
        print(f"\n{g}  ({n} thread(s), {total} thread-samples)")
        for st, c in counts[g].most_common(12):
            print(f"  {100.0 * c / total:5.1f}%  {st}")




def syscalls(path):
    """`perf trace -s` per thread, grouped like the stacks: msec spent in each blocking call."""
    totals = defaultdict(Counter)
    threads = defaultdict(set)
    name = None
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"^ (\S.*?) \((\d+)\), \d+ events", line)
            if m:
                name = group(m.group(1))
                threads[name].add(m.group(2))
                continue
            parts = line.split()
            if name and len(parts) >= 5 and re.match(r"^[a-z_0-9]+$", parts[0]):
                try:
                    totals[name][parts[0]] += float(parts[3])
                except ValueError:
                    pass
    for g in sorted(totals, key=lambda g: -sum(totals[g].values())):
        calls = ", ".join(f"{c} {ms:.0f}" for c, ms in totals[g].most_common(5))
        print(f"{g:<18} ({len(threads[g])} thr)  {calls}")


if __name__ == "__main__":
    if sys.argv[1] == "--syscalls":
        syscalls(sys.argv[2])
    else:
        main()
