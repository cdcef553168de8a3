#!/usr/bin/env python3
"""Runs coroute-server under mixed_load.py and checks that nothing leaks or stalls.

usage: soak.py --server BINARY --www DIR [--minutes M] [--connections N] [--threads N] [--db URL] [--threaded] [--sanitized] [-- SERVER ARGS]

Starts the server on a free port (two threads unless told, no access log, the built-in
upstream failing a tenth of its answers with --upstream-fail-rate 0.1: a 500, a body
that is not JSON or one cut short, which the load's external calls get as 502s), fills the upstream
client's connection pool so that it is part of the baseline, takes the baseline
(descriptors, RSS), runs the load for M minutes while sampling every 5 s (RSS, open
descriptors, one /healthz round trip on a new connection), then stops the load and
the server. Pass, printed as one line per check:

  load        the load saw no unexpected outcome
  healthz     every sample answered, within 100 ms (under the sanitizers, whose
              Debug build is many times slower, answered at all)
  rss         the last minute's mean RSS within 10 % of the second minute's (runs of
              3 minutes or more; under the sanitizers, whose quarantine grows by design,
              not checked)
  descriptors back to the baseline (+8) within 10 s of the load's end
  exit        the server exits 0 on SIGTERM, with no sanitizer report on stderr
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LISTENING = re.compile(r"^coroute listening on http://127\.0\.0\.1:(\d+)")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def healthz_ms(port):
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        ok = data.startswith(b"HTTP/1.1 200")
    except OSError:
        ok = False
    return (time.monotonic() - start) * 1000, ok


def fill_pool(port, n=200):
    """n external calls at once: the upstream pool ends as full as the load will leave it."""
    def one():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"GET /api/external HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while s.recv(65536):
                    pass
        except OSError:
            pass
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True)
    ap.add_argument("--www", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--db", default="sim", help="the server's --db")
    ap.add_argument("--threaded", action="store_true", help="mixed_load.py --threaded: offload, jobs, WebSocket feeds")
    ap.add_argument("--sanitized", action="store_true")
    ap.add_argument("server_args", nargs="*", help="after --: more options for the server")
    args = ap.parse_args()

    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    srv = subprocess.Popen([args.server, "--port", "0", "--threads", str(args.threads), "--access-log", "off", "--log-level", "warn",
                            "--www", args.www, "--shutdown-timeout-ms", "5000", "--db", args.db,
                            "--upstream-fail-rate", "0.1"] + args.server_args,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stderr_lines = []
    threading.Thread(target=lambda: stderr_lines.extend(srv.stderr), daemon=True).start()
    port = None
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline:
        line = srv.stdout.readline()
        if not line:
            break
        m = LISTENING.match(line)
        if m:
            port = int(m.group(1))
    if port is None:
        srv.kill()
        print("soak: the server did not start:", "".join(stderr_lines)[-2000:])
        return 1
    threading.Thread(target=lambda: [None for _ in srv.stdout], daemon=True).start()

    fill_pool(port)
    time.sleep(1)
    base_fds, base_rss = fds(srv.pid), rss_kib(srv.pid)
    print(f"soak: server pid {srv.pid} on port {port}; baseline {base_fds} descriptors, {base_rss} KiB; "
          f"{args.connections} clients for {args.minutes:g} min", flush=True)

    seconds = args.minutes * 60
    load = subprocess.Popen([sys.executable, os.path.join(HERE, "mixed_load.py"), "--port", str(port),
                             "--connections", str(args.connections), "--seconds", str(seconds)]
                            + (["--threaded"] if args.threaded else []),
                            stdout=subprocess.PIPE, text=True)
    samples = []  # (t, rss KiB, fds, healthz ms, healthz ok)
    start = time.monotonic()
    while load.poll() is None:
        time.sleep(5)
        t = time.monotonic() - start
        ms, ok = healthz_ms(port)
        samples.append((t, rss_kib(srv.pid), fds(srv.pid), ms, ok))
        print(f"soak: {t:6.0f} s  rss {samples[-1][1]:>8} KiB  fds {samples[-1][2]:>5}  healthz {ms:6.1f} ms",
              flush=True)
    out = load.stdout.read().strip().splitlines()
    report = json.loads(out[-1]) if out else {"unexpected": -1, "examples": ["the load printed nothing"]}

    checks = []
    kinds = ", ".join(f"{k} {n}" for k, n in report.get("requests", {}).items() if n)
    checks.append(("load", report["unexpected"] == 0,
                   f"{report.get('total', 0)} requests ({kinds}), {report['unexpected']} unexpected "
                   f"{report.get('examples', [])[:3]}"))
    worst = max((s[3] for s in samples), default=0)
    if args.sanitized:
        # A sanitized Debug build is many times slower: new connections queue in the
        # kernel behind the load's own, so its latency says nothing about the code.
        checks.append(("healthz", all(s[4] for s in samples),
                       f"every sample answered, worst {worst:.1f} ms over {len(samples)} samples (not timed)"))
    else:
        checks.append(("healthz", all(s[4] and s[3] < 100 for s in samples),
                       f"worst {worst:.1f} ms over {len(samples)} samples (limit 100 ms)"))
    if args.minutes >= 3 and not args.sanitized:
        second = [s[1] for s in samples if 60 <= s[0] < 120]
        last = [s[1] for s in samples if s[0] >= seconds - 60]
        a, b = statistics.mean(second), statistics.mean(last)
        checks.append(("rss", abs(b - a) <= 0.10 * a, f"second minute {a:.0f} KiB, last minute {b:.0f} KiB"))
    else:
        checks.append(("rss", True, "not checked (a run under 3 minutes, or sanitized)"))
    after = None
    end = time.monotonic() + 10
    while time.monotonic() < end:
        after = fds(srv.pid)
        if after <= base_fds + 8:
            break
        time.sleep(0.5)
    checks.append(("descriptors", after is not None and after <= base_fds + 8,
                   f"{after} after the load, baseline {base_fds}"))
    srv.send_signal(signal.SIGTERM)
    try:
        code = srv.wait(30)
    except subprocess.TimeoutExpired:
        srv.kill()
        code = "killed after 30 s"
    time.sleep(0.5)
    text = "".join(stderr_lines)
    reports = [m for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                           "WARNING: ThreadSanitizer", "FATAL: ThreadSanitizer") if m in text]
    checks.append(("exit", code == 0 and not reports, f"status {code}, sanitizer reports: {reports or 'none'}"))
    for name, ok, what in checks:
        print(f"soak: {'pass' if ok else 'FAIL'}  {name:<11} {what}", flush=True)
    if reports or code != 0:
        # The first report whole (a TSan report runs to several KiB), else the tail.
        first = min((text.find(m) for m in reports), default=-1)
        print(text[first:first + 20000] if first >= 0 else text[-6000:])
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
