"""WebSockets on GET /ws (RFC 6455), against the real binary.

The contract:

* Handshake. A GET /ws with ``Upgrade: websocket``, a ``Connection`` list holding
  ``upgrade``, ``Sec-WebSocket-Version: 13`` and a ``Sec-WebSocket-Key`` of 16 bytes in
  base64 is answered ``101`` with ``Sec-WebSocket-Accept`` = base64(SHA-1(key + GUID))
  (§4.2.2) and the Date, Server and X-Request-Id every response carries. Anything else
  is an HTTP answer with a problem+json body: no upgrade asked for, or another version,
  is 426 naming what is spoken (``Upgrade: websocket`` with ``Connection: upgrade``, and
  ``Sec-WebSocket-Version: 13``; RFC 9110 §15.5.22 and §7.8 make both fields a MUST on
  every 426); a handshake that is
  not a GET, not HTTP/1.1, or lacks a field is 400; an ``Origin`` other than the
  server's own (the Host) or one of --ws-allowed-origins is 403, and no Origin at all
  (not a browser) is let through. Bytes sent right behind the handshake request are
  the socket's first frames.
* Frames. A client frame that breaks §5 fails the connection with a close frame and
  then the TCP close: unmasked, reserved bits, unknown opcodes, long or fragmented
  control frames, broken fragmentation, bad close frames (a 1-byte payload, a code
  §7.4 does not allow) are 1002, except that a close code of 5000 and up (which
  Beast 1.81 takes as valid) fails the connection by closing TCP; text that is not
  UTF-8 is 1007 (§8.1); a message over --ws-max-message-bytes is 1009, however it is
  fragmented. Pings are answered with a pong of the same payload, also between the
  fragments of a message (§5.4, §5.5.2). After any of these the server is healthy.
* The demo protocol: JSON text messages ``{"op": ...}``. ``echo`` sends the message
  back; ``db`` runs a query as a task of the socket (so many run at once and answer
  in the order they finish) and answers ``{"op":"db","id":...}``; ``subscribe`` /
  ``unsubscribe`` to ``items`` (or ``jobs``) start and stop ``{"op":"event","topic":"items",...}``
  messages for every change made through /api/items. A bad message is answered
  ``{"op":"error","detail":...}`` and the socket stays open.
* Limits and lifecycle. A peer that does not read while its send queue
  (--ws-send-queue, --ws-send-queue-bytes) fills is closed with 1008 "send queue
  full", the write stuck on it is given up after --ws-handshake-timeout-ms, and the
  server's memory does not grow with it; one message that cannot reach the peer within
  --ws-write-timeout-ms drops the connection; a peer silent for --ws-idle-timeout-ms is
  pinged at half of it and dropped at it; once the close frames are out the connection
  is given back within --ws-handshake-timeout-ms even if the peer never closes its side
  of TCP (§5.5.1, §7.1.1); SIGTERM closes every socket with 1001 and the process exits
  0 within the shutdown bound; an upgraded connection still counts toward
  --max-connections; all of it works over TLS (wss://).

Raw-socket tests use the small frame codec below (client frames masked, as §5.3
requires); the others use the ``websockets`` package (Debian's python3-websockets,
for /usr/bin/python3). Every wait is bounded by a timeout.
"""

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import ssl
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

from harness import (Closed, Server, SharedServerTestCase, build_request,  # noqa: E402
                     problem_fields, tcp_state)

try:
    import websockets  # noqa: E402
    from websockets.exceptions import ConnectionClosed  # noqa: E402
except ImportError:  # pragma: no cover
    sys.exit("test_websocket.py needs the websockets package: run it with /usr/bin/python3 "
             "(Debian's python3-websockets)")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

ECHO = '{"op":"echo","text":"hello"}'


def accept_of(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_headers(key=None, **override):
    """The fields of a valid handshake; override (underscores for dashes) changes or drops
    (None) one."""
    fields = {"Upgrade": "websocket", "Connection": "Upgrade",
              "Sec-WebSocket-Key": key or new_key(), "Sec-WebSocket-Version": "13"}
    for name, value in override.items():
        name = name.replace("_", "-")
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


# -- the frame codec (RFC 6455 §5.2) ----------------------------------------------

def mask_bytes(payload, key):
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True):
    """One frame as a client sends it: masked unless mask is False."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def fragments(opcode, payload, size):
    """A message as frames of `size` payload bytes: opcode, then continuations."""
    if isinstance(payload, str):
        payload = payload.encode()
    parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    return b"".join(frame(opcode if i == 0 else OP_CONT, p, fin=i == len(parts) - 1)
                    for i, p in enumerate(parts))


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload

    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        return "<Frame op=%#x fin=%d rsv=%d len=%d %r>" % (self.opcode, self.fin, self.rsv,
                                                           len(self.payload), self.payload[:60])


def parse_frame(buf):
    """(Frame, bytes used) from the start of buf, or None when it is incomplete."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n, pos = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack_from("!H", buf, 2)[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
    masked = bool(b1 & 0x80)
    key = None
    if masked:
        if len(buf) < pos + 4:
            return None
        key, pos = bytes(buf[pos:pos + 4]), pos + 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = mask_bytes(payload, key)
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload), pos + n


class ServerClosed(Exception):
    """A close frame arrived where a message was expected."""

    def __init__(self, frame):
        super().__init__("the server closed: code %r reason %r" % (frame.close_code(), frame.close_reason()))
        self.frame = frame


