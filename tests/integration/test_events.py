"""The live event feed, GET /api/events (Server-Sent Events), against the real binary.

Every change to the items table through /api/items is an event
``id: <seq>`` / ``event: item`` / ``data: {"op": ..., "item": {...}}``, seq counting
up by one per event across the process from 1. A client that sends Last-Event-ID gets
what it missed from the history, or a ``reset`` event when that is impossible; a
subscriber that falls more than --events-buffer events behind is dropped; comments
``: connected`` open the stream and ``: ping`` keep it alive; SIGTERM ends it with the
terminal chunk. The stream is read through harness.EventStream, which decodes the
chunked framing (and checks it) as the bytes arrive.
"""

import json
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EventStream, Server, build_request, tcp_state  # noqa: E402

QUIET = 0.5  # how long a stream is watched to show that nothing (more) arrives


class Items:
    """A keep-alive client of /api/items."""

    def __init__(self, srv, timeout=10.0):
        self.conn = srv.connect(timeout=timeout)

    def close(self):
        self.conn.close()

    def call(self, method, target, doc=None, raw=None):
        body = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else b"")
        headers = {"Content-Type": "application/json"} if body else None
        self.conn.send(build_request(method, target, headers, body))
        return self.conn.read_response()

    def create(self, name, price=1.5):
        res = self.call("POST", "/api/items", {"name": name, "price": price})
        if res.status != 201:
            raise AssertionError("POST /api/items -> %r" % res)
        return res.json()

    def update(self, item_id, name, price=2.5):
        res = self.call("PUT", "/api/items/%d" % item_id, {"name": name, "price": price})
        if res.status != 200:
            raise AssertionError("PUT /api/items/%d -> %r" % (item_id, res))
        return res.json()

    def delete(self, item_id):
        res = self.call("DELETE", "/api/items/%d" % item_id)
        if res.status != 204:
            raise AssertionError("DELETE /api/items/%d -> %r" % (item_id, res))

    def get(self, item_id):
        res = self.call("GET", "/api/items/%d" % item_id)
        if res.status != 200:
            raise AssertionError("GET /api/items/%d -> %r" % (item_id, res))
        return res.json()


class EventsTestCase(unittest.TestCase):
    server_args = ("--db-latency-ms", "0")
    per_test_server = False
    srv = None

    @classmethod
    def setUpClass(cls):
        if not cls.per_test_server:
            cls.srv = Server(*cls.server_args).start()

    @classmethod
    def tearDownClass(cls):
        if not cls.per_test_server:
            cls.stop_server(cls.srv)

    def setUp(self):
        self.streams = []
        if self.per_test_server:
            self.srv = Server(*self.server_args).start()
        self.items = Items(self.srv)

    def tearDown(self):
        self.items.close()
        for s in self.streams:
            s.close()
        if self.per_test_server:
            self.stop_server(self.srv)

    @staticmethod
    def stop_server(srv):
        code = srv.stop()
        if code != 0:
            raise AssertionError("server exited with %r\n%s" % (code, srv.output()))

    # -- helpers ---------------------------------------------------------------

    def subscribe(self, last_event_id=None, **kw):
        """An open stream that has received its `: connected` comment."""
        headers = None if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        s = EventStream(self.srv.port, headers, **kw)
        self.streams.append(s)
        res = s.open()
        self.assertEqual(res.status, 200, res)
        before = s.wait_comment("connected", timeout=5.0)
        self.assertEqual(before, [], "the stream must start with ': connected'")
        return s

    def assert_item_event(self, ev, op, item_id, seq=None):
        self.assertEqual(ev.event, "item", ev)
        self.assertIsNotNone(ev.id, ev)
        self.assertRegex(ev.id, r"^[0-9]+$", ev)
        if seq is not None:
            self.assertEqual(int(ev.id), seq, ev)
        doc = ev.json()
        self.assertEqual(doc["op"], op, ev)
        self.assertEqual(doc["item"]["id"], item_id, ev)
        return doc["item"]

    def assert_reset(self, ev, last_event_id, oldest_id):
        self.assertEqual(ev.event, "reset", ev)
        doc = ev.json()
        self.assertEqual(doc.get("last_event_id"), last_event_id, ev)
        self.assertEqual(doc.get("oldest_id"), oldest_id, ev)

    def assert_quiet(self, stream, why):
        got = stream.events_within(QUIET)
        self.assertEqual(got, [], why)

    def last_seq(self, stream):
        """Creates an item; returns (its event's seq, the item)."""
        item = self.items.create("marker")
        ev = stream.next_event(timeout=5.0)
        self.assert_item_event(ev, "created", item["id"])
        return int(ev.id), item


