"""Framing gaps against the real coroute-server binary: the Host field's syntax, and a
request line that cannot be valid rejected as soon as it is complete.

Raw bytes over 127.0.0.1 sockets, so the server sees exactly what is written here.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Server, problem_fields  # noqa: E402


class FramingTestCase(harness.SharedServerTestCase):

    def assert_problem(self, res, status, what):
        self.assertEqual(res.status, status, "%s -> %r" % (what, res))
        doc = problem_fields(res)
        self.assertEqual(doc["status"], status)
        return doc


def with_host(value):
    """GET /healthz with `value` as the whole Host field value (b"" for an empty one)."""
    return b"GET /healthz HTTP/1.1\r\nHost:" + (b" " + value if value else b"") + b"\r\n\r\n"


class HostSyntax(FramingTestCase):
    """RFC 9112 3.2: Host is uri-host [":" port] (RFC 3986 3.2.2, 3.2.3), no userinfo;
    a Host field with an invalid value is 400."""

    INVALID = [b"exa mple.com", b"user@example.com", b"[::1", b"a:b:c", b"example.com:80x", b"bad/path",
               b"ex%ample", b"[::1]x", b"example.com?q", b"example.com#f"]
    # RFC 9112 3.2: an empty Host is allowed when the target (origin-form) has no authority.
    # ex%41mple.com: a pct-encoded octet is valid in a reg-name (RFC 3986 3.2.2); only a
    # lone % is not.
    VALID = [b"localhost:8080", b"[::1]:80", b"127.0.0.1", b"example.com", b"", b"EXAMPLE.com",
             b"ex%41mple.com", b"my-host_1.example"]

    def test_an_invalid_host_is_400(self):
        for value in self.INVALID:
            with self.subTest(host=value), self.srv.connect(timeout=5.0) as c:
                c.send(with_host(value))
                self.assert_problem(c.read_response(), 400, "Host: %r" % value)

    def test_a_valid_host_is_served(self):
        for value in self.VALID:
            with self.subTest(host=value), self.srv.connect(timeout=5.0) as c:
                c.send(with_host(value))
                res = c.read_response()
                self.assertEqual(res.status, 200, "Host: %r -> %r" % (value, res))
                self.assertEqual(res.json(), {"status": "ok"})


class EarlyRequestLineRejection(FramingTestCase):
    """With a 10 s header timeout, a request line that cannot be valid is answered at
    once, not when the header ends or times out."""

    server_args = ("--header-timeout-ms", "10000")

    BAD_LINES = [b"GARBAGE", b"GET /a b HTTP/1.1", b"GET /x HTTP/1.1 extra", b"GET /x FTP/1.1",
                 b"G(T /x HTTP/1.1", b"GET  /x HTTP/1.1", b" GET /x HTTP/1.1"]

    def test_an_impossible_request_line_is_400_before_the_header_ends(self):
        for line in self.BAD_LINES:
            with self.subTest(line=line), self.srv.connect(timeout=5.0) as c:
                start = time.monotonic()
                c.send(line + b"\r\n")  # and no more: no Host, no blank line
                try:
                    res = c.read_response(timeout=2.0)
                except TimeoutError:
                    self.fail("no answer within 2 s to the request line %r alone" % line)
                took = time.monotonic() - start
                self.assert_problem(res, 400, "request line %r" % line)
                self.assertLess(took, 2.0, line)
                self.assertEqual((res.header("Connection") or "").lower(), "close", res)
                try:
                    rest = c.read_until_close(2.0)
                except TimeoutError:
                    self.fail("the connection stays open after rejecting %r" % line)
                self.assertEqual(rest, b"", "nothing may follow the rejection of %r" % line)

    def test_a_valid_request_line_alone_is_not_answered_early(self):
        with self.srv.connect(timeout=5.0) as c:
            c.send(b"GET /healthz HTTP/1.1\r\n")
            self.assertTrue(c.is_open(1.0), "the server answered (or closed) before the header ended")
            c.send(b"Host: a\r\n\r\n")
            res = c.read_response(timeout=3.0)
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json(), {"status": "ok"})


if __name__ == "__main__":
    unittest.main(verbosity=2)
