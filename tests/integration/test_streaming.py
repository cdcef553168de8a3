"""Streamed static files against the real coroute-server binary.

Files larger than --static-inline-max-bytes (default 64 KiB) are streamed from disk in
bounded chunks instead of being read into memory: whole, as a single range (served by
seeking), to many slow clients at once without holding a copy each, and under a write
timeout that is the longest time a response may make no progress (nginx's
send_timeout), not the time a whole response may take.

Every file is random bytes written by the test into its own www directory; downloads
are compared byte for byte or by SHA-256. Slow clients set a small SO_RCVBUF before
they connect, so the kernel cannot hide the slowness in megabytes of buffers.
"""

import email.utils
import hashlib
import os
import re
import selectors
import shutil
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Server, _Incomplete, build_request, parse_response, problem_fields,  # noqa: E402
                     server_binary, small_window_socket, tcp_state)

KiB = 1024
MiB = 1024 * 1024

INDEX = b"<!doctype html><title>streaming</title>\n"
# name -> size: the 20 MiB and 8 MiB files, and edge files around the 64 KiB inline
# limit and the 64 KiB chunk size.
SIZES = {
    "big.bin": 20 * MiB,
    "medium.bin": 8 * MiB,
    "edge-65535.bin": 65535,
    "edge-65536.bin": 65536,
    "edge-65537.bin": 65537,
    "edge-131072.bin": 131072,
    "edge-131073.bin": 131073,
    "edge-1mib-plus-1.bin": MiB + 1,
}

TMP = WWW = None
DATA = {}


def setUpModule():
    global TMP, WWW
    TMP = tempfile.mkdtemp(prefix="coroute-stream-")
    WWW = os.path.join(TMP, "www")
    os.makedirs(WWW)
    with open(os.path.join(WWW, "index.html"), "wb") as f:
        f.write(INDEX)
    for name, size in SIZES.items():
        DATA[name] = os.urandom(size)
        with open(os.path.join(WWW, name), "wb") as f:
            f.write(DATA[name])


def tearDownModule():
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def sanitized_binary():
    """True when coroute-server links a sanitizer runtime (scripts/test.sh --sanitize)."""
    with open(server_binary(), "rb") as f:
        data = f.read()
    return b"libasan.so" in data or b"libubsan.so" in data


def asan_env():
    """Under AddressSanitizer, a small quarantine: ASan holds freed memory (256 MiB by
    default) before reusing it, which would show as RSS a normal build never has."""
    if not sanitized_binary():
        return None
    opts = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (opts + ":" if opts else "") + "quarantine_size_mb=16"}


class ServerClass(unittest.TestCase):
    server_args = ()
    server_env = None
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(*cls.server_args, www=WWW, env=cls.server_env).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        if code != 0:
            raise AssertionError("server exited with %r\n%s" % (code, cls.srv.output()))

    def assert_healthy(self):
        res = self.srv.request("GET", "/healthz")
        self.assertEqual(res.status, 200, res)


