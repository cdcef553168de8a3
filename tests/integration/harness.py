"""A small harness for driving the real coroute-server binary over loopback sockets.

Python 3 standard library only. It starts the binary named by $COROUTE_SERVER with
``--port 0 --www $COROUTE_WWW`` (plus extra arguments), reads its stdout until the
``coroute listening on SCHEME://HOST:PORT`` line (never a fixed sleep), collects
stdout and stderr in background threads, and stops it with SIGTERM. Raw-socket
helpers send bytes and read whole HTTP/1.1 responses with a timeout, so a server
that hangs fails a test instead of hanging it.
"""

import codecs
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

LISTENING = re.compile(r"^coroute listening on (https?)://(\[[^\]]+\]|[^:/]+):(\d+)$")


def server_binary():
    path = os.environ.get("COROUTE_SERVER")
    if not path:
        raise RuntimeError("COROUTE_SERVER must name the coroute-server binary")
    return path


def default_www():
    path = os.environ.get("COROUTE_WWW")
    if not path:
        raise RuntimeError("COROUTE_WWW must name the www directory")
    return path


def clean_env(extra=None):
    """The environment without COROUTE_* variables (each is a server option), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COROUTE_")}
    env.update(extra or {})
    return env


def run_cli(*args, timeout=10.0):
    """Runs the binary to completion (for --help, --version, bad options): (code, stdout, stderr)."""
    p = subprocess.run([server_binary(), *args], capture_output=True, text=True, timeout=timeout, env=clean_env())
    return p.returncode, p.stdout, p.stderr


class SharedServerTestCase(unittest.TestCase):
    """A test class sharing one server, started with the class's `server_args`; a
    server that does not exit 0 at the end fails the class."""

    server_args = ()
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(*cls.server_args).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        if code != 0:
            raise AssertionError("server exited with %r\n%s" % (code, cls.srv.output()))


def fetch_all(server, targets, timeout=20.0):
    """Sends every target at once, each on its own connection; returns (responses, seconds)."""
    results = [None] * len(targets)
    errors = []
    barrier = threading.Barrier(len(targets))

    def one(i, target):
        try:
            barrier.wait(timeout)
            results[i] = server.request("GET", target, timeout=timeout)
        except Exception as e:  # reported on the test thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i, t)) for i, t in enumerate(targets)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    took = time.monotonic() - start
    if errors:
        raise errors[0]
    return results, took


class Server:
    """A running coroute-server. Use as a context manager, or call start() and stop()."""

    def __init__(self, *args, www=None, env=None, start_timeout=15.0, preexec_fn=None):
        self.args = list(args)
        self.preexec_fn = preexec_fn
        self.www = www or default_www()
        self.env = env
        self.start_timeout = start_timeout
        self.proc = None
        self.scheme = self.host = None
        self.port = None
        self.stdout_lines = []
        self.stderr_lines = []
        self._lock = threading.Condition()
        self._threads = []

    # -- life cycle ------------------------------------------------------------

    def start(self):
        cmd = [server_binary(), "--host", "127.0.0.1", "--port", "0", "--www", self.www, *self.args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=clean_env(self.env), preexec_fn=self.preexec_fn)
        for stream, sink in ((self.proc.stdout, self.stdout_lines), (self.proc.stderr, self.stderr_lines)):
            t = threading.Thread(target=self._collect, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)
        deadline = time.monotonic() + self.start_timeout
        with self._lock:
            while True:
                if self.stdout_lines:
                    m = LISTENING.match(self.stdout_lines[0])
                    if not m:
                        self._fail_start("first stdout line is not the listening line: %r" % self.stdout_lines[0])
                    self.scheme, self.host, self.port = m.group(1), m.group(2).strip("[]"), int(m.group(3))
                    return self
                if self.proc.poll() is not None:
                    self._lock.wait(0.2)  # let the reader threads catch the last lines
                    self._fail_start("exited with %s before listening" % self.proc.returncode)
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail_start("no listening line within %.1f s" % self.start_timeout)
                self._lock.wait(min(left, 0.1))

    def _fail_start(self, why):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        raise RuntimeError("coroute-server %s\nargs: %s\nstdout:\n%s\nstderr:\n%s" % (
            why, self.args, "\n".join(self.stdout_lines), "\n".join(self.stderr_lines)))

    def _collect(self, stream, sink):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._lock:
                sink.append(line)
                self._lock.notify_all()
        stream.close()
        with self._lock:
            self._lock.notify_all()

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout=10.0):
        """Waits for the process to exit; returns its exit code (raises on timeout)."""
        code = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=2.0)
        return code

    def stop(self, timeout=10.0):
        """SIGTERM, then waits; returns the exit code. Kills it if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("coroute-server did not exit within %.1f s of SIGTERM" % timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.stop()

    # -- output ----------------------------------------------------------------

    def wait_for_stdout(self, predicate, timeout=5.0):
        """The first stdout line for which predicate(line) is true, or None after timeout."""
        return self._wait_for(self.stdout_lines, predicate, timeout)

    def wait_for_stderr(self, predicate, timeout=5.0):
        return self._wait_for(self.stderr_lines, predicate, timeout)

    def _wait_for(self, lines, predicate, timeout):
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for line in lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.1))

    def cpu_seconds(self):
        """User + system CPU time the server has used so far (Linux /proc)."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def pid(self):
        return self.proc.pid

    def memory(self):
        """The server's memory fields from /proc/<pid>/status, in bytes: VmRSS, RssAnon, RssFile, VmHWM..."""
        out = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                name, sep, value = line.partition(":")
                parts = value.split()
                if sep and len(parts) == 2 and parts[1] == "kB":
                    out[name] = int(parts[0]) * 1024
        return out

    def rss_bytes(self):
        """The server's resident set size (VmRSS), in bytes."""
        return self.memory()["VmRSS"]

    def output(self):
        with self._lock:
            return "stdout:\n%s\nstderr:\n%s" % ("\n".join(self.stdout_lines), "\n".join(self.stderr_lines))

    # -- clients ---------------------------------------------------------------

    def connect(self, timeout=5.0, **kw):
        return Connection(self.port, host="127.0.0.1", timeout=timeout, **kw)

    def request(self, method, target, headers=None, body=b"", timeout=5.0):
        """One request on a fresh connection (with Connection: close); returns the Response."""
        with self.connect(timeout=timeout) as c:
            c.send(build_request(method, target, headers, body, close=True))
            return c.read_response(head=method == "HEAD")


