"""Offloaded work against the real binary: /api/cpu, /api/blocking and /api/stats.

CPU work offloaded to the pool leaves the event loop free (with one loop thread,
/healthz still answers at once while four CPU calls run); the same work on the
loop's thread (?offload=false) holds every other request back. /api/blocking shows
what a thread per request does: with --offload-threads 4, eight calls run in two
rounds of four. The margins are wide: the tests check shapes, not speeds.
"""

import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Server, problem_fields  # noqa: E402


class Background:
    """Requests sent at once from threads; join() returns their responses in order."""

    def __init__(self, srv, targets, timeout=20.0):
        self.results = [None] * len(targets)
        self.errors = []
        self.threads = [threading.Thread(target=self._one, args=(srv, i, t, timeout), daemon=True)
                        for i, t in enumerate(targets)]
        self.start = time.monotonic()
        for t in self.threads:
            t.start()

    def _one(self, srv, i, target, timeout):
        try:
            self.results[i] = srv.request("GET", target, timeout=timeout)
        except Exception as e:  # reported by join
            self.errors.append(e)

    def join(self, timeout=25.0):
        for t in self.threads:
            t.join(timeout)
        if self.errors:
            raise self.errors[0]
        return self.results


def healthz_round_trips(srv, seconds, conn=None):
    """Round-trip times of /healthz, one after another, for about `seconds`."""
    times = []
    end = time.monotonic() + seconds
    with srv.connect(timeout=10.0) as c:
        while time.monotonic() < end:
            t0 = time.monotonic()
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            res = c.read_response()
            assert res.status == 200, res
            times.append(time.monotonic() - t0)
    return times


class CpuWork(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--threads", "1", "--offload-threads", "4", "--access-log", "off").start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        if code != 0:
            raise AssertionError("server exited with %r\n%s" % (code, cls.srv.output()))

    def test_four_offloaded_cpu_calls_leave_healthz_answering_at_once(self):
        calls = Background(self.srv, ["/api/cpu?ms=500"] * 4)
        time.sleep(0.1)  # let them reach the pool
        times = healthz_round_trips(self.srv, 0.3)
        answers = calls.join()
        self.assertTrue(all(a.status == 200 for a in answers), answers)
        self.assertTrue(all(a.json()["offload"] is True and a.json()["primes"] > 0 for a in answers))
        # The loop thread was free: no round trip came near the CPU calls' 500 ms.
        self.assertGreater(len(times), 3)
        self.assertLess(max(times), 0.2, times)

    def test_cpu_work_on_the_loop_thread_holds_healthz_back(self):
        call = Background(self.srv, ["/api/cpu?ms=800&offload=false"])
        time.sleep(0.1)
        t0 = time.monotonic()
        res = self.srv.request("GET", "/healthz", timeout=10.0)
        waited = time.monotonic() - t0
        answer = call.join()[0]
        self.assertEqual(res.status, 200)
        self.assertEqual(answer.status, 200, answer)
        self.assertIs(answer.json()["offload"], False)
        # It could only be answered once the loop's one thread was free again.
        self.assertGreater(waited, 0.3, "healthz was not held back by the CPU work on the loop")

    def test_bad_parameters_are_problems(self):
        for target, name in [("/api/cpu?ms=abc", "ms"), ("/api/cpu?ms=20000", "ms"),
                             ("/api/cpu?ms=3000&offload=false", "ms"), ("/api/cpu?offload=maybe", "offload"),
                             ("/api/blocking?ms=-1", "ms"), ("/api/blocking?ms=10001", "ms")]:
            res = self.srv.request("GET", target)
            self.assertEqual(res.status, 400, target)
            self.assertIn(name, problem_fields(res)["detail"], target)


class BlockingWork(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--threads", "2", "--offload-threads", "4", "--access-log", "off").start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        if code != 0:
            raise AssertionError("server exited with %r\n%s" % (code, cls.srv.output()))

    def test_eight_blocking_calls_on_four_threads_take_two_rounds(self):
        calls = Background(self.srv, ["/api/blocking?ms=300"] * 8)
        answers = calls.join()
        took = time.monotonic() - calls.start
        self.assertTrue(all(a.status == 200 for a in answers), answers)
        self.assertGreaterEqual(took, 0.6 * 0.95)  # two rounds at least: 8 calls, 4 threads
        self.assertLess(took, 1.2, "more than three rounds")
        # The steps: four started at once, four waited for a thread about one call long.
        queued = sorted(a.json()["queued_ms"] for a in answers)
        self.assertTrue(all(q < 150 for q in queued[:4]), queued)
        self.assertTrue(all(q >= 250 for q in queued[4:]), queued)
        self.assertEqual(answers[0].json()["offload_threads"], 4)

    def test_stats_report_the_threads_and_the_requests_in_flight(self):
        stats = self.srv.request("GET", "/api/stats").json()
        self.assertEqual(stats["threads"], 2)
        self.assertEqual(stats["offload_threads"], 4)
        self.assertEqual(stats["in_flight"], 1)  # this request
        for key in ("peak_in_flight", "connections_open", "jobs_running"):
            self.assertIn(key, stats)

        reset = self.srv.request("POST", "/api/stats/peak")
        self.assertEqual(reset.status, 200)
        self.assertEqual(reset.json()["peak_in_flight"], 1)
        calls = Background(self.srv, ["/api/blocking?ms=400"] * 3)
        deadline = time.monotonic() + 5
        during = None
        while time.monotonic() < deadline:
            during = self.srv.request("GET", "/api/stats").json()
            if during["in_flight"] >= 4:
                break
            time.sleep(0.02)
        calls.join()
        self.assertEqual(during["in_flight"], 4, during)  # three blocking calls and this one
        self.assertGreaterEqual(during["connections_open"], 4)
        after = self.srv.request("GET", "/api/stats").json()
        self.assertEqual(after["in_flight"], 1)
        self.assertGreaterEqual(after["peak_in_flight"], 4)


if __name__ == "__main__":
    unittest.main()
