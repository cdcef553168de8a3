#!/usr/bin/env python3
"""coroute on one machine the way a deployment runs it: one PostgreSQL, N replicas of
coroute-server, and nginx in front. scripts/cluster.sh builds the server and runs this;
its header says how to use it, and the README's "Running on more than one core or
machine" why the balancer is set up as it is.

usage: cluster.py --server BIN [--replicas N] [--port P] [--host ADDR] [--db postgresql|sim]
                  [--dir D] [--drain-delay-ms MS] [--keep] [-- SERVER ARGS...]

stdout: `cluster listening on http://HOST:P` once the balancer and every replica answer,
then one line per replica (its pid, URL and log) and one each for the balancer and the
database; later, one line each time a replica is started again. Progress and errors go
to stderr. Exit status: 0 after a clean stop (SIGINT, SIGTERM), 1 when the cluster
cannot start or a part of it fails, 2 for a bad argument.

Python 3 standard library only; the database is tests/integration/pgserver.py's.
"""

import argparse
import errno
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import pgserver  # noqa: E402

LISTENING = re.compile(r"^coroute listening on (https?)://(\[[^\]]+\]|[^:/\s]+):(\d+)$")

# nginx keeps an idle connection to a replica for KEEPALIVE_S at most, and a replica
# answers for at least this much longer after SIGTERM (its --drain-delay-ms): by the time
# it closes its idle connections, nginx has closed every one it was not using.
KEEPALIVE_S = 2
DRAIN_DELAY_MS = 3000
FAIL_TIMEOUT_S = 2


class ClusterError(Exception):
    """A part of the cluster could not start or failed; the message says which and why."""


def log(msg):
    print("cluster: " + msg, file=sys.stderr, flush=True)


def free_port(host):
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_status(host, port, path, timeout=2.0):
    """The status of GET path, or None when nothing answers."""
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            c.request("GET", path, headers={"Connection": "close"})
            return c.getresponse().status
        finally:
            c.close()
    except (OSError, http.client.HTTPException):
        return None


def process_start(pid):
    return pgserver._process_start(pid)


def wait_exit(proc, timeout):
    try:
        proc.wait(timeout=max(0.0, timeout))
        return True
    except subprocess.TimeoutExpired:
        return False


