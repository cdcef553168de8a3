"""The database routes against the real binary: concurrency, limits, shutdown.

By default against the simulated database. With COROUTE_TEST_PG set to a PostgreSQL
URL (``pgserver.py run -- python3 test_db.py`` sets it) every server gets ``--db URL``
and the same expectations hold against PostgreSQL; what only the simulated database
has (injected failures) is skipped there.
"""

import json
import os
import threading
import time
import unittest

from harness import Server, build_request, fetch_all

PG_URL = os.environ.get("COROUTE_TEST_PG")


def db_server(*args, pool=None):
    """A Server on the database under test. `pool`: the --db-pool this test needs on
    PostgreSQL, where the default (16) would queue a burst that sim serves at once."""
    extra = []
    if PG_URL:
        extra = ["--db", PG_URL]
        if pool is not None and "--db-pool" not in args:
            extra += ["--db-pool", str(pool)]
    return Server(*extra, *args)


def sim_only(test):
    return unittest.skipIf(PG_URL, "the simulated database's own option")(test)


class DatabaseRoutes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = db_server("--threads", "2", "--access-log", "off", pool=64).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        if code != 0:
            raise AssertionError("server exited with %r\n%s" % (code, cls.server.output()))

    def test_one_query_reports_source_timing_and_items(self):
        r = self.server.request("GET", "/api/db?delay_ms=50")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "application/json")
        body = r.json()
        self.assertEqual(body["source"], "database")
        self.assertGreaterEqual(body["elapsed_ms"], 49)
        # The first ten rows: the five seeded ones, or on a shared PostgreSQL whatever
        # other tests left too.
        total = self.server.request("GET", "/api/items").json()["total"]
        self.assertEqual(len(body["items"]), min(total, 10) if PG_URL else 5)
        self.assertEqual(body["items"][0]["name"], "Widget")

    def test_bad_delay_is_a_problem_naming_the_parameter(self):
        r = self.server.request("GET", "/api/db?delay_ms=20000")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.header("content-type"), "application/problem+json")
        self.assertIn("delay_ms", r.json()["detail"])

    def test_fifty_concurrent_slow_requests_on_two_threads_overlap(self):
        # Sequentially: 50 x 0.3 s = 15 s. Overlapped: about 0.3 s plus connection set-up.
        responses, took = fetch_all(self.server, ["/api/db?delay_ms=300"] * 50)
        self.assertTrue(all(r.status == 200 for r in responses), [r.status for r in responses])
        self.assertLess(took, 3.0, "50 requests of 300 ms took %.2f s" % took)

    def test_parallel_queries_take_about_one_delay(self):
        r = self.server.request("GET", "/api/db/parallel?queries=20&delay_ms=200")
        self.assertEqual(r.status, 200)
        body = r.json()
        self.assertEqual(body["queries"], 20)
        self.assertEqual(body["sequential_estimate_ms"], 4000)
        self.assertGreaterEqual(body["elapsed_ms"], 199)
        self.assertLess(body["elapsed_ms"], 400)

    def test_items_round_trip(self):
        headers = {"Content-Type": "application/json"}
        made = self.server.request("POST", "/api/items", headers, json.dumps({"name": "Bolt", "price": 2.5}))
        self.assertEqual(made.status, 201)
        location = made.header("location")
        self.assertRegex(location, r"^/api/items/\d+$")
        self.assertEqual(self.server.request("GET", location).json()["name"], "Bolt")
        put = self.server.request("PUT", location, headers, json.dumps({"name": "Nut", "price": 1}))
        self.assertEqual(put.json()["name"], "Nut")
        self.assertEqual(self.server.request("DELETE", location).status, 204)
        gone = self.server.request("GET", location)
        self.assertEqual(gone.status, 404)
        self.assertEqual(gone.json()["title"], "Not Found")

    def test_item_errors_are_problems(self):
        headers = {"Content-Type": "application/json"}
        bad = self.server.request("POST", "/api/items", headers, json.dumps({"name": "", "price": "x"}))
        self.assertEqual(bad.status, 422)
        self.assertEqual([e["field"] for e in bad.json()["errors"]], ["name", "price"])
        self.assertEqual(self.server.request("POST", "/api/items", {"Content-Type": "text/plain"}, "{}").status, 415)
        self.assertEqual(self.server.request("POST", "/api/items", headers, "{nope").status, 400)
        patch = self.server.request("PATCH", "/api/items/1", headers, "{}")
        self.assertEqual(patch.status, 405)
        self.assertEqual(patch.header("allow"), "GET, HEAD, PUT, DELETE, OPTIONS")
        # Declared over the 1 MiB limit: answered at once, before any body byte is sent.
        big = self.server.request("POST", "/api/items", {"Content-Type": "application/json",
                                                          "Content-Length": str(2 * 1024 * 1024)})
        self.assertEqual(big.status, 413)
        self.assertEqual(big.header("content-type"), "application/problem+json")

    def test_a_body_without_a_content_type_is_415_and_the_connection_is_kept(self):
        item = json.dumps({"name": "Bolt", "price": 2.5})
        for method, target in (("POST", "/api/items"), ("PUT", "/api/items/1"), ("POST", "/api/jobs")):
            with self.subTest(request=method + " " + target), self.server.connect() as c:
                c.send(build_request(method, target, body=item if target != "/api/jobs" else '{"queries": 1}'))
                res = c.read_response()
                self.assertEqual(res.status, 415, res)
                self.assertEqual(res.header("content-type"), "application/problem+json")
                self.assertIn("must be application/json", res.json()["detail"])
                self.assertNotEqual((res.header("connection") or "").lower(), "close", res)
                c.send(build_request("GET", "/healthz"))
                self.assertEqual(c.read_response().status, 200)
        # Nothing was written: item 1 is as seeded.
        self.assertEqual(self.server.request("GET", "/api/items/1").json()["name"], "Widget")

    def test_a_plus_in_a_query_value_is_read_as_a_space(self):
        # The 400 quotes the value as the server read it.
        for query, read in (("delay_ms=1+2", "1 2"), ("delay_ms=+5", " 5"), ("delay_ms=%2B5", "+5"),
                            ("delay_ms=a+%2B+b", "a + b")):
            with self.subTest(query=query):
                r = self.server.request("GET", "/api/db?" + query)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json()["detail"], "delay_ms must be an integer from 0 to 10000, not '%s'" % read)


