"""A small harness for driving the real coroute-server binary over loopback sockets.

Python 3 standard library only. It starts the binary named by $COROUTE_SERVER with
``--port 0 --www $COROUTE_WWW`` (plus extra arguments), reads its stdout until the
``coroute listening on SCHEME://HOST:PORT`` line (never a fixed sleep), collects
stdout and stderr in background threads, and stops it with SIGTERM. Raw-socket
helpers send bytes and read whole HTTP/1.1 responses with a timeout, so a server
that hangs fails a test instead of hanging it.
"""

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

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

    def __init__(self, port, host="127.0.0.1", timeout=5.0, tls_context=None, server_hostname=None):
        self.timeout = timeout
        sock = socket.create_connection((host, port), timeout=timeout)
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
