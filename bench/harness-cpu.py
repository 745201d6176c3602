#!/usr/bin/env python3
"""Runs a command (bffctl verify-scaling ...) and splits the CPU time it caused between the
harness itself (the command's own process) and everything it started (bff nodes, redis-server),
from /proc/<pid>/stat sampled every 20 ms: utime + stime per process, the last sample of each.
A process that exits between samples loses at most one interval. Prints one JSON line on stderr;
the command's own output passes through."""
import json, os, subprocess, sys, time

HZ = os.sysconf("SC_CLK_TCK")


def ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError, ValueError):
        return None


def children(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def main():
    started = time.monotonic()
    proc = subprocess.Popen(sys.argv[1:])
    last = {}
    while proc.poll() is None:
        todo, seen = [proc.pid], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            t = ticks(pid)
            if t is not None:
                last[pid] = t
            todo += children(pid)
        time.sleep(0.02)
    wall = time.monotonic() - started
    own = last.pop(proc.pid, 0) / HZ
    others = sum(last.values()) / HZ
    print(json.dumps({"wall_s": round(wall, 2), "harness_cpu_s": own, "started_cpu_s": others,
                      "harness_share": round(own / (own + others), 3) if own + others else None,
                      "processes": len(last)}), file=sys.stderr)
    sys.exit(proc.returncode)


main()
