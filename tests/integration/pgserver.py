#!/usr/bin/env python3
"""A throw-away PostgreSQL 15 server for tests and for scripts/cluster.sh.

Python 3 standard library only. PgServer(directory) runs initdb in the directory
(trust authentication, superuser `postgres`, UTF8, locale C), starts the server with
no TCP listener (`listen_addresses = ''`), a Unix socket directory of its own and
fsync off, creates one database, and gives its libpq URL:
``postgresql://postgres@/coroute?host=SOCKDIR``. close() stops it at once and
removes everything it made; so does the end of a ``with`` block or of the process.

initdb and postgres refuse to run as root: when we are root they run as the
`postgres` user (through runuser, or setpriv), and the directories they write are
theirs. When postgres cannot reach the directory (a parent such as /root is closed
to it), the server lives in a fresh directory under /tmp instead. A socket path is
limited to about 107 bytes, so a socket directory that would be too long is also a
short one under /tmp.

A run that was killed leaves its server behind: the directory records who owns it
(state.json), and the next start in that directory (or, for the default
directories, in any sibling whose owner is gone) stops that server and removes it.

usage: pgserver.py run [--dir D] [--db NAME] -- CMD ARGS...
         starts a server, runs CMD with COROUTE_TEST_PG=<its URL> in its environment,
         stops the server and exits with CMD's status (1 when the server cannot start)
       pgserver.py serve [--dir D] [--db NAME]
         starts a server, prints its URL and runs until SIGINT or SIGTERM
"""

import argparse
import atexit
import glob
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes, NUL included
PORT = 5432            # only names the socket file (.s.PGSQL.5432): there is no TCP listener


class PgError(RuntimeError):
    """The server could not be made, started or asked something; the message says why."""


def bin_dir():
    """PostgreSQL's programs: $COROUTE_PG_BIN, else Debian's /usr/lib/postgresql/15/bin (or the
    newest version there), else whatever PATH has."""
    env = os.environ.get("COROUTE_PG_BIN")
    if env:
        return env
    if os.path.isfile("/usr/lib/postgresql/15/bin/initdb"):
        return "/usr/lib/postgresql/15/bin"
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise PgError("PostgreSQL is not installed (no initdb): run scripts/setup.sh, or set COROUTE_PG_BIN")


def default_base():
    """Where default directories go: $COROUTE_BUILD_DIR (set by CTest), else the tree's build/."""
    env = os.environ.get("COROUTE_BUILD_DIR")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, "build")