class StreamedFiles(ServerClass):
    """(a) whole downloads and HEAD, (b) single ranges, and the chunk and inline edges."""

    def get(self, target, headers=None, method="GET", timeout=60.0):
        return self.srv.request(method, target, headers, timeout=timeout)

    def test_a_20_mib_file_downloads_intact_with_its_validators(self):
        data = DATA["big.bin"]
        res = self.get("/big.bin")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.header("Content-Length"), str(len(data)), res)
        self.assertEqual(len(res.body), len(data))
        self.assertEqual(sha(res.body), sha(data), "the 20 MiB body differs from the file")
        self.assertTrue(res.header("ETag"), res)
        self.assertEqual(res.header("Accept-Ranges"), "bytes", res)
        last = res.header("Last-Modified")
        self.assertTrue(last, res)
        mtime = os.stat(os.path.join(WWW, "big.bin")).st_mtime
        self.assertLess(abs(email.utils.parsedate_to_datetime(last).timestamp() - int(mtime)), 1.5, last)
        self.assertIsNone(res.header("Transfer-Encoding"), "a file of known size is sent with Content-Length")

    def test_head_of_the_20_mib_file_has_the_same_headers_and_no_body(self):
        get = self.get("/big.bin")
        with self.srv.connect(timeout=10) as c:
            c.send(build_request("HEAD", "/big.bin", close=True))
            head = c.read_response(head=True)
            self.assertEqual(head.status, 200, head)
            self.assertEqual(head.header("Content-Length"), str(SIZES["big.bin"]), head)
            self.assertEqual(head.header("ETag"), get.header("ETag"))
            self.assertEqual(head.header("Last-Modified"), get.header("Last-Modified"))
            self.assertEqual(head.header("Accept-Ranges"), "bytes", head)
            rest = c.read_until_close(10.0)
            self.assertEqual(rest, b"", "HEAD sent %d body bytes" % len(rest))
        # On a keep-alive connection: the next response follows the HEAD's head directly.
        with self.srv.connect(timeout=10) as c:
            c.send(build_request("HEAD", "/big.bin") + build_request("GET", "/healthz"))
            self.assertEqual(c.read_response(head=True).status, 200)
            res = c.read_response()
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json(), {"status": "ok"})

    def test_a_keep_alive_connection_stays_in_sync_after_streamed_responses(self):
        with self.srv.connect(timeout=60) as c:
            c.send(build_request("GET", "/medium.bin"))
            res = c.read_response()
            self.assertEqual(res.status, 200)
            self.assertEqual(sha(res.body), sha(DATA["medium.bin"]))
            # Pipelined: a range, a whole file, then a small response.
            c.send(build_request("GET", "/big.bin", {"Range": "bytes=100-199"})
                   + build_request("GET", "/edge-131073.bin") + build_request("GET", "/healthz"))
            r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
            self.assertEqual((r1.status, r1.body), (206, DATA["big.bin"][100:200]))
            self.assertEqual((r2.status, r2.body), (200, DATA["edge-131073.bin"]))
            self.assertEqual((r3.status, r3.json()), (200, {"status": "ok"}))

    def test_if_none_match_with_the_etag_of_a_streamed_file_is_304(self):
        etag = self.get("/big.bin", method="HEAD").header("ETag")
        self.assertTrue(etag)
        with self.srv.connect(timeout=10) as c:
            c.send(build_request("GET", "/big.bin", {"If-None-Match": etag}, close=True))
            res = c.read_response()
            self.assertEqual(res.status, 304, res)
            self.assertEqual(res.header("ETag"), etag)
            self.assertEqual(c.read_until_close(10.0), b"", "a 304 has no body")

    def assert_range(self, name, spec, first, last):
        data = DATA[name]
        res = self.get("/" + name, {"Range": "bytes=" + spec})
        self.assertEqual(res.status, 206, "Range: bytes=%s -> %r" % (spec, res))
        self.assertEqual(res.header("Content-Range"), "bytes %d-%d/%d" % (first, last, len(data)), spec)
        self.assertEqual(res.header("Content-Length"), str(last - first + 1), spec)
        self.assertEqual(len(res.body), last - first + 1, spec)
        self.assertTrue(res.body == data[first:last + 1], "wrong bytes for Range: bytes=%s" % spec)
        return res

    def test_ranges_of_the_20_mib_file_are_206_with_the_exact_bytes(self):
        size = SIZES["big.bin"]
        self.assert_range("big.bin", "5000000-5999999", 5000000, 5999999)        # middle, many chunks
        self.assert_range("big.bin", "70000-70009", 70000, 70009)                # inside one chunk
        self.assert_range("big.bin", "65530-65545", 65530, 65545)                # across a chunk edge
        self.assert_range("big.bin", "-1000", size - 1000, size - 1)              # suffix
        self.assert_range("big.bin", "%d-" % (size - 300000), size - 300000, size - 1)  # open
        self.assert_range("big.bin", "%d-%d" % (size - 1, size - 1), size - 1, size - 1)  # the last byte
        self.assert_range("big.bin", "0-0", 0, 0)
        # RFC 9110 14.1.2: a last-pos past the end means up to the end.
        self.assert_range("big.bin", "%d-%d" % (size - 10, size + 1000), size - 10, size - 1)

    def test_an_unsatisfiable_range_of_a_streamed_file_is_416(self):
        size = SIZES["big.bin"]
        for spec in ("%d-" % size, "%d-%d" % (size + 100, size + 200)):
            res = self.get("/big.bin", {"Range": "bytes=" + spec})
            self.assertEqual(res.status, 416, "Range: bytes=%s -> %r" % (spec, res))
            problem_fields(res)
            self.assertEqual(res.header("Content-Range"), "bytes */%d" % size, res)

    def test_files_around_the_inline_limit_and_the_chunk_size_are_intact(self):
        for name in SIZES:
            if name.startswith("edge-"):
                res = self.get("/" + name)
                self.assertEqual(res.status, 200, name)
                self.assertEqual(res.header("Content-Length"), str(SIZES[name]), name)
                self.assertTrue(res.body == DATA[name], "%s differs (%d bytes received)" % (name, len(res.body)))
        self.assert_range("edge-65537.bin", "65535-65536", 65535, 65536)
        self.assert_range("edge-65537.bin", "-1", 65536, 65536)
        self.assert_range("edge-131073.bin", "65536-131072", 65536, 131072)
        self.assert_range("edge-1mib-plus-1.bin", "1000-", 1000, MiB)


