#!/usr/bin/env python3
"""Where a proxied request's CPU goes in a `bff` build: the three proxied paths the benchmark
measures (`bff-anon`: a route with auth = "none"; `bff-auth-redis`: a session answered by the
node cache; `bff-auth-redis-uncached`: the session read from Redis on every request), each under
wrk, in one of two modes:

  native     the gateway as it runs: user and system CPU time per request from /proc/<pid>/stat
             (utime and stime) over a wrk -t2 -c64 run, next to nginx proxying the same upstream.
  callgrind  the gateway under valgrind's callgrind (user-space instructions only; the kernel is
             not seen): the counters are zeroed after a warm-up and dumped after each path's
             load, one callgrind.out file per path, to read with callgrind_annotate (see
             `--annotate`); instructions per request are printed.

The stack is the benchmark's (`bffctl bench`) but built by hand so that the gateway can run under
a profiler: redis-server, nginx serving a fixed 1 KB JSON body as the upstream, the gateway's
routes and environment as the benchmark sets them, and one session sealed and stored by the
gateway's own `bff seed-sessions` (no issuer is needed: the access token expires in a year, so
the path never refreshes; the issuer URL points nowhere and discovery retries every 5 s).

    bench/profile-proxied.py --bff target/release/bff --mode native
    bench/profile-proxied.py --bff target/release/bff --mode callgrind --out target/profile

Needs redis-server, nginx, wrk (and valgrind for callgrind). Prints figures; asserts nothing.
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

HZ = os.sysconf("SC_CLK_TCK")
BODY = '{"status":"ok","filler":"' + "x" * (1024 - 40) + '"}'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    sys.exit(f"{what} not ready within {seconds} s")


def answers(url, headers=None):
    try:
        request = urllib.request.Request(url, headers=headers or {})
        return urllib.request.urlopen(request, timeout=5).status == 200
    except Exception:
        return False


def tree(pid):
    seen, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return seen


def cpu_ticks(pid):
    """(utime, stime) of pid and its descendants, in ticks."""
    user = system = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            user += int(rest[11])
            system += int(rest[12])
        except (OSError, IndexError, ValueError):
            pass
    return user, system


def wrk(url, headers, threads, connections, seconds):
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"wrk on {url}: {errors.group(1)} non-2xx answers\n{out}")
    return requests


class Stack:
    def __init__(self, bff, mode, out):
        self.bff, self.mode, self.out = bff, mode, out
        self.dir = tempfile.mkdtemp(prefix="bff-profile-")
        self.children = []
        self.redis_port = free_port()
        self.spawn(["redis-server", "--port", str(self.redis_port), "--save", "", "--appendonly", "no"])
        wait_until("redis", lambda: subprocess.run(["redis-cli", "-p", str(self.redis_port), "ping"],
                                                   capture_output=True).returncode == 0, 10)
        self.upstream_port = free_port()
        self.nginx_port = free_port()
        self.start_nginx()
        self.upstream = f"http://127.0.0.1:{self.upstream_port}"

    def spawn(self, cmd, env=None, **kw):
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(
            os.path.join(self.dir, f"{len(self.children)}.log"), "w"), start_new_session=True, **kw)
        self.children.append(child)
        return child

    def start_nginx(self):
        """nginx twice: the upstream (a fixed body) and the proxy peer the benchmark compares with."""
        d = self.dir
        conf = f"""worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{self.upstream_port};
        location / {{ default_type application/json; return 200 '{BODY}'; }}
    }}
}}
"""
        with open(os.path.join(d, "upstream.conf"), "w") as f:
            f.write(conf)
        self.spawn(["nginx", "-p", d, "-c", os.path.join(d, "upstream.conf"), "-g", "daemon off;"])
        proxy = f"""worker_processes auto;