class DatabaseOptions(unittest.TestCase):
    def test_pool_bound_queues_queries_without_failing_them(self):
        with db_server("--db-pool", "2", "--access-log", "off") as s:
            responses, took = fetch_all(s, ["/api/db?delay_ms=200"] * 6)
            self.assertTrue(all(r.status == 200 for r in responses))
            # Three rounds of two queries.
            self.assertGreaterEqual(took, 0.59)

    @sim_only
    def test_injected_failures_are_503_problems(self):
        with Server("--db-fail-rate", "1", "--db-latency-ms", "5", "--access-log", "off") as s:
            r = s.request("GET", "/api/db")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.header("retry-after"), "1")
            self.assertIn("unavailable", r.json()["detail"])
            self.assertEqual(s.request("GET", "/healthz").status, 200)

    def test_a_query_past_the_request_deadline_is_cut_to_504(self):
        with db_server("--request-timeout-ms", "300", "--access-log", "off") as s:
            start = time.monotonic()
            r = s.request("GET", "/api/db?delay_ms=5000")
            took = time.monotonic() - start
            self.assertEqual(r.status, 504)
            self.assertEqual(r.header("content-type"), "application/problem+json")
            self.assertGreaterEqual(took, 0.29)
            self.assertLess(took, 3.0)

    def test_a_client_that_leaves_cancels_its_query(self):
        with db_server("--cancel-on-disconnect", "on") as s:
            c = s.connect()
            c.send(b"GET /api/db?delay_ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)  # the query is in its 5 s wait by now
            c.close()
            closed = time.monotonic()
            line = s.wait_for_stdout(lambda l: '"GET /api/db?delay_ms=5000" 499' in l, timeout=3.0)
            self.assertIsNotNone(line, s.output())
            self.assertLess(time.monotonic() - closed, 3.0)
            self.assertEqual(s.request("GET", "/healthz").status, 200)

    def test_sigterm_lets_a_slow_request_finish_before_exiting_zero(self):
        s = db_server("--access-log", "off").start()
        try:
            result = {}

            def slow():
                result["response"] = s.request("GET", "/api/db?delay_ms=1500", timeout=10)
                result["at"] = time.monotonic()

            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.3)  # the request is in its 1.5 s wait by now
            s.signal()
            code = s.wait(timeout=10)
            exited = time.monotonic()
            t.join(5)
            self.assertEqual(code, 0)
            self.assertEqual(result["response"].status, 200)
            self.assertEqual(result["response"].json()["source"], "database")
            self.assertEqual(result["response"].header("connection"), "close")
            self.assertLessEqual(result["at"], exited)
        finally:
            if s.proc.poll() is None:
                s.proc.kill()


if __name__ == "__main__":
    unittest.main(verbosity=2)
