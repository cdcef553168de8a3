#!/usr/bin/env python3
"""coroute's benchmark: the scenarios of issue 6, measured with wrk against the real binary.

Run it through scripts/bench.sh, which builds Release and installs wrk, nginx and
gnuplot first. Python 3 standard library only. Everything runs on 127.0.0.1, one
scenario at a time, each bounded in time; servers started here are stopped here.

Output: bench/results/<stamp>.json, .md and .png (and bench/latest.*), and the
Markdown table on stdout.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
LISTENING = re.compile(r"^coroute listening on (https?)://([^:/]+|\[[^\]]+\]):(\d+)\s*$")
UPSTREAM = re.compile(r"^upstream:\s*(https://[^\s]+)")

# name, path, connections, ideal req/s (None: no ideal; CPU bound)
SCENARIOS = [
    ("healthz", "/healthz", 64, None),
    ("static", "/", 64, None),
    ("db-c100", "/api/db?delay_ms=100", 100, 100 / 0.1),
    ("db-c1000", "/api/db?delay_ms=100", 1000, 1000 / 0.1),
    ("db-c10000", "/api/db?delay_ms=100", 10000, 10000 / 0.1),
    ("parallel", "/api/db/parallel?queries=10&delay_ms=50", 256, 256 / 0.05),
    ("external", "/api/external", 64, None),
]
# On PostgreSQL (a throw-away server of the bench's own): name, path, connections,
# extra server flags, ideal req/s. A query holds a pooled connection for its delay, so
# the pool, not the event loop, bounds db-c1000 there: pool / delay.
PG_POOL = 200
PG_SCENARIOS = [
    ("pg-db-c1000", "/api/db?delay_ms=100", 1000, ["--db-pool", str(PG_POOL)], PG_POOL / 0.1),
    ("pg-items", "/api/items/1", 64, [], None),
]
CLUSTER_REPLICAS = 2
IDLE_CONNECTIONS = 10000
LARGE_FILE_BYTES = 8 * 1024 * 1024
LARGE_FILE_CONNECTIONS = 16
WS_CONNECTIONS = 64


class _Skip(Exception):
    """No scenario wants the main server."""


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(cmd, cpus):
    """`cmd` restricted to `cpus` (a taskset list such as "0"), or as is when None."""
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


# -- processes --------------------------------------------------------------------

def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class CorouteServer:
    """The binary on a free port, logging off; stdout goes to a file we poll."""

    def __init__(self, binary, threads, cpus=None, extra=(), log_level="warn"):
        self.tmp = tempfile.TemporaryDirectory(prefix="coroute-bench-")
        self.out_path = os.path.join(self.tmp.name, "stdout")
        self.err_path = os.path.join(self.tmp.name, "stderr")
        cmd = [binary, "--host", "127.0.0.1", "--port", "0", "--threads", str(threads),
               "--access-log", "off", "--log-level", log_level, *extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("COROUTE_")}
        self.out = open(self.out_path, "w")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(pinned(cmd, cpus), stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=self.err, env=env, preexec_fn=raise_nofile)
        self.port = None
        self.upstream = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.port is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coroute-server exited with {self.proc.returncode}: {self.stderr_text()}")
            lines = self.stdout_lines()
            if lines:
                m = LISTENING.match(lines[0])
                if not m:
                    raise RuntimeError(f"unexpected first line from coroute-server: {lines[0]!r}")
                self.port = int(m.group(3))
            else:
                time.sleep(0.02)
        if self.port is None:
            self.stop()
            raise RuntimeError("coroute-server did not print its listening line within 20 s")
        # The banner follows the listening line at once; the upstream line is in it when
        # the server has an external API.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for line in self.stdout_lines()[1:]:
                m = UPSTREAM.match(line.strip())
                if m:
                    self.upstream = m.group(1)
            if self.upstream:
                break
            time.sleep(0.05)

    def stdout_lines(self):
        with open(self.out_path) as f:
            return f.read().splitlines()

    def stderr_text(self):
        with open(self.err_path) as f:
            return f.read()[-4000:]

    @property
    def pid(self):
        # Under taskset, Popen's pid is taskset's, which execs the server: the same pid.
        return self.proc.pid

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def cpu_seconds(self):
        return proc_cpu_seconds(self.pid)

    def rss_kib(self):
        return proc_status_kib(self.pid, "VmRSS")

    def peak_rss_kib(self):
        return proc_status_kib(self.pid, "VmHWM")

    def stop(self):
        """Stops the server (SIGTERM: graceful); returns what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.out.close()
        self.err.close()
        err = self.stderr_text()
        self.tmp.cleanup()
        return err


NGINX_CONF = """\
worker_processes {workers};
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  # The same keep-alive as coroute: 30 s idle, no cap on requests per connection.
  keepalive_timeout 30s;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      default_type application/json;
      return 200 '{{"status":"ok"}}';
    }}
  }}
}}
"""


