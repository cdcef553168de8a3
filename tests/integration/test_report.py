"""GET /api/report/{id}, the route the README's "Add a route" tutorial builds
(src/app/report_routes.cpp): the database and the HTTPS client under the request's
deadline, JSON out, a problem for bad input."""

import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Server, SharedServerTestCase, problem_fields  # noqa: E402
from test_external import Upstream, make_cert  # noqa: E402


class Report(SharedServerTestCase):
    server_args = ("--access-log", "off", "--db-latency-ms", "20", "--upstream-latency-ms", "20")

    def test_an_item_and_the_upstream_answer_as_json(self):
        res = self.srv.request("GET", "/api/report/1")
        self.assertEqual(res.status, 200, res)
        self.assertTrue(res.header("Content-Type").startswith("application/json"), res)
        body = res.json()
        self.assertEqual(body["item"]["id"], 1)
        self.assertEqual(body["item"]["name"], "Widget")
        self.assertEqual(body["todo"]["id"], 1)
        self.assertEqual(body["todo"]["title"], "delectus aut autem")

    def test_an_id_that_is_not_a_number_is_a_400_that_names_it(self):
        res = self.srv.request("GET", "/api/report/abc")
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.header("Content-Type"), "application/problem+json")
        self.assertIn("id", problem_fields(res)["detail"])
        self.assertIn("abc", problem_fields(res)["detail"])

    def test_a_bad_delay_is_a_400_that_names_it(self):
        res = self.srv.request("GET", "/api/report/1?delay_ms=x")
        self.assertEqual(res.status, 400, res)
        self.assertIn("delay_ms", problem_fields(res)["detail"])

    def test_an_unknown_item_is_a_404(self):
        res = self.srv.request("GET", "/api/report/999")
        self.assertEqual(res.status, 404, res)
        self.assertEqual(problem_fields(res)["detail"], "no item 999")

    def test_item_0_is_a_404_here_where_the_items_route_refuses_it_with_a_400(self):
        # The report reads {id} as any number; /api/items/{id} wants a positive one.
        res = self.srv.request("GET", "/api/report/0")
        self.assertEqual(res.status, 404, res)
        self.assertEqual(problem_fields(res)["detail"], "no item 0")
        res = self.srv.request("GET", "/api/items/0")
        self.assertEqual(res.status, 400, res)
        self.assertEqual(problem_fields(res)["detail"], "item id must be a positive integer, not '0'")


class ReportLimits(unittest.TestCase):
    def test_a_database_wait_past_the_deadline_is_a_504_at_the_deadline(self):
        with Server("--access-log", "off", "--request-timeout-ms", "300") as srv:
            start = time.monotonic()
            res = srv.request("GET", "/api/report/1?delay_ms=5000", timeout=5)
            took = time.monotonic() - start
            self.assertEqual(res.status, 504, res)
            self.assertLess(took, 2.0)
            self.assertGreaterEqual(took, 0.29)
            self.assertEqual(srv.stop(), 0)

    def test_a_slow_upstream_is_cut_at_the_deadline(self):
        with Server("--access-log", "off", "--request-timeout-ms", "300", "--db-latency-ms", "0",
                    "--upstream-latency-ms", "5000") as srv:
            start = time.monotonic()
            res = srv.request("GET", "/api/report/1", timeout=5)
            self.assertEqual(res.status, 504, res)
            self.assertLess(time.monotonic() - start, 2.0)
            self.assertEqual(srv.stop(), 0)

    def test_an_unreachable_upstream_is_a_502_that_says_why(self):
        with Server("--access-log", "off", "--db-latency-ms", "0", "--upstream", "http://127.0.0.1:1/x") as srv:
            res = srv.request("GET", "/api/report/1")
            self.assertEqual(res.status, 502, res)
            self.assertTrue(problem_fields(res)["detail"].startswith("upstream http://127.0.0.1:1/x: connect: "), res)
            self.assertEqual(srv.stop(), 0)



class ReportUpstreamAnswers(unittest.TestCase):
    """The route against a TLS test upstream: only a 200 with a JSON body fills the todo."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert, key = make_cert(cls.tmp.name, "upstream", "IP:127.0.0.1")
        cls.upstream = Upstream(cls.cert, key)

    @classmethod
    def tearDownClass(cls):
        cls.upstream.close()
        cls.tmp.cleanup()

    def report(self, path):
        """GET /api/report/1 with the upstream at `path`, then /healthz; returns the report's answer."""
        url = self.upstream.url(path)
        with Server("--access-log", "off", "--db-latency-ms", "0", "--upstream", url,
                    "--upstream-ca", self.cert) as srv:
            res = srv.request("GET", "/api/report/1")
            self.assertEqual(srv.request("GET", "/healthz").status, 200)
            return url, res

    def assertNot200WithJson(self, path):
        url, res = self.report(path)
        self.assertEqual(res.status, 502, res)
        self.assertEqual(problem_fields(res)["detail"], "upstream " + url + " did not answer 200 with JSON")

    def test_an_upstream_200_with_json_fills_the_todo(self):
        _, res = self.report("/ok")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["todo"], {"id": 1, "title": "from the test upstream"})

    def test_an_upstream_200_that_is_not_json_is_a_502(self):
        self.assertNot200WithJson("/text")

    def test_an_upstream_error_status_with_a_json_body_is_a_502(self):
        self.assertNot200WithJson("/error")  # 500 with {}

    def test_an_upstream_2xx_other_than_200_is_a_502_though_its_body_is_json(self):
        self.assertNot200WithJson("/created")  # 201 with JSON: a 2xx, yet not 200


if __name__ == "__main__":
    unittest.main()