class InlineLimitFlag(ServerClass):
    """--static-inline-max-bytes moves the line between read and streamed files."""

    server_args = ("--static-inline-max-bytes", "4096")

    def test_files_on_both_sides_of_a_lowered_limit_are_intact(self):
        res = self.srv.request("GET", "/index.html")
        self.assertEqual((res.status, res.body), (200, INDEX))
        for name in ("edge-65535.bin", "edge-65537.bin", "medium.bin"):
            res = self.srv.request("GET", "/" + name, timeout=60)
            self.assertEqual(res.status, 200, name)
            self.assertTrue(res.body == DATA[name], name)
        res = self.srv.request("GET", "/edge-65537.bin", {"Range": "bytes=4090-4200"})
        self.assertEqual(res.status, 206)
        self.assertEqual(res.header("Content-Range"), "bytes 4090-4200/65537")
        self.assertEqual(res.body, DATA["edge-65537.bin"][4090:4201])


class SlowClient:
    """One raw, non-blocking download whose every body byte is checked against the file."""

    def __init__(self, port, target, data):
        self.data = data
        self.view = memoryview(data)
        self.sock = small_window_socket(port, 16 * KiB, timeout=5.0)
        self.sock.sendall(build_request("GET", target, close=True))
        self.sock.setblocking(False)
        self.head = bytearray()
        self.res = None
        self.offset = 0          # body bytes received and found equal to the file
        self.bad = None          # why the download is wrong
        self.closed = None       # "eof" or "reset"
        self.hash = hashlib.sha256()

    @property
    def done(self):
        return self.res is not None and self.offset == len(self.data)

    def read(self, limit):
        """One non-blocking read of up to `limit` bytes; the number of bytes read."""
        if self.closed or self.bad:
            return 0
        try:
            chunk = self.sock.recv(limit)
        except BlockingIOError:
            return 0
        except (ConnectionResetError, ConnectionAbortedError):
            self.closed = "reset"
            return 0
        if not chunk:
            self.closed = "eof"
            return 0
        self.feed(chunk)
        return len(chunk)

    def feed(self, chunk):
        if self.res is None:
            self.head += chunk
            try:
                self.res, used = parse_response(self.head, head=True)
            except _Incomplete:
                return
            chunk = bytes(self.head[used:])
            self.head = None
            if self.res.status != 200 or self.res.header("Content-Length") != str(len(self.data)):
                self.bad = "head %r" % self.res
                return
        if not chunk:
            return
        end = self.offset + len(chunk)
        if end > len(self.data) or self.view[self.offset:end] != chunk:
            self.bad = "body bytes %d..%d differ from the file" % (self.offset, end)
            return
        self.hash.update(chunk)
        self.offset = end

    def close(self):
        self.sock.close()