# The same file from a directory, as nginx serves it in production (sendfile on).
NGINX_STATIC_CONF = NGINX_CONF.replace("""    location / {{
      default_type application/json;
      return 200 '{{"status":"ok"}}';
    }}""", """    sendfile on;
    location / {{
      root {root};
    }}""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """Debian's nginx with one `return 200` JSON location, as the reference."""

    def __init__(self, workers, cpus=None, template=None, **fmt):
        self.tmp = tempfile.TemporaryDirectory(prefix="coroute-bench-nginx-")
        self.port = free_port()
        conf = os.path.join(self.tmp.name, "nginx.conf")
        with open(conf, "w") as f:
            f.write((template or NGINX_CONF).format(workers=workers, dir=self.tmp.name, port=self.port, **fmt))
        self.err = open(os.path.join(self.tmp.name, "stderr"), "w")
        self.proc = subprocess.Popen(pinned([nginx_binary(), "-p", self.tmp.name, "-c", conf], cpus),
                                     stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start listening within 10 s")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, master exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.err.close()
        self.tmp.cleanup()


def nginx_binary():
    return shutil.which("nginx") or "/usr/sbin/nginx"


# -- wrk --------------------------------------------------------------------------

def run_wrk(url, conns, duration, threads=1, cpus=None, timeout_s=2):
    """One wrk run; returns its WRK_JSON report plus req/s. Raises when wrk fails."""
    threads = max(1, min(threads, conns))
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--timeout", f"{timeout_s}s",
           "-s", os.path.join(HERE, "report.lua"), url]
    p = subprocess.run(pinned(cmd, cpus), capture_output=True, text=True, timeout=duration + 60,
                       preexec_fn=raise_nofile)
    for line in p.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            r = json.loads(line[len("WRK_JSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
            r["errors_total"] = sum(r["errors"].values())
            return r
    raise RuntimeError(f"wrk failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")


SETTLE_S = 0.5  # after a warm-up: lets its requests still in flight (100 ms waits) finish


def measure(url, conns, warmup, duration, threads=1, cpus=None, server=None):
    """Warm-up run (discarded), then the measured run; server CPU during the measured run."""
    if warmup > 0:
        run_wrk(url, conns, warmup, threads, cpus)
        time.sleep(SETTLE_S)
    cpu0 = server.cpu_seconds() if server else None
    r = run_wrk(url, conns, duration, threads, cpus)
    if server:
        r["server_cpu_s"] = server.cpu_seconds() - cpu0
    return r


def http_get(url, timeout=10):
    """(status, body) of one GET; status 0 when the request itself failed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()


# -- TLS handshakes to the upstream: new TCP connections, each one handshake --------

def upstream_peer_ports(up_port):
    """Ephemeral ports of every TCP connection to `up_port` that `ss` still shows,
    TIME-WAIT included (which stays for 60 s after a close), from either end."""
    out = subprocess.run(["ss", "-Htan"], capture_output=True, text=True, timeout=10).stdout
    ports = set()
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 5 or cols[0] == "LISTEN":
            continue
        local, peer = cols[3].rsplit(":", 1), cols[4].rsplit(":", 1)
        if len(local) != 2 or len(peer) != 2 or not local[1].isdigit() or not peer[1].isdigit():
            continue
        if int(peer[1]) == up_port:
            ports.add(int(local[1]))
        elif int(local[1]) == up_port:
            ports.add(int(peer[1]))
    return ports


# -- scenarios --------------------------------------------------------------------

def summarize(name, path, conns, ideal, r):
    row = {
        "name": name, "path": path, "connections": conns, "status": "ok",
        "rps": round(r["rps"], 1),
        "p50_ms": r["latency_us"]["p50"] / 1000, "p99_ms": r["latency_us"]["p99"] / 1000,
        "p999_ms": r["latency_us"]["p999"] / 1000, "max_ms": r["latency_us"]["max"] / 1000,
        "requests": r["requests"], "errors": r["errors"], "errors_total": r["errors_total"],
    }
    if ideal:
        row["ideal_rps"] = ideal
        row["share_of_ideal"] = round(r["rps"] / ideal, 4)
    if "server_cpu_s" in r:
        row["server_cpu_s"] = round(r["server_cpu_s"], 2)
        row["server_cpu_us_per_request"] = round(r["server_cpu_s"] * 1e6 / max(1, r["requests"]), 1)
    return row


CLIENT_STATS = re.compile(r"upstream client: (\d+) connections, (\d+) TLS handshakes, (\d+) reuses")


def external_pass(args, conns, label, extra):
    """One server of its own (info log, for the HTTPS client's totals at exit; the access
    log stays off): /api/external under load, then wrk straight at the upstream."""
    name, path = label, "/api/external"
    srv = CorouteServer(args.server, args.threads, extra=extra, log_level="info")
    rows = []
    try:
        status, body = http_get(srv.url(path), timeout=15)
        if status == 404:
            return [{"name": name, "path": path, "connections": conns, "status": "skipped",
                     "reason": "route missing (GET /api/external answers 404)"}]
        if status != 200:
            return [{"name": name, "path": path, "connections": conns, "status": "skipped",
                     "reason": f"GET /api/external answers {status or 'nothing'}: "
                               f"{body[:200].decode(errors='replace')}"}]
        up_port = None
        if srv.upstream:
            m = re.match(r"https://[^/:]+:(\d+)", srv.upstream)
            up_port = int(m.group(1)) if m else None
        run_wrk(srv.url(path), conns, args.warmup, args.wrk_threads)
        time.sleep(SETTLE_S)
        before = upstream_peer_ports(up_port) if up_port else None
        cpu0 = srv.cpu_seconds()
        r = run_wrk(srv.url(path), conns, args.duration, args.wrk_threads)
        r["server_cpu_s"] = srv.cpu_seconds() - cpu0
        row = summarize(name, path, conns, None, r)
        row["server_args"] = " ".join(extra)
        if up_port:
            new = len(upstream_peer_ports(up_port) - before)
            row["upstream_connections_opened"] = new
            row["tls_handshakes_per_1000"] = round(new * 1000 / max(1, r["requests"]), 3)
            row["handshake_method"] = ("new TCP connections to the upstream port during the measured run "
                                       "(ss, TIME-WAIT included); each one costs one TLS handshake")
        else:
            row["tls_handshakes_per_1000"] = None
            row["handshake_method"] = "not measured: the server printed no upstream line"
        rows.append(row)
        if srv.upstream:
            d = measure(srv.upstream, conns, args.warmup, args.duration, args.wrk_threads)
            up = summarize(label.replace("external", "upstream-direct"), srv.upstream, conns, None, d)
            up["note"] = "wrk straight at the built-in upstream (HTTPS, inside the server's process)"
            rows.append(up)
            row["share_of_upstream"] = round(row["rps"] / up["rps"], 4) if up["rps"] else None
    finally:
        err = srv.stop()
    m = CLIENT_STATS.search(err or "")
    if m and rows:
        rows[0]["client_totals"] = {"connections": int(m.group(1)), "tls_handshakes": int(m.group(2)),
                                    "reuses": int(m.group(3)),
                                    "note": "the HTTPS client's own count over the server's life, warm-up "
                                            "and the upstream-direct runs' server included"}
    return rows


def run_external(args, conns):
    """The built-in upstream as configured (100 ms per answer: latency-bound), then with
    no latency (CPU-bound: the route's cost against the upstream's own)."""
    rows = external_pass(args, conns, "external", [])
    if rows and rows[0]["status"] == "ok":
        rows += external_pass(args, conns, "external-0ms", ["--upstream-latency-ms", "0"])
    return rows


def run_postgres(args, wanted):
    """The PostgreSQL scenarios on one process, then the same item reads through the
    cluster (CLUSTER_REPLICAS replicas of one thread behind nginx, on a database of its own)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    import pgserver  # noqa: E402
    rows = []
    base = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(args.server))), "bench-pg")
    with pgserver.PgServer(base, settings={"max_connections": str(PG_POOL + 50)}) as pg:
        for name, path, conns, extra, ideal in PG_SCENARIOS:
            if not wanted(name):
                continue
            log(f"{name}: GET {path}, {conns} connections, PostgreSQL")
            srv = CorouteServer(args.server, args.threads, extra=["--db", pg.url, *extra])
            try:
                if not wait_ready(srv.url("/readyz")):
                    rows.append({"name": name, "path": path, "connections": conns, "status": "skipped",
                                 "reason": "the server did not become ready on PostgreSQL"})
                    continue
                r = measure(srv.url(path), conns, args.warmup, args.duration, args.wrk_threads, server=srv)
                rows.append(summarize(name, path, conns, ideal, r))
                rows[-1]["note"] = "PostgreSQL" + (f", pool {extra[-1]}" if extra else ", pool 16")
                log(f"  {rows[-1]['rps']:.0f} req/s, p99 {rows[-1]['p99_ms']:.2f} ms, {rows[-1]['errors_total']} errors")
            finally:
                srv.stop()
    if wanted("cluster-items"):
        rows.append(run_cluster(args))
    return rows


def wait_ready(url, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_get(url, timeout=2)[0] == 200:
            return True
        time.sleep(0.1)
    return False


def run_cluster(args):
    name, path, conns = "cluster-items", "/api/items/1", 64
    log(f"{name}: GET {path}, {conns} connections, nginx in front of {CLUSTER_REPLICAS} replicas of 1 thread")
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "cluster.py"), "--server", args.server,
           "--replicas", str(CLUSTER_REPLICAS), "--port", "0",
           "--dir", os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(args.server))), "bench-cluster"),
           "--", "--threads", "1", "--access-log", "off", "--log-level", "warn"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=raise_nofile)
    try:
        line = proc.stdout.readline().strip()
        m = re.match(r"^cluster listening on http://([^:/]+):(\d+)$", line)
        if not m:
            proc.kill()
            return {"name": name, "path": path, "connections": conns, "status": "skipped",
                    "reason": f"the cluster did not start: {line or proc.stderr.read()[-300:]}"}
        url = f"http://{m.group(1)}:{m.group(2)}{path}"
        r = measure(url, conns, args.warmup, args.duration, args.wrk_threads)
        row = summarize(name, path, conns, None, r)
        row["note"] = f"PostgreSQL, nginx + {CLUSTER_REPLICAS} replicas x 1 thread"
        log(f"  {row['rps']:.0f} req/s, p99 {row['p99_ms']:.2f} ms, {row['errors_total']} errors")
        return row
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_idle(args, name="idle-10k", path="/healthz", websocket=False):
    """A fresh server (so freed memory of earlier scenarios does not hide the cost), one
    request to settle lazy start-up allocations, then 10,000 idle keep-alive connections
    (or, with `websocket`, 10,000 open and idle WebSockets)."""
    srv = CorouteServer(args.server, args.threads)
    try:
        http_get(srv.url("/healthz"))
        if websocket:
            # One socket first, for the lazy allocations of the first upgrade.
            subprocess.run([sys.executable, os.path.join(HERE, "idle_clients.py"), "127.0.0.1", str(srv.port),
                            "1", path, "websocket"], input="", capture_output=True, text=True, timeout=60)
        time.sleep(0.3)
        before = srv.rss_kib()
        cmd = [sys.executable, os.path.join(HERE, "idle_clients.py"), "127.0.0.1", str(srv.port),
               str(IDLE_CONNECTIONS), path] + (["websocket"] if websocket else [])
        client = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  preexec_fn=raise_nofile)
        try:
            line = client.stdout.readline().split()
            opened, failed = (int(line[1]), int(line[2])) if len(line) == 3 and line[0] == "READY" else (0, -1)
            time.sleep(1.0)
            after = srv.rss_kib()
            established = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{srv.port} )"],
                                         capture_output=True, text=True, timeout=10).stdout.count("\n")
        finally:
            client.stdin.close()
            client.wait(timeout=30)
        per = (after - before) / opened if opened else None
        return {"name": name, "status": "ok" if opened else "failed", "connections": IDLE_CONNECTIONS,
                "opened": opened, "failed": failed, "server_established": established,
                "rss_before_kib": before, "rss_after_kib": after,
                "kib_per_connection": round(per, 2) if per is not None else None}
    finally:
        srv.stop()