class Events(EventsTestCase):
    def test_the_stream_is_a_chunked_event_stream_that_starts_with_connected(self):
        s = EventStream(self.srv.port)
        self.streams.append(s)
        res = s.open()
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.header("Content-Type", "").split(";")[0].strip(), "text/event-stream", res)
        directives = [d.strip().lower() for d in res.header("Cache-Control", "").split(",")]
        self.assertIn("no-cache", directives, res)
        self.assertEqual(res.header("Transfer-Encoding", "").lower(), "chunked", res)
        self.assertIsNone(res.header("Content-Length"), res)
        first = s.next(timeout=5.0)
        self.assertEqual((first.kind, first.comment), ("comment", "connected"), first)
        self.assertTrue(bytes(s.body).startswith(b": connected\n\n"), bytes(s.body[:100]))
        self.assert_quiet(s, "nothing happened, so no event")
        self.assertIsNone(s.closed_by)

    def test_a_created_item_arrives_at_every_subscriber_within_a_second(self):
        a, b = self.subscribe(), self.subscribe()
        item = self.items.create("Bolt", 2.5)
        answered = time.monotonic()
        ev = a.next_event(timeout=5.0)
        latency = ev.at - answered
        self.assertLess(latency, 1.0, "the event came %.3f s after the 201" % latency)
        got = self.assert_item_event(ev, "created", item["id"])
        self.assertEqual(got, item, "the event's item is the 201's")
        self.assertEqual(got, self.items.get(item["id"]), "the event's item is what GET returns")
        ev_b = b.next_event(timeout=5.0)
        self.assertEqual((ev_b.id, ev_b.event, ev_b.json()), (ev.id, ev.event, ev.json()))

    def test_update_and_delete_are_events_with_their_ops_and_ids(self):
        s = self.subscribe()
        item = self.items.create("Nut", 1.0)
        created = s.next_event(timeout=5.0)
        seq = int(created.id)
        self.assert_item_event(created, "created", item["id"])
        updated_item = self.items.update(item["id"], "Washer", 3.0)
        updated = s.next_event(timeout=5.0)
        got = self.assert_item_event(updated, "updated", item["id"], seq + 1)
        self.assertEqual(got, updated_item)
        self.assertEqual(got, self.items.get(item["id"]))
        self.assertEqual((got["name"], got["price"]), ("Washer", 3.0))
        self.items.delete(item["id"])
        deleted = s.next_event(timeout=5.0)
        self.assert_item_event(deleted, "deleted", item["id"], seq + 2)
        self.assert_quiet(s, "three changes, three events")

    def test_seq_increases_by_one_per_event(self):
        s = self.subscribe()
        other = Items(self.srv)
        try:
            expected = []
            for i in range(10):
                client = self.items if i % 2 else other
                item = client.create("seq-%d" % i, i)
                expected.append(("created", item["id"]))
                if i % 3 == 0:
                    client.update(item["id"], "seq-%d-b" % i, i + 0.5)
                    expected.append(("updated", item["id"]))
                if i % 4 == 0:
                    client.delete(item["id"])
                    expected.append(("deleted", item["id"]))
        finally:
            other.close()
        events = [s.next_event(timeout=5.0) for _ in expected]
        first = int(events[0].id)
        self.assertEqual([int(e.id) for e in events], list(range(first, first + len(expected))))
        self.assertEqual([(e.json()["op"], e.json()["item"]["id"]) for e in events], expected)
        self.assert_quiet(s, "no more events than changes")

    def test_requests_that_change_nothing_are_not_events(self):
        s = self.subscribe()
        seq, _ = self.last_seq(s)
        self.assertEqual(self.items.call("POST", "/api/items", {"name": "", "price": -1}).status, 422)
        self.assertEqual(self.items.call("POST", "/api/items", raw=b"{nope").status, 400)
        self.assertEqual(self.items.call("PUT", "/api/items/987654321", {"name": "x", "price": 1}).status, 404)
        self.assertEqual(self.items.call("DELETE", "/api/items/987654321").status, 404)
        self.assertEqual(self.items.call("GET", "/api/items").status, 200)
        self.assert_quiet(s, "failed and read-only requests are not events")
        item = self.items.create("after")
        self.assert_item_event(s.next_event(timeout=5.0), "created", item["id"], seq + 1)

    def test_last_event_id_replays_exactly_the_missed_events_then_live_ones(self):
        s = self.subscribe()
        seq, _ = self.last_seq(s)
        s.close()
        a = self.items.create("missed-a")
        b = self.items.create("missed-b")
        c = self.items.create("missed-c")
        self.items.update(a["id"], "missed-a2")
        self.items.delete(b["id"])
        missed = [("created", a["id"]), ("created", b["id"]), ("created", c["id"]),
                  ("updated", a["id"]), ("deleted", b["id"])]
        r = self.subscribe(last_event_id=seq)
        got = [r.next_event(timeout=5.0) for _ in missed]
        self.assertEqual([int(e.id) for e in got], list(range(seq + 1, seq + 1 + len(missed))), got)
        self.assertEqual([(e.event, e.json()["op"], e.json()["item"]["id"]) for e in got],
                         [("item", op, i) for op, i in missed])
        self.assert_quiet(r, "only the missed events are replayed")
        live = self.items.create("live")
        self.assert_item_event(r.next_event(timeout=5.0), "created", live["id"], seq + len(missed) + 1)

    def test_last_event_id_equal_to_the_last_id_replays_nothing(self):
        s = self.subscribe()
        seq, _ = self.last_seq(s)
        r = self.subscribe(last_event_id=seq)
        self.assert_quiet(r, "nothing was missed: no replay, no reset")
        live = self.items.create("live")
        self.assert_item_event(r.next_event(timeout=5.0), "created", live["id"], seq + 1)

    def test_last_event_id_ahead_of_the_server_gives_a_reset_then_live_events(self):
        s = self.subscribe()
        seq, _ = self.last_seq(s)
        ahead = seq + 100
        r = self.subscribe(last_event_id=ahead)
        # The history (1000 by default) still holds every event of this server: oldest is 1.
        self.assert_reset(r.next_event(timeout=5.0), ahead, 1)
        self.assert_quiet(r, "after a reset only live events")
        live = self.items.create("live")
        self.assert_item_event(r.next_event(timeout=5.0), "created", live["id"], seq + 1)

    def test_a_last_event_id_that_is_not_a_non_negative_integer_is_ignored(self):
        s = self.subscribe()
        seq, _ = self.last_seq(s)
        values = ["abc", "-1", "1.5", "0x1", "1a", "", "1 2"]
        streams = [self.subscribe(last_event_id=v) for v in values]
        for v, r in zip(values, streams):
            got = r.events_within(0.15)
            self.assertEqual(got, [], "Last-Event-ID %r must be ignored: no replay, no reset" % v)
        live = self.items.create("live")
        for v, r in zip(values, streams):
            self.assert_item_event(r.next_event(timeout=5.0), "created", live["id"], seq + 1)


