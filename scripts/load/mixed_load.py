#!/usr/bin/env python3
"""A mixed load on a running coroute-server, for the soak and the sanitizer runs.

usage: mixed_load.py --port P [--host 127.0.0.1] [--connections N] [--seconds S]

N clients at once, each of one kind (spread evenly), each looping until the time is
up: /healthz, the page's files, database queries, item writes (create, then delete),
the external call, the live event stream (read a while, hang up, come back),
WebSocket echoes, and clients that misbehave: a request cut off half-way, a client
that leaves while its request waits on the database, one that stops reading a
response, one that sends its header a byte at a time. Python 3 standard library
only; everything is bounded in time.

Prints one JSON line at the end: requests per kind, and the unexpected outcomes (a
wrong status, a reset on a well-behaved connection, a bad WebSocket echo), with the
first few described. Exit status 1 when there was any.
"""

import argparse
import asyncio
import base64
import json
import os
import random
import struct
import sys
import time

KINDS = ["health", "static", "db", "items", "external", "events", "ws",
         "cut_request", "leave_waiting", "stop_reading", "slow_header"]


class Stats:
    def __init__(self):
        self.ok = {k: 0 for k in KINDS}
        self.unexpected = 0
        self.examples = []

    def bad(self, kind, what):
        self.unexpected += 1
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {what}")