class Replica:
    """One coroute-server; its stdout and stderr go to replica-N.log in the cluster's directory."""

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.port = 0  # 0 until the first start has chosen one; restarts keep it
        self.proc = None
        self.started_at = 0.0
        self.failures = 0  # quick exits in a row, for the backoff
        self.log_path = os.path.join(cluster.dir, "replica-%d.log" % index)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        c = self.cluster
        cmd = [c.server, "--host", "127.0.0.1", "--port", str(self.port), "--www", c.www,
               "--drain-delay-ms", str(c.drain_delay_ms), *c.db_args, *c.server_args]
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as out:
            # A session of its own: a Ctrl-C on the terminal reaches only cluster.py, which
            # stops the parts in order.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True, env=c.server_env)
        self.started_at = time.monotonic()
        c.save_state()
        self.port = self._wait_listening(offset)

    def _wait_listening(self, offset, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                for raw in f.read().decode("utf-8", "replace").splitlines():
                    m = LISTENING.match(raw)
                    if m:
                        return int(m.group(3))
            if self.proc.poll() is not None:
                raise ClusterError("replica %d exited with %s before listening:\n%s"
                                   % (self.index, self.proc.returncode, self.tail(offset)))
            if time.monotonic() > deadline:
                raise ClusterError("replica %d printed no listening line within %.0f s:\n%s"
                                   % (self.index, timeout, self.tail(offset)))
            time.sleep(0.02)

    def tail(self, offset=0, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while http_status("127.0.0.1", self.port, "/readyz") != 200:
            if self.proc.poll() is not None:
                raise ClusterError("replica %d exited with %s:\n%s" % (self.index, self.proc.returncode, self.tail()))
            if time.monotonic() > deadline:
                raise ClusterError("replica %d on port %d is not ready after %.0f s (GET /readyz)"
                                   % (self.index, self.port, timeout))
            time.sleep(0.05)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def line(self):
        return "replica %d: pid %d %s log %s" % (self.index, self.proc.pid, self.url, self.log_path)


class Cluster:
    def __init__(self, args):
        self.server = os.path.abspath(args.server)
        self.www = os.path.abspath(args.www)
        self.host = args.host
        self.port = args.port
        self.dir = os.path.abspath(args.dir)
        self.db = args.db
        self.drain_delay_ms = args.drain_delay_ms
        self.keep = args.keep
        self.server_args = list(args.server_args)
        # Every server option has a COROUTE_* variable: ours are the command line's only.
        self.server_env = {k: v for k, v in os.environ.items() if not k.startswith("COROUTE_")}
        self.db_args = []
        self.pg = None
        self.nginx = None
        self.replicas = [Replica(self, i + 1) for i in range(args.replicas)]
        self.stop_requested = 0  # signals received asking us to stop
        self.restart_requested = False

    # -- the cluster's directory -----------------------------------------------------

    def prepare_dir(self):
        state = self._read_state()
        if state is not None:
            owner, start = state.get("owner"), state.get("owner_start")
            if owner != os.getpid() and process_start(owner) is not None and process_start(owner) == start:
                raise ClusterError("a cluster is already running in %s (pid %d): stop it, or choose another --dir"
                                   % (self.dir, owner))
            self._kill_leftovers(state)
        if os.path.isdir(self.dir) and state is None and os.listdir(self.dir):
            raise ClusterError("%s is not a cluster's directory (it holds %s); choose another --dir"
                               % (self.dir, ", ".join(sorted(os.listdir(self.dir))[:5])))
        if os.path.isdir(self.dir):
            # The database's own directory is pgserver's to clean (it may hold a server).
            pg_dir = os.path.join(self.dir, "pg")
            if os.path.isdir(pg_dir):
                pgserver._remove_if_abandoned(pg_dir, refuse_live=True)
            shutil.rmtree(self.dir)
        os.makedirs(os.path.join(self.dir, "nginx-temp"))
        os.chmod(self.dir, 0o755)
        self.save_state()

    def _read_state(self):
        try:
            with open(os.path.join(self.dir, "state.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def save_state(self):
        # Enough for the next run to stop what a killed one left running.
        procs = [(r.proc.pid, process_start(r.proc.pid)) for r in self.replicas if r.proc is not None]
        if self.nginx is not None:
            procs.append((self.nginx.pid, process_start(self.nginx.pid)))
        state = {"owner": os.getpid(), "owner_start": process_start(os.getpid()), "processes": procs}
        with open(os.path.join(self.dir, "state.json"), "w") as f:
            json.dump(state, f)

    @staticmethod
    def _kill_leftovers(state):
        # Each part was the leader of a process group of its own (start_new_session), and
        # nginx's workers outlive a killed master: what is left of each group goes.
        leaders = {pid for pid, _ in state.get("processes", [])}
        for pid in sorted(os.listdir("/proc")):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as f:
                    comm_end = f.read()
                comm = comm_end[comm_end.index("(") + 1:comm_end.rindex(")")]
                fields = comm_end.rsplit(")", 1)[1].split()
            except (OSError, ValueError):
                continue
            if int(fields[2]) in leaders and fields[0] not in ("Z", "X") and comm in ("nginx", "coroute-server"):
                log("stopping pid %s (%s), left running by an earlier cluster" % (pid, comm))
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass

    # -- starting ----------------------------------------------------------------------

    def start(self):
        self.prepare_dir()
        if self.port != 0:
            self.check_port()
        if self.db == "postgresql":
            log("starting PostgreSQL in %s" % os.path.join(self.dir, "pg"))
            self.pg = pgserver.PgServer(os.path.join(self.dir, "pg"))
            self.pg.start()
            self.db_args = ["--db", self.pg.url]
        for r in self.replicas:
            log("starting replica %d" % r.index)
            r.start()
        if self.port == 0:
            self.port = free_port(self.host)
        self.write_nginx_conf()
        log("starting nginx on %s:%d" % (self.host, self.port))
        self.start_nginx()
        for r in self.replicas:
            r.wait_ready()
        self.wait_balancer()

    def check_port(self):
        """Fails at once, in one line, when the balancer's port is taken (as the server does)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.host, self.port))
            except OSError as e:
                why = ("the port is in use by another program" if e.errno == errno.EADDRINUSE
                       else e.strerror)
                raise ClusterError("cannot listen on %s:%d: %s; choose another with --port (--port 0 takes a free one)"
                                   % (self.host, self.port, why)) from None

    def nginx_conf_path(self):
        return os.path.join(self.dir, "nginx.conf")

    def write_nginx_conf(self):
        d = self.dir
        listen = "[%s]:%d" % (self.host, self.port) if ":" in self.host else "%s:%d" % (self.host, self.port)
        servers = "\n".join("        server 127.0.0.1:%d max_fails=1 fail_timeout=%ds;" % (r.port, FAIL_TIMEOUT_S)
                            for r in self.replicas)
        # As root, nginx's workers run as nobody; they touch no file (bodies and
        # responses stay in memory, the master opens the logs).
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        temp = os.path.join(d, "nginx-temp")
        conf = NGINX_CONF.format(
            dir=d, user=user, temp=temp, listen=listen, servers=servers, keepalive_s=KEEPALIVE_S,
            drain_delay_ms=self.drain_delay_ms)
        with open(self.nginx_conf_path(), "w") as f:
            f.write(conf)

    def start_nginx(self):
        err = os.path.join(self.dir, "nginx-error.log")
        cmd = ["nginx", "-p", self.dir, "-c", self.nginx_conf_path(), "-e", err]
        test = subprocess.run(cmd + ["-t", "-q"], capture_output=True, text=True)
        if test.returncode != 0:
            raise ClusterError("nginx refused its configuration %s: %s" % (self.nginx_conf_path(),
                                                                           test.stderr.strip()))
        with open(os.path.join(self.dir, "nginx.out"), "ab") as out:
            self.nginx = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                          start_new_session=True)
        self.save_state()

    def wait_balancer(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while http_status(self.host, self.port, "/readyz") != 200:
            if self.nginx.poll() is not None:
                raise ClusterError("nginx exited with %s: %s" % (self.nginx.returncode, self.nginx_errors()))
            if time.monotonic() > deadline:
                raise ClusterError("the balancer on port %d does not answer /readyz after %.0f s: %s"
                                   % (self.port, timeout, self.nginx_errors()))
            time.sleep(0.05)

    def nginx_errors(self):
        """nginx's last serious complaint (or its last lines)."""
        lines = []
        for name in ("nginx.out", "nginx-error.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    lines += f.read().splitlines()
            except OSError:
                pass
        serious = [l for l in lines if re.search(r"\[(emerg|alert|crit|error)\]", l)]
        return serious[-1] if serious else "\n".join(lines[-5:])

    def announce(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        print("cluster listening on http://%s:%d" % (host, self.port))
        for r in self.replicas:
            print(r.line())
        print("balancer: nginx pid %d config %s" % (self.nginx.pid, self.nginx_conf_path()))
        if self.pg is not None:
            print("database: %s (PostgreSQL, pid %s)" % (self.pg.url, self.pg.pid))
        else:
            print("database: simulated, one per replica (not shared)")
        print("cluster pid %d: SIGHUP restarts the replicas one at a time; SIGINT or SIGTERM stops everything"
              % os.getpid(), flush=True)

    # -- running -----------------------------------------------------------------------

    def run(self):
        """Watches the parts until a signal asks us to stop. A replica that exits (a rolling
        restart by hand sends it SIGTERM) is started again on its port."""
        while not self.stop_requested:
            if self.restart_requested:
                self.restart_requested = False
                self.rolling_restart()
                continue
            if self.nginx.poll() is not None:
                raise ClusterError("nginx exited with %s: %s" % (self.nginx.returncode, self.nginx_errors()))
            for r in self.replicas:
                if not r.alive() and not self.stop_requested:
                    self.replace(r)
            time.sleep(0.1)

    def replace(self, r):
        code = r.proc.returncode
        # A replica that keeps dying at once is retried more and more slowly.
        quick = time.monotonic() - r.started_at < 5
        r.failures = r.failures + 1 if quick else 0
        if r.failures:
            delay = min(2 ** (r.failures - 1), 30)
            log("replica %d exited with %s within 5 s of its start; starting it again in %d s:\n%s"
                % (r.index, code, delay, r.tail(lines=5)))
            if self.sleep(delay):
                return
        else:
            log("replica %d exited with %s; starting it again on port %d" % (r.index, code, r.port))
        try:
            r.start()
            r.wait_ready()
        except ClusterError as e:
            log(str(e))
            return
        print("replica %d: started again, pid %d %s" % (r.index, r.proc.pid, r.url), flush=True)

    def sleep(self, seconds):
        """Sleeps, cut short by a signal to stop; True when it was."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop_requested:
            time.sleep(0.05)
        return bool(self.stop_requested)

    def rolling_restart(self):
        log("rolling restart of %d replica(s)" % len(self.replicas))
        for r in self.replicas:
            if self.stop_requested:
                return
            if r.alive():
                r.proc.send_signal(signal.SIGTERM)
                while not wait_exit(r.proc, 0.1):
                    if self.stop_requested:
                        return
            log("replica %d stopped with %s; starting it again on port %d" % (r.index, r.proc.returncode, r.port))
            try:
                r.start()
                r.wait_ready()
            except ClusterError as e:
                log(str(e))
                continue
            r.failures = 0
            print("replica %d: started again, pid %d %s" % (r.index, r.proc.pid, r.url), flush=True)
        print("rolling restart done", flush=True)

    # -- stopping ----------------------------------------------------------------------

    def stop(self):
        """nginx stops gracefully (its requests in flight end) while the replicas drain;
        then the database goes, then the directory. A second signal hurries each part."""
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
        running = [r for r in self.replicas if r.alive()]
        for r in running:
            r.proc.send_signal(signal.SIGTERM)
        hurried = self.stop_requested > 1
        deadline = time.monotonic() + self.drain_delay_ms / 1000 + 15
        for r in self.replicas:
            while r.alive() and time.monotonic() < deadline:
                if self.stop_requested > 1 and not hurried:
                    hurried = True
                    for other in self.replicas:
                        if other.alive():
                            other.proc.send_signal(signal.SIGTERM)  # a second signal: at once
                    if self.nginx is not None and self.nginx.poll() is None:
                        self.nginx.terminate()  # SIGTERM: nginx's fast stop
                wait_exit(r.proc, 0.1)
            if r.alive():
                log("replica %d still running; killing it" % r.index)
                r.proc.kill()
                r.proc.wait()
            elif r in running and r.proc.returncode != 0:
                log("replica %d exited with %s" % (r.index, r.proc.returncode))
        if self.nginx is not None and self.nginx.poll() is None:
            if not wait_exit(self.nginx, 10):
                self.nginx.terminate()
                if not wait_exit(self.nginx, 5):
                    self.nginx.kill()
                    self.nginx.wait()
        if self.pg is not None:
            self.pg.close()
        if self.keep:
            log("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


NGINX_CONF = """\
# The balancer of one scripts/cluster.sh run (written by scripts/cluster.py; every
# path is this run's own, nothing of the system's nginx configuration is read).
daemon off;
master_process on;
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log notice;
{user}
# A stop waits this long at most for event streams and WebSockets through us.
worker_shutdown_timeout 10s;

events {{
    worker_connections 4096;
}}

http {{
    log_format cluster '$time_iso8601 $remote_addr "$request" $status $body_bytes_sent '
                       '$request_time upstream=$upstream_addr upstream_status=$upstream_status id=$coroute_id';
    access_log {dir}/nginx-access.log cluster;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;

    # Bodies up to the replicas' --body-limit-bytes (1 MiB) and the answers stay in
    # memory; nginx reads a whole body before it picks a replica, so a retry can resend it.
    client_max_body_size 1m;
    client_body_buffer_size 1m;
    proxy_max_temp_file_size 0;

    # The client's X-Request-Id, or nginx's own: one id in nginx's log and the replica's.
    map $http_x_request_id $coroute_id {{
        "" $request_id;
        default $http_x_request_id;
    }}
    map $http_upgrade $connection_upgrade {{
        "" "";
        default upgrade;
    }}
    map $http_host $coroute_host {{
        "" $host;
        default $http_host;
    }}

    upstream coroute {{
        # Passive health only (open-source nginx has no active checks): a replica that
        # fails a connection is left alone for fail_timeout, then tried again with a
        # live request, which moves on to another replica if it fails again.
{servers}
        # Idle connections per worker; each is closed by nginx after {keepalive_s} s idle, well
        # before a draining replica ({drain_delay_ms} ms of --drain-delay-ms) closes its own,
        # and before its --idle-timeout-ms: the replica never closes one under a request.
        keepalive 32;
        keepalive_timeout {keepalive_s}s;
        keepalive_requests 100000;
    }}

    server {{
        listen {listen} backlog=4096;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $coroute_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Request-Id $coroute_id;
        proxy_pass_header Server;

        # Retry on another replica when a connection fails or times out, for every
        # method: POST too (non_idempotent). A replica answers every request it has read,
        # even at SIGTERM, so a failed connection means the request was not processed,
        # unless the replica died while it worked (a crash, kill -9, --shutdown-timeout-ms
        # passed): then a POST may run twice. Answers are never retried (no http_5xx): a
        # 503 from the database or a 504 from the deadline would only double the load.
        proxy_next_upstream error timeout non_idempotent;
        proxy_next_upstream_tries 3;
        proxy_next_upstream_timeout 15s;
        proxy_connect_timeout 2s;
        # Longer than a replica's --request-timeout-ms (30 s): it answers 504 first, so a
        # read timeout here means a replica that hangs.
        proxy_read_timeout 60s;
        proxy_send_timeout 30s;

        location / {{
            proxy_pass http://coroute;
        }}

        # Server-Sent Events: every event goes out as it comes; a heartbeat comes every
        # --events-heartbeat-ms (15 s), so an hour without a byte is a dead replica.
        location = /api/events {{
            proxy_pass http://coroute;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 1h;
        }}

        # WebSocket: the Upgrade handshake is passed on, then nginx relays both ways.
        # (A proxy_set_header here drops every one of the server level: all are repeated;
        # Host matters, the replica checks Origin against it.)
        location = /ws {{
            proxy_pass http://coroute;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $coroute_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $coroute_id;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
"""


def parse_args(argv):
    server_args = []
    if "--" in argv:
        at = argv.index("--")
        argv, server_args = argv[:at], argv[at + 1:]
    p = argparse.ArgumentParser(prog="cluster.sh", description="PostgreSQL, N coroute replicas and nginx in front.")
    p.add_argument("--server", default=os.environ.get("COROUTE_SERVER"), help="the coroute-server binary")
    p.add_argument("--replicas", type=int, default=2, help="how many replicas (2)")
    p.add_argument("--port", type=int, default=8080, help="the balancer's port (8080; 0 takes a free one)")
    p.add_argument("--host", default="127.0.0.1", help="the balancer's address (127.0.0.1)")
    p.add_argument("--db", choices=("postgresql", "sim"), default="postgresql",
                   help="postgresql (default): one shared PostgreSQL; sim: each replica its own simulated database")
    p.add_argument("--dir", default=os.path.join(ROOT, "build", "cluster"),
                   help="the cluster's state: configuration, logs, the database (build/cluster)")
    p.add_argument("--www", default=os.path.join(ROOT, "www"), help="the static site (the tree's www/)")
    p.add_argument("--drain-delay-ms", type=int, default=DRAIN_DELAY_MS,
                   help="the replicas' --drain-delay-ms (%d; keep it above nginx's %d s keepalive_timeout)"
                   % (DRAIN_DELAY_MS, KEEPALIVE_S))
    p.add_argument("--keep", action="store_true", help="leave the directory (logs, database) behind at the end")
    args = p.parse_args(argv)
    args.server_args = server_args
    if not args.server:
        p.error("--server BIN (or $COROUTE_SERVER) is needed; scripts/cluster.sh builds it")
    if not 1 <= args.replicas <= 64:
        p.error("--replicas must be from 1 to 64")
    if not 0 <= args.port <= 65535:
        p.error("--port must be from 0 to 65535")
    if args.drain_delay_ms <= KEEPALIVE_S * 1000:
        log("warning: --drain-delay-ms %d is not above nginx's keepalive_timeout (%d s): a request may "
            "meet a connection the replica is closing" % (args.drain_delay_ms, KEEPALIVE_S))
    if shutil.which("nginx") is None:
        p.error("nginx is not installed: run scripts/setup.sh")
    return args


def main(argv):
    args = parse_args(argv)
    cluster = Cluster(args)

    def on_stop(sig, _frame):
        cluster.stop_requested += 1
        if cluster.stop_requested == 1:
            log("%s: stopping" % signal.Signals(sig).name)
        else:
            log("%s again: hurrying" % signal.Signals(sig).name)

    def on_hup(_sig, _frame):
        cluster.restart_requested = True

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    code = 0
    try:
        cluster.start()
        if not cluster.stop_requested:
            cluster.announce()
            cluster.run()
    except (ClusterError, pgserver.PgError, OSError, subprocess.SubprocessError) as e:
        log(str(e))
        code = 1
    finally:
        cluster.stop()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