pid {d}/nginx-proxy.pid;
error_log {d}/nginx-proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/pbody; proxy_temp_path {d}/pproxy; fastcgi_temp_path {d}/pfastcgi;
    uwsgi_temp_path {d}/puwsgi; scgi_temp_path {d}/pscgi;
    upstream backend {{ server 127.0.0.1:{self.upstream_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{self.nginx_port};
        location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
}}
"""
        with open(os.path.join(d, "proxy.conf"), "w") as f:
            f.write(proxy)
        self.nginx_proxy = self.spawn(["nginx", "-p", d, "-c", os.path.join(d, "proxy.conf"), "-g", "daemon off;"])
        wait_until("nginx", lambda: answers(f"http://127.0.0.1:{self.nginx_port}/data"), 10)

    def env(self, port, extra):
        routes = (f'[{{ path = "/api/", upstreams = ["{self.upstream}"], auth = "required" }}, '
                  f'{{ path = "/public/", upstreams = ["{self.upstream}"], auth = "none" }}]')
        env = dict(os.environ)
        env.update({
            "BFF_LISTEN": f"127.0.0.1:{port}",
            "BFF_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "BFF_OIDC_AUTHORITY": "http://127.0.0.1:9/issuer",
            "BFF_OIDC_CLIENT_ID": "bff-client",
            "BFF_OIDC_CLIENT_SECRET": "bff-secret",
            "BFF_KEY_ENCRYPTION_KEY": "YmZmLXRlc3Qta2V5LWVuY3J5cHRpb24ta2V5LTAwMDA=",
            "BFF_ROUTES": routes,
            "BFF_LOG_LEVEL": "warn",
            "BFF_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}",
        })
        env.update(extra)
        return env

    def gateway(self, name, extra):
        port = free_port()
        cmd = [self.bff]
        if self.mode == "callgrind":
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={self.out}/callgrind.out.{name}.%p", "--dump-instr=no"] + cmd
        child = self.spawn(cmd, env=self.env(port, extra))
        wait_until(f"bff ({name})", lambda: answers(f"http://127.0.0.1:{port}/public/data"),
                   120 if self.mode == "callgrind" else 20)
        return child, f"http://127.0.0.1:{port}"

    def seed_cookie(self, base):
        out = os.path.join(self.dir, "cookie.txt")
        port = int(base.rsplit(":", 1)[1])
        subprocess.run([self.bff, "seed-sessions", "--count", "1", "--out", out], env=self.env(port, {}),
                       check=True, capture_output=True)
        with open(out) as f:
            return f.read().strip()

    def stop(self):
        for child in reversed(self.children):
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for child in self.children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def valgrind_pid(child):
    """valgrind runs the gateway in its own process: the child's pid is the gateway's."""
    return child.pid


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bff", default="target/release/bff")
    parser.add_argument("--mode", choices=["native", "callgrind"], default="native")
    parser.add_argument("--out", default="target/profile")
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="native: interleaved rounds, medians")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    args.out = os.path.abspath(args.out)
    stack = Stack(os.path.abspath(args.bff), args.mode, args.out)
    try:
        cached, cached_url = stack.gateway("cached", {})
        cookie = stack.seed_cookie(cached_url)
        uncached, uncached_url = stack.gateway("uncached", {"BFF_SESSION_CACHE_MAX_AGE": "off"})
        auth = {"Cookie": cookie, "X-CSRF": "1"}
        paths = [
            ("bff-anon", cached, f"{cached_url}/public/data", {}),
            ("bff-auth-redis", cached, f"{cached_url}/api/data", auth),
            ("bff-auth-redis-uncached", uncached, f"{uncached_url}/api/data", auth),
        ]
        for name, _, url, headers in paths:
            if not answers(url, headers):
                sys.exit(f"{name}: {url} does not answer 200")
        if args.mode == "native":
            native(stack, paths, args)
        else:
            profile(paths, args)
    finally:
        stack.stop()


def native(stack, paths, args):
    peers = [("nginx", stack.nginx_proxy, f"http://127.0.0.1:{stack.nginx_port}/data", {})] + paths
    results = {name: [] for name, *_ in peers}
    for name, child, url, headers in peers:
        wrk(url, headers, 2, 64, 2)
    for _ in range(args.rounds):
        for name, child, url, headers in peers:
            before = cpu_ticks(child.pid)
            requests = wrk(url, headers, 2, 64, args.seconds)
            after = cpu_ticks(child.pid)
            user = (after[0] - before[0]) / HZ * 1e6 / requests
            system = (after[1] - before[1]) / HZ * 1e6 / requests
            results[name].append((user, system, requests / args.seconds))
    median = lambda v: sorted(v)[len(v) // 2]
    nginx_total = median([u + s for u, s, _ in results["nginx"]])
    print(f"load average {os.getloadavg()[0]:.2f}; wrk -t2 -c64 -d{args.seconds}s, {args.rounds} interleaved rounds, medians")
    print(f"{'configuration':28} {'req/s':>8} {'user µs':>8} {'sys µs':>8} {'total µs':>9} {'× nginx':>8} {'sys %':>6}  rounds (total µs)")
    summary = {}
    for name, runs in results.items():
        user, system = median([u for u, _, _ in runs]), median([s for _, s, _ in runs])
        total = median([u + s for u, s, _ in runs])
        rps = median([r for _, _, r in runs])
        spread = ", ".join(f"{u + s:.1f}" for u, s, _ in runs)
        print(f"{name:28} {rps:8.0f} {user:8.1f} {system:8.1f} {total:9.1f} {total / nginx_total:8.2f} "
              f"{100 * system / (user + system):5.0f}%  {spread}")
        summary[name] = {"user_us": user, "system_us": system, "total_us": total, "requests_per_s": rps,
                         "rounds": [{"user_us": u, "system_us": s, "requests_per_s": r} for u, s, r in runs]}
    with open(os.path.join(args.out, "native.json"), "w") as f:
        json.dump({"load_average": os.getloadavg(), "configurations": summary}, f, indent=1)


def profile(paths, args):
    for name, child, url, headers in paths:
        pid = valgrind_pid(child)
        wrk(url, headers, 1, 8, 3)
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
        requests = wrk(url, headers, 1, 8, args.seconds)
        subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-d", name, str(pid)], check=True, capture_output=True)
        with open(os.path.join(args.out, f"{name}.requests"), "w") as f:
            f.write(f"{requests}\n")
        print(f"{name}: {requests} requests profiled (wrk -t1 -c8 -d{args.seconds}s)", flush=True)
    time.sleep(1)
    print(f"dumps in {args.out}: callgrind.out.<node>.<pid>.<n> (callgrind_annotate --inclusive=yes FILE)")


if __name__ == "__main__":
    main()
