"""scripts/smoke.sh against a healthy server and broken ones: it passes the first and
names exactly the check that fails on the others."""

import os
import re
import shutil
import subprocess
import unittest

import harness
from harness import Server

SMOKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "smoke.sh")
CHECKS = ["healthz", "readyz", "database", "external", "items", "events", "page"]
LINE = re.compile(r"^(ok  |FAIL|skip)  (\S+)\s+(?:(\d+\.\d) ms)?")


def smoke(*args, timeout=60):
    """(exit status, {check: 'ok'|'FAIL'|'skip'}, output)."""
    p = subprocess.run([SMOKE, *args], capture_output=True, text=True, timeout=timeout)
    results = {}
    for line in p.stdout.splitlines():
        m = LINE.match(line)
        if m:
            results[m.group(2)] = m.group(1).strip()
    return p.returncode, results, p.stdout + p.stderr


def failing(results):
    return sorted(name for name, r in results.items() if r == "FAIL")


def url(srv):
    return "%s://127.0.0.1:%d" % (srv.scheme, srv.port)


def items_total(srv):
    return srv.request("GET", "/api/items?limit=1").json()["total"]


class Healthy(unittest.TestCase):
    def test_every_check_passes_with_its_time_and_nothing_is_left_behind(self):
        with Server("--db-latency-ms", "5", "--upstream-latency-ms", "5") as srv:
            before = items_total(srv)
            code, results, out = smoke(url(srv))
            self.assertEqual(code, 0, out)
            self.assertEqual(list(results), CHECKS, out)
            self.assertEqual(set(results.values()), {"ok"}, out)
            for line in out.splitlines()[:len(CHECKS)]:
                self.assertRegex(line, r"^ok    \S+\s+\d+\.\d ms", out)
            self.assertIn("passed 7 checks", out.splitlines()[-1])
            self.assertEqual(items_total(srv), before, "the items check left an item behind")
            self.assertRegex(out, r"page\s.*/ and \d+ files")

    def test_skip_leaves_a_check_out_and_an_unknown_name_is_a_usage_error(self):
        with Server("--db-latency-ms", "5", "--upstream-latency-ms", "5") as srv:
            code, results, out = smoke(url(srv), "--skip", "external,events")
            self.assertEqual(code, 0, out)
            self.assertEqual(results["external"], "skip")
            self.assertEqual(results["events"], "skip")
            code, _, out = smoke(url(srv), "--skip", "nope")
            self.assertEqual(code, 2, out)
            self.assertIn("no check named nope", out)


class Broken(unittest.TestCase):
    def test_an_unreachable_upstream_fails_the_external_check_only(self):
        with Server("--db-latency-ms", "5", "--upstream", "https://127.0.0.1:1/") as srv:
            code, results, out = smoke(url(srv))
            self.assertEqual(code, 1, out)
            self.assertEqual(failing(results), ["external"], out)
            self.assertRegex(out, r"FAIL  external .*502, expected 200: .*connect")
            self.assertEqual(out.splitlines()[-1], "smoke: %s failed: external" % url(srv))

    def test_a_failing_database_fails_the_database_and_items_checks(self):
        with Server("--db-fail-rate", "1", "--upstream-latency-ms", "5") as srv:
            code, results, out = smoke(url(srv))
            self.assertEqual(code, 1, out)
            self.assertEqual(failing(results), ["database", "items"], out)
            self.assertRegex(out, r"FAIL  database .*503, expected 200")
            self.assertTrue(out.splitlines()[-1].endswith("failed: database, items"), out)

    def test_nothing_listening_fails_every_check(self):
        with Server() as srv:
            port = srv.port
        code, results, out = smoke("http://127.0.0.1:%d" % port, "--timeout", "2")
        self.assertEqual(code, 1, out)
        self.assertEqual(failing(results), sorted(CHECKS), out)
        self.assertIn("Connection refused", out)

    def test_a_bad_url_is_a_usage_error(self):
        code, _, out = smoke("ftp://example")
        self.assertEqual(code, 2, out)


class Https(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("no openssl CLI")
        cls.tmp, cls.cert, cls.key = harness.self_signed("coroute-smoke-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_https_passes_with_the_ca_and_fails_verification_without_it(self):
        with Server("--tls-cert", self.cert, "--tls-key", self.key, "--db-latency-ms", "5",
                    "--upstream-latency-ms", "5") as srv:
            self.assertEqual(srv.scheme, "https")
            code, results, out = smoke(url(srv), "--ca", self.cert)
            self.assertEqual(code, 0, out)
            self.assertEqual(set(results.values()), {"ok"}, out)
            code, results, out = smoke(url(srv), "--timeout", "2")
            self.assertEqual(code, 1, out)
            self.assertEqual(failing(results), sorted(CHECKS), out)
            self.assertIn("TLS: certificate verify failed: self-signed certificate", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
