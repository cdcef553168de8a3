#!/usr/bin/env python3
"""A mixed load on a running coroute-server, for the soak and the sanitizer runs.

usage: mixed_load.py --port P [--host 127.0.0.1] [--connections N] [--seconds S] [--threaded] [--kinds K,...]

N clients at once, each of one kind (spread evenly), each looping until the time is
up: /healthz, the page's files, database queries, item writes (create, then delete),
the external call, the live event stream (read a while, hang up, come back),
WebSocket echoes, and clients that misbehave: a request cut off half-way, a client
that leaves while its request waits on the database, one that stops reading a
response, one that sends its header a byte at a time. Python 3 standard library
only; everything is bounded in time.

--threaded adds the kinds that hand work between threads, for the ThreadSanitizer
run: the offload pool (/api/cpu, /api/blocking, /api/stats), background jobs
(start, cancel half of them, read until they end), and WebSockets subscribed to the
items and jobs feeds while they run database queries. --kinds runs only the kinds it names (to chase one).

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
THREADED_KINDS = ["offload", "jobs", "ws_feed"]


class Stats:
    def __init__(self):
        self.ok = {k: 0 for k in KINDS + THREADED_KINDS}
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
        # 502: the soak runs the built-in upstream with --upstream-fail-rate.
        await self.keepalive("external", lambda: [(request("GET", "/api/external", self.authority), {200, 502})])

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

    async def ws_handshake(self, reader, writer, kind):
        """Opens /ws on this connection; False (counted against `kind`) when it is refused."""
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws HTTP/1.1\r\nHost: {self.authority}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                     .encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if not head.startswith(b"HTTP/1.1 101"):
            self.stats.bad(kind, f"handshake {head[:60]!r}")
            return False
        return True

    async def ws(self):
        reader, writer = await self.open()
        try:
            if not await self.ws_handshake(reader, writer, "ws"):
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

    async def offload(self):
        def calls():
            return [(request("GET", f"/api/cpu?ms={random.randint(0, 5)}", self.authority), {200}),
                    (request("GET", f"/api/blocking?ms={random.randint(0, 5)}", self.authority), {200}),
                    (request("GET", "/api/stats", self.authority), {200})]
        await self.keepalive("offload", calls)

    async def jobs(self):
        """Starts small jobs (queries, then CPU work on the offload pool), cancels half of
        them at once, and reads each until it has ended: one job per client at a time."""
        reader, writer = await self.open()
        try:
            while time.monotonic() < self.until:
                spec = {"queries": random.randint(1, 6), "delay_ms": random.randint(0, 20), "parallel": 2,
                        "cpu_ms": random.randint(0, 60)}
                writer.write(request("POST", "/api/jobs", self.authority, json.dumps(spec).encode(),
                                     "application/json"))
                status, _, got = await asyncio.wait_for(read_response(reader), 30)
                if status == 503:  # past --jobs-queue: the documented answer
                    await asyncio.sleep(0.1)
                    continue
                if status != 202:
                    self.stats.bad("jobs", f"POST status {status}: {got[:120]!r}")
                    continue
                job = json.loads(got)["id"]
                if random.random() < 0.5:
                    writer.write(request("DELETE", f"/api/jobs/{job}", self.authority))
                    status, _, got = await asyncio.wait_for(read_response(reader), 30)
                    if status not in (202, 409):  # 409: it had finished
                        self.stats.bad("jobs", f"DELETE status {status}: {got[:120]!r}")
                        continue
                while time.monotonic() < self.until:
                    writer.write(request("GET", f"/api/jobs/{job}", self.authority))
                    status, _, got = await asyncio.wait_for(read_response(reader), 30)
                    if status != 200:
                        self.stats.bad("jobs", f"GET status {status}: {got[:120]!r}")
                        break
                    if json.loads(got)["state"] in ("done", "failed", "cancelled"):
                        self.stats.ok["jobs"] += 1
                        break
                    await asyncio.sleep(0.02)
        finally:
            writer.close()

    async def ws_feed(self):
        """WebSockets subscribed to both feeds, asking for queries one at a time; the
        events that arrive between the answers are read. A socket the server closes
        with 1008 (this client fell more than --ws-send-queue behind the feeds, the
        documented answer) is opened again."""
        while time.monotonic() < self.until:
            if not await self.ws_feed_once():
                return

    async def ws_feed_once(self):
        """One socket until the time is up (True), a 1008 close (True), or a bad answer (False)."""
        reader, writer = await self.open()

        def send(obj):
            text = json.dumps(obj).encode()
            mask = os.urandom(4)
            head = bytes([0x81, 0x80 | len(text)]) if len(text) < 126 else \
                bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(text))
            writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text)))

        async def frame():
            b0, b1 = await asyncio.wait_for(reader.readexactly(2), 30)
            length = b1 & 0x7F
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await reader.readexactly(8))[0]
            return b0 & 0x0F, await reader.readexactly(length)

        try:
            if not await self.ws_handshake(reader, writer, "ws_feed"):
                return False
            for topic in ("items", "jobs"):
                send({"op": "subscribe", "topic": topic})
            n = 0
            while time.monotonic() < self.until:
                n += 1
                send({"op": "db", "id": n, "delay_ms": random.randint(0, 20)})
                while True:
                    op, payload = await frame()
                    if op == 0x9:  # a ping from the server: pong it back with the same payload
                        mask = os.urandom(4)
                        writer.write(bytes([0x8A, 0x80 | len(payload)]) + mask +
                                     bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
                        continue
                    if op == 0x8 and payload[:2] == struct.pack("!H", 1008):
                        return True
                    if op != 0x1:
                        self.stats.bad("ws_feed", f"opcode {op:#x} {payload[:60]!r}")
                        return False
                    msg = json.loads(payload)
                    if msg.get("op") == "error" and "fell behind" in msg.get("detail", ""):
                        topic = "items" if "items" in msg["detail"] else "jobs"
                        send({"op": "unsubscribe", "topic": topic})  # the documented answer: subscribe again
                        send({"op": "subscribe", "topic": topic})
                    elif msg.get("op") == "error":
                        self.stats.bad("ws_feed", f"error {payload[:120]!r}")
                        return False
                    elif msg.get("op") == "db" and msg.get("id") == n:
                        break
                self.stats.ok["ws_feed"] += 1
            return True
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
    kinds = KINDS + THREADED_KINDS if args.threaded else KINDS
    if args.kinds:
        kinds = args.kinds.split(",")
    for i in range(args.connections):
        kind = kinds[i % len(kinds)]
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
    ap.add_argument("--threaded", action="store_true", help="add the offload, jobs and ws_feed kinds")
    ap.add_argument("--kinds", help="only these kinds, comma-separated")
    args = ap.parse_args()
    unknown = set((args.kinds or "").split(",")) - set(KINDS + THREADED_KINDS) - {""}
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)}; the kinds are {KINDS + THREADED_KINDS}")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats = asyncio.run(main_async(args))
    print(json.dumps({"requests": stats.ok, "total": sum(stats.ok.values()), "unexpected": stats.unexpected,
                      "examples": stats.examples}), flush=True)
    return 1 if stats.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