class FreshServer(EventsTestCase):
    """Exact ids: a server per test."""

    per_test_server = True

    def test_the_first_event_has_id_1_and_last_event_id_0_replays_them_all(self):
        s = self.subscribe()
        made = [self.items.create("first-%d" % i) for i in range(3)]
        for seq, item in enumerate(made, 1):
            self.assert_item_event(s.next_event(timeout=5.0), "created", item["id"], seq)
        r = self.subscribe(last_event_id=0)
        for seq, item in enumerate(made, 1):
            self.assert_item_event(r.next_event(timeout=5.0), "created", item["id"], seq)
        self.assert_quiet(r, "three events, three replayed")

    def test_on_an_empty_history_an_id_ahead_resets_to_the_next_id(self):
        zero = self.subscribe(last_event_id=0)
        ahead = self.subscribe(last_event_id=5)
        self.assert_reset(ahead.next_event(timeout=5.0), 5, 1)
        self.assert_quiet(zero, "Last-Event-ID 0 with no event yet: nothing missed, no reset")
        self.assert_quiet(ahead, "one reset only")
        item = self.items.create("one")
        for s in (zero, ahead):
            self.assert_item_event(s.next_event(timeout=5.0), "created", item["id"], 1)


class ShortHistory(EventsTestCase):
    """--events-history 3, six events (ids 1 to 6): the history holds 4, 5 and 6."""

    per_test_server = True
    server_args = ("--db-latency-ms", "0", "--events-history", "3")

    def setUp(self):
        super().setUp()
        watch = self.subscribe()
        self.made = [self.items.create("h%d" % i) for i in range(6)]
        for seq, item in enumerate(self.made, 1):
            self.assert_item_event(watch.next_event(timeout=5.0), "created", item["id"], seq)

    def test_an_id_older_than_the_history_gives_a_reset_then_live_events_only(self):
        r = self.subscribe(last_event_id=1)
        self.assert_reset(r.next_event(timeout=5.0), 1, 4)
        self.assert_quiet(r, "after a reset, no replay")
        item = self.items.create("live")
        self.assert_item_event(r.next_event(timeout=5.0), "created", item["id"], 7)

    def test_the_edge_of_the_history(self):
        # Events after 3 are 4, 5, 6: all kept, so they are replayed.
        r = self.subscribe(last_event_id=3)
        for seq, item in zip((4, 5, 6), self.made[3:]):
            self.assert_item_event(r.next_event(timeout=5.0), "created", item["id"], seq)
        self.assert_quiet(r, "exactly the three kept events")
        # Event 3 was dropped: a client at 2 cannot be caught up.
        r2 = self.subscribe(last_event_id=2)
        self.assert_reset(r2.next_event(timeout=5.0), 2, 4)
        self.assert_quiet(r2, "after a reset, no replay")

    def test_an_id_ahead_gives_a_reset_naming_the_oldest_kept_event(self):
        r = self.subscribe(last_event_id=7)
        self.assert_reset(r.next_event(timeout=5.0), 7, 4)
        self.assert_quiet(r, "after a reset, no replay")