class ManySlowClients(ServerClass):
    """(c) 100 slow downloads at once cost bounded memory, not a copy of the file each."""

    CLIENTS = 100
    FAST = 10  # these finish; the others are closed part way

    @classmethod
    def setUpClass(cls):
        cls.server_env = asan_env()
        super().setUpClass()

    def test_100_slow_downloads_of_an_8_mib_file_do_not_hold_100_copies(self):
        name = "medium.bin"
        size = SIZES[name]
        warm = self.srv.request("GET", "/" + name, timeout=60)
        self.assertEqual((warm.status, sha(warm.body)), (200, sha(DATA[name])))
        del warm
        time.sleep(0.3)
        baseline = self.srv.memory()
        peak = dict(baseline)
        samples = 0

        def sample():
            nonlocal peak, samples
            m = self.srv.memory()
            samples += 1
            if m["VmRSS"] > peak["VmRSS"]:
                peak = m

        clients = []
        start = time.monotonic()
        try:
            for _ in range(self.CLIENTS):
                clients.append(SlowClient(self.srv.port, "/" + name, DATA[name]))
            # Phase 1, about 6 s: everyone reads a little, sleeps, repeats.
            rounds = 0
            while time.monotonic() - start < 6.0 and rounds < 1000:
                rounds += 1
                for c in clients:
                    c.read(8 * KiB)
                sample()
                time.sleep(0.05)
            slow_progress = sorted(c.offset for c in clients)
            # Phase 2, at most 20 s: the first FAST clients read as fast as they can.
            fast = clients[:self.FAST]
            sel = selectors.DefaultSelector()
            for c in fast:
                sel.register(c.sock, selectors.EVENT_READ, c)
            deadline = time.monotonic() + 20.0
            last_sample = 0.0
            while time.monotonic() < deadline and not all(c.done or c.closed or c.bad for c in fast):
                for key, _ in sel.select(timeout=0.5):
                    c = key.data
                    c.read(256 * KiB)
                    if c.done or c.closed or c.bad:
                        sel.unregister(c.sock)
                if time.monotonic() - last_sample > 0.2:
                    last_sample = time.monotonic()
                    sample()
            sample()
            sel.close()
        finally:
            for c in clients:
                c.close()

        copies = (peak["VmRSS"] - baseline["VmRSS"]) / size
        report = ("baseline VmRSS %.1f MiB (RssAnon %.1f), peak %.1f MiB (RssAnon %.1f) over %d samples: "
                  "%.2f copies of the %d MiB file" % (
                      baseline["VmRSS"] / MiB, baseline.get("RssAnon", 0) / MiB, peak["VmRSS"] / MiB,
                      peak.get("RssAnon", 0) / MiB, samples, copies, size // MiB))
        bad = [(i, c.bad) for i, c in enumerate(clients) if c.bad]
        self.assertEqual(bad, [], "corrupt downloads")
        no_head = [i for i, c in enumerate(clients) if c.res is None]
        self.assertEqual(no_head, [], "clients that never got a response head (closed: %r)"
                         % [clients[i].closed for i in no_head][:10])
        self.assertLess(slow_progress[-1], size, "a slow client finished in phase 1: nothing was slow")
        unfinished = [(i, c.offset, c.closed) for i, c in enumerate(clients[:self.FAST]) if not c.done]
        self.assertEqual(unfinished, [], "fast readers that did not get the whole file within 20 s: "
                         "(client, bytes, closed)")
        for c in clients[:self.FAST]:
            self.assertEqual(c.hash.hexdigest(), sha(DATA[name]))
        self.assertLess(peak["VmRSS"] - baseline["VmRSS"], 5 * size, report)
        print("\n    " + report + "; slow phase progress per client %d..%d bytes" % (
            slow_progress[0], slow_progress[-1]), file=sys.stderr)
        self.assert_healthy()


class WriteTimeout(ServerClass):
    """(d), (e): --write-timeout-ms bounds a stall, not a whole response."""

    server_args = ("--write-timeout-ms", "1000")

    def test_a_client_reading_steadily_for_longer_than_the_write_timeout_gets_the_whole_file(self):
        # Bigger than what the kernel takes off the server at once on loopback (its send
        # buffer grows to tcp_wmem's 4 MiB whatever the client's window), so the server
        # itself writes for seconds.
        name = "medium.bin"
        size = SIZES[name]
        rid = "steady-%d" % os.getpid()
        with self.srv.connect(timeout=5.0, rcvbuf=16 * KiB) as c:
            c.send(build_request("GET", "/" + name, {"X-Request-Id": rid}, close=True))
            start = time.monotonic()
            res = c.read_head(timeout=5.0)
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.header("Content-Length"), str(size), res)
            h = hashlib.sha256()
            got = ticks = 0
            # 64 KiB, a 0.05 s pause, again: 128 ticks, 6.4 s or more for 8 MiB.
            while got < size and ticks < 1000 and time.monotonic() - start < 60:
                ticks += 1
                tick = 0
                while tick < 64 * KiB and got < size:
                    data = c.read_some(min(64 * KiB - tick, size - got), timeout=5.0)
                    if not data:
                        break
                    h.update(data)
                    tick += len(data)
                    got += len(data)
                if c.closed_by and not c.buf:
                    break
                time.sleep(0.05)
            elapsed = time.monotonic() - start
            self.assertEqual(got, size, "the download was cut after %d of %d bytes, %.1f s in (%s)"
                             % (got, size, elapsed, c.closed_by))
            self.assertEqual(h.hexdigest(), sha(DATA[name]))
        self.assertGreater(elapsed, 4.0, "the client was meant to read for 4 s or more")
        # The access line is written when the write ends: it shows the server wrote for
        # longer than the write timeout (and did not just hand it all to the kernel).
        line = self.srv.wait_for_stdout(lambda l: ("id=" + rid) in l, timeout=5)
        self.assertIsNotNone(line, self.srv.output())
        m = re.search(r'" 200 (\d+) ([\d.]+)ms', line)
        self.assertIsNotNone(m, line)
        self.assertGreaterEqual(int(m.group(1)), size, line)
        self.assertGreater(float(m.group(2)), 1500, "the write did not outlast the write timeout: " + line)

    def test_a_client_that_stops_reading_is_dropped_about_the_write_timeout_later(self):
        name = "big.bin"
        size = SIZES[name]
        data = DATA[name]
        with self.srv.connect(timeout=5.0, rcvbuf=16 * KiB) as c:
            client_port = c.sock.getsockname()[1]
            c.send(build_request("GET", "/" + name))  # keep-alive: only the server's drop ends it
            res = c.read_head(timeout=5.0)
            self.assertEqual(res.status, 200, res)
            body = bytearray()
            while len(body) < 64 * KiB:
                chunk = c.read_some(64 * KiB - len(body), timeout=5.0)
                self.assertTrue(chunk, "closed after %d body bytes (%s)" % (len(body), c.closed_by))
                body += chunk
            stopped = time.monotonic()
            self.assertEqual(tcp_state(self.srv.port, client_port), "ESTABLISHED")
            # Watch the server's end of the connection in /proc/net/tcp, reading nothing.
            closed_at, state = None, "ESTABLISHED"
            while time.monotonic() - stopped < 4.0:
                state = tcp_state(self.srv.port, client_port)
                if state != "ESTABLISHED":
                    closed_at = time.monotonic()
                    break
                time.sleep(0.05)
            self.assertIsNotNone(closed_at, "the server's socket is still ESTABLISHED 4 s after the client "
                                 "stopped reading (write timeout 1 s)")
            after = closed_at - stopped
            self.assertGreater(after, 0.7, "dropped %.2f s after the client stopped, before the write timeout "
                               "(server socket now %s)" % (after, state))
            self.assertLess(after, 3.5, "dropped only %.2f s after the client stopped" % after)
            time.sleep(max(0.0, stopped + 3.5 - time.monotonic()))
            # What the kernels buffered arrives, then the end.
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline and len(body) < size:
                try:
                    chunk = c.read_some(256 * KiB, timeout=max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    break
                if not chunk:
                    break
                body += chunk
            self.assertIsNotNone(c.closed_by, "no EOF or reset after draining %d bytes" % len(body))
            self.assertLess(len(body), size // 2, "the client got %d of %d bytes" % (len(body), size))
            self.assertTrue(bytes(body) == data[:len(body)], "the bytes before the drop differ from the file")
        self.assert_healthy()


if __name__ == "__main__":
    unittest.main(verbosity=2)
