"""scripts/cluster.sh's cluster: replicas of the real binary behind Debian's nginx,
sharing one PostgreSQL (tests/integration/pgserver.py).

The contract:

* The cluster prints ``cluster listening on http://127.0.0.1:P`` once the balancer and
  every replica answer, then each replica's pid and URL; SIGTERM stops it all and
  exits 0, leaving nothing running and no directory behind.
* One database: an item created through the balancer is on the ``/api/events`` stream
  of every replica (streams connected to each directly, and one through nginx) within
  a few seconds, and the items routes through the balancer see every write whichever
  replica takes the request.
* The balancer spreads requests over the replicas (each one's access log shows them,
  found by the X-Request-Id the client sends, which nginx passes on) and passes the
  replicas' own headers through.
* A bounded mixed load through nginx (16 clients, GETs and POSTs, PUTs and DELETEs of
  their own items) while one replica gets SIGTERM and is started again, then every
  replica is restarted in turn (SIGHUP to the cluster): no request fails, every status
  is the one expected, and afterwards every replica serves again.
* A WebSocket through nginx (``/ws``): echo, a query, and the items feed.

The load runs through http.client over keep-alive connections, as browsers' would.
Every wait is bounded.
"""

import asyncio
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

import websockets  # Debian's python3-websockets, for /usr/bin/python3

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import EventStream, clean_env, default_www, server_binary  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
CLUSTER = os.path.join(ROOT, "scripts", "cluster.py")
REPLICA = re.compile(r"^replica (\d+): pid (\d+) http://127\.0\.0\.1:(\d+) log (\S+)$")
RESTARTED = re.compile(r"^replica (\d+): started again, pid (\d+) http://127\.0\.0\.1:(\d+)$")
LOAD_CLIENTS = 16


class Cluster:
    """scripts/cluster.py run as a child, its output collected by threads."""

    def __init__(self, *args):
        base = os.environ.get("COROUTE_BUILD_DIR") or os.path.join(ROOT, "build")
        self.dir = os.path.join(base, "test-cluster")
        self.args = ["--server", server_binary(), "--www", default_www(), "--port", "0", "--dir", self.dir,
                     "--replicas", "2", *args]
        self.proc = None
        self.port = None
        self.replicas = {}  # index -> {"pid", "port", "log"}
        self.stdout, self.stderr = [], []
        self._cond = threading.Condition()

    def start(self, timeout=60.0):
        env = clean_env()
        self.proc = subprocess.Popen([sys.executable, CLUSTER, *self.args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     start_new_session=True)
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._collect, args=(stream, sink), daemon=True).start()
        line = self.wait_line(lambda l: l.startswith("cluster pid "), timeout)
        if line is None:
            self.kill()
            raise RuntimeError("the cluster did not start within %.0f s\n%s" % (timeout, self.output()))
        listening = [l for l in self.stdout if l.startswith("cluster listening on ")]
        if len(listening) != 1 or self.stdout[0] != listening[0]:
            raise RuntimeError("expected one listening line first:\n" + self.output())
        m = re.match(r"^cluster listening on http://127\.0\.0\.1:(\d+)$", listening[0])
        self.port = int(m.group(1))
        for l in self.stdout:
            m = REPLICA.match(l)
            if m:
                self.replicas[int(m.group(1))] = {"pid": int(m.group(2)), "port": int(m.group(3)),
                                                  "log": m.group(4)}
        return self

    def _collect(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self._cond:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, predicate, timeout, start=0):
        """The first stdout line from index `start` on for which predicate holds, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for l in self.stdout[start:]:
                    if predicate(l):
                        return l
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self._cond.wait(min(left, 0.1))

    def mark(self):
        with self._cond:
            return len(self.stdout)

    def wait_restarted(self, index, since, timeout=20.0):
        line = self.wait_line(lambda l: (RESTARTED.match(l) or [None, None])[1] == str(index), timeout, since)
        if line is None:
            raise AssertionError("replica %d was not started again within %.0f s\n%s"
                                 % (index, timeout, self.output()))
        pid = int(RESTARTED.match(line).group(2))
        self.replicas[index]["pid"] = pid
        return pid

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=40.0):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("the cluster did not stop within %.0f s of SIGTERM\n%s" % (timeout, self.output()))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.send_signal(signal.SIGINT)  # a second signal hurries every part
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def output(self):
        with self._cond:
            return "stdout:\n%s\nstderr:\n%s" % ("\n".join(self.stdout), "\n".join(self.stderr[-40:]))

    def served(self, index, id_prefix):
        """The request ids starting with id_prefix in replica `index`'s access log."""
        with open(self.replicas[index]["log"], errors="replace") as f:
            return re.findall(r" id=(%s\S*)$" % re.escape(id_prefix), f.read(), re.M)