class Heartbeat(EventsTestCase):
    server_args = ("--db-latency-ms", "0", "--events-heartbeat-ms", "200")

    def test_pings_are_sent_at_the_heartbeat_interval_between_events(self):
        s = self.subscribe()
        start = time.monotonic()
        pings = []
        events = []
        created = None
        while time.monotonic() - start < 2.0:
            if created is None and time.monotonic() - start > 0.7:
                created = self.items.create("between pings")
            try:
                item = s.next(timeout=0.1)
            except TimeoutError:
                continue
            (pings if item.kind == "comment" else events).append(item)
        self.assertGreaterEqual(len([p for p in pings if p.comment == "ping"]), 2, pings)
        self.assertLessEqual(len(pings), 30, "far more pings than one per 200 ms")
        self.assertIn(b"\n: ping\n\n", bytes(s.body))
        self.assertEqual(len(events), 1, events)
        self.assert_item_event(events[0], "created", created["id"])
        self.assertIsNone(s.closed_by)


class SlowConsumer(EventsTestCase):
    """--events-buffer 64: a subscriber that never reads is dropped; one that reads gets all.

    The stalled stream holds about 180 events in socket buffers (the server caps its send
    buffer at 16 KiB, the client's receive buffer is 4 KiB) before its queue starts to
    grow, so 1000 events overflow it; the reader, woken for every batch, never falls 64
    behind even with four clients creating items as fast as they can."""

    server_args = ("--db-latency-ms", "0", "--events-buffer", "64", "--access-log", "off")
    CREATORS = 4
    PER_CREATOR = 250

    def test_a_stalled_subscriber_is_dropped_while_a_reading_one_gets_every_event(self):
        total = self.CREATORS * self.PER_CREATOR
        stalled = EventStream(self.srv.port, rcvbuf=4096)
        self.streams.append(stalled)
        self.assertEqual(stalled.open().status, 200)
        stalled.wait_comment("connected", timeout=5.0)  # subscribed; from here on never read
        stalled_port = stalled.conn.sock.getsockname()[1]
        good = self.subscribe()

        received, reader_error = [], []

        def read_all():
            deadline = time.monotonic() + 90
            try:
                while len(received) < total and time.monotonic() < deadline:
                    received.append(good.next_event(timeout=max(0.01, min(10.0, deadline - time.monotonic()))))
            except Exception as e:  # reported on the test thread
                reader_error.append(e)

        created, creator_errors = [], []
        lock = threading.Lock()

        def create(n):
            client = Items(self.srv)
            try:
                for i in range(self.PER_CREATOR):
                    item = client.create("load-%d-%d" % (n, i))
                    with lock:
                        created.append(item["id"])
            except Exception as e:
                creator_errors.append(e)
            finally:
                client.close()

        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()
        creators = [threading.Thread(target=create, args=(n,), daemon=True) for n in range(self.CREATORS)]
        for t in creators:
            t.start()
        for t in creators:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in creators), "creating %d items took over 60 s" % total)
        self.assertEqual(creator_errors, [])
        self.assertEqual(len(created), total)

        # The server closes the stalled stream by itself: its end of the connection leaves
        # ESTABLISHED while the client still has not read a byte.
        deadline = time.monotonic() + 5.0
        state = tcp_state(self.srv.port, stalled_port)
        while state == "ESTABLISHED" and time.monotonic() < deadline:
            time.sleep(0.05)
            state = tcp_state(self.srv.port, stalled_port)
        self.assertNotEqual(state, "ESTABLISHED", "the stalled subscriber is still connected, %d events behind"
                            % total)

        reader.join(60)
        self.assertFalse(reader.is_alive(), "the reading subscriber is still reading after 60 s")
        self.assertEqual(reader_error, [], "the reading subscriber failed after %d events" % len(received))
        self.assertEqual(len(received), total)
        first = int(received[0].id)
        self.assertEqual([int(e.id) for e in received], list(range(first, first + total)))
        self.assertEqual(sorted(e.json()["item"]["id"] for e in received), sorted(created))
        self.assertTrue(all(e.json()["op"] == "created" for e in received))

        try:
            rest = stalled.drain(timeout=10.0)
        except TimeoutError:
            self.fail("the stalled stream did not end within 10 s of reading it (%d events read)"
                      % len([i for i in stalled.items if i.kind == "event"]))
        self.assertIsNotNone(stalled.closed_by)
        del rest
        got = [int(i.id) for i in stalled.items if i.kind == "event" and i.event == "item"]
        self.assertLess(len(got), total, "the stalled subscriber got every event: it was never dropped")
        # What it did get is a gapless prefix of the feed.
        self.assertEqual(got, list(range(first, first + len(got))))
        self.assertEqual(self.srv.request("GET", "/healthz").status, 200)


