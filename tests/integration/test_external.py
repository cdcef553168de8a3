"""/api/external and /api/combined against real TLS upstreams started here, on 127.0.0.1."""

import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import Server


def make_cert(directory, name, san):
    """A self-signed P-256 certificate (its own CA) for `san`, e.g. 'IP:127.0.0.1'."""
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=coroute test",
                    "-addext", "subjectAltName=" + san, "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True)
    return cert, key


# Answers written byte for byte, then the connection is closed.
RAW_ANSWERS = {
    "/status-bad-code": b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}",
    "/status-bad-version": b"HTTQ/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    "/status-bad-reason": b"HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\n{}",
    "/header-no-colon": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nno colon here\r\n"
                        b"Content-Length: 2\r\n\r\n{}",
    "/header-control-char": b"HTTP/1.1 200 OK\r\nContent-Type: application/\x01json\r\nContent-Length: 2\r\n\r\n{}",
    "/header-bad-length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2x\r\n\r\n{}",
    "/chunk-bad-size": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\n{}\r\n0\r\n\r\n",
    "/chunk-no-crlf": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"2\r\n{}XY0\r\n\r\n",
}


class Upstream:
    """A small threaded TLS (or plain) HTTP server whose paths misbehave on purpose."""

    def __init__(self, cert=None, key=None):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.ctx = None
        if cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
        self.accepted = 0     # TCP connections, before any TLS
        self.connections = 0  # connections whose TLS handshake completed
        self.requests = 0
        self.paths = []       # every request's path, in order
        self.lock = threading.Lock()
        self.open = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % ("https" if self.ctx else "http", self.port, path)

    def close(self):
        self.stopped = True
        self.sock.close()
        for c in list(self.open):
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        self.open.append(conn)
        try:
            if self.ctx:
                conn = self.ctx.wrap_socket(conn, server_side=True)
                self.open.append(conn)
            with self.lock:
                self.connections += 1
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b"\r\n")[0].split(b" ")[1].decode()
                with self.lock:
                    self.requests += 1
                    self.paths.append(path)
                if not self._answer(conn, path):
                    return
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _answer(self, conn, path):
        def send(status, body, ctype="application/json", extra=""):
            conn.sendall(("HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
                          % (status, ctype, len(body), extra)).encode() + body)

        if path == "/ok":
            send("200 OK", json.dumps({"id": 1, "title": "from the test upstream"}).encode())
            return True
        if path == "/hang":
            time.sleep(30)
            return False
        if path == "/midbody":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"partial\"")
            return False
        if path == "/big":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
            return False
        if path == "/text":
            send("200 OK", b"hello, not json", "text/plain")
            return True
        if path == "/error":
            send("500 Internal Server Error", b"{}")
            return True
        if path == "/created":
            send("201 Created", json.dumps({"id": 2}).encode())
            return True
        if path == "/redirect":
            send("302 Found", b"{}", extra="Location: %s\r\n" % self.url("/ok"))
            return True
        if path == "/switch":
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
            return False
        if path == "/interim":
            # Two interim answers, then the final one in the same write.
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"
                         b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            send("200 OK", json.dumps({"id": 7, "title": "after two interim answers"}).encode())
            return True
        if path in RAW_ANSWERS:
            conn.sendall(RAW_ANSWERS[path])
            return False
        if path in ("/eof-no-close-notify", "/eof-close-notify"):
            # No Content-Length, not chunked: the body ends where the stream ends.
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"id\": 3}")
            if path == "/eof-close-notify":
                conn.unwrap()  # TLS close_notify, then the TCP close
            else:
                conn.shutdown(socket.SHUT_RDWR)  # on an SSLSocket: the TCP FIN alone, no close_notify
            return False
        send("404 Not Found", b"{}")
        return True


