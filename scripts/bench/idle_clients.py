#!/usr/bin/env python3
"""Holds N idle keep-alive connections open to an HTTP server, for the idle-10k scenario.

usage: idle_clients.py HOST PORT N [PATH [websocket]]

Opens N connections, sends one keep-alive `GET PATH` on each and reads its whole
response, so every connection is in the state a browser leaves it in: served once,
kept alive, idle. With `websocket`, the request is a WebSocket handshake and each
connection is left an open, idle socket after its `101`. Then prints `READY <open> <failed>` and holds them until stdin
closes (or 60 s pass), and closes them. Python 3 standard library only; everything
is bounded in time.
"""

import resource
import selectors
import socket
import sys
import time


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/healthz"
    websocket = len(sys.argv) > 5 and sys.argv[5] == "websocket"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, count + 64) if hard != resource.RLIM_INFINITY else count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    if websocket:
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    deadline = time.monotonic() + 45
    sel = selectors.DefaultSelector()
    pending = {}  # socket -> bytes received so far
    failed = 0
    opened = []
    batch = 500  # in flight at once: well under the listen backlog
    started = 0
    while (started < count or pending) and time.monotonic() < deadline:
        while started < count and len(pending) < batch:
            started += 1
            try:
                s = socket.create_connection((host, port), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(request)
                s.setblocking(False)
            except OSError:
                failed += 1
                continue
            pending[s] = b""
            sel.register(s, selectors.EVENT_READ)
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                del pending[s]
                s.close()
                failed += 1
                continue
            buf = pending[s] + data
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                pending[s] = buf
                continue
            if websocket and not buf.startswith(b"HTTP/1.1 101 "):
                sel.unregister(s)
                del pending[s]
                s.close()
                failed += 1
                continue
            length = 0
            for line in buf[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(buf) < head_end + 4 + length:
                pending[s] = buf
                continue
            sel.unregister(s)
            del pending[s]
            opened.append(s)
    failed += len(pending) + (count - started)

    print(f"READY {len(opened)} {failed}", flush=True)
    # Hold until the driver closes our stdin (bounded, in case it never does).
    sel2 = selectors.DefaultSelector()
    sel2.register(sys.stdin, selectors.EVENT_READ)
    sel2.select(timeout=60)
    for s in opened:
        s.close()


if __name__ == "__main__":
    main()
