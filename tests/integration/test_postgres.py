"""coroute-server on a real PostgreSQL 15 (pgserver.py): persistence, processes that
share one database, the pool, cancellation at the deadline, outages, injection.

One throw-away server is shared by the cases that leave it running, each case on a
database of its own (so each starts from the schema and the five seeded rows); the
cases that stop and start PostgreSQL have a second server.
"""

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EventStream, Server, fetch_all, problem_fields, run_cli  # noqa: E402
from pgserver import PgServer  # noqa: E402

JSON = {"Content-Type": "application/json"}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
FIELDS = {"id", "name", "price", "created_at", "updated_at"}


def build_dir():
    return os.environ.get("COROUTE_BUILD_DIR") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build")


shared = None  # the PgServer the cases that leave it running share


def setUpModule():
    global shared
    shared = PgServer(os.path.join(build_dir(), "pg", "postgres-shared")).start()


def tearDownModule():
    if shared is not None:
        shared.close()


def fresh_database(pg, name):
    """A new, empty database on `pg`; its URL. coroute makes the schema and seeds it."""
    pg.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name, dbname="postgres")
    pg.psql('CREATE DATABASE "%s"' % name, dbname="postgres")
    return pg.url_for(name)


def coroute_backends(pg, dbname, where=""):
    """How many of coroute's connections to `dbname` the server has now."""
    return int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'coroute' "
                       "AND datname = '%s' %s" % (dbname, where), dbname="postgres"))


def post(srv, doc, raw=None):
    body = raw if raw is not None else json.dumps(doc)
    return srv.request("POST", "/api/items", JSON, body)


def put(srv, item_id, doc):
    return srv.request("PUT", "/api/items/%s" % item_id, JSON, json.dumps(doc))


def stop_ok(test, srv):
    code = srv.stop()
    test.assertEqual(code, 0, srv.output())