def request(conn, method, path, doc=None, request_id=None):
    """One request on a keep-alive http.client connection: (status, headers, parsed body or bytes)."""
    headers = {}
    body = None
    if doc is not None:
        body = json.dumps(doc).encode()
        headers["Content-Type"] = "application/json"
    if request_id:
        headers["X-Request-Id"] = request_id
    conn.request(method, path, body=body, headers=headers)
    res = conn.getresponse()
    data = res.read()
    ctype = res.getheader("Content-Type") or ""
    parsed = json.loads(data) if "json" in ctype and data else data
    return res.status, res, parsed


def running(pid):
    """The process exists and is not a zombie (reaping it is pid 1's business)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class ClusterTestCase(unittest.TestCase):
    cluster = None

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster("--db", "postgresql", "--", "--threads", "1", "--db-latency-ms", "5").start()

    @classmethod
    def tearDownClass(cls):
        c = cls.cluster
        pids = [r["pid"] for r in c.replicas.values()]
        code = c.stop()
        if code != 0:
            raise AssertionError("cluster exited with %r\n%s" % (code, c.output()))
        for pid in pids:
            if running(pid):
                raise AssertionError("replica pid %d still runs after the cluster stopped" % pid)
        if os.path.exists(c.dir):
            raise AssertionError("the cluster left %s behind" % c.dir)

    def balancer(self, timeout=10.0):
        return http.client.HTTPConnection("127.0.0.1", self.cluster.port, timeout=timeout)

    # -- (a) the feed crosses replicas ---------------------------------------------------

    def test_an_item_created_through_the_balancer_reaches_every_replicas_event_stream(self):
        c = self.cluster
        streams = {}
        try:
            for index, r in sorted(c.replicas.items()):
                streams["replica %d" % index] = EventStream(r["port"], timeout=10.0)
            streams["balancer"] = EventStream(c.port, timeout=10.0)
            for name, s in streams.items():
                res = s.open()
                self.assertEqual(res.status, 200, "%s: %r" % (name, res))
                self.assertIn("text/event-stream", res.header("Content-Type"), name)
                s.wait_comment("connected", timeout=5.0)
            conn = self.balancer()
            status, _, item = request(conn, "POST", "/api/items", {"name": "across replicas", "price": 3.25})
            self.assertEqual(status, 201, item)
            conn.close()
            for name, s in streams.items():
                deadline = time.monotonic() + 5.0
                while True:
                    ev = s.next_event(timeout=max(0.0, deadline - time.monotonic()))
                    if ev.event == "item" and ev.json().get("item", {}).get("id") == item["id"]:
                        break
                doc = ev.json()
                self.assertEqual(doc["op"], "created", "%s: %r" % (name, ev))
                self.assertEqual(doc["item"]["name"], "across replicas", name)
                self.assertEqual(doc["item"]["price"], 3.25, name)
        finally:
            for s in streams.values():
                s.close()

    # -- (b) CRUD and spreading ------------------------------------------------------------

    def test_items_crud_through_the_balancer_sees_every_write_whichever_replica_answers(self):
        conn = self.balancer()
        try:
            status, res, item = request(conn, "POST", "/api/items", {"name": "crud", "price": 1.5}, "crud-post")
            self.assertEqual(status, 201, item)
            self.assertEqual(res.getheader("Location"), "/api/items/%d" % item["id"])
            path = "/api/items/%d" % item["id"]
            # Several reads in a row: round robin sends them to each replica.
            for i in range(4):
                status, _, got = request(conn, "GET", path, request_id="crud-get-%d" % i)
                self.assertEqual((status, got["name"]), (200, "crud"), got)
            status, _, got = request(conn, "PUT", path, {"name": "crud2", "price": 2}, "crud-put")
            self.assertEqual((status, got["name"], got["price"]), (200, "crud2", 2), got)
            for i in range(4):
                status, _, got = request(conn, "GET", path, request_id="crud-get2-%d" % i)
                self.assertEqual((status, got["name"]), (200, "crud2"), got)
            status, _, _ = request(conn, "DELETE", path, request_id="crud-delete")
            self.assertEqual(status, 204)
            for i in range(4):
                status, _, got = request(conn, "GET", path, request_id="crud-get3-%d" % i)
                self.assertEqual(status, 404, got)
            status, _, listing = request(conn, "GET", "/api/items?limit=100")
            self.assertEqual(status, 200)
            self.assertNotIn(item["id"], [i["id"] for i in listing["items"]])
        finally:
            conn.close()
        # Both replicas took part.
        for index in self.cluster.replicas:
            self.assertTrue(self.cluster.served(index, "crud-get"), "replica %d served no read" % index)

    def test_the_balancer_spreads_requests_and_passes_the_replicas_headers(self):
        conn = self.balancer()
        try:
            for i in range(20):
                status, res, doc = request(conn, "GET", "/healthz", request_id="spread-%d" % i)
                self.assertEqual((status, doc), (200, {"status": "ok"}))
                self.assertRegex(res.getheader("Server"), r"^coroute/")
                self.assertEqual(res.getheader("X-Request-Id"), "spread-%d" % i)
            for method, path, doc, want in (("POST", "/api/items", {"name": "spread", "price": 1}, 201),
                                            ("GET", "/api/items?limit=2", None, 200),
                                            ("DELETE", "/api/items/999999", None, 404),
                                            ("GET", "/api/db?delay_ms=0", None, 200),
                                            ("GET", "/", None, 200)):
                status, _, body = request(conn, method, path, doc)
                self.assertEqual(status, want, "%s %s: %r" % (method, path, body))
        finally:
            conn.close()
        counts = {index: len(self.cluster.served(index, "spread-")) for index in self.cluster.replicas}
        self.assertEqual(sum(counts.values()), 20, counts)
        for index, n in counts.items():
            self.assertGreaterEqual(n, 5, "replica %d served %d of 20: %r" % (index, n, counts))

    # -- (c) restarts under load -------------------------------------------------------------

    def test_sigterm_to_a_replica_and_a_rolling_restart_under_load_fail_no_request(self):
        c = self.cluster
        load = Load(c.port)
        load.start()
        try:
            self.assertTrue(load.wait_requests(200, 15.0), "the load did not get going: %s" % load.summary())
            # By hand: SIGTERM one replica; the cluster starts it again on its port.
            since = c.mark()
            old = c.replicas[1]["pid"]
            os.kill(old, signal.SIGTERM)
            new = c.wait_restarted(1, since)
            self.assertNotEqual(new, old)
            at_restart = load.count()
            # Then every replica in turn, by SIGHUP to the cluster.
            since = c.mark()
            old_pids = {i: r["pid"] for i, r in c.replicas.items()}
            c.signal(signal.SIGHUP)
            self.assertIsNotNone(c.wait_line(lambda l: l == "rolling restart done", 30.0, since),
                                 "no rolling restart\n" + c.output())
            for index in c.replicas:
                self.assertNotEqual(c.wait_restarted(index, since, 1.0), old_pids[index])
            self.assertGreater(load.count(), at_restart, "the load stalled during the restarts")
            time.sleep(1.0)  # a last second of load on the restarted replicas
        finally:
            load.stop()
        self.assertEqual(len(load.failures), 0, "%d failed request(s):\n%s\n%s"
                         % (len(load.failures), "\n".join(f[:300] for f in load.failures[:10]), load.summary()))
        self.assertGreater(load.count(), 500, load.summary())

        # Every replica serves again (nginx may still hold a restarted one off for its
        # fail_timeout of 2 s).
        conn = self.balancer()
        try:
            deadline = time.monotonic() + 10.0
            i = 0
            while True:
                status, _, _ = request(conn, "GET", "/healthz", request_id="after-%d" % i)
                self.assertEqual(status, 200)
                i += 1
                if all(c.served(index, "after-") for index in c.replicas):
                    break
                self.assertLess(time.monotonic(), deadline, "a replica serves nothing after the restarts")
                time.sleep(0.05)
        finally:
            conn.close()

    # -- (d) WebSocket ------------------------------------------------------------------------

    def test_a_websocket_through_the_balancer_echoes_queries_and_follows_the_items_feed(self):
        url = "ws://127.0.0.1:%d/ws" % self.cluster.port
        origin = "http://127.0.0.1:%d" % self.cluster.port

        async def talk():
            async with websockets.connect(url, origin=origin, open_timeout=5, close_timeout=3,
                                          ping_interval=None) as ws:
                await ws.send(json.dumps({"op": "echo", "data": {"n": 42}}))
                self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 5)),
                                 {"op": "echo", "data": {"n": 42}})
                await ws.send(json.dumps({"op": "db", "id": 7, "delay_ms": 50}))
                answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual((answer["op"], answer["id"]), ("db", 7), answer)
                await ws.send(json.dumps({"op": "subscribe", "topic": "items"}))
                self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 5))["op"], "subscribed")
                # Created through the balancer, perhaps on the other replica.
                ids = []
                for n in range(2):
                    conn = self.balancer()
                    status, _, item = request(conn, "POST", "/api/items", {"name": "ws %d" % n, "price": 1})
                    conn.close()
                    self.assertEqual(status, 201, item)
                    ids.append(item["id"])
                seen = set()
                deadline = time.monotonic() + 5
                while seen != set(ids):
                    msg = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
                    if msg.get("op") == "event" and msg["data"].get("op") == "created":
                        seen.add(msg["data"]["item"]["id"])
                    seen &= set(ids)

        asyncio.run(asyncio.wait_for(talk(), 30))


class Load:
    """LOAD_CLIENTS threads, each on a keep-alive connection to the balancer, sending
    reads and writes as fast as answers come; every answer is checked."""

    def __init__(self, port):
        self.port = port
        self.failures = []
        self.counts = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(LOAD_CLIENTS)]
        self.started = None

    def start(self):
        self.started = time.monotonic()
        for t in self._threads:
            t.start()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(20)

    def count(self):
        with self._lock:
            return sum(self.counts.values())

    def wait_requests(self, n, timeout):
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def summary(self):
        with self._lock:
            return "%d requests in %.1f s: %s" % (sum(self.counts.values()), time.monotonic() - self.started,
                                                  dict(sorted(self.counts.items())))

    # Each client goes round its cycle: it creates an item, reads it, replaces it and
    # deletes it, with list reads and queries between. The database is shared, so every
    # answer is exact whichever replica gives it.
    CYCLE = ("POST", "GET own", "GET list", "PUT own", "GET db", "DELETE own")

    def _client(self, n):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        cycle = self.CYCLE
        step = 0
        mine = None
        while not self._stop.is_set():
            what = cycle[step % len(cycle)]
            step += 1
            own = "/api/items/%s" % mine
            method, path, doc, want = {
                "POST": ("POST", "/api/items", {"name": "load %d-%d" % (n, step), "price": 1}, 201),
                "GET own": ("GET", own, None, 200),
                "PUT own": ("PUT", own, {"name": "load put", "price": 2}, 200),
                "DELETE own": ("DELETE", own, None, 204),
                "GET list": ("GET", "/api/items?limit=5", None, 200),
                "GET db": ("GET", "/api/db?delay_ms=5", None, 200),
            }[what]
            try:
                status, _, body = request(conn, method, path, doc, "load-%d-%d" % (n, step))
            except (OSError, http.client.HTTPException) as e:
                self._fail("%s: %s: %s at %.2f s" % (what, type(e).__name__, e, time.monotonic() - self.started))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
                continue
            if status != want:
                self._fail("%s %s: %d %r at %.2f s" % (method, path, status, body, time.monotonic() - self.started))
            elif what == "POST":
                mine = body["id"]
            with self._lock:
                self.counts[what] = self.counts.get(what, 0) + 1
        conn.close()

    def _fail(self, what):
        with self._lock:
            self.failures.append(what)


if __name__ == "__main__":
    unittest.main()