class RawSocket:
    """A WebSocket client over a plain socket: it sends the handshake (plus `first`, in the
    same write), checks the 101, then reads and writes frames as told, nothing more: it
    answers no ping and no close on its own."""

    def __init__(self, srv, headers=None, first=b"", timeout=5.0, rcvbuf=None):
        self.srv = srv
        self.timeout = timeout
        self.conn = srv.connect(timeout=timeout, rcvbuf=rcvbuf)
        self.key = new_key()
        fields = upgrade_headers(self.key)
        fields.update(headers or {})
        try:
            self.conn.send(build_request("GET", "/ws", fields) + first)
            self.response = self.conn.read_head()
        except BaseException:
            self.conn.close()
            raise
        if self.response.status != 101:
            self.conn.close()
            raise AssertionError("handshake answered %r" % self.response)
        self.opened = time.monotonic()
        self.buf = bytearray()
        self.eof = False
        self.controls = []  # pings and pongs that message() stepped over

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()

    def send(self, data):
        self.conn.send(data)

    def send_text(self, text):
        self.conn.send(frame(OP_TEXT, text))

    def next_frame(self, timeout=None):
        """The next frame; TimeoutError when none arrives in time, Closed at EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            got = parse_frame(self.buf)
            if got:
                f, used = got
                del self.buf[:used]
                if f.masked:
                    raise AssertionError("a server frame must not be masked (RFC 6455 §5.1): %r" % f)
                return f
            if self.eof:
                raise Closed("EOF after %d bytes of a frame: %r" % (len(self.buf), bytes(self.buf[:60])))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no whole frame within the timeout")
            data = self.conn.read_some(timeout=left)
            if not data:
                self.eof = True
            self.buf += data

    def message(self, timeout=None):
        """The next data message, its fragments joined: (opcode, payload). Pings and pongs
        are stepped over (kept in self.controls); a close frame raises ServerClosed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        opcode, parts = None, []
        while True:
            f = self.next_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode in (OP_PING, OP_PONG):
                self.controls.append(f)
                continue
            if f.opcode == OP_CLOSE:
                raise ServerClosed(f)
            if opcode is None:
                if f.opcode == OP_CONT:
                    raise AssertionError("the server sent a continuation without a start")
                opcode = f.opcode
            elif f.opcode != OP_CONT:
                raise AssertionError("the server began a message inside another: %r" % f)
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def text(self, timeout=None):
        opcode, payload = self.message(timeout)
        if opcode != OP_TEXT:
            raise AssertionError("expected a text message, got opcode %#x" % opcode)
        return payload.decode("utf-8")

    def close_frame(self, timeout=None):
        """Reads up to the server's close frame: (the frame, the data messages before it)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        before = []
        while True:
            try:
                before.append(self.message(max(0.0, deadline - time.monotonic())))
            except ServerClosed as e:
                return e.frame, before

    def wait_eof(self, timeout=3.0):
        """True when the server closes the TCP connection within `timeout`, sending nothing
        more (no frame may follow a close frame, §5.5.1)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                data = self.conn.read_some(timeout=left)
            except TimeoutError:
                return False
            if not data:
                self.eof = True
            self.buf += data
        if self.buf:
            raise AssertionError("bytes after the close frame: %r" % bytes(self.buf[:100]))
        return True

    def close(self, code=1000):
        """The client's side of a clean close: our close frame, the server's answer, the TCP
        close. Returns the answer's code."""
        self.send(frame(OP_CLOSE, close_payload(code)))
        f, _ = self.close_frame()
        if not self.wait_eof():
            raise AssertionError("the server kept the TCP connection after the close handshake")
        self.conn.close()
        return f.close_code()


# -- the websockets client ----------------------------------------------------------

def run_async(coro, timeout=30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ws_connect(url, **kw):
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 3)
    kw.setdefault("ping_interval", None)  # the client stays silent unless told to speak
    return websockets.connect(url, **kw)