# -- raw HTTP ------------------------------------------------------------------

def build_request(method, target, headers=None, body=b"", host="127.0.0.1", close=False, version="HTTP/1.1"):
    """Bytes of one request. Adds Host (unless headers has it or host is None) and Content-Length for a body."""
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s %s" % (method, target, version)]
    names = {k.lower() for k, _ in _pairs(headers)}
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    for k, v in _pairs(headers):
        lines.append("%s: %s" % (k, v))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    if close and "connection" not in names:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _pairs(headers):
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)


class Closed(Exception):
    """The peer closed (or reset) the connection before a whole response arrived."""


class Response:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version, self.status, self.reason = version, status, reason
        self.headers = headers  # [(name, value)] in order
        self.body = body
        self.raw = raw

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %s %r %r>" % (self.status, self.reason, self.headers, self.body[:200])


class _Incomplete(Exception):
    pass


def parse_response(data, head=False, eof=False):
    """Parses one response from the start of `data`: (Response, bytes used).

    Raises _Incomplete when more bytes are needed. With eof, a body delimited by the
    close is taken as it is. `head`: the response answers a HEAD (no body).
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise _Incomplete()
    head_text = data[:end].decode("latin-1")
    lines = head_text.split("\r\n")
    m = re.match(r"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", lines[0])
    if not m:
        raise ValueError("bad status line %r" % lines[0])
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError("bad header line %r" % line)
        headers.append((name, value.strip(" \t")))
    version, status, reason = m.group(1), int(m.group(2)), m.group(3)
    pos = end + 4
    res = Response(version, status, reason, headers, b"", None)
    te = (res.header("Transfer-Encoding") or "").lower()
    cl = res.header("Content-Length")
    if head or 100 <= status < 200 or status in (204, 304):
        body = b""
    elif te.endswith("chunked"):
        body = bytearray()
        while True:
            nl = data.find(b"\r\n", pos)
            if nl < 0:
                raise _Incomplete()
            size = int(data[pos:nl].split(b";")[0], 16)
            pos = nl + 2
            if size == 0:
                trailer_end = data.find(b"\r\n\r\n", pos - 2)
                if trailer_end < 0:
                    raise _Incomplete()
                pos = trailer_end + 4
                break
            if len(data) < pos + size + 2:
                raise _Incomplete()
            body += data[pos:pos + size]
            pos += size + 2
    elif cl is not None:
        n = int(cl)
        if len(data) < pos + n:
            raise _Incomplete()
        body = data[pos:pos + n]
        pos += n
    else:
        if not eof:
            raise _Incomplete()
        body = data[pos:]
        pos = len(data)
    res.body = bytes(body)
    res.raw = bytes(data[:pos])
    return res, pos


def parse_responses(data):
    """Every whole response in `data` (what a closed connection sent), in order."""
    out = []
    while data:
        try:
            res, used = parse_response(data, eof=True)
        except _Incomplete:
            break
        out.append(res)
        data = data[used:]
    return out


class Connection:
    """A client socket with a read buffer, so pipelined responses can be read one by one."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, tls_context=None, server_hostname=None, rcvbuf=None):
        self.timeout = timeout
        if rcvbuf is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        else:
            sock = small_window_socket(port, rcvbuf, host=host, timeout=timeout)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname=server_hostname or host)
        self.sock = sock
        self.buf = bytearray()
        self.closed_by = None  # "eof" or "reset" once the peer has closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _recv(self, deadline):
        """Reads once into the buffer; False on EOF or reset. Raises TimeoutError at the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data within the timeout")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(256 * 1024)
        except socket.timeout:
            raise TimeoutError("no data within the timeout") from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            self.closed_by = "reset"
            return False
        except ssl.SSLError as e:
            self.closed_by = "reset" if "EOF" not in str(e) else "eof"
            return False
        if not chunk:
            self.closed_by = "eof"
            return False
        self.buf += chunk
        return True

    def read_response(self, timeout=None, head=False):
        """Reads one whole response (a 1xx interim response counts as one). Raises
        TimeoutError when it does not arrive in time, Closed when the connection ends first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                res, used = parse_response(self.buf, head=head, eof=self.closed_by is not None)
                del self.buf[:used]
                return res
            except _Incomplete:
                pass
            if self.closed_by is not None:
                raise Closed("connection %s after %d bytes: %r"
                             % (self.closed_by, len(self.buf), bytes(self.buf[:300])))
            self._recv(deadline)

    def read_head(self, timeout=None):
        """Reads one response's head only; its body bytes stay in the buffer (see read_some)."""
        return self.read_response(timeout=timeout, head=True)

    def read_some(self, limit=256 * 1024, timeout=None):
        """Up to `limit` bytes: what is buffered, else one read. b"" once the peer has closed.
        Raises TimeoutError when nothing arrives in time."""
        if not self.buf and self.closed_by is None:
            self._recv(time.monotonic() + (self.timeout if timeout is None else timeout))
        data = bytes(self.buf[:limit])
        del self.buf[:limit]
        return data

    def read_until_close(self, timeout=None):
        """Everything until the peer closes; raises TimeoutError if it stays open."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self.closed_by is None:
            self._recv(deadline)
        data, self.buf = bytes(self.buf), bytearray()
        return data

    def wait_closed(self, timeout):
        """True when the peer closes within `timeout` with no further bytes; False if it stays
        open. Bytes arriving meanwhile are an error (AssertionError)."""
        try:
            data = self.read_until_close(timeout)
        except TimeoutError:
            if self.buf:
                raise AssertionError("unexpected bytes: %r" % bytes(self.buf[:300]))
            return False
        if data:
            raise AssertionError("unexpected bytes before the close: %r" % data[:300])
        return True

    def is_open(self, timeout=0.2):
        """True when nothing arrives and the peer does not close within `timeout`."""
        return not self.wait_closed(timeout)


def problem_fields(res):
    """The problem+json body's fields, after checking its shape."""
    ctype = res.header("Content-Type", "")
    if not ctype.startswith("application/problem+json"):
        raise AssertionError("Content-Type %r is not application/problem+json: %r" % (ctype, res))
    doc = res.json()
    for key in ("type", "title", "status", "detail"):
        if key not in doc:
            raise AssertionError("problem JSON lacks %r: %r" % (key, doc))
    if doc["status"] != res.status:
        raise AssertionError("problem status %r != response status %r" % (doc["status"], res.status))
    return doc