def ws_load_binary(args):
    return os.path.join(os.path.dirname(os.path.dirname(args.server)), "tests", "coroute-ws-load")


def run_ws_echo(args):
    """Echo round trips over 64 WebSockets to /ws: each socket sends
    {"op":"echo",...} and waits for it to come back, again and again (coroute-ws-load,
    one thread, like wrk -t1)."""
    tool = ws_load_binary(args)
    row = {"name": "ws-echo", "path": "/ws", "connections": WS_CONNECTIONS}
    if not os.access(tool, os.X_OK):
        return dict(row, status="skipped", reason=f"no {tool} (scripts/bench.sh builds it)")
    srv = CorouteServer(args.server, args.threads)
    try:
        cmd = [tool, "--port", str(srv.port), "--connections", str(WS_CONNECTIONS),
               "--warmup", str(args.warmup), "--duration", str(args.duration)]
        cpu0 = None
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=raise_nofile)
        # Server CPU over the measured part only: from the end of the warm-up.
        time.sleep(args.warmup)
        cpu0 = srv.cpu_seconds()
        out, err = p.communicate(timeout=args.warmup + args.duration + 60)
        cpu = srv.cpu_seconds() - cpu0
        try:
            r = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return dict(row, status="failed", reason=(err or out).strip()[:200])
        row.update({"status": "ok", "rps": r["rate"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                    "requests": r["round_trips"], "errors": {"ws": r["errors"]}, "errors_total": r["errors"],
                    "server_cpu_s": round(cpu, 2),
                    "server_cpu_us_per_request": round(cpu * 1e6 / max(1, r["round_trips"]), 1)})
        log(f"  {row['rps']:.0f} round trips/s, p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
            f"{row['errors_total']} errors")
        return row
    finally:
        srv.stop()


def run_large_static(args):
    """An 8 MiB file from the static site, coroute (streamed from disk) against nginx
    (sendfile) serving the same directory, on servers of their own."""
    site = tempfile.TemporaryDirectory(prefix="coroute-bench-www-")
    with open(os.path.join(site.name, "index.html"), "w") as f:
        f.write("<!doctype html><title>bench</title>\n")
    with open(os.path.join(site.name, "big.bin"), "wb") as f:
        f.write(os.urandom(LARGE_FILE_BYTES))
    # nginx's workers run as nobody: the site must be readable to them.
    os.chmod(site.name, 0o755)
    for name in ("index.html", "big.bin"):
        os.chmod(os.path.join(site.name, name), 0o644)
    out = []
    try:
        srv = CorouteServer(args.server, args.threads, extra=("--www", site.name))
        try:
            r = measure(srv.url("/big.bin"), LARGE_FILE_CONNECTIONS, args.warmup, args.duration, args.wrk_threads,
                        server=srv)
            row = summarize("static-8m", "/big.bin", LARGE_FILE_CONNECTIONS, None, r)
            row["mib_per_s"] = round(row["rps"] * LARGE_FILE_BYTES / 2**20, 1)
            row["peak_rss_kib"] = srv.peak_rss_kib()
            out.append(row)
        finally:
            srv.stop()
        ngx = Nginx(args.threads, template=NGINX_STATIC_CONF, root=site.name)
        try:
            r = measure(ngx.url("/big.bin"), LARGE_FILE_CONNECTIONS, args.warmup, args.duration, args.wrk_threads)
            row = summarize("static-8m-nginx", "/big.bin", LARGE_FILE_CONNECTIONS, None, r)
            row["mib_per_s"] = round(row["rps"] * LARGE_FILE_BYTES / 2**20, 1)
            out.append(row)
        finally:
            ngx.stop()
    finally:
        site.cleanup()
    for row in out:
        log(f"  {row['name']}: {row['rps']:.0f} req/s ({row['mib_per_s']} MiB/s), p99 {row['p99_ms']:.1f} ms")
    return out


def run_reference(args, cores):
    """coroute vs nginx under healthz's load, in alternating rounds; medians compared."""
    configs = [1] + ([args.threads] if args.threads != 1 else [])
    out = []
    for n in configs:
        # One server thread against one worker: each pinned to core 0, wrk to core 1,
        # so both get the same split of the machine. With more, the OS schedules all.
        srv_cpus, wrk_cpus = ("0", "1") if n == 1 and cores >= 2 and args.pin else (None, None)
        wrk_threads = n if n > 1 else 1
        log(f"reference: coroute --threads {n} vs nginx worker_processes {n}, {args.rounds} round(s)")
        srv = CorouteServer(args.server, n, cpus=srv_cpus)
        ngx = Nginx(n, cpus=srv_cpus)
        rounds = []
        try:
            for i in range(args.rounds):
                c = measure(srv.url("/healthz"), 64, args.warmup, args.duration, wrk_threads, wrk_cpus, srv)
                g = measure(ngx.url("/healthz"), 64, args.warmup, args.duration, wrk_threads, wrk_cpus)
                rounds.append({"coroute_rps": round(c["rps"], 1), "nginx_rps": round(g["rps"], 1),
                               "coroute_p99_ms": c["latency_us"]["p99"] / 1000,
                               "nginx_p99_ms": g["latency_us"]["p99"] / 1000,
                               "coroute_errors": c["errors_total"], "nginx_errors": g["errors_total"],
                               "coroute_cpu_us_per_request":
                                   round(c["server_cpu_s"] * 1e6 / max(1, c["requests"]), 2)})
                log(f"  round {i + 1}: coroute {c['rps']:.0f} req/s, nginx {g['rps']:.0f} req/s")
        finally:
            srv.stop()
            ngx.stop()
        med_c = statistics.median(r["coroute_rps"] for r in rounds)
        med_g = statistics.median(r["nginx_rps"] for r in rounds)
        out.append({"threads": n, "pinned": bool(srv_cpus), "wrk_threads": wrk_threads, "rounds": rounds,
                    "coroute_rps": med_c, "nginx_rps": med_g,
                    "coroute_p99_ms": statistics.median(r["coroute_p99_ms"] for r in rounds),
                    "nginx_p99_ms": statistics.median(r["nginx_p99_ms"] for r in rounds),
                    "ratio": round(med_c / med_g, 3) if med_g else None})
    return out


# -- report -----------------------------------------------------------------------

def machine_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count() or 1
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except OSError:
        pass
    return {"cores": cores, "cpu": model, "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "kernel": platform.release(), "os": os_name()}


def os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def tool_versions(binary):
    def first_line(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"
    return {"coroute": first_line([binary, "--version"]), "wrk": first_line(["wrk", "--version"]),
            "nginx": first_line([nginx_binary(), "-v"])}


def evaluate_targets(res):
    rows = {r["name"]: r for r in res["scenarios"]}
    ref = {r["threads"]: r for r in res["reference"]}
    t = []

    def add(name, goal, figure, met):
        t.append({"target": name, "goal": goal, "figure": figure, "met": met})

    if 1 in ref:
        r = ref[1]
        add("healthz vs nginx (1 thread vs 1 worker)", ">= 1.0 x nginx",
            f"{r['ratio']:.2f} x ({r['coroute_rps']:,.0f} vs {r['nginx_rps']:,.0f} req/s)", r["ratio"] >= 1.0)
    else:
        add("healthz vs nginx (1 thread vs 1 worker)", ">= 1.0 x nginx", "not run", None)
    r = rows.get("db-c1000")
    if r and r["status"] == "ok":
        add("db-c1000", ">= 98 % of ideal, p99 <= 110 ms",
            f"{r['share_of_ideal'] * 100:.1f} % of ideal, p99 {r['p99_ms']:.1f} ms",
            r["share_of_ideal"] >= 0.98 and r["p99_ms"] <= 110)
    r = rows.get("db-c10000")
    if r and r["status"] == "ok":
        add("db-c10000", "no errors, >= 45,000 req/s, p99 <= 300 ms",
            f"{r['errors_total']} errors, {r['rps']:,.0f} req/s, p99 {r['p99_ms']:.1f} ms",
            r["errors_total"] == 0 and r["rps"] >= 45000 and r["p99_ms"] <= 300)
    r = rows.get("external")
    if r and r["status"] == "ok":
        hs = r.get("tls_handshakes_per_1000")
        share = r.get("share_of_upstream")
        fig = f"{hs if hs is not None else 'not measured'} handshakes / 1,000 requests, " + (
            f"{share * 100:.0f} % of upstream-direct" if share is not None else "upstream-direct not measured")
        z = rows.get("external-0ms")
        if z and z["status"] == "ok" and z.get("share_of_upstream") is not None:
            fig += (f" (0 ms upstream: {z['share_of_upstream'] * 100:.0f} % of upstream-direct, "
                    f"{z.get('tls_handshakes_per_1000')} handshakes / 1,000)")
        met = None if hs is None or share is None else (hs <= 1 and share >= 0.5)
        add("external", "<= 1 TLS handshake / 1,000 requests, >= 50 % of wrk at the upstream", fig, met)
    elif r:
        add("external", "<= 1 TLS handshake / 1,000 requests, >= 50 % of wrk at the upstream",
            f"skipped: {r.get('reason', '')}", None)
    r = res.get("idle")
    if r and r.get("kib_per_connection") is not None:
        add("idle-10k", "<= 8 KiB per idle connection",
            f"{r['kib_per_connection']:.2f} KiB per connection ({r['opened']:,} open)", r["kib_per_connection"] <= 8)
    elif r:
        add("idle-10k", "<= 8 KiB per idle connection", "failed to open the connections", False)
    return t


def fmt_int(x):
    return f"{x:,.0f}"


def markdown(res):
    m = res["machine"]
    lines = [f"# coroute benchmark, {res['date']}{' (quick run)' if res['quick'] else ''}", ""]
    lines.append(f"Machine: {m['cores']} cores, {m['cpu']}, {m['memory_gib']} GiB, {m['os']}, Linux {m['kernel']}. "
                 f"{res['versions']['coroute']}; {res['versions']['wrk']}; {res['versions']['nginx']}.")
    lines.append("")
    c = res["config"]
    lines.append(f"wrk and the server share the machine's {m['cores']} cores (loopback), so every figure is "
                 f"what is left after wrk's own CPU. Server: `--threads {c['threads']} --access-log off "
                 f"--log-level warn`; each scenario: {c['warmup']} s warm-up, then {c['duration']} s measured; "
                 f"wrk {c['wrk_threads']} thread(s), 2 s timeout.")
    lines.append("")
    lines.append("| scenario | conns | req/s | p50 ms | p99 ms | errors | share of ideal | server CPU µs/req |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["scenarios"]:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | {r['connections']} | {r['status']}: {r.get('reason', '')} | | | | | |")
            continue
        e = r["errors"]
        err = str(r["errors_total"])
        if r["errors_total"]:
            err += " (" + ", ".join(f"{k} {v}" for k, v in e.items() if v) + ")"
        share = f"{r['share_of_ideal'] * 100:.1f} %" if "share_of_ideal" in r else ""
        if r.get("share_of_upstream") is not None:
            share = f"{r['share_of_upstream'] * 100:.0f} % of upstream-direct"
        cpu = f"{r['server_cpu_us_per_request']:.1f}" if "server_cpu_us_per_request" in r else ""
        lines.append(f"| {r['name']} | {r['connections']} | {fmt_int(r['rps'])} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {err} | {share} | {cpu} |")
    for idle in (res.get("idle"), res.get("ws_idle")):
        if not idle:
            continue
        if idle.get("kib_per_connection") is not None:
            lines.append(f"| {idle['name']} | {idle['opened']:,} idle | RSS {idle['rss_before_kib']:,} → "
                         f"{idle['rss_after_kib']:,} KiB | | | {idle['failed']} | "
                         f"**{idle['kib_per_connection']:.2f} KiB / conn** | |")
        else:
            lines.append(f"| {idle['name']} | {IDLE_CONNECTIONS} | failed | | | | | |")
    lines.append("")
    echo = next((r for r in res["scenarios"] if r["name"] == "ws-echo" and r["status"] == "ok"), None)
    if echo:
        lines.append(f"ws-echo: {WS_CONNECTIONS} WebSockets to /ws, each sending `{{\"op\":\"echo\",...}}` and "
                     f"waiting for it to come back (coroute-ws-load, one thread): req/s is round trips per second, "
                     f"p50 and p99 their latency.")
        lines.append("")
    big = {r["name"]: r for r in res["scenarios"] if r["name"].startswith("static-8m") and r["status"] == "ok"}
    if "static-8m" in big:
        line = (f"static-8m: an 8 MiB file, {LARGE_FILE_CONNECTIONS} connections: coroute streams it from disk at "
                f"{big['static-8m']['mib_per_s']:,} MiB/s with a peak RSS of "
                f"{big['static-8m']['peak_rss_kib'] / 1024:.1f} MiB")
        if "static-8m-nginx" in big:
            n = big["static-8m-nginx"]
            line += (f"; nginx (sendfile) serves the same file at {n['mib_per_s']:,} MiB/s "
                     f"({big['static-8m']['rps'] / n['rps']:.2f} x)" if n["rps"] else "")
        lines.append(line + ".")
        lines.append("")
    for ext in (r for r in res["scenarios"] if r["name"].startswith("external") and r["status"] == "ok"):
        hs = ext.get("tls_handshakes_per_1000")
        line = (f"{ext['name']} (`{ext.get('server_args') or 'built-in upstream, 100 ms per answer'}`): "
                f"{'%.3f' % hs if hs is not None else 'not measured'} TLS handshakes per 1,000 requests "
                f"after warm-up ({ext.get('upstream_connections_opened', '?')} new upstream connections in "
                f"{ext['requests']:,} requests; {ext['handshake_method']}).")
        t = ext.get("client_totals")
        if t:
            line += (f" The HTTPS client's own totals over that server's life: {t['connections']} connections, "
                     f"{t['tls_handshakes']} handshakes, {t['reuses']:,} reuses.")
        lines.append(line)
        lines.append("")
    if any(r["name"] == "external-0ms" and r["status"] == "ok" for r in res["scenarios"]):
        lines.append("external-0ms is the CPU-bound view: the built-in upstream answers at once and runs in "
                     "the server's own process and threads, so /api/external does the upstream's work as well "
                     "as its own; about 50 % of upstream-direct is that setup's natural ceiling.")
        lines.append("")
    if res["reference"]:
        lines.append("Reference, same run: healthz's load (64 connections) on coroute and on nginx "
                     "(`return 200` JSON, same keep-alive), alternating rounds, medians:")
        lines.append("")
        lines.append("| coroute threads vs nginx workers | coroute req/s | nginx req/s | ratio | coroute p99 ms | "
                     "nginx p99 ms | placement |")
        lines.append("|---|---:|---:|---:|---:|---:|---|")
        for r in res["reference"]:
            place = "server on core 0, wrk on core 1" if r["pinned"] else "unpinned"
            lines.append(f"| {r['threads']} vs {r['threads']} | {fmt_int(r['coroute_rps'])} | "
                         f"{fmt_int(r['nginx_rps'])} | **{r['ratio']:.2f}** | {r['coroute_p99_ms']:.2f} | "
                         f"{r['nginx_p99_ms']:.2f} | {place}, wrk -t{r['wrk_threads']}, "
                         f"{len(r['rounds'])} round(s) |")
        lines.append("")
    s = res["server"]
    if s:
        lines.append(f"Main server process (healthz to parallel; external, idle-10k and the reference run on "
                     f"servers of their own): peak RSS {s['peak_rss_kib'] / 1024:.1f} MiB, "
                     f"{s['cpu_seconds']:.1f} CPU seconds.")
        lines.append("")
    lines.append("| target | goal | figure | met |")
    lines.append("|---|---|---|---|")
    for t in res["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} | {t['figure']} | {met} |")
    lines.append("")
    return "\n".join(lines)


def chart(res, png):
    """Throughput and p99 per scenario, two panels, log scales (gnuplot)."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        log("gnuplot missing: no chart")
        return False
    rows = [(r["name"], r["rps"], r["p99_ms"]) for r in res["scenarios"] if r["status"] == "ok"]
    for r in res["reference"]:
        rows.append((f"coroute-{r['threads']}t", r["coroute_rps"], r["coroute_p99_ms"]))
        rows.append((f"nginx-{r['threads']}w", r["nginx_rps"], r["nginx_p99_ms"]))
    if not rows:
        return False
    with tempfile.TemporaryDirectory(prefix="coroute-bench-chart-") as d:
        data = os.path.join(d, "data.tsv")
        with open(data, "w") as f:
            for name, rps, p99 in rows:
                f.write(f"\"{name}\"\t{rps:.1f}\t{max(p99, 0.001):.3f}\n")
        m = res["machine"]
        title = (f"coroute {res['date']}: {m['cores']} cores, {m['cpu']} "
                 f"(wrk on the same cores){' - quick run' if res['quick'] else ''}")
        script = f"""
set terminal pngcairo size 1200,800 font ",10"
set output "{png}"
set multiplot layout 2,1 title "{title}"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set grid ytics
set logscale y
set xtics rotate by -25 noenhanced
set key off
set ylabel "requests / s"
set title "throughput"
plot "{data}" using 2:xtic(1) lc rgb "#3b7dd8", '' using 0:2:(sprintf("%.0f",$2)) with labels offset 0,0.7 font ",8"
set ylabel "ms"
set title "p99 latency"
plot "{data}" using 3:xtic(1) lc rgb "#d8703b", '' using 0:3:(sprintf("%.1f",$3)) with labels offset 0,0.7 font ",8"
unset multiplot
"""
        p = subprocess.run([gnuplot], input=script, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            log(f"gnuplot failed: {p.stderr.strip()}")
            return False
    return True


# -- main -------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default=os.path.join(ROOT, "build", "release", "src", "coroute-server"))
    ap.add_argument("--duration", type=float, default=10, help="measured seconds per scenario (10)")
    ap.add_argument("--warmup", type=float, default=3, help="warm-up seconds before each (3)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 s each, 1 s warm-up, 1 reference round")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="server threads (cores)")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk threads for the scenarios (1)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the nginx reference (3)")
    ap.add_argument("--only", default="", help="comma-separated scenarios (and 'idle-10k', 'reference')")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="do not pin the 1-vs-1 reference (server core 0, wrk core 1)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds = 2, 1, 1
    # wrk takes whole seconds
    args.duration = max(1, int(round(args.duration)))
    args.warmup = max(0, int(round(args.warmup)))
    only = {s for s in args.only.split(",") if s}
    wanted = lambda name: not only or name in only  # noqa: E731

    for tool in ("wrk", "taskset", "ss"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing (scripts/setup.sh --bench installs it)")
    if not os.access(args.server, os.X_OK):
        sys.exit(f"bench: no server binary at {args.server} (scripts/build.sh --release)")
    raise_nofile()

    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S") + ("-quick" if args.quick else "")
    machine = machine_info()
    res = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "quick": args.quick,
           "machine": machine, "versions": tool_versions(args.server),
           "config": {"threads": args.threads, "duration": args.duration, "warmup": args.warmup,
                      "wrk_threads": args.wrk_threads, "rounds": args.rounds,
                      "note": f"wrk and the server share the {machine['cores']} cores over loopback"},
           "scenarios": [], "reference": [], "idle": None, "ws_idle": None, "server": {}}

    main_scenarios = [sc for sc in SCENARIOS if sc[0] != "external" and wanted(sc[0])]
    srv = CorouteServer(args.server, args.threads) if main_scenarios else None
    try:
        if not srv:
            raise _Skip()
        log(f"coroute-server pid {srv.pid} on port {srv.port}, {args.threads} thread(s)"
            + (f", upstream {srv.upstream}" if srv.upstream else ", no upstream line"))
        for name, path, conns, ideal in SCENARIOS:
            if not wanted(name):
                continue
            if name == "external":
                continue  # on servers of its own, below
            log(f"{name}: GET {path}, {conns} connections")
            status, _ = http_get(srv.url(path))
            if status != 200:
                res["scenarios"].append({"name": name, "path": path, "connections": conns, "status": "skipped",
                                         "reason": f"GET {path} answers {status}"})
                continue
            r = measure(srv.url(path), conns, args.warmup, args.duration, args.wrk_threads, server=srv)
            res["scenarios"].append(summarize(name, path, conns, ideal, r))
            row = res["scenarios"][-1]
            log(f"  {row['rps']:.0f} req/s, p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                f"{row['errors_total']} errors")
        res["server"] = {"peak_rss_kib": srv.peak_rss_kib(), "cpu_seconds": round(srv.cpu_seconds(), 2)}
    except _Skip:
        pass
    finally:
        if srv:
            srv.stop()

    if wanted("external"):
        log("external: GET /api/external, 64 connections, on servers of its own")
        res["scenarios"].extend(run_external(args, 64))
    if any(wanted(n) for n in ("pg-db-c1000", "pg-items", "cluster-items")):
        res["scenarios"].extend(run_postgres(args, wanted))
    if wanted("static-8m"):
        log(f"static-8m: GET an 8 MiB file, {LARGE_FILE_CONNECTIONS} connections, coroute and nginx")
        res["scenarios"].extend(run_large_static(args))
    if wanted("ws-echo"):
        log(f"ws-echo: echo round trips over {WS_CONNECTIONS} WebSockets to /ws")
        res["scenarios"].append(run_ws_echo(args))
    if wanted("idle-10k"):
        log(f"idle-10k: {IDLE_CONNECTIONS} idle keep-alive connections on a fresh server")
        res["idle"] = run_idle(args)
        log(f"  {res['idle'].get('kib_per_connection')} KiB per connection")
    if wanted("ws-idle-10k"):
        log(f"ws-idle-10k: {IDLE_CONNECTIONS} open, idle WebSockets on a fresh server")
        res["ws_idle"] = run_idle(args, "ws-idle-10k", "/ws", websocket=True)
        log(f"  {res['ws_idle'].get('kib_per_connection')} KiB per socket")
    if wanted("reference"):
        res["reference"] = run_reference(args, machine["cores"])

    res["targets"] = evaluate_targets(res)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, stamp)
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=2)
    md = markdown(res)
    png_ok = chart(res, base + ".png")
    if png_ok:
        md += f"\n![throughput and p99 per scenario]({os.path.basename(base)}.png)\n"
    with open(base + ".md", "w") as f:
        f.write(md)
    if not args.quick and not only:
        latest = os.path.join(ROOT, "bench")
        shutil.copyfile(base + ".json", os.path.join(latest, "latest.json"))
        with open(os.path.join(latest, "latest.md"), "w") as f:
            f.write(md.replace(f"]({os.path.basename(base)}.png)", "](latest.png)"))
        if png_ok:
            shutil.copyfile(base + ".png", os.path.join(latest, "latest.png"))
    print(md)
    log(f"results: {base}.json, {base}.md" + (f", {base}.png" if png_ok else ""))


if __name__ == "__main__":
    main()