def _clean_env():
    # PGHOST, PGDATA and friends would override what we pass on the command line.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _process_start(pid):
    """A process's start time (clock ticks since boot), which tells it from a later process
    given the same pid; None when there is no such process, or only its zombie (whose
    reaping is up to whoever is pid 1 here)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


_instances = itertools.count(1)


def _alive(pid, start):
    return pid is not None and _process_start(pid) is not None and _process_start(pid) == start


class PgServer:
    """One PostgreSQL server in `directory` (default: build/pgserver/pg-<pid>-<n>).

    start() makes and starts it; stop() stops it and keeps its data (start() again
    restarts it, for restart tests); close() stops it at once and removes it.
    """

    def __init__(self, directory=None, dbname="coroute", settings=None, start_timeout=60.0):
        self.sweep_siblings = directory is None
        if directory is None:
            directory = os.path.join(default_base(), "pgserver", "pg-%d-%d" % (os.getpid(), next(_instances)))
        self.dir = os.path.abspath(directory)
        self.dbname = dbname
        self.settings = dict(settings or {})
        self.start_timeout = start_timeout
        self.bin = bin_dir()
        self.as_postgres = os.geteuid() == 0
        self.home = None      # what the server writes: data/, its log; self.dir or a /tmp directory
        self.sockdir = None
        self._made = False
        self._running = False
        self._atexit = False

    # -- paths -------------------------------------------------------------------

    @property
    def datadir(self):
        return os.path.join(self.home, "data")

    @property
    def log_path(self):
        return os.path.join(self.home, "postgres.log")

    @property
    def url(self):
        return self.url_for(self.dbname)

    def url_for(self, dbname):
        return "postgresql://postgres@/%s?host=%s" % (dbname, self.sockdir)

    @property
    def pid(self):
        """The postmaster's pid while it runs (from postmaster.pid), else None."""
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError, TypeError):
            return None

    # -- life cycle --------------------------------------------------------------

    def start(self):
        """Makes the server the first time (initdb, the database), then starts it; returns self."""
        if self._running:
            return self
        if not self._atexit:
            atexit.register(self.close)
            self._atexit = True
        if not self._made:
            self._make()
        self._pg_ctl("start", "-w", "-t", str(int(self.start_timeout)), "-l", self.log_path)
        self._running = True
        if not self._has_database():
            self.psql("CREATE DATABASE %s" % _ident(self.dbname), dbname="postgres")
        return self

    def stop(self, mode="fast"):
        """Stops the server (`fast`: connections are ended, the data is kept; `immediate`:
        no checkpoint, as a crash would); start() starts it again."""
        if self._running:
            self._pg_ctl("stop", "-w", "-m", mode, "-t", "30")
            self._running = False

    def close(self):
        """Stops the server at once and removes its directories. Safe to call again."""
        if not self._made:
            return
        _stop_and_remove(self.dir, self._state())
        self._made = self._running = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- queries -----------------------------------------------------------------

    def psql(self, sql, dbname=None, check=True, timeout=30.0):
        """Runs `sql` with psql (unaligned, tuples only, stopping at the first error) and
        returns its output without the last newline. A failed statement raises PgError with
        psql's message unless check is false."""
        cmd = [os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-d", self.url_for(dbname or self.dbname), "-c", sql]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_clean_env())
        if check and p.returncode != 0:
            raise PgError("psql %r failed (%d): %s" % (sql, p.returncode, p.stderr.strip()))
        return p.stdout.rstrip("\n")

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # -- internals ---------------------------------------------------------------

    def _make(self):
        if self.sweep_siblings:
            for other in glob.glob(os.path.join(os.path.dirname(self.dir), "*")):
                if other != self.dir:
                    _remove_if_abandoned(other)
        _remove_if_abandoned(self.dir, refuse_live=True)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.home = self.dir
        if self.as_postgres and not self._reachable_by_postgres(self.dir):
            self.home = tempfile.mkdtemp(prefix="coroute-pg-")
        sockdir = os.path.join(self.home, "s")
        if len(os.path.join(sockdir, ".s.PGSQL.%d" % PORT)) > SOCKET_PATH_MAX:
            sockdir = tempfile.mkdtemp(prefix="cr-pg-")
        self.sockdir = sockdir
        self._made = True
        self._write_state()  # before anything else is made, so a killed run can be undone
        os.makedirs(self.sockdir, exist_ok=True)
        for d in {self.home, self.sockdir}:
            os.chmod(d, 0o755)
            self._give(d)
        self._run_as_server([os.path.join(self.bin, "initdb"), "-D", self.datadir, "-A", "trust", "-U", "postgres",
                             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"], "initdb")
        conf = {
            "listen_addresses": "''",
            "unix_socket_directories": _quote(self.sockdir),
            "port": str(PORT),
            # A test server: durability is not the point, speed is.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
        }
        conf.update({k: str(v) for k, v in self.settings.items()})
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# pgserver.py\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))

    def _has_database(self):
        out = self.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % self.dbname.replace("'", "''"),
                        dbname="postgres")
        return out.strip() == "1"

    def _state(self):
        return {"owner": os.getpid(), "owner_start": _process_start(os.getpid()), "home": self.home,
                "sockdir": self.sockdir, "bin": self.bin, "as_postgres": self.as_postgres}

    def _write_state(self):
        with open(os.path.join(self.dir, "state.json"), "w") as f:
            json.dump(self._state(), f)

    def _give(self, path):
        if self.as_postgres:
            shutil.chown(path, "postgres", "postgres")

    def _reachable_by_postgres(self, path):
        p = subprocess.run(_as_postgres(["test", "-x", path]), cwd="/", env=_clean_env(),
                           capture_output=True)
        return p.returncode == 0

    def _pg_ctl(self, *args):
        self._run_as_server([os.path.join(self.bin, "pg_ctl"), "-D", self.datadir, *args], "pg_ctl " + args[0])

    def _run_as_server(self, cmd, what):
        if self.as_postgres:
            cmd = _as_postgres(cmd)
        # A session of its own: the server pg_ctl leaves running must not get the Ctrl-C
        # meant for us (we stop it when we are done, after what uses it).
        p = subprocess.run(cmd, cwd="/", env=_clean_env(), capture_output=True, text=True,
                           timeout=self.start_timeout + 30, start_new_session=True)
        if p.returncode != 0:
            raise PgError("%s failed (%d): %s\n%s" % (what, p.returncode, (p.stderr or p.stdout).strip(),
                                                      self.log_tail()))
        return p.stdout


def _as_postgres(cmd):
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *cmd]


def _quote(s):
    return "'" + s.replace("'", "''") + "'"


def _ident(s):
    return '"' + s.replace('"', '""') + '"'


def _read_state(directory):
    try:
        with open(os.path.join(directory, "state.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _remove_if_abandoned(directory, refuse_live=False):
    """Stops and removes what a run that is gone left in `directory`. A directory whose
    owner still runs is left alone (or, with refuse_live, is an error)."""
    if not os.path.exists(directory):
        return
    state = _read_state(directory)
    if state is not None and _alive(state.get("owner"), state.get("owner_start")):
        if refuse_live:
            raise PgError("%s is in use by process %s%s" % (directory, state["owner"],
                                                           " (this one)" if state["owner"] == os.getpid() else ""))
        return
    if state is None:
        # Not made by us, or made by a run killed before it wrote its state: only an empty
        # directory or one holding nothing but what we make is ours to remove.
        if not refuse_live:
            return
        extra = set(os.listdir(directory)) - {"data", "s", "postgres.log"}
        if extra:
            raise PgError("%s is not a pgserver directory (it holds %s); choose another"
                          % (directory, ", ".join(sorted(extra)[:5])))
    _stop_and_remove(directory, state or {})


def _stop_and_remove(directory, state):
    home = state.get("home") or directory
    data = os.path.join(home, "data")
    pidfile = os.path.join(data, "postmaster.pid")
    try:
        with open(pidfile) as f:
            pid = int(f.readline())
    except (OSError, ValueError):
        pid = None
    if pid is not None and _is_postgres(pid):
        # Immediate: no checkpoint, nothing to keep. SIGQUIT is what pg_ctl -m immediate sends.
        try:
            os.kill(pid, signal.SIGQUIT)
        except OSError:
            pass
        deadline = time.monotonic() + 10
        while _process_start(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        if _process_start(pid) is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for d in (state.get("sockdir"), home, directory):
        if d:
            shutil.rmtree(d, ignore_errors=True)


def _is_postgres(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip() in ("postgres", "postmaster")
    except OSError:
        return False


# -- the command line -------------------------------------------------------------

def _main(argv):
    parser = argparse.ArgumentParser(prog="pgserver.py", description="A throw-away PostgreSQL server.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run CMD with COROUTE_TEST_PG set, then stop the server")
    serve = sub.add_parser("serve", help="print the URL and run until SIGINT or SIGTERM")
    for p in (run, serve):
        p.add_argument("--dir", help="the server's directory (default: build/pgserver/pg-<pid>-<n>)")
        p.add_argument("--db", default="coroute", help="the database to create (coroute)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.command == "run" and args.cmd[:1] == ["--"] else getattr(args, "cmd", None)
    if args.command == "run" and not cmd:
        parser.error("run needs a command after --")

    # A signal ends us through SystemExit, so the server is stopped on the way out.
    got = []

    def on_signal(sig, _frame):
        got.append(sig)
        raise SystemExit(128 + sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pg = PgServer(args.dir, dbname=args.db)
    try:
        try:
            pg.start()
        except (PgError, OSError, subprocess.TimeoutExpired) as e:
            print("pgserver: cannot start PostgreSQL: %s" % e, file=sys.stderr)
            return 1
        if args.command == "serve":
            print(pg.url, flush=True)
            while True:
                signal.pause()
        child = subprocess.Popen(cmd, env={**os.environ, "COROUTE_TEST_PG": pg.url})
        try:
            code = child.wait()
        except SystemExit:
            # Pass the signal on, and give the command a moment to finish cleanly.
            child.send_signal(got[-1] if got else signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise
        return code if code >= 0 else 128 - code
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        pg.close()


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