class Shutdown(EventsTestCase):
    per_test_server = True

    def tearDown(self):
        self.items.close()
        for s in self.streams:
            s.close()
        if self.srv.proc.poll() is None:
            self.srv.proc.kill()
            self.srv.proc.wait()

    def test_sigterm_ends_every_stream_with_the_terminal_chunk_and_exits_0(self):
        idle = self.subscribe()
        busy = self.subscribe()
        item = self.items.create("before shutdown")
        self.assert_item_event(busy.next_event(timeout=5.0), "created", item["id"], 1)
        self.items.close()
        start = time.monotonic()
        self.srv.signal(signal.SIGTERM)
        for name, s in (("idle", idle), ("busy", busy)):
            try:
                s.drain(timeout=max(0.1, start + 5.0 - time.monotonic()))
            except TimeoutError:
                self.fail("the %s stream was still open 5 s after SIGTERM" % name)
            took = time.monotonic() - start
            self.assertIsNone(s.framing_error, name)
            self.assertTrue(s.ended, "the %s stream ended without the terminal chunk (%s after %d body bytes; "
                            "buffered %r)" % (name, s.closed_by, len(s.body), bytes(s.conn.buf[:50])))
            self.assertEqual(s.after_end, b"", name)
            self.assertEqual(s.closed_by, "eof", "the %s stream must be closed, not reset" % name)
            self.assertLess(took, 3.0, "the %s stream ended %.2f s after SIGTERM" % (name, took))
        code = self.srv.wait(timeout=12.0)
        took = time.monotonic() - start
        self.assertEqual(code, 0, self.srv.output())
        self.assertLess(took, 10.5, "exited %.1f s after SIGTERM, past the 10 s shutdown grace" % took)


if __name__ == "__main__":
    unittest.main(verbosity=2)