async def recv_json(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


# -- the test cases -------------------------------------------------------------------

class WsTestCase(SharedServerTestCase):
    server_args = ("--db-latency-ms", "0")

    @property
    def url(self):
        return "ws://127.0.0.1:%d/ws" % self.srv.port

    def handshake(self, headers, host="127.0.0.1"):
        """The head of the answer to one GET /ws on a fresh connection."""
        with self.srv.connect() as c:
            c.send(build_request("GET", "/ws", headers, host=host))
            return c.read_head()

    def rejected(self, headers, status, word=None, **kw):
        """A handshake that must be refused with `status` and a problem body."""
        with self.srv.connect() as c:
            c.send(build_request(kw.get("method", "GET"), "/ws", headers, host=kw.get("host", "127.0.0.1"),
                                 version=kw.get("version", "HTTP/1.1")))
            res = c.read_response()
        self.assertEqual(res.status, status, res)
        doc = problem_fields(res)
        if word is not None:
            self.assertIn(word.lower(), doc["detail"].lower(), doc)
        self.assertIsNone(res.header("Sec-WebSocket-Accept"), res)
        return res

    def open(self, **kw):
        return RawSocket(self.srv, **kw)

    def assert_healthy(self):
        """A new socket's echo and GET /healthz both work."""
        with self.open() as ws:
            ws.send_text(ECHO)
            self.assertEqual(ws.text(), ECHO)
            self.assertEqual(ws.close(), 1000)
        res = self.srv.request("GET", "/healthz")
        self.assertEqual(res.status, 200, res)

    def assert_fails(self, data, code, what=""):
        """Sends `data` on a new socket: the server answers a close frame with `code`, then
        closes the TCP connection; the server stays healthy."""
        with self.open() as ws:
            ws.send(data)
            f, before = ws.close_frame()
            self.assertEqual(f.close_code(), code, "%s: close frame %r (messages before it: %r)"
                             % (what, f, before))
            self.assertTrue(ws.wait_eof(3.0), "%s: the TCP connection stayed open after the close frame" % what)
        self.assert_healthy()


class Handshake(WsTestCase):
    def test_a_valid_handshake_is_101_with_the_accept_and_the_usual_headers(self):
        key = new_key()
        with self.srv.connect() as c:
            c.send(build_request("GET", "/ws", upgrade_headers(key)))
            res = c.read_head()
            self.assertEqual(res.status, 101, res)
            self.assertEqual(res.header("Upgrade", "").lower(), "websocket", res)
            self.assertIn("upgrade", [t.strip().lower() for t in res.header("Connection", "").split(",")], res)
            self.assertEqual(res.header("Sec-WebSocket-Accept"), accept_of(key), res)
            self.assertRegex(res.header("Date", ""), r"^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$", res)
            self.assertTrue(res.header("Server", "").startswith("coroute/"), res)
            self.assertRegex(res.header("X-Request-Id", ""), r"^[0-9a-f]{8,}$", res)
            self.assertIsNone(res.header("Sec-WebSocket-Extensions"), "no extension was negotiated")
            c.send(frame(OP_TEXT, ECHO))
            got = parse_frame(c.read_some(timeout=5.0))
            self.assertIsNotNone(got)
            self.assertEqual((got[0].opcode, got[0].payload), (OP_TEXT, ECHO.encode()))

    def test_the_rfc_sample_key_gets_the_rfc_sample_accept(self):
        res = self.handshake(upgrade_headers("dGhlIHNhbXBsZSBub25jZQ=="))
        self.assertEqual(res.status, 101, res)
        self.assertEqual(res.header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")

    def test_tokens_are_matched_case_insensitively_within_lists(self):
        # Firefox sends "keep-alive, Upgrade"; the Upgrade token is case-insensitive (§4.2.1).
        res = self.handshake(upgrade_headers(Upgrade="WebSocket", Connection="keep-alive, Upgrade"))
        self.assertEqual(res.status, 101, res)

    def test_no_subprotocol_or_extension_is_chosen_when_offered(self):
        # §4.2.2: the server has none, so the 101 names none, and RSV1 stays reserved.
        offer = {"Sec-WebSocket-Protocol": "chat, superchat",
                 "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
        with self.open(headers=offer) as ws:
            self.assertEqual(ws.response.header("Sec-WebSocket-Accept"), accept_of(ws.key), ws.response)
            self.assertIsNone(ws.response.header("Sec-WebSocket-Protocol"), ws.response)
            self.assertIsNone(ws.response.header("Sec-WebSocket-Extensions"), ws.response)
            ws.send(frame(OP_TEXT, ECHO, rsv=4))
            f, _ = ws.close_frame()
            self.assertEqual(f.close_code(), 1002, f)

    def test_a_plain_get_is_426_naming_websocket(self):
        res = self.rejected(None, 426, "websocket")
        self.assertEqual(res.header("Upgrade", "").lower(), "websocket", res)

    def test_a_426_lists_upgrade_in_connection(self):
        # RFC 9110 §7.8: "When Upgrade is sent, the sender MUST also send a Connection
        # header field that contains an 'upgrade' connection option".
        for headers in (None, upgrade_headers(Sec_WebSocket_Version="8")):
            with self.subTest(headers=headers):
                res = self.rejected(headers, 426)
                tokens = [t.strip().lower() for t in res.header("Connection", "").split(",")]
                self.assertIn("upgrade", tokens, res)

    def test_another_version_is_426_naming_version_13(self):
        res = self.rejected(upgrade_headers(Sec_WebSocket_Version="8"), 426, "version")
        self.assertEqual(res.header("Sec-WebSocket-Version"), "13", res)
        # RFC 9110 §15.5.22 (RFC 7231 §6.5.15): a 426 MUST carry an Upgrade field.
        self.assertEqual(res.header("Upgrade", "").lower(), "websocket",
                         "a 426 must say which protocol to upgrade to: %r" % res)

    def test_a_missing_version_is_400(self):
        self.rejected(upgrade_headers(Sec_WebSocket_Version=None), 400, "Sec-WebSocket-Version")

    def test_a_missing_key_is_400(self):
        self.rejected(upgrade_headers(Sec_WebSocket_Key=None), 400, "Sec-WebSocket-Key")

    def test_a_malformed_key_is_400(self):
        for key in ("dGhlIHNhbXBsZQ==",                       # 10 bytes
                    "AAAAAAAAAAAAAAAAAAAAAAA=",               # 17 bytes
                    "dGhlIHNhbXBsZSBub25jZQ==dGhl",           # 24 + 4 characters
                    "dGhlIHNhbXBsZSBub25j!!==",               # not base64
                    "dGhlIHNhbXBsZSBub25jZQ",                 # no padding
                    ""):
            with self.subTest(key=key):
                self.rejected(upgrade_headers(Sec_WebSocket_Key=key), 400, "Sec-WebSocket-Key")

    def test_without_connection_upgrade_is_400(self):
        self.rejected(upgrade_headers(Connection=None), 400, "Connection")
        self.rejected(upgrade_headers(Connection="keep-alive"), 400, "Connection")

    def test_a_post_with_the_upgrade_fields_is_400(self):
        self.rejected(upgrade_headers(), 400, "GET", method="POST")

    def test_http_1_0_is_400(self):
        self.rejected(upgrade_headers(), 400, "HTTP/1.1", version="HTTP/1.0")

    def test_a_refused_handshake_leaves_the_server_healthy(self):
        self.rejected(upgrade_headers(Sec_WebSocket_Key="x"), 400)
        self.assert_healthy()

    def test_an_origin_equal_to_the_host_is_let_through(self):
        host = "127.0.0.1:%d" % self.srv.port
        res = self.handshake(upgrade_headers(Origin="http://" + host), host=host)
        self.assertEqual(res.status, 101, res)

    def test_a_foreign_origin_is_403(self):
        host = "127.0.0.1:%d" % self.srv.port
        self.rejected(upgrade_headers(Origin="http://evil.example"), 403, "origin", host=host)
        self.rejected(upgrade_headers(Origin="null"), 403, "origin", host=host)
        # Same host name, another port: another origin.
        self.rejected(upgrade_headers(Origin="http://127.0.0.1:1"), 403, "origin", host=host)

    def test_no_origin_is_not_a_browser_and_is_let_through(self):
        res = self.handshake(upgrade_headers())
        self.assertEqual(res.status, 101, res)

    def test_frames_in_the_handshake_write_are_the_first_messages(self):
        first = frame(OP_TEXT, ECHO) + frame(OP_TEXT, '{"op":"echo","n":2}')
        with self.open(first=first) as ws:
            self.assertEqual(ws.text(), ECHO)
            self.assertEqual(ws.text(), '{"op":"echo","n":2}')
            self.assertEqual(ws.close(), 1000)


class AllowedOrigins(unittest.TestCase):
    def test_a_listed_origin_is_let_through_and_the_servers_own_is_not(self):
        with Server("--ws-allowed-origins", "https://app.example") as srv:
            host = "127.0.0.1:%d" % srv.port
            for origin, status in (("https://app.example", 101), ("http://" + host, 403),
                                   ("http://app.example", 403), ("http://evil.example", 403)):
                with self.subTest(origin=origin), srv.connect() as c:
                    c.send(build_request("GET", "/ws", upgrade_headers(Origin=origin), host=host))
                    res = c.read_head()
                    self.assertEqual(res.status, status, res)
            self.assertEqual(srv.stop(), 0, srv.output())

    def test_a_star_lets_every_origin_through(self):
        with Server("--ws-allowed-origins", "*") as srv:
            for origin in ("https://app.example", "http://evil.example", "null"):
                with self.subTest(origin=origin), srv.connect() as c:
                    c.send(build_request("GET", "/ws", upgrade_headers(Origin=origin)))
                    self.assertEqual(c.read_head().status, 101)
            self.assertEqual(srv.stop(), 0, srv.output())


class Frames(WsTestCase):
    def test_an_unmasked_client_frame_is_1002(self):
        self.assert_fails(frame(OP_TEXT, ECHO, mask=False), 1002, "unmasked (§5.1)")

    def test_reserved_bits_without_an_extension_are_1002(self):
        for rsv in (4, 2, 1):
            with self.subTest(rsv=rsv):
                self.assert_fails(frame(OP_TEXT, ECHO, rsv=rsv), 1002, "RSV %d (§5.2)" % rsv)

    def test_unknown_opcodes_are_1002(self):
        for op in (0x3, 0x7, 0xB, 0xF):
            with self.subTest(opcode=op):
                self.assert_fails(frame(op, b"x"), 1002, "opcode %#x (§5.2)" % op)

    def test_a_control_frame_over_125_bytes_is_1002(self):
        self.assert_fails(frame(OP_PING, b"p" * 126), 1002, "126-byte ping (§5.5)")

    def test_a_fragmented_control_frame_is_1002(self):
        self.assert_fails(frame(OP_PING, b"p", fin=False), 1002, "ping without FIN (§5.5)")

    def test_a_continuation_without_a_start_is_1002(self):
        self.assert_fails(frame(OP_CONT, ECHO), 1002, "lone continuation (§5.4)")

    def test_a_new_data_frame_inside_a_fragmented_message_is_1002(self):
        data = frame(OP_TEXT, '{"op":', fin=False) + frame(OP_TEXT, '"echo"}')
        self.assert_fails(data, 1002, "text inside text (§5.4)")

    def test_invalid_utf8_in_a_text_frame_is_1007(self):
        for bad in (b'{"op":"echo","t":"\xff"}', b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"):
            with self.subTest(payload=bad):
                self.assert_fails(frame(OP_TEXT, bad), 1007, "invalid UTF-8 %r (§8.1)" % bad)

    def test_invalid_utf8_across_fragments_is_1007(self):
        data = frame(OP_TEXT, '{"op":"echo","t":"h\u00e9', fin=False) + frame(OP_CONT, b"\x80\xff\"}")
        self.assert_fails(data, 1007, "bad continuation of a valid prefix (§8.1)")

    def test_invalid_utf8_is_caught_before_the_message_ends(self):
        # The rest never comes: the server fails on the bad fragment itself (§8.1).
        self.assert_fails(frame(OP_TEXT, b'{"op":"echo","t":"\xff', fin=False), 1007, "bad first fragment")

    def test_a_code_point_split_across_fragments_is_valid(self):
        text = '{"op":"echo","t":"\u20ac"}'.encode()
        cut = text.index(b"\xe2") + 1
        with self.open() as ws:
            ws.send(frame(OP_TEXT, text[:cut], fin=False) + frame(OP_CONT, text[cut:]))
            self.assertEqual(ws.message(), (OP_TEXT, text))
            self.assertEqual(ws.close(), 1000)

    def test_close_frames_with_invalid_codes_are_1002(self):
        # §7.4.1/§7.4.2: 1004-1006 and 1015 are never sent; 0-999 are not used; 1016-2999
        # are reserved for the protocol; nothing is defined at 5000 and above.
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999):
            with self.subTest(code=code):
                self.assert_fails(frame(OP_CLOSE, close_payload(code)), 1002, "close code %d" % code)

    def test_a_close_code_above_4999_fails_the_connection(self):
        # §7.4.2 defines codes up to 4999 (4000-4999 private use); 5000-65535 belong to no
        # range. Beast 1.81 takes them as valid, so the server fails the connection itself
        # (§7.1.7): it closes TCP rather than echo an undefined code.
        for code in (5000, 65535):
            with self.subTest(code=code), self.open() as ws:
                ws.send(frame(OP_CLOSE, close_payload(code)))
                try:
                    f, _ = ws.close_frame()
                except Closed:
                    f = None  # failed without a close frame
                if f is not None:
                    self.assertEqual(f.close_code(), 1002, f)
                self.assertTrue(ws.wait_eof(3.0))
        self.assert_healthy()

    def test_a_close_frame_of_one_byte_is_1002(self):
        self.assert_fails(frame(OP_CLOSE, b"\x03"), 1002, "1-byte close payload (§5.5.1)")

    def test_a_close_reason_that_is_not_utf8_fails_the_connection(self):
        # §5.5.1 makes the reason UTF-8 and §8.1 says to fail on bytes that are not; the RFC
        # names no code for this one, and both 1002 (a bad close frame) and 1007 (bad UTF-8)
        # are fair (Autobahn case 7.5.1 takes either).
        with self.open() as ws:
            ws.send(frame(OP_CLOSE, close_payload(1000, b"bye \xff\xfe")))
            f, _ = ws.close_frame()
            self.assertIn(f.close_code(), (1002, 1007), f)
            self.assertTrue(ws.wait_eof(3.0))
        self.assert_healthy()

    def test_a_clean_close_is_echoed_and_the_server_closes_the_tcp_connection(self):
        for code in (1000, 1001, 3000, 4999):
            with self.subTest(code=code), self.open() as ws:
                ws.send(frame(OP_CLOSE, close_payload(code, b"bye")))
                f, _ = ws.close_frame()
                self.assertEqual(f.close_code(), code, f)
                self.assertTrue(ws.wait_eof(3.0), "§7.1.1: the server closes the TCP connection first")

    def test_an_empty_close_is_answered(self):
        with self.open() as ws:
            ws.send(frame(OP_CLOSE))
            f, _ = ws.close_frame()
            self.assertIn(f.close_code(), (None, 1000), f)
            self.assertTrue(ws.wait_eof(3.0))

    def test_ping_is_answered_with_a_pong_of_the_same_payload(self):
        with self.open() as ws:
            for payload in (b"", b"hello", bytes(range(125))):
                ws.send(frame(OP_PING, payload))
                f = ws.next_frame()
                self.assertEqual((f.opcode, f.fin, f.payload), (OP_PONG, True, payload), f)
            ws.send(frame(OP_PONG, b"unsolicited"))  # §5.5.3: no answer
            ws.send_text(ECHO)
            self.assertEqual(ws.text(), ECHO)
            self.assertEqual(ws.controls, [])
            self.assertEqual(ws.close(), 1000)

    def test_a_ping_between_fragments_is_answered_and_the_message_stays_whole(self):
        text = '{"op":"echo","text":"fragmented"}'
        with self.open() as ws:
            ws.send(frame(OP_TEXT, text[:10], fin=False) + frame(OP_PING, b"mid") +
                    frame(OP_CONT, text[10:20], fin=False) + frame(OP_CONT, text[20:]))
            f = ws.next_frame()
            self.assertEqual((f.opcode, f.payload), (OP_PONG, b"mid"), f)
            self.assertEqual(ws.text(), text)
            self.assertEqual(ws.close(), 1000)

    def test_the_websockets_client_pings(self):
        async def go():
            async with ws_connect(self.url) as ws:
                latency = await asyncio.wait_for(await ws.ping(b"abc"), 5)
                self.assertLess(latency, 2.0)
                await ws.send(ECHO)
                self.assertEqual(await asyncio.wait_for(ws.recv(), 5), ECHO)
            self.assertEqual(ws.close_code, 1000)
        run_async(go())


class MessageLimit(WsTestCase):
    server_args = ("--db-latency-ms", "0", "--ws-max-message-bytes", "1024")

    @staticmethod
    def echo_of_size(n):
        head = '{"op":"echo","pad":"'
        return head + "x" * (n - len(head) - 2) + '"}'

    def test_a_message_of_exactly_the_limit_is_echoed(self):
        msg = self.echo_of_size(1024)
        with self.open() as ws:
            ws.send_text(msg)
            self.assertEqual(ws.text(), msg)
            ws.send(fragments(OP_TEXT, msg, 100))
            self.assertEqual(ws.text(), msg)
            self.assertEqual(ws.close(), 1000)

    def test_one_frame_over_the_limit_is_1009(self):
        self.assert_fails(frame(OP_TEXT, self.echo_of_size(1025)), 1009, "1025 bytes in one frame")
        self.assert_fails(frame(OP_BINARY, b"\0" * 70000), 1009, "70000 bytes in one binary frame")

    def test_fragments_adding_up_past_the_limit_are_1009(self):
        self.assert_fails(fragments(OP_TEXT, self.echo_of_size(1500), 300), 1009, "5 fragments of 300")

    def test_the_websockets_client_sees_1009(self):
        async def go():
            async with ws_connect(self.url) as ws:
                await ws.send(self.echo_of_size(2000))
                with self.assertRaises(ConnectionClosed) as cm:
                    await asyncio.wait_for(ws.recv(), 5)
                self.assertEqual(cm.exception.rcvd.code, 1009, cm.exception)
        run_async(go())
        self.assert_healthy()


class LargeMessages(WsTestCase):
    server_args = ("--db-latency-ms", "0", "--ws-max-message-bytes", str(8 << 20))

    def test_4_mib_in_many_fragments_is_echoed_whole(self):
        body = os.urandom(3 << 20)
        msg = ('{"op":"echo","pad":"%s"}' % base64.b64encode(body).decode()).encode()
        self.assertGreater(len(msg), 4 << 20)
        with self.open(timeout=20.0) as ws:
            ws.send(fragments(OP_TEXT, msg, 64 * 1024))
            opcode, got = ws.message(timeout=20.0)
            self.assertEqual(opcode, OP_TEXT)
            self.assertEqual(len(got), len(msg))
            self.assertTrue(got == msg, "the echo differs from the message")
            self.assertEqual(ws.close(), 1000)

    def test_the_websockets_client_sends_and_gets_4_mib(self):
        msg = '{"op":"echo","pad":"%s"}' % ("0123456789abcdef" * (1 << 18))

        async def go():
            async with ws_connect(self.url, max_size=16 << 20) as ws:
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), 20)
                self.assertTrue(got == msg, "the echo differs (%d bytes, sent %d)" % (len(got), len(msg)))
        run_async(go())
        self.assert_healthy()


class Demo(WsTestCase):
    def test_echo_returns_the_same_message(self):
        async def go():
            async with ws_connect(self.url) as ws:
                for msg in (ECHO, '{"op":"echo","text":"caf\u00e9 \u2603","n":[1,2,3]}', '{ "op" : "echo" }'):
                    await ws.send(msg)
                    self.assertEqual(await asyncio.wait_for(ws.recv(), 5), msg)
        run_async(go())

    def test_bad_messages_are_errors_and_the_socket_stays_open(self):
        cases = [('{"op":"nope"}', "nope"), ("{not json", "json"), ('{"x":1}', "op"), ("[1,2]", "op"),
                 ('{"op":3}', "op"), (b"\x00\x01binary", "binary"), ('{"op":"subscribe","topic":"x"}', "items")]

        async def go():
            async with ws_connect(self.url) as ws:
                for msg, word in cases:
                    await ws.send(msg)
                    doc = await recv_json(ws)
                    self.assertEqual(doc.get("op"), "error", (msg, doc))
                    self.assertIn(word, doc.get("detail", "").lower(), (msg, doc))
                await ws.send(ECHO)
                self.assertEqual(await asyncio.wait_for(ws.recv(), 5), ECHO)
        run_async(go())

    def test_a_bad_delay_ms_is_an_error_naming_it(self):
        async def go():
            async with ws_connect(self.url) as ws:
                for i, delay in enumerate(("100", -1, 10001, 1.5, True, None, [1])):
                    await ws.send(json.dumps({"op": "db", "id": i, "delay_ms": delay}))
                    doc = await recv_json(ws)
                    self.assertEqual(doc.get("op"), "error", (delay, doc))
                    self.assertIn("delay_ms", doc.get("detail", ""), (delay, doc))
                    self.assertEqual(doc.get("id"), i, doc)
                await ws.send(json.dumps({"op": "db", "id": "ok", "delay_ms": 0}))
                doc = await recv_json(ws)
                self.assertEqual((doc.get("op"), doc.get("id")), ("db", "ok"), doc)
                self.assertIsInstance(doc.get("items"), list, doc)
        run_async(go())

    def test_100_queries_on_one_socket_run_at_once(self):
        async def go():
            async with ws_connect(self.url) as ws:
                start = time.monotonic()
                for i in range(100):
                    await ws.send(json.dumps({"op": "db", "id": i, "delay_ms": 200}))
                seen = []
                for _ in range(100):
                    doc = await recv_json(ws, 10)
                    self.assertEqual(doc.get("op"), "db", doc)
                    self.assertGreaterEqual(doc.get("elapsed_ms", 0), 190, doc)
                    self.assertIsInstance(doc.get("items"), list, doc)
                    seen.append(doc["id"])
                elapsed = time.monotonic() - start
                self.assertEqual(sorted(seen), list(range(100)))
                self.assertLess(elapsed, 5.0, "100 queries of 200 ms took %.2f s: not concurrent" % elapsed)
        run_async(go())

    def test_answers_come_in_the_order_the_queries_finish(self):
        async def go():
            async with ws_connect(self.url) as ws:
                await ws.send(json.dumps({"op": "db", "id": "slow", "delay_ms": 600}))
                await ws.send(json.dumps({"op": "db", "id": "fast", "delay_ms": 100}))
                await ws.send(ECHO)  # read at once, while both queries run
                self.assertEqual(await asyncio.wait_for(ws.recv(), 0.5), ECHO)
                first, second = await recv_json(ws), await recv_json(ws)
                self.assertEqual([first.get("id"), second.get("id")], ["fast", "slow"], (first, second))
        run_async(go())

    def test_subscribe_gets_item_events_and_unsubscribe_stops_them(self):
        def create(name, price):
            res = self.srv.request("POST", "/api/items", {"Content-Type": "application/json"},
                                   json.dumps({"name": name, "price": price}))
            self.assertEqual(res.status, 201, res)
            return res.json()

        async def go():
            async with ws_connect(self.url) as ws:
                await ws.send('{"op":"subscribe","topic":"items"}')
                self.assertEqual(await recv_json(ws), {"op": "subscribed", "topic": "items"})
                item = await asyncio.to_thread(create, "ws-widget", 4.25)
                ev = await recv_json(ws)
                self.assertEqual((ev.get("op"), ev.get("topic")), ("event", "items"), ev)
                self.assertIsInstance(ev.get("seq"), int, ev)
                self.assertEqual(ev["data"], {"op": "created", "item": item}, ev)
                other = await asyncio.to_thread(create, "ws-gadget", 1.0)
                ev2 = await recv_json(ws)
                self.assertEqual(ev2["seq"], ev["seq"] + 1, ev2)
                self.assertEqual(ev2["data"]["item"], other, ev2)

                await ws.send('{"op":"unsubscribe","topic":"items"}')
                self.assertEqual(await recv_json(ws), {"op": "unsubscribed", "topic": "items"})
                await asyncio.to_thread(create, "ws-unseen", 2.0)
                with self.assertRaises(asyncio.TimeoutError):
                    got = await asyncio.wait_for(ws.recv(), 0.5)
                    self.fail("an event after unsubscribe: %r" % got)
                await ws.send(ECHO)
                self.assertEqual(await asyncio.wait_for(ws.recv(), 5), ECHO)
        run_async(go())

    def test_the_jobs_topic_carries_a_jobs_changes_to_its_end(self):
        def start_job():
            res = self.srv.request("POST", "/api/jobs", {"Content-Type": "application/json"},
                                   json.dumps({"queries": 3, "delay_ms": 20, "parallel": 1}))
            self.assertEqual(res.status, 202, res)
            return res.json()

        async def go():
            async with ws_connect(self.url) as ws:
                await ws.send('{"op":"subscribe","topic":"jobs"}')
                self.assertEqual(await recv_json(ws), {"op": "subscribed", "topic": "jobs"})
                job = await asyncio.to_thread(start_job)
                states = []
                while not states or states[-1]["state"] not in ("done", "failed", "cancelled"):
                    ev = await recv_json(ws)
                    self.assertEqual((ev.get("op"), ev.get("topic")), ("event", "jobs"), ev)
                    if ev["data"]["id"] == job["id"]:
                        states.append(ev["data"])
                self.assertEqual(states[0]["state"], "running", states)
                self.assertEqual((states[-1]["state"], states[-1]["progress"]), ("done", 1), states)
        run_async(go())


class SlowReader(WsTestCase):
    server_args = ("--db-latency-ms", "0", "--ws-send-queue", "8", "--log-level", "debug",
                   "--access-log", "off")

    def test_a_peer_that_does_not_read_is_closed_with_1008_and_memory_stays_bounded(self):
        msg = ('{"op":"echo","pad":"%s"}' % ("y" * (64 * 1024))).encode()
        data = frame(OP_TEXT, msg)
        count = 600  # ~39 MiB of echoes, were they all kept
        baseline = self.srv.rss_bytes()
        with self.open(rcvbuf=4096, timeout=5.0) as ws:
            sent = 0
            ws.conn.sock.settimeout(3.0)
            try:
                for _ in range(count):
                    ws.conn.sock.sendall(data)
                    sent += 1
            except OSError:
                pass  # the server stopped reading: it has given up on us
            self.assertGreater(sent, 20, "the server must keep reading while its writes wait")
            # A sync point only; what counts is what arrives on the wire.
            self.srv.wait_for_stderr(lambda line: "send queue full" in line, timeout=5.0)
            peak = self.srv.rss_bytes()
            start = time.monotonic()
            f, before = ws.close_frame(timeout=10.0)
            took = time.monotonic() - start
            self.assertEqual((f.close_code(), f.close_reason()), (1008, b"send queue full"), f)
            self.assertGreaterEqual(len(before), 1, "the echo in flight is finished before the close")
            self.assertLess(len(before), sent, "a reader this slow cannot get every echo")
            for opcode, payload in before:
                self.assertTrue(opcode == OP_TEXT and payload == msg, "an echo arrived damaged")
            self.assertLess(took, 5.0, "the close took %.2f s to arrive" % took)
            ws.send(frame(OP_CLOSE, close_payload(1000)))
            self.assertTrue(ws.wait_eof(5.0))
        grown = peak - baseline
        self.assertLess(grown, 24 << 20, "RSS grew by %d MiB with one slow reader" % (grown >> 20))
        self.assert_healthy()


class IdleTimeout(WsTestCase):
    server_args = ("--db-latency-ms", "0", "--ws-idle-timeout-ms", "600")

    def test_a_silent_peer_is_pinged_at_half_the_timeout_then_dropped(self):
        with self.open() as ws:
            f = ws.next_frame(timeout=3.0)
            pinged = time.monotonic() - ws.opened
            self.assertEqual(f.opcode, OP_PING, f)
            self.assertGreater(pinged, 0.15, "pinged at %.3f s, before half the timeout" % pinged)
            self.assertLess(pinged, 1.0, "pinged at %.3f s, not at ~0.3 s" % pinged)
            self.assertTrue(ws.wait_eof(3.0), "a peer that never answers must be dropped")
            dropped = time.monotonic() - ws.opened
            self.assertGreater(dropped, 0.45, "dropped at %.3f s, before the timeout" % dropped)
            self.assertLess(dropped, 3.0)
        self.assertEqual(self.srv.request("GET", "/healthz").status, 200)

    def test_a_peer_that_answers_pings_stays_open(self):
        async def go():
            async with ws_connect(self.url) as ws:
                await asyncio.sleep(2.2)
                self.assertTrue(ws.open)
                await ws.send(ECHO)
                self.assertEqual(await asyncio.wait_for(ws.recv(), 5), ECHO)
        run_async(go())

    def test_a_raw_peer_that_pongs_stays_open(self):
        with self.open() as ws:
            end = time.monotonic() + 1.8
            pings = 0
            while time.monotonic() < end:
                try:
                    f = ws.next_frame(timeout=max(0.01, end - time.monotonic()))
                except TimeoutError:
                    break
                self.assertEqual(f.opcode, OP_PING, f)
                pings += 1
                ws.send(frame(OP_PONG, f.payload))
            self.assertGreaterEqual(pings, 2)
            ws.send_text(ECHO)
            self.assertEqual(ws.text(timeout=2.0), ECHO)


class SlowReaderBytes(WsTestCase):
    server_args = ("--db-latency-ms", "0", "--ws-send-queue", "100000", "--ws-send-queue-bytes", str(512 * 1024))

    def test_the_byte_bound_of_the_queue_closes_a_slow_reader_with_1008(self):
        msg = ('{"op":"echo","pad":"%s"}' % ("b" * (64 * 1024))).encode()
        data = frame(OP_TEXT, msg)
        with self.open(rcvbuf=4096) as ws:
            ws.conn.sock.settimeout(3.0)
            try:
                for _ in range(300):
                    ws.conn.sock.sendall(data)
            except OSError:
                pass
            time.sleep(0.3)  # the server has read what was sent; now read what it wrote
            f, before = ws.close_frame(timeout=10.0)
            self.assertEqual((f.close_code(), f.close_reason()), (1008, b"send queue full"), f)
            self.assertLess(len(before), 300)
            ws.send(frame(OP_CLOSE, close_payload(1000)))
            self.assertTrue(ws.wait_eof(5.0))
        self.assert_healthy()


class SlowReaderNeverReads(WsTestCase):
    server_args = ("--db-latency-ms", "0", "--ws-send-queue", "8", "--ws-handshake-timeout-ms", "1000")

    def test_a_peer_that_never_reads_is_dropped_within_the_handshake_timeout(self):
        msg = frame(OP_TEXT, '{"op":"echo","pad":"%s"}' % ("n" * (64 * 1024)))
        with self.open(rcvbuf=4096) as ws:
            client_port = ws.conn.sock.getsockname()[1]
            ws.conn.sock.settimeout(3.0)
            try:
                for _ in range(300):
                    ws.conn.sock.sendall(msg)
            except OSError:
                pass
            start = time.monotonic()
            # The 1008 close frame cannot get through; the write stuck on us is given up
            # after the handshake timeout and the connection dropped (seen on the server's side).
            while tcp_state(self.srv.port, client_port) == "ESTABLISHED":
                self.assertLess(time.monotonic() - start, 1.0 + 3.0, "a peer that never reads is kept")
                time.sleep(0.02)
        self.assert_healthy()


class WriteTimeout(WsTestCase):
    server_args = ("--db-latency-ms", "0", "--ws-write-timeout-ms", "500", "--ws-max-message-bytes", str(4 << 20))

    def test_a_message_stuck_past_the_write_timeout_drops_the_connection(self):
        msg = '{"op":"echo","pad":"%s"}' % ("w" * (3 << 20))
        with self.open(rcvbuf=4096) as ws:
            client_port = ws.conn.sock.getsockname()[1]
            ws.send_text(msg)
            start = time.monotonic()
            # The client reads nothing: the server's side of the connection shows the drop
            # (FIN_WAIT1 behind the unsent bytes, or gone after a reset).
            while tcp_state(self.srv.port, client_port) == "ESTABLISHED":
                self.assertLess(time.monotonic() - start, 5.0, "the stuck write was never given up")
                time.sleep(0.02)
            took = time.monotonic() - start
            self.assertGreater(took, 0.3, "dropped after %.3f s, before the write timeout" % took)
            self.assertLess(took, 3.0, "dropped after %.3f s; the write timeout is 0.5 s" % took)
        self.assert_healthy()


class Release(unittest.TestCase):
    """A closed socket's connection is given back even when the peer never closes its
    side of TCP: the closing handshake is bounded by --ws-handshake-timeout-ms. A server
    per test, as a connection held for good would spoil the next test."""

    def setUp(self):
        self.srv = Server("--max-connections", "1", "--ws-handshake-timeout-ms", "500",
                          "--ws-max-message-bytes", "100").start()

    def tearDown(self):
        code = self.srv.stop()
        self.assertEqual(code, 0, self.srv.output())

    def wait_until_served(self, within):
        """Seconds until a new connection is served GET /healthz, or None past `within`."""
        start = time.monotonic()
        while time.monotonic() - start < within:
            try:
                with self.srv.connect(timeout=1.0) as c:
                    c.send(build_request("GET", "/healthz"))
                    if c.read_response(timeout=1.0).status == 200:
                        return time.monotonic() - start
            except (Closed, OSError, TimeoutError):
                pass
            time.sleep(0.05)
        return None

    def open_socket(self):
        """A socket, once the slot is free (the server sees a probe's close a moment later)."""
        deadline = time.monotonic() + 3.0
        while True:
            try:
                return RawSocket(self.srv)
            except (Closed, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def check(self, data, code, what):
        with self.open_socket() as ws:
            ws.send(data)
            f, _ = ws.close_frame()
            self.assertEqual(f.close_code(), code, f)
            self.assertTrue(ws.wait_eof(3.0), "the server half-closes after its close frame")
            # We neither send nor close: the server must still let go of the connection.
            took = self.wait_until_served(0.5 + 2.5)
            self.assertIsNotNone(took, "%s: the connection is still held 3 s after the server's close "
                                       "frame (handshake timeout 0.5 s)" % what)

    def test_after_a_protocol_error(self):
        self.check(frame(OP_TEXT, b"x", mask=False), 1002, "after 1002 (unmasked frame)")

    def test_after_a_message_over_the_limit(self):
        self.check(frame(OP_TEXT, b"x" * 200), 1009, "after 1009")

    def test_after_a_clean_close_begun_by_the_client(self):
        self.check(frame(OP_CLOSE, close_payload(1000)), 1000, "after a clean close")


class Shutdown(unittest.TestCase):
    def test_sigterm_closes_every_socket_with_1001_and_exits_0(self):
        srv = Server("--shutdown-timeout-ms", "3000").start()
        sockets = []
        try:
            sockets = [RawSocket(srv) for _ in range(3)]
            for ws in sockets:  # each is open and served
                ws.send_text(ECHO)
                self.assertEqual(ws.text(), ECHO)
            start = time.monotonic()
            srv.signal(signal.SIGTERM)
            for i, ws in enumerate(sockets):
                f, before = ws.close_frame(timeout=5.0)
                self.assertEqual(f.close_code(), 1001, f)
                self.assertEqual(before, [])
                if i < 2:  # the last one never answers the close
                    ws.send(frame(OP_CLOSE, close_payload(1001)))
                    self.assertTrue(ws.wait_eof(3.0))
            code = srv.wait(timeout=10.0)
            took = time.monotonic() - start
            self.assertEqual(code, 0, srv.output())
            self.assertLess(took, 3.0 + 1.5, "exited %.2f s after SIGTERM; the bound is 3 s" % took)
        finally:
            for ws in sockets:
                ws.conn.close()
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()

    def test_sigterm_with_websockets_clients(self):
        srv = Server("--shutdown-timeout-ms", "3000").start()
        codes = []
        try:
            async def one(opened):
                async with ws_connect("ws://127.0.0.1:%d/ws" % srv.port) as ws:
                    if not opened.done():
                        opened.set_result(True)
                    try:
                        await asyncio.wait_for(ws.recv(), 8)
                    except ConnectionClosed:
                        pass
                    await asyncio.wait_for(ws.wait_closed(), 8)
                    codes.append(ws.close_code)

            async def go():
                loop = asyncio.get_running_loop()
                flags = [loop.create_future() for _ in range(3)]
                tasks = [asyncio.create_task(one(f)) for f in flags]
                await asyncio.wait_for(asyncio.gather(*flags), 5)
                srv.signal(signal.SIGTERM)
                await asyncio.gather(*tasks)
            start = time.monotonic()
            run_async(go(), timeout=15)
            self.assertEqual(codes, [1001, 1001, 1001])
            self.assertEqual(srv.wait(timeout=10.0), 0, srv.output())
            self.assertLess(time.monotonic() - start, 3.0 + 1.5)
        finally:
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()


class MaxConnections(WsTestCase):
    server_args = ("--max-connections", "2")

    def test_open_sockets_count_toward_max_connections(self):
        a, b = self.open(), self.open()
        try:
            with self.srv.connect() as extra:
                start = time.monotonic()
                try:
                    extra.send(build_request("GET", "/ws", upgrade_headers()))
                except OSError:
                    pass
                try:
                    data = extra.read_until_close(3.0)
                except TimeoutError:
                    self.fail("a third connection must be closed at once")
                self.assertEqual(data, b"", "no answer, just the close")
                self.assertLess(time.monotonic() - start, 1.0)
            for ws in (a, b):  # the two open ones are untouched
                ws.send_text(ECHO)
                self.assertEqual(ws.text(), ECHO)
            self.assertEqual(a.close(), 1000)

            # One closed: a new connection fits again, once the server has seen the close.
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    with self.open() as c:
                        c.send_text(ECHO)
                        self.assertEqual(c.text(), ECHO)
                        c.close()
                    break
                except (Closed, AssertionError, OSError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            a.conn.close()
            b.conn.close()


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("no openssl CLI")
        cls.tmp, cls.cert, cls.key = harness.self_signed("coroute-wss-")
        cls.srv = Server("--tls-cert", cls.cert, "--tls-key", cls.key, "--db-latency-ms", "0").start()

    @classmethod
    def tearDownClass(cls):
        try:
            code = cls.srv.stop()
            if code != 0:
                raise AssertionError("server exited with %r\n%s" % (code, cls.srv.output()))
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_echo_and_db_over_wss(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        big = '{"op":"echo","pad":"%s"}' % ("z" * 200000)

        async def go():
            async with ws_connect("wss://127.0.0.1:%d/ws" % self.srv.port, ssl=ctx) as ws:
                await ws.send(ECHO)
                self.assertEqual(await asyncio.wait_for(ws.recv(), 5), ECHO)
                await ws.send(big)
                self.assertTrue(await asyncio.wait_for(ws.recv(), 5) == big)
                await ws.send(json.dumps({"op": "db", "id": 7, "delay_ms": 50}))
                doc = await recv_json(ws)
                self.assertEqual((doc.get("op"), doc.get("id")), ("db", 7), doc)
                self.assertIsInstance(doc.get("items"), list, doc)
            self.assertEqual(ws.close_code, 1000)
        run_async(go())

    def test_a_protocol_error_over_tls_is_1002(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        with self.srv.connect(tls_context=ctx) as c:
            c.send(build_request("GET", "/ws", upgrade_headers()))
            self.assertEqual(c.read_head().status, 101)
            c.send(frame(OP_TEXT, ECHO, mask=False))
            got = parse_frame(c.read_some(timeout=5.0))
            self.assertIsNotNone(got)
            self.assertEqual((got[0].opcode, got[0].close_code()), (OP_CLOSE, 1002), got[0])


if __name__ == "__main__":
    unittest.main()
