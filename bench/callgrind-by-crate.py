#!/usr/bin/env python3
"""Reads a callgrind.out file (of bench/profile-proxied.py) and prints where the instructions
went, per request: exclusive instructions by crate (the first Rust path segment of the function's
name, the crate that wrote the code; C symbols grouped by library), then the functions ranked by
exclusive and by inclusive instructions (inclusive: the function and everything it called, from
callgrind's call costs; a recursive function counts its recursion once per level).

    bench/callgrind-by-crate.py target/profile/callgrind.out.cached.1234.1 --requests 20000 [--top 40]

`--requests` is the number of requests the dump covers (written next to it by
profile-proxied.py as <path>.requests); the figures are then instructions per request.
"""
import argparse, collections, re, subprocess, sys

# C and assembly symbols, by what they belong to.
C_GROUPS = [
    (re.compile(r"^(_?mi_|mi_|_mi_)"), "mimalloc (allocation)"),
    (re.compile(r"^(__)?(mem(cpy|move|set|cmp|chr)|str(len|cmp|chr)|bcmp|__memcpy|__memmove|__memset)"), "libc mem/str"),
    (re.compile(r"^_?(aws_lc|GFp|AES|aes|gcm|ghash|CRYPTO|sha256|SHA256|OPENSSL|EVP|bssl|ring_core)"), "aws-lc (AES-GCM, SHA-256)"),
    (re.compile(r"^(epoll|__libc|__GI|syscall|clock_gettime|__vdso|pthread|__pthread|_dl|__tls|__errno)"), "libc (syscalls, clock, threads)"),
]
# Rust crates grouped as the profile discusses them.
CRATE_GROUPS = {
    "hyper": "hyper", "hyper_util": "hyper-util (client pool, legacy client)", "h2": "h2",
    "http": "http (header maps, URIs)", "http_body": "http-body", "http_body_util": "http-body",
    "httparse": "httparse (request/response head parsing)",
    "tokio": "tokio", "mio": "mio", "tower": "tower / tower-http layers", "tower_http": "tower / tower-http layers",
    "axum": "axum", "axum_core": "axum", "bff": "bff (our code)", "tracing": "tracing",
    "tracing_core": "tracing", "tracing_subscriber": "tracing", "metrics": "metrics",
    "metrics_exporter_prometheus": "metrics", "metrics_util": "metrics", "bytes": "bytes", "core": "core/alloc/std",
    "alloc": "core/alloc/std", "std": "core/alloc/std", "futures_util": "futures", "futures_core": "futures",
    "redis": "redis", "serde_json": "serde_json (session decode)", "serde": "serde_json (session decode)",
    "aws_lc_rs": "aws-lc (AES-GCM, SHA-256)", "cookie": "cookie (parsing)", "base64": "base64 / hex",
    "hex": "base64 / hex", "rand": "rand / uuid (request ids)", "rand_chacha": "rand / uuid (request ids)",
    "rand_core": "rand / uuid (request ids)", "uuid": "rand / uuid (request ids)", "quick_cache": "quick_cache (node cache)",
    "mimalloc": "mimalloc (allocation)", "libmimalloc_sys": "mimalloc (allocation)", "socket2": "socket2",
    "pin_project_lite": "futures", "sync_wrapper": "axum", "slab": "tokio", "parking_lot": "parking_lot",
    "parking_lot_core": "parking_lot", "want": "hyper-util (client pool, legacy client)",
    "try_lock": "hyper-util (client pool, legacy client)", "hashbrown": "core/alloc/std",
    "url": "url", "percent_encoding": "url", "opentelemetry": "tracing", "tracing_opentelemetry": "tracing",
    "combine": "redis", "itoa": "core/alloc/std", "ryu": "core/alloc/std",
}
PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)::")


def crate_of(name):
    for pattern, group in C_GROUPS:
        if pattern.search(name):
            return group
    # `<hyper::proto::X as core::future::Future>::poll`: the impl's crate wrote the code, unless
    # it is a closure or generic instantiated elsewhere; the first path segment is the best guess.
    found = PATH.search(name)
    if not found:
        return "other (" + name.split("'")[0][:30] + ")"
    crate = found.group(1)
    return CRATE_GROUPS.get(crate, crate)


def parse(path):
    """Exclusive cost per function, and inclusive cost per function (exclusive + its calls)."""
    names = {"fn": {}, "cfn": {}}
    exclusive = collections.Counter()
    calls = collections.Counter()
    current = None
    pending_call = None
    events = None
    totals = None

    def name(kind, value):
        # `(12) name` defines id 12; `(12)` uses it. fn and cfn share one table.
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            names["fn"][m.group(1)] = m.group(2)
        return names["fn"].get(m.group(1), value)

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("events:"):
                events = line.split()[1:]
                continue
            if line.startswith("totals:") or line.startswith("summary:"):
                totals = int(line.split()[1])
                continue
            if line.startswith("fn="):
                current = name("fn", line[3:])
                continue
            if line.startswith("cfn="):
                pending_callee = name("cfn", line[4:])
                continue
            if line.startswith("calls="):
                pending_call = pending_callee
                continue
            if line[0].isdigit() or line[0] in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call is not None:
                    if pending_call != current:
                        calls[current] += cost
                    pending_call = None
                else:
                    exclusive[current] += cost
    inclusive = collections.Counter()
    for fn in set(exclusive) | set(calls):
        inclusive[fn] = exclusive[fn] + calls[fn]
    return exclusive, inclusive, totals or sum(exclusive.values())


def demangle(names):
    try:
        out = subprocess.run(["rustfilt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
        return dict(zip(names, out.splitlines()))
    except (OSError, subprocess.CalledProcessError):
        return {n: n for n in names}


def short(name, width=110):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    return name if len(name) <= width else name[: width - 1] + "…"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    exclusive, inclusive, total = parse(args.file)
    per = lambda v: v / args.requests
    by_crate = collections.Counter()
    for fn, cost in exclusive.items():
        by_crate[crate_of(short(fn))] += cost
    print(f"{args.file}: {total:,} instructions, {args.requests} requests, {per(total):,.0f} per request\n")
    print("| crate (exclusive) | instr/req | share |\n|---|---|---|")
    for crate, cost in by_crate.most_common():
        if cost / total < 0.003:
            continue
        print(f"| {crate} | {per(cost):,.0f} | {100 * cost / total:.1f} % |")
    print("\n| function (exclusive) | instr/req | share |\n|---|---|---|")
    for fn, cost in exclusive.most_common(args.top):
        print(f"| `{short(fn)}` | {per(cost):,.0f} | {100 * cost / total:.1f} % |")
    print("\n| function (inclusive) | instr/req | share |\n|---|---|---|")
    for fn, cost in inclusive.most_common(args.top):
        print(f"| `{short(fn)}` | {per(cost):,.0f} | {100 * cost / total:.1f} % |")


if __name__ == "__main__":
    main()
