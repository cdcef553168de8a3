"""Runs the programs tests/package builds (and the README shows), as a reader would.

usage: run.py BUILD_DIR SERVER
  embed:  started on port 0, it prints its endpoint, answers /greet/asio and /healthz,
          and exits 0 on SIGTERM.
  client: exits 0 with the answer from coroute-server's built-in upstream when given
          the certificate --upstream-cert-out wrote, and exits 1 with the reason when
          the certificate is not trusted or nothing listens.
  route_test: the Catch2 tests of a route through coroute::testing pass.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.request

BUILD, SERVER = sys.argv[1], sys.argv[2]


def first_line_matching(proc, pattern, timeout=15.0):
    """Reads proc's stdout until a line matches `pattern`; the match (or None at EOF or timeout)."""
    found = []

    def read():
        for line in proc.stdout:
            m = re.match(pattern, line.rstrip("\n"))
            if m:
                found.append(m)
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    return found[0] if found else None


def start(cmd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COROUTE_")}
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def stop(proc):
    """SIGTERM, then (exit code or None when it had to be killed, its stderr)."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=10)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return None, err


class Embed(unittest.TestCase):
    def test_serves_its_route_and_health_and_stops_on_sigterm(self):
        proc = start([os.path.join(BUILD, "embed"), "0"])
        try:
            m = first_line_matching(proc, r"^listening on http://127\.0\.0\.1:(\d+)$")
            self.assertIsNotNone(m, "no listening line from embed")
            base = "http://127.0.0.1:" + m.group(1)
            with urllib.request.urlopen(base + "/greet/asio", timeout=5) as res:
                self.assertEqual(res.status, 200)
                self.assertEqual(json.loads(res.read()), {"hello": "asio"})
            with urllib.request.urlopen(base + "/healthz", timeout=5) as res:
                self.assertEqual(json.loads(res.read()), {"status": "ok"})
        finally:
            code, err = stop(proc)
        self.assertEqual(code, 0, err)


class RouteTest(unittest.TestCase):
    def test_the_catch2_tests_of_a_route_pass(self):
        p = subprocess.run([os.path.join(BUILD, "route_test")], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("All tests passed (5 assertions in 2 test cases)", p.stdout)


class Client(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert = os.path.join(cls.tmp.name, "upstream.pem")
        cls.server = start([SERVER, "--port", "0", "--access-log", "off", "--upstream-cert-out", cls.cert])
        m = first_line_matching(cls.server, r"^upstream: (https://\S+) ")
        if not m:
            stop(cls.server)
            raise AssertionError("no upstream line from coroute-server")
        cls.url = m.group(1)

    @classmethod
    def tearDownClass(cls):
        code, err = stop(cls.server)
        cls.tmp.cleanup()
        if code != 0:
            raise AssertionError("coroute-server exited with %r\n%s" % (code, err))

    def client(self, *args):
        return subprocess.run([os.path.join(BUILD, "client"), *args], capture_output=True, text=True, timeout=30)

    def test_trusting_the_written_certificate_exits_0_with_the_answer(self):
        p = self.client(self.url, self.cert)
        self.assertEqual(p.returncode, 0, p.stderr)
        status, body = p.stdout.rstrip("\n").split(" ", 1)
        self.assertEqual(status, "200")
        self.assertEqual(json.loads(body)["id"], 1)

    def test_a_certificate_not_trusted_exits_1_with_the_reason(self):
        p = self.client(self.url)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout, "")
        self.assertRegex(p.stderr, r"^client: tls: certificate verify failed")

    def test_nothing_listening_exits_1_with_the_reason(self):
        p = self.client("http://127.0.0.1:1/")
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"^client: connect: ")

    def test_an_error_status_exits_1(self):
        p = self.client(self.url.replace("/todos/1", "/todos/999"), self.cert)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stdout.startswith("404 "), p.stdout)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