class ExternalRoutes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.good_cert, cls.good_key = make_cert(cls.tmp.name, "good", "IP:127.0.0.1")
        cls.other_cert, _ = make_cert(cls.tmp.name, "other", "IP:127.0.0.1")
        cls.wrong_host_cert, cls.wrong_host_key = make_cert(cls.tmp.name, "wronghost", "DNS:other.example")
        cls.upstream = Upstream(cls.good_cert, cls.good_key)

    @classmethod
    def tearDownClass(cls):
        cls.upstream.close()
        cls.tmp.cleanup()

    def server(self, url, *args, ca=None):
        extra = ["--upstream", url, "--upstream-ca", ca or self.good_cert, "--access-log", "off", *args]
        return Server(*extra)

    def assertProblem(self, r, status, *words):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.header("content-type"), "application/problem+json")
        body = r.json()
        self.assertEqual(body["status"], status)
        for w in words:
            self.assertIn(w, body["detail"])
        return body

    def assertUpstreamFailure(self, s, url, phase, *words):
        """/api/external is a 502 naming `phase` and `url`, and the server stays healthy."""
        body = self.assertProblem(s.request("GET", "/api/external"), 502, *words)
        self.assertEqual(body["phase"], phase, body)
        self.assertEqual(body["url"], url)
        self.assertEqual(s.request("GET", "/healthz").status, 200)
        return body

    def assertEachFails(self, phase, words_by_path):
        """assertUpstreamFailure for each upstream path and the words its detail has, one server per path."""
        for path, words in words_by_path.items():
            with self.subTest(path=path), self.server(self.upstream.url(path)) as s:
                self.assertUpstreamFailure(s, self.upstream.url(path), phase, *words)

    def test_the_built_in_upstream_answers_over_verified_tls(self):
        with Server("--access-log", "off", "--upstream-latency-ms", "50") as s:
            line = s.wait_for_stdout(lambda l: l.startswith("upstream: "))
            self.assertRegex(line, r"^upstream: https://127\.0\.0\.1:\d+/todos/1 \(built-in")
            r = s.request("GET", "/api/external")
            self.assertEqual(r.status, 200, r.body)
            body = r.json()
            self.assertEqual(body["source"], "external")
            self.assertEqual(body["status"], 200)
            self.assertEqual(body["data"]["id"], 1)
            self.assertGreaterEqual(body["elapsed_ms"], 49)

    def test_combined_runs_both_at_once(self):
        with Server("--access-log", "off", "--upstream-latency-ms", "300") as s:
            r = s.request("GET", "/api/combined?delay_ms=300")
            self.assertEqual(r.status, 200, r.body)
            body = r.json()
            self.assertEqual(body["source"], "combined")
            self.assertEqual(len(body["database"]["items"]), 3)
            self.assertEqual(body["external"]["data"]["id"], 1)
            # Side by side: about the slower of the two, not their sum (600 ms).
            self.assertGreaterEqual(body["elapsed_ms"], 299)
            self.assertLess(body["elapsed_ms"], 550)

    def test_a_trusted_upstream_answers_and_the_pool_reuses_one_connection(self):
        before = self.upstream.connections
        with self.server(self.upstream.url("/ok")) as s:
            with s.connect() as c:
                for _ in range(20):
                    c.send(b"GET /api/external HTTP/1.1\r\nHost: x\r\n\r\n")
                    r = c.read_response()
                    self.assertEqual(r.status, 200, r.body)
                    self.assertEqual(r.json()["data"]["title"], "from the test upstream")
        self.assertEqual(self.upstream.connections - before, 1, "20 calls should share one TLS connection")

    def test_without_the_pool_every_call_handshakes(self):
        before = self.upstream.connections
        with self.server(self.upstream.url("/ok"), "--upstream-pool", "0") as s:
            for _ in range(5):
                self.assertEqual(s.request("GET", "/api/external").status, 200)
        self.assertEqual(self.upstream.connections - before, 5)

    def test_the_wrong_ca_is_a_502_naming_verification(self):
        with self.server(self.upstream.url("/ok"), ca=self.other_cert) as s:
            body = self.assertProblem(s.request("GET", "/api/external"), 502, "certificate verify failed")
            self.assertEqual(body["phase"], "tls")

    def test_a_certificate_for_another_host_is_a_502(self):
        up = Upstream(self.wrong_host_cert, self.wrong_host_key)
        try:
            with self.server(up.url("/ok"), ca=self.wrong_host_cert) as s:
                self.assertProblem(s.request("GET", "/api/external"), 502, "host name mismatch")
        finally:
            up.close()

    def test_an_upstream_that_never_answers_is_a_504_at_the_timeout(self):
        with self.server(self.upstream.url("/hang"), "--upstream-timeout-ms", "500") as s:
            start = time.monotonic()
            r = s.request("GET", "/api/external", timeout=10)
            took = time.monotonic() - start
            self.assertProblem(r, 504, "timeout")
            self.assertGreaterEqual(took, 0.45)
            self.assertLess(took, 3.0)
            self.assertEqual(s.request("GET", "/healthz").status, 200)

    def test_a_body_cut_short_is_a_502(self):
        with self.server(self.upstream.url("/midbody")) as s:
            body = self.assertProblem(s.request("GET", "/api/external"), 502)
            self.assertEqual(body["phase"], "body")

    def test_a_body_over_the_cap_is_a_502_at_once(self):
        with self.server(self.upstream.url("/big")) as s:
            start = time.monotonic()
            body = self.assertProblem(s.request("GET", "/api/external"), 502, "exceeds")
            self.assertEqual(body["phase"], "body")
            self.assertLess(time.monotonic() - start, 3.0)

    def test_a_body_that_is_not_json_is_a_502(self):
        with self.server(self.upstream.url("/text")) as s:
            self.assertProblem(s.request("GET", "/api/external"), 502, "not JSON")

    def test_an_upstream_error_status_is_a_502(self):
        with self.server(self.upstream.url("/error")) as s:
            self.assertProblem(s.request("GET", "/api/external"), 502, "answered 500")

    def test_a_refused_port_is_a_502_naming_connect(self):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
        with self.server("https://127.0.0.1:%d/x" % port) as s:
            body = self.assertProblem(s.request("GET", "/api/external"), 502, "refused")
            self.assertEqual(body["phase"], "connect")

    def test_combined_shows_the_database_when_the_external_call_fails(self):
        with self.server(self.upstream.url("/error")) as s:
            r = s.request("GET", "/api/combined")
            body = self.assertProblem(r, 502, "external call failed")
            self.assertEqual(len(body["database"]["items"]), 3)
            self.assertEqual(body["external"]["error"]["status"], 502)

    def test_a_name_that_does_not_resolve_is_a_502_naming_resolve(self):
        url = "https://no-such-host.invalid/x"  # .invalid never resolves (RFC 2606)
        with self.server(url) as s:
            self.assertUpstreamFailure(s, url, "resolve", "no-such-host.invalid")

    def test_a_redirect_is_not_followed_and_is_a_502(self):
        url = self.upstream.url("/redirect")
        seen = len(self.upstream.paths)
        with self.server(url) as s:
            self.assertUpstreamFailure(s, url, "status", "answered 302 Found")
        self.assertEqual(self.upstream.paths[seen:], ["/redirect"], "the Location was followed")

    def test_a_101_is_a_502_naming_status(self):
        url = self.upstream.url("/switch")
        with self.server(url) as s:
            self.assertUpstreamFailure(s, url, "status", "unexpected 101 Switching Protocols")

    def test_interim_1xx_answers_are_skipped_and_the_final_answer_counts(self):
        before = self.upstream.connections
        with self.server(self.upstream.url("/interim")) as s:
            for _ in range(2):
                r = s.request("GET", "/api/external")
                self.assertEqual(r.status, 200, r.body)
                body = r.json()
                self.assertEqual(body["status"], 200)
                self.assertEqual(body["data"], {"id": 7, "title": "after two interim answers"})
            self.assertEqual(s.request("GET", "/healthz").status, 200)
        # The interim answers left the connection clean: the second call reused it.
        self.assertEqual(self.upstream.connections - before, 1)

    def test_a_malformed_status_line_is_a_502_naming_status(self):
        self.assertEachFails("status", {
            "/status-bad-code": ["malformed status line (bad status)"],
            "/status-bad-version": ["malformed status line (bad version)"],
            "/status-bad-reason": ["malformed status line (bad reason)"],
        })

    def test_a_malformed_header_line_is_a_502_naming_headers(self):
        self.assertEachFails("headers", {
            "/header-no-colon": ["malformed header (bad field)"],
            "/header-control-char": ["malformed header (bad value)"],
            "/header-bad-length": ["malformed header (bad Content-Length)"],
        })

    def test_a_body_ended_by_a_close_without_close_notify_is_a_502(self):
        url = self.upstream.url("/eof-no-close-notify")
        with self.server(url) as s:
            self.assertUpstreamFailure(s, url, "body", "without TLS close_notify after 9 body bytes",
                                       "the body may be truncated")

    def test_a_body_ended_by_close_notify_is_complete(self):
        # The same answer as above, closed properly: the difference is the close_notify alone.
        with self.server(self.upstream.url("/eof-close-notify")) as s:
            r = s.request("GET", "/api/external")
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["data"], {"id": 3})
            self.assertEqual(s.request("GET", "/healthz").status, 200)

    def test_malformed_chunked_framing_is_a_502_naming_body(self):
        self.assertEachFails("body", {
            "/chunk-bad-size": ["malformed chunked body (bad chunk)"],   # a size that is not hex
            "/chunk-no-crlf": ["malformed chunked body (bad chunk)"],    # data not followed by CRLF
        })

    def test_the_built_in_upstream_told_to_fail_gives_each_fault_as_a_502_and_keeps_serving(self):
        with Server("--upstream-fail-rate", "1", "--upstream-latency-ms", "0", "--access-log", "off") as s:
            banner = s.wait_for_stdout(lambda l: l.startswith("upstream: "))
            self.assertIn("100 % of answers are faults (--upstream-fail-rate)", banner or "", s.output())
            seen = set()
            for _ in range(60):
                r = s.request("GET", "/api/external")
                body = self.assertProblem(r, 502)
                if "answered 500 Internal Server Error" in body["detail"]:
                    seen.add(("status", "500"))
                    self.assertEqual(body["phase"], "status")
                elif "not JSON" in body["detail"]:
                    seen.add(("body", "not json"))
                    self.assertEqual(body["phase"], "body")
                elif "connection closed after 20 of 64 body bytes" in body["detail"]:
                    seen.add(("body", "cut"))
                    self.assertEqual(body["phase"], "body")
                else:
                    self.fail(body)
            # A third of the faults each: 60 draws miss one kind with odds of about 1 in 10^10.
            self.assertEqual(len(seen), 3, seen)
            self.assertEqual(s.request("GET", "/healthz").status, 200)

    def test_a_partly_failing_built_in_upstream_still_answers_the_rest(self):
        with Server("--upstream-fail-rate", "0.3", "--upstream-latency-ms", "0", "--access-log", "off") as s:
            statuses = [s.request("GET", "/api/external").status for _ in range(100)]
            self.assertLessEqual(set(statuses), {200, 502})
            # 30 faults expected; both bounds are over 6 standard deviations away.
            self.assertTrue(5 <= statuses.count(502) <= 60, statuses.count(502))
            self.assertEqual(s.request("GET", "/healthz").status, 200)

    def test_upstream_fail_rate_is_for_the_built_in_upstream_only(self):
        s = Server("--upstream", self.upstream.url("/ok"), "--upstream-fail-rate", "0.5")
        with self.assertRaises(RuntimeError):
            s.start()
        for bad in ("-0.1", "1.5", "x", "nan"):
            with self.subTest(value=bad):
                with self.assertRaises(RuntimeError):
                    Server("--upstream-fail-rate", bad).start()

    def test_a_bad_upstream_option_is_refused_at_start(self):
        s = Server("--upstream", "ftp://example.com/")
        with self.assertRaises(RuntimeError):
            s.start()


if __name__ == "__main__":
    unittest.main(verbosity=2)