async def read_response(reader):
    """(status, headers, body) of one response with a Content-Length (or none)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    n = int(headers.get("content-length", "0"))
    if n:
        body = await reader.readexactly(n)
    return status, headers, body


def request(method, target, host, body=b"", ctype=None, close=False):
    h = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
    if body or method in ("POST", "PUT"):
        h += f"Content-Length: {len(body)}\r\n"
    if ctype:
        h += f"Content-Type: {ctype}\r\n"
    if close:
        h += "Connection: close\r\n"
    return (h + "\r\n").encode() + body


class Client:
    def __init__(self, host, port, stats, until):
        self.host, self.port, self.stats, self.until = host, port, stats, until
        self.authority = f"{host}:{port}"

    async def open(self):
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)

    async def keepalive(self, kind, calls):
        """A keep-alive connection making `calls()` requests in turn: (request bytes, wanted statuses)."""
        reader, writer = await self.open()
        try:
            while time.monotonic() < self.until:
                for data, wanted in calls():
                    writer.write(data)
                    status, _, body = await asyncio.wait_for(read_response(reader), 30)
                    if status not in wanted:
                        self.stats.bad(kind, f"status {status}: {body[:120]!r}")
                    else:
                        self.stats.ok[kind] += 1
                await asyncio.sleep(random.uniform(0, 0.02))
        finally:
            writer.close()

    async def health(self):
        await self.keepalive("health", lambda: [(request("GET", "/healthz", self.authority), {200})])

    async def static(self):
        paths = ["/", "/app.js", "/style.css", "/js/lab.js"]
        await self.keepalive("static", lambda: [(request("GET", random.choice(paths), self.authority), {200})])

    async def db(self):
        await self.keepalive("db", lambda: [(request("GET", f"/api/db?delay_ms={random.randint(0, 100)}",
                                                     self.authority), {200})])

    async def items(self):
        reader, writer = await self.open()
        try:
            while time.monotonic() < self.until:
                body = json.dumps({"name": "load", "price": 1.5}).encode()
                writer.write(request("POST", "/api/items?delay_ms=0", self.authority, body, "application/json"))
                status, _, got = await asyncio.wait_for(read_response(reader), 30)
                if status != 201:
                    self.stats.bad("items", f"POST status {status}: {got[:120]!r}")
                    continue
                item = json.loads(got)["id"]
                writer.write(request("DELETE", f"/api/items/{item}?delay_ms=0", self.authority))
                status, _, got = await asyncio.wait_for(read_response(reader), 30)
                if status != 204:
                    self.stats.bad("items", f"DELETE status {status}: {got[:120]!r}")
                else:
                    self.stats.ok["items"] += 1
        finally:
            writer.close()

    async def external(self):
        await self.keepalive("external", lambda: [(request("GET", "/api/external", self.authority), {200})])

    async def events(self):
        while time.monotonic() < self.until:
            reader, writer = await self.open()
            try:
                writer.write(request("GET", "/api/events", self.authority))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                if not head.startswith(b"HTTP/1.1 200"):
                    self.stats.bad("events", f"head {head[:60]!r}")
                    return
                end = min(self.until, time.monotonic() + random.uniform(0.5, 3))
                while time.monotonic() < end:
                    try:
                        await asyncio.wait_for(reader.read(4096), max(0.01, end - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
                self.stats.ok["events"] += 1
            finally:
                writer.close()

    async def ws(self):
        reader, writer = await self.open()
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write((f"GET /ws HTTP/1.1\r\nHost: {self.authority}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                         .encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            if not head.startswith(b"HTTP/1.1 101"):
                self.stats.bad("ws", f"handshake {head[:60]!r}")
                return
            n = 0
            while time.monotonic() < self.until:
                n += 1
                text = json.dumps({"op": "echo", "data": n}).encode()
                mask = os.urandom(4)
                writer.write(bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text)))
                b0, b1 = await asyncio.wait_for(reader.readexactly(2), 30)
                length = b1 & 0x7F
                if length == 126:
                    length = struct.unpack("!H", await reader.readexactly(2))[0]
                payload = await reader.readexactly(length)
                if b0 != 0x81 or payload != text:
                    self.stats.bad("ws", f"echo {b0:#x} {payload[:60]!r}")
                    return
                self.stats.ok["ws"] += 1
                await asyncio.sleep(random.uniform(0, 0.02))
        finally:
            writer.close()

    async def cut_request(self):
        while time.monotonic() < self.until:
            _, writer = await self.open()
            writer.write(b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"na")
            await writer.drain()
            writer.close()
            self.stats.ok["cut_request"] += 1
            await asyncio.sleep(random.uniform(0, 0.05))

    async def leave_waiting(self):
        while time.monotonic() < self.until:
            _, writer = await self.open()
            writer.write(request("GET", "/api/db?delay_ms=200", self.authority))
            await writer.drain()
            await asyncio.sleep(random.uniform(0.01, 0.1))
            writer.close()
            self.stats.ok["leave_waiting"] += 1

    async def stop_reading(self):
        while time.monotonic() < self.until:
            reader, writer = await self.open()
            writer.write(request("GET", "/", self.authority) * 20)  # twenty pipelined, read one
            await writer.drain()
            await asyncio.wait_for(reader.read(100), 10)
            writer.close()
            self.stats.ok["stop_reading"] += 1
            await asyncio.sleep(random.uniform(0, 0.05))

    async def slow_header(self):
        while time.monotonic() < self.until:
            reader, writer = await self.open()
            try:
                for ch in request("GET", "/healthz", self.authority, close=True):
                    writer.write(bytes([ch]))
                    await asyncio.sleep(0.02)
                status, _, _ = await asyncio.wait_for(read_response(reader), 30)
                if status != 200:
                    self.stats.bad("slow_header", f"status {status}")
                else:
                    self.stats.ok["slow_header"] += 1
            finally:
                writer.close()

    async def run(self, kind):
        try:
            await getattr(self, kind)()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            if time.monotonic() < self.until - 0.5 and kind not in ("cut_request", "leave_waiting", "stop_reading"):
                self.stats.bad(kind, f"{type(e).__name__}: {e}")


async def main_async(args):
    stats = Stats()
    until = time.monotonic() + args.seconds
    tasks = []
    for i in range(args.connections):
        kind = KINDS[i % len(KINDS)]
        c = Client(args.host, args.port, stats, until)
        tasks.append(asyncio.create_task(c.run(kind)))
        if i % 50 == 49:
            await asyncio.sleep(0.01)  # ramp up, under the listen backlog
    # A client still busy well after the end is itself an unexpected outcome.
    done, pending = await asyncio.wait(tasks, timeout=args.seconds + 30)
    for t in pending:
        stats.bad("hang", "a client still busy 30 s after the end")
        t.cancel()
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats = asyncio.run(main_async(args))
    print(json.dumps({"requests": stats.ok, "total": sum(stats.ok.values()), "unexpected": stats.unexpected,
                      "examples": stats.examples}), flush=True)
    return 1 if stats.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