# -- slow clients and socket states --------------------------------------------

def small_window_socket(port, rcvbuf, host="127.0.0.1", timeout=5.0):
    """A connected TCP socket whose receive buffer is set to `rcvbuf` bytes before the
    connect (so the window is small from the handshake on: a client that reads slowly
    holds the server back instead of letting the kernel buffer megabytes)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}


def tcp_state(local_port, remote_port):
    """The state (a TCP_STATES name) of the IPv4 loopback socket 127.0.0.1:local_port whose peer
    is 127.0.0.1:remote_port, from /proc/net/tcp; None when there is none.

    With local_port the server's port and remote_port a client's, this shows whether the
    server has closed its side (FIN_WAIT1 while unsent data waits, or gone after a reset)
    without the client reading a byte."""
    loopback = socket.inet_aton("127.0.0.1")
    found = None
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) < 4:
                continue
            (lip, lport), (rip, rport) = (a.split(":") for a in fields[1:3])
            if int(lport, 16) != local_port or int(rport, 16) != remote_port:
                continue
            if bytes.fromhex(lip)[::-1] != loopback or bytes.fromhex(rip)[::-1] != loopback:
                continue
            state = TCP_STATES.get(int(fields[3], 16), fields[3])
            if state != "TIME_WAIT":  # an older connection of the same ports, long gone
                return state
            found = state
    return found


# -- Server-Sent Events -----------------------------------------------------------

class SseItem:
    """One thing a text/event-stream carried: an event (its fields) or a comment line."""

    def __init__(self, kind, at, comment=None, id=None, event=None, data=None):
        self.kind = kind  # "event" or "comment"
        self.at = at      # time.monotonic() when it was parsed
        self.comment = comment
        self.id = id
        self.event = event
        self.data = data

    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        if self.kind == "comment":
            return "<SSE comment %r>" % self.comment
        return "<SSE id=%r event=%r data=%r>" % (self.id, self.event, (self.data or "")[:200])


class EventStream:
    """A client of a Server-Sent Events response sent with chunked framing.

    It sends `GET target` (with `headers`), reads the head, then decodes the chunked
    body as it arrives (checking the framing: sizes, CRLFs, the terminal chunk) and
    parses the decoded text into SseItem: comments as they come, events at their blank
    line. Lines end in LF (a CR before it is dropped). Nothing is read unless asked, so a
    stream that is never read stalls on the server like a real stalled client.
    """

    def __init__(self, port, headers=None, target="/api/events", timeout=5.0, rcvbuf=None):
        self.conn = Connection(port, timeout=timeout, rcvbuf=rcvbuf)
        self.conn.send(build_request("GET", target, headers))
        self.timeout = timeout
        self.response = None
        self.body = bytearray()      # the decoded body so far
        self.ended = False           # the terminal chunk (and its trailer) arrived
        self.after_end = b""         # bytes after the terminal chunk (a framing error)
        self.framing_error = None
        self.items = []              # every SseItem parsed so far, in order
        self._next = 0               # index into items of the next one to hand out
        self._state = "size"
        self._left = 0
        self._text = ""
        self._fields = {}
        self._data = []
        self._decoder = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.conn.close()

    @property
    def closed_by(self):
        return self.conn.closed_by

    def open(self, timeout=None):
        """Reads the head (once); returns it as a Response with an empty body."""
        if self.response is None:
            self.response = self.conn.read_head(timeout=self.timeout if timeout is None else timeout)
            self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
            self._decode()
        return self.response

    def _pump(self, deadline):
        """One read and decode; False once the connection has closed."""
        if self.response is None:
            self.open(max(0.0, deadline - time.monotonic()))
            if self.items[self._next:]:
                return True
        if self.conn.closed_by is not None:
            return False
        ok = self.conn._recv(deadline)
        self._decode()
        return ok

    def _decode(self):
        buf = self.conn.buf
        out = bytearray()
        while buf and self.framing_error is None:
            if self._state == "size":
                nl = buf.find(b"\r\n")
                if nl < 0:
                    if len(buf) > 1024:
                        self.framing_error = "chunk-size line too long: %r" % bytes(buf[:100])
                    break
                line = bytes(buf[:nl])
                del buf[:nl + 2]
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.framing_error = "bad chunk-size line %r" % line
                    break
                if size == 0:
                    self._state = "trailer"
                else:
                    self._state, self._left = "data", size
            elif self._state == "data":
                take = min(self._left, len(buf))
                out += buf[:take]
                del buf[:take]
                self._left -= take
                if self._left == 0:
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(buf) < 2:
                    break
                if bytes(buf[:2]) != b"\r\n":
                    self.framing_error = "chunk data not followed by CRLF: %r" % bytes(buf[:20])
                    break
                del buf[:2]
                self._state = "size"
            elif self._state == "trailer":
                nl = buf.find(b"\r\n")
                if nl < 0:
                    break
                line = bytes(buf[:nl])
                del buf[:nl + 2]
                if line == b"":
                    self._state, self.ended = "done", True
            else:  # done
                self.after_end += bytes(buf)
                del buf[:]
        if out:
            self.body += out
            self._parse(self._decoder.decode(bytes(out)))

    def _parse(self, text):
        self._text += text
        now = time.monotonic()
        while True:
            nl = self._text.find("\n")
            if nl < 0:
                return
            line, self._text = self._text[:nl], self._text[nl + 1:]
            if line.endswith("\r"):
                line = line[:-1]
            if line == "":
                if self._data or self._fields:
                    self.items.append(SseItem("event", now, id=self._fields.get("id"),
                                              event=self._fields.get("event", "message"),
                                              data="\n".join(self._data)))
                self._fields, self._data = {}, []
            elif line.startswith(":"):
                self.items.append(SseItem("comment", now, comment=line[1:].lstrip(" ")))
            else:
                name, sep, value = line.partition(":")
                if sep and value.startswith(" "):
                    value = value[1:]
                if name == "data":
                    self._data.append(value)
                else:
                    self._fields[name] = value

    def next(self, timeout=None):
        """The next item (event or comment); TimeoutError if none arrives in time, Closed
        when the stream ends first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._next >= len(self.items):
            if self.framing_error:
                raise AssertionError("chunked framing error: " + self.framing_error)
            if not self._pump(deadline) and self._next >= len(self.items):
                raise Closed("event stream %s (terminal chunk: %s) after %d body bytes"
                             % (self.conn.closed_by, self.ended, len(self.body)))
        item = self.items[self._next]
        self._next += 1
        return item

    def next_event(self, timeout=None):
        """The next event, skipping comments (heartbeats)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            item = self.next(max(0.0, deadline - time.monotonic()))
            if item.kind == "event":
                return item

    def events_within(self, seconds):
        """Every event that arrives within `seconds` (comments skipped); the stream must stay open."""
        deadline = time.monotonic() + seconds
        got = []
        while True:
            try:
                got.append(self.next_event(max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                return got

    def wait_comment(self, text, timeout=None):
        """Reads until a comment equal to `text`; returns the items read before it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        before = []
        while True:
            item = self.next(max(0.0, deadline - time.monotonic()))
            if item.kind == "comment" and item.comment == text:
                return before
            before.append(item)

    def drain(self, timeout):
        """Reads until the server closes; returns the items not handed out yet. TimeoutError
        if the stream is still open after `timeout`."""
        deadline = time.monotonic() + timeout
        if self.response is None:
            self.open(timeout)
        while self._pump(deadline):
            pass
        rest = self.items[self._next:]
        self._next = len(self.items)
        return rest


def self_signed(prefix):
    """A fresh self-signed certificate for localhost and 127.0.0.1, in a temporary
    directory of its own: (directory, certificate file, key file)."""
    d = tempfile.mkdtemp(prefix=prefix)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return d, cert, key