def wait_until(predicate, timeout, step=0.05):
    """predicate()'s first true value within `timeout`, else its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


class Persistence(unittest.TestCase):
    def test_an_item_survives_a_restart_of_coroute_with_the_same_fields(self):
        url = fresh_database(shared, "persist")
        with Server("--db", url, "--access-log", "off") as a:
            made = post(a, {"name": "Anchor", "price": 12.5})
            self.assertEqual(made.status, 201, made)
            item = made.json()
            replaced = put(a, item["id"], {"name": "Anchor v2", "price": 13})
            self.assertEqual(replaced.status, 200, replaced)
            item = replaced.json()
            stop_ok(self, a)
        with Server("--db", url, "--access-log", "off") as b:
            got = b.request("GET", "/api/items/%d" % item["id"])
            self.assertEqual(got.status, 200, got)
            self.assertEqual(got.json(), item)
            page = b.request("GET", "/api/items?limit=100").json()
            self.assertEqual(page["total"], 6)  # the five seeded once, not again, and ours
            self.assertEqual([i["name"] for i in page["items"]][:5],
                             ["Widget", "Gadget", "Sprocket", "Gizmo", "Doohickey"])
            self.assertEqual(b.request("DELETE", "/api/items/%d" % item["id"]).status, 204)
            stop_ok(self, b)
        with Server("--db", url, "--access-log", "off") as c:
            self.assertEqual(c.request("GET", "/api/items/%d" % item["id"]).status, 404)
            self.assertEqual(c.request("GET", "/api/items").json()["total"], 5)
            stop_ok(self, c)

    def test_item_json_has_the_fields_and_formats_of_the_simulated_database(self):
        url = fresh_database(shared, "format")
        prices = [0, 0.1, 2, 9.99, 1e-7, 12345678.9, 1.5e300]
        with Server("--db", url, "--access-log", "off") as pg, Server("--access-log", "off") as sim:
            for seeded in (1, 5):
                a = pg.request("GET", "/api/items/%d" % seeded).json()
                b = sim.request("GET", "/api/items/%d" % seeded).json()
                self.assertEqual(set(a), FIELDS)
                self.assertEqual({k: type(v) for k, v in a.items()}, {k: type(v) for k, v in b.items()})
                self.assertEqual((a["id"], a["name"], a["price"]), (b["id"], b["name"], b["price"]))
            now = datetime.datetime.now(datetime.timezone.utc)
            for price in prices:
                doc = {"name": "Format %r" % price, "price": price}
                rp, rs = post(pg, doc), post(sim, doc)
                self.assertEqual((rp.status, rs.status), (201, 201), (rp, rs))
                self.assertEqual(rp.header("location"), "/api/items/%d" % rp.json()["id"])
                # The price as the client sees it, byte for byte, then as stored and read back.
                self.assertEqual(price_text(rp.body), price_text(rs.body), (rp.body, rs.body))
                again = pg.request("GET", rp.header("location"))
                self.assertEqual(price_text(again.body), price_text(rs.body), again.body)
                item = again.json()
                self.assertEqual(set(item), FIELDS)
                self.assertEqual(item["name"], doc["name"])
                for key in ("created_at", "updated_at"):
                    self.assertRegex(item[key], TIMESTAMP)
                    at = datetime.datetime.strptime(item[key], "%Y-%m-%dT%H:%M:%SZ").replace(
                        tzinfo=datetime.timezone.utc)
                    self.assertLess(abs((at - now).total_seconds()), 120, item)
            replaced = put(pg, item["id"], {"name": "Later", "price": 1}).json()
            self.assertEqual(replaced["created_at"], item["created_at"])
            self.assertGreaterEqual(replaced["updated_at"], item["updated_at"])
            page_pg = pg.request("GET", "/api/items?limit=2&offset=1").json()
            page_sim = sim.request("GET", "/api/items?limit=2&offset=1").json()
            self.assertEqual(set(page_pg), set(page_sim))
            self.assertEqual((page_pg["total"], page_pg["limit"], page_pg["offset"]),
                             (page_sim["total"], page_sim["limit"], page_sim["offset"]))
            self.assertEqual([i["id"] for i in page_pg["items"]], [2, 3])
            # Past the end: no items, the total still counted.
            past = pg.request("GET", "/api/items?limit=5&offset=1000").json()
            self.assertEqual((past["items"], past["total"]), ([], page_pg["total"]))
            stop_ok(self, pg)
            stop_ok(self, sim)


def price_text(body):
    m = re.search(rb'"price":([^,}]+)', body)
    return m.group(1) if m else None


class TwoProcesses(unittest.TestCase):
    def assert_event(self, stream, op, item):
        ev = stream.next_event(timeout=5)
        self.assertEqual(ev.event, "item", ev)
        doc = ev.json()
        self.assertEqual(doc["op"], op, doc)
        self.assertEqual(doc["item"], item, doc)

    def test_two_servers_on_one_database_see_each_others_writes_and_events(self):
        url = fresh_database(shared, "shared")
        with Server("--db", url, "--access-log", "off") as a, Server("--db", url, "--access-log", "off") as b:
            # Both feeds listen once the database is ready.
            for s in (a, b):
                self.assertTrue(wait_until(lambda: s.request("GET", "/readyz").status == 200, 5), s.output())
            with EventStream(a.port) as ea, EventStream(b.port) as eb:
                for es in (ea, eb):
                    es.open()
                    es.wait_comment("connected")
                made = post(a, {"name": "From A", "price": 3.5})
                self.assertEqual(made.status, 201, made)
                item = made.json()
                seen = b.request("GET", "/api/items/%d" % item["id"])
                self.assertEqual(seen.status, 200, seen)
                self.assertEqual(seen.json(), item)
                self.assert_event(eb, "created", item)
                self.assert_event(ea, "created", item)

                changed = put(b, item["id"], {"name": "Changed by B", "price": 4})
                self.assertEqual(changed.status, 200, changed)
                self.assertEqual(a.request("GET", "/api/items/%d" % item["id"]).json(), changed.json())
                self.assert_event(ea, "updated", changed.json())
                self.assert_event(eb, "updated", changed.json())

                # A change made with psql, through no coroute at all.
                row = shared.psql("INSERT INTO items (name, price) VALUES ('From psql', 7.25) RETURNING id",
                                  dbname="shared")
                other = a.request("GET", "/api/items/%s" % row).json()
                self.assertEqual(other["name"], "From psql")
                self.assert_event(ea, "created", other)
                self.assert_event(eb, "created", other)
                shared.psql("DELETE FROM items WHERE id = %s" % row, dbname="shared")
                self.assert_event(ea, "deleted", {"id": int(row)})
                self.assert_event(eb, "deleted", {"id": int(row)})

                self.assertEqual(a.request("DELETE", "/api/items/%d" % item["id"]).status, 204)
                self.assert_event(eb, "deleted", {"id": item["id"]})
                self.assert_event(ea, "deleted", {"id": item["id"]})
                self.assertEqual(b.request("GET", "/api/items/%d" % item["id"]).status, 404)
                # Each change came once to each stream, not once more from the process that made it.
                self.assertEqual(ea.events_within(0.3), [])
                self.assertEqual(eb.events_within(0.01), [])
            stop_ok(self, a)
            stop_ok(self, b)


class Concurrency(unittest.TestCase):
    def test_fifty_slow_queries_on_two_threads_take_about_one_delay(self):
        url = fresh_database(shared, "concurrency")
        with Server("--db", url, "--threads", "2", "--db-pool", "64", "--access-log", "off") as s:
            # Sequentially: 50 x 0.3 s = 15 s. Each pg_sleep holds a connection, not a thread.
            responses, took = fetch_all(s, ["/api/db?delay_ms=300"] * 50)
            self.assertEqual([r.status for r in responses], [200] * 50)
            self.assertTrue(all(r.json()["elapsed_ms"] >= 299 for r in responses))
            self.assertLess(took, 3.0, "50 requests of 300 ms took %.2f s" % took)
            self.assertGreaterEqual(took, 0.3)
            stop_ok(self, s)

    def test_the_deadline_cancels_the_sleep_on_the_server_and_the_connection_serves_again(self):
        url = fresh_database(shared, "deadline")
        with Server("--db", url, "--db-pool", "1", "--request-timeout-ms", "500", "--access-log", "off") as s:
            self.assertEqual(s.request("GET", "/api/items").status, 200)
            sleeping = "AND state = 'active' AND query LIKE '%pg_sleep%'"
            got = {}

            def slow():
                start = time.monotonic()
                got["response"] = s.request("GET", "/api/db?delay_ms=5000", timeout=10)
                got["took"] = time.monotonic() - start

            t = threading.Thread(target=slow)
            t.start()
            # The sleep runs on the server (the check can fail: it sees the query first).
            self.assertTrue(wait_until(lambda: coroute_backends(shared, "deadline", sleeping) == 1, 2.0, 0.02))
            t.join(10)
            r = got["response"]
            self.assertEqual(r.status, 504, r)
            self.assertEqual(problem_fields(r)["status"], 504)
            self.assertGreaterEqual(got["took"], 0.45)
            self.assertLess(got["took"], 2.0)
            gone_by = time.monotonic() + 2.0
            self.assertTrue(wait_until(lambda: coroute_backends(shared, "deadline", sleeping) == 0, 2.0, 0.02),
                            shared.psql("SELECT state, query FROM pg_stat_activity WHERE application_name = "
                                        "'coroute'", dbname="postgres"))
            self.assertLessEqual(time.monotonic(), gone_by + 0.1)
            # One connection in the pool, and it (or its replacement) serves the next queries.
            for _ in range(3):
                self.assertEqual(s.request("GET", "/api/items?limit=1").status, 200)
            within = s.request("GET", "/api/db?delay_ms=200")
            self.assertEqual(within.status, 200, within)  # the deadline does not fire early
            self.assertLessEqual(coroute_backends(shared, "deadline"), 2)  # the pool + the listener
            stop_ok(self, s)


    def test_queries_cut_short_in_a_fan_out_or_a_cancelled_job_give_their_connections_back(self):
        # /api/db/parallel's queries and a job's run in coroutines of their own, which
        # Asio lets throw once cancelled: that once cost the pool a connection each.
        url = fresh_database(shared, "fanout")
        with Server("--db", url, "--db-pool", "2", "--request-timeout-ms", "800", "--access-log", "off") as s:
            for _ in range(2):
                r = s.request("GET", "/api/db/parallel?queries=2&delay_ms=3000")
                self.assertEqual(r.status, 504, r)
                self.assertEqual(s.request("GET", "/api/items?limit=1").status, 200)
            job = s.request("POST", "/api/jobs", JSON, json.dumps({"queries": 2, "delay_ms": 3000, "parallel": 2,
                                                                   "cpu_ms": 0}))
            self.assertEqual(job.status, 202, job)
            location = job.header("location")
            self.assertTrue(wait_until(lambda: coroute_backends(shared, "fanout", "AND state = 'active' AND "
                                                                 "query LIKE '%pg_sleep%'") == 2, 2.0, 0.02))
            self.assertEqual(s.request("DELETE", location).status, 202)
            self.assertTrue(wait_until(lambda: s.request("GET", location).json()["state"] == "cancelled", 2))
            for target in ("/api/items?limit=1", "/api/db?delay_ms=100", "/api/db/parallel?queries=2&delay_ms=100"):
                r = s.request("GET", target)
                self.assertEqual(r.status, 200, (target, r))
            self.assertTrue(wait_until(lambda: coroute_backends(shared, "fanout", "AND state = 'active' AND "
                                                                 "query LIKE '%pg_sleep%'") == 0, 2.0))
            self.assertLessEqual(coroute_backends(shared, "fanout"), 3)
            stop_ok(self, s)


class Injection(unittest.TestCase):
    NAMES = [
        "Robert'); DROP TABLE items; --",
        "'; DROP TABLE items; --",
        "' OR '1'='1",
        '"; DROP TABLE items; --',
        "\\",
        "back\\slash\\' and \\\\",
        "$1",
        "$1::text, $2",
        "%s %d %n",
        "E'\\x41'",
        "/* comment */ --",
        "line\nbreak\r\ttab",
        "ünïcødé ✓ 漢字 😀",
        "\u202eright-to-left",
        "$$dollar$$ $tag$ quoted $tag$",
        "x" * 100,
        "😀" * 100,  # 100 characters, 400 bytes
    ]

    def stored_name(self, item_id):
        out = shared.psql("SELECT encode(convert_to(name, 'UTF8'), 'hex') FROM items WHERE id = %d" % item_id,
                          dbname="inject")
        return bytes.fromhex(out).decode("utf-8")

    def test_injection_through_every_parameter_is_stored_as_data_or_rejected(self):
        url = fresh_database(shared, "inject")
        with Server("--db", url, "--access-log", "off") as s:
            made = []
            for name in self.NAMES:
                r = post(s, {"name": name, "price": 1})
                self.assertEqual(r.status, 201, (name, r))
                item = r.json()
                self.assertEqual(item["name"], name)
                self.assertEqual(self.stored_name(item["id"]), name)
                self.assertEqual(s.request("GET", "/api/items/%d" % item["id"]).json()["name"], name)
                made.append(item["id"])
            # PUT stores the same names over a seeded row, verbatim.
            for name in self.NAMES:
                r = put(s, 1, {"name": name, "price": 2})
                self.assertEqual(r.status, 200, (name, r))
                self.assertEqual(r.json()["name"], name)
                self.assertEqual(self.stored_name(1), name)

            rejected = [
                {"name": "x" * 101, "price": 1},
                {"name": "😀" * 101, "price": 1},
                {"name": "nul\u0000byte", "price": 1},
                {"name": "", "price": 1},
                {"name": "ok", "price": "1; DROP TABLE items"},
                {"name": "ok", "price": "1"},
                {"name": "ok", "price": -1},
                {"name": ["'; DROP TABLE items; --"], "price": 1},
                {"name": "ok", "price": 1, "id": "1; DROP TABLE items"},
                {"name": "ok", "price": 1, "'; DROP TABLE items; --": 1},
            ]
            for doc in rejected:
                for r in (post(s, doc), put(s, 2, doc)):
                    self.assertEqual(r.status, 422, (doc, r))
            for raw in ['{"name":"\\ud800","price":1}', '{"name":"ok","price":1e999}',
                        '{"name":"ok","price":NaN}', "'; DROP TABLE items; --"]:
                for r in (post(s, None, raw), s.request("PUT", "/api/items/2", JSON, raw)):
                    self.assertTrue(400 <= r.status < 500, (raw, r))

            q = urllib.parse.quote
            targets = [
                "/api/items/" + q("1; DROP TABLE items"),
                "/api/items/" + q("1 OR 1=1"),
                "/api/items/" + q("1'--"),
                "/api/items/1'--",
                "/api/items/" + q("$1"),
                "/api/items/-1",
                "/api/items/0",
                "/api/items/1.5",
                "/api/items/0x10",
                "/api/items/18446744073709551616",
                "/api/items/9223372036854775808",  # a uint64, past bigint: not found
                "/api/items/99999999999",
                "/api/items?limit=" + q("1; DROP TABLE items"),
                "/api/items?limit=" + q("1 OR 1=1"),
                "/api/items?offset=" + q("0'"),
                "/api/items?offset=" + q("0; DELETE FROM items"),
                "/api/items?delay_ms=" + q("0); DROP TABLE items; --"),
                "/api/db?delay_ms=" + q("$1"),
                "/api/db/parallel?queries=" + q("1; DROP TABLE items"),
                "/api/items/1?delay_ms=" + q("1'"),
            ]
            for target in targets:
                for r in (s.request("GET", target), s.request("DELETE", target),
                          s.request("PUT", target, JSON, json.dumps({"name": "x", "price": 1}))):
                    self.assertTrue(400 <= r.status < 500, (target, r))

            # The table is whole: every row we made, the seeded ones, and nothing else.
            self.assertEqual(shared.psql("SELECT to_regclass('items') IS NOT NULL", dbname="inject"), "t")
            self.assertEqual(int(shared.psql("SELECT count(*) FROM items", dbname="inject")), 5 + len(made))
            page = s.request("GET", "/api/items?limit=100").json()
            self.assertEqual(page["total"], 5 + len(made))
            self.assertEqual([i["id"] for i in page["items"]], [1, 2, 3, 4, 5] + made)
            self.assertEqual(page["items"][1]["name"], "Gadget")
            stop_ok(self, s)


class Outages(unittest.TestCase):
    """Cases that stop PostgreSQL: a server of their own, running again after each."""

    pg = None

    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer(os.path.join(build_dir(), "pg", "postgres-outage")).start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()

    def tearDown(self):
        self.pg.start()

    def assert_unavailable(self, r):
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.header("retry-after"), "1", r)
        return problem_fields(r)["detail"]

    def test_a_database_stopped_under_load_costs_503s_while_down_and_nothing_after(self):
        url = fresh_database(self.pg, "outage")
        pool = 4
        s = Server("--db", url, "--db-pool", str(pool), "--threads", "2", "--access-log", "off").start()
        try:
            self.assertTrue(wait_until(lambda: s.request("GET", "/readyz").status == 200, 5), s.output())
            log = []  # (monotonic time, status, Retry-After, Content-Type)
            lock = threading.Lock()
            running = threading.Event()
            running.set()

            def client():
                while running.is_set():
                    # Classed by when it was sent: one sent before the stop may be answered after it.
                    sent = time.monotonic()
                    try:
                        r = s.request("GET", "/api/items?limit=2", timeout=10)
                        entry = (sent, r.status, r.header("retry-after"), r.header("content-type"))
                    except Exception as e:  # a crash or a hang shows here
                        entry = (sent, repr(e), None, None)
                    with lock:
                        log.append(entry)
                    time.sleep(0.005)

            threads = [threading.Thread(target=client) for _ in range(4)]
            for t in threads:
                t.start()
            try:
                time.sleep(0.5)
                stopping = time.monotonic()
                self.pg.stop()
                stopped = time.monotonic()
                # Down: the database routes and /readyz say so; the process itself is fine.
                self.assertTrue(wait_until(lambda: s.request("GET", "/readyz").status == 503, 3))
                detail = self.assert_unavailable(s.request("GET", "/readyz"))
                self.assertIn("unreachable", detail)
                self.assert_unavailable(s.request("GET", "/api/items"))
                self.assertEqual(s.request("GET", "/healthz").status, 200)
                time.sleep(1.0)
                # The server may reconnect before start() returns, so the outage ends when it begins.
                restarting = time.monotonic()
                self.pg.start()
                back = time.monotonic()
                self.assertTrue(wait_until(lambda: s.request("GET", "/readyz").status == 200, 8),
                                s.request("GET", "/readyz"))
                time.sleep(1.0)
            finally:
                running.clear()
                for t in threads:
                    t.join(15)
            ended = time.monotonic()

            statuses = {e[1] for e in log}
            self.assertLessEqual(statuses, {200, 503}, [e for e in log if e[1] not in (200, 503)][:5])
            before = [e for e in log if e[0] < stopping - 0.2]
            during = [e for e in log if stopped + 0.2 <= e[0] < restarting]
            self.assertTrue(before and all(e[1] == 200 for e in before), before[-5:])
            self.assertTrue(during and all(e[1] == 503 for e in during), [e for e in during if e[1] != 503][:5])
            for e in log:
                if e[1] == 503:
                    self.assertEqual((e[2], e[3]), ("1", "application/problem+json"), e)
            first_ok = min((e[0] for e in log if e[0] >= back and e[1] == 200), default=None)
            self.assertIsNotNone(first_ok, "no 200 after the database came back")
            self.assertLess(first_ok - back, 6.0)
            last = [e for e in log if e[0] >= ended - 0.8]
            self.assertTrue(last and all(e[1] == 200 for e in last), [e for e in last if e[1] != 200][:5])

            self.assertIsNone(s.proc.poll(), s.output())
            self.assertEqual(s.request("GET", "/healthz").status, 200)
            # What the outage left: no more connections than the pool and the listener.
            self.assertLessEqual(coroute_backends(self.pg, "outage"), pool + 1)
            self.assertGreaterEqual(coroute_backends(self.pg, "outage"), 1)
            stop_ok(self, s)
        finally:
            if s.proc.poll() is None:
                s.proc.kill()

    def test_a_server_started_with_the_database_unreachable_serves_503s_then_recovers(self):
        url = fresh_database(self.pg, "startup")
        self.pg.stop()  # its socket directory stays, with no server behind it
        with Server("--db", url, "--db-pool", "2", "--access-log", "off") as s:
            self.assertIsNotNone(s.wait_for_stdout(lambda l: l.startswith("database: PostgreSQL")), s.output())
            self.assertTrue(wait_until(lambda: "unreachable" in s.request("GET", "/readyz").body.decode(), 3),
                            s.output())
            detail = self.assert_unavailable(s.request("GET", "/readyz"))
            self.assertIn(self.pg.sockdir, detail)
            self.assert_unavailable(s.request("GET", "/api/items"))
            self.assert_unavailable(s.request("GET", "/api/db?delay_ms=0"))
            self.assertEqual(s.request("GET", "/healthz").status, 200)
            self.pg.start()
            back = time.monotonic()
            self.assertTrue(wait_until(lambda: s.request("GET", "/api/items").status == 200, 8), s.output())
            self.assertLess(time.monotonic() - back, 8)
            self.assertTrue(wait_until(lambda: s.request("GET", "/readyz").status == 200, 3))
            self.assertEqual(s.request("GET", "/api/items").json()["total"], 5)
            stop_ok(self, s)

    def test_sigterm_while_the_database_is_down_exits_zero(self):
        url = fresh_database(self.pg, "down")
        self.pg.stop()
        s = Server("--db", url, "--access-log", "off").start()
        try:
            self.assert_unavailable(s.request("GET", "/api/items"))
            s.signal(signal.SIGTERM)
            self.assertEqual(s.wait(timeout=10), 0, s.output())
        finally:
            if s.proc.poll() is None:
                s.proc.kill()


class Options(unittest.TestCase):
    def test_a_bad_db_url_exits_2_naming_the_flag(self):
        for url in ["not a url", "postgresql://h/db?nosuch=1", "postgresql://%zz@/db", "mysql://x",
                    "postgresql://127.0.0.1:abc/db", "postgresql://h:99999999/db", "postgresql://h:0/db",
                    "host=/tmp port=5432,x"]:
            code, out, err = run_cli("--port", "0", "--db", url)
            self.assertEqual(code, 2, (url, out, err))
            self.assertIn("--db", err)
            self.assertNotIn("listening", out)
        # The same from the environment, and ports that are fine (one per host, or none).
        env = {k: v for k, v in os.environ.items() if not k.startswith("COROUTE_")}
        p = subprocess.run([os.environ["COROUTE_SERVER"], "--port", "0"], capture_output=True, text=True,
                           timeout=10, env={**env, "COROUTE_DB": "not a url"})
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("--db", p.stderr)
        for url in ["postgresql://h:5432,h2:6543/db", "postgresql://h,h2:/db", "host=/tmp port=1"]:
            code, out, err = run_cli("--port", "0", "--db", url, "--version")
            self.assertEqual(code, 0, (url, out, err))

    def test_sim_only_options_with_a_postgresql_url_exit_2(self):
        url = shared.url
        for extra in (["--db-fail-rate", "0.5"], ["--db-jitter-ms", "10"], ["--db-pool", "0"]):
            code, out, err = run_cli("--port", "0", "--db", url, *extra)
            self.assertEqual(code, 2, (extra, out, err))
            self.assertIn(extra[0], err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
