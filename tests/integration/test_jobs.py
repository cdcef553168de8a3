"""Background jobs, /api/jobs, against the real binary.

POST /api/jobs answers 202 at once with the job and its Location; the job then runs
beyond the request (N simulated queries, P at a time, then CPU work on the offload
pool) and ends done with its result; GET shows it, DELETE cancels it (409 once it
finished), the queue bound answers 503, every change is an ``event: job`` on
/api/events, and SIGTERM gives running jobs the grace period, then cancels them.
Every wait is bounded.
"""

import json
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EventStream, Server, problem_fields  # noqa: E402


def post_job(srv, spec=None, raw=None, content_type="application/json", timeout=5.0):
    body = raw if raw is not None else (json.dumps(spec).encode() if spec is not None else b"")
    headers = {"Content-Type": content_type} if body else None
    return srv.request("POST", "/api/jobs", headers=headers, body=body, timeout=timeout)


def started(srv, spec):
    res = post_job(srv, spec)
    if res.status != 202:
        raise AssertionError("POST /api/jobs -> %r" % res)
    return res.json()


def get_job(srv, job_id):
    res = srv.request("GET", "/api/jobs/%d" % job_id)
    if res.status != 200:
        raise AssertionError("GET /api/jobs/%d -> %r" % (job_id, res))
    return res.json()


def wait_state(srv, job_id, states, timeout=10.0):
    """Polls the job until its state is one of `states`; returns it (AssertionError after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(srv, job_id)
        if job["state"] in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError("job %d still %s after %.1f s: %r" % (job_id, job["state"], timeout, job))
        time.sleep(0.02)


class JobLifecycle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--threads", "2", "--offload-threads", "2", "--access-log", "off").start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        if code != 0:
            raise AssertionError("server exited with %r\n%s" % (code, cls.srv.output()))

    def test_post_answers_at_once_and_the_job_completes_with_its_result(self):
        # 10 queries of 200 ms, 2 at a time: about a second of work.
        t0 = time.monotonic()
        res = post_job(self.srv, {"queries": 10, "delay_ms": 200, "parallel": 2, "cpu_ms": 100})
        answered = time.monotonic() - t0
        self.assertEqual(res.status, 202, res)
        self.assertLess(answered, 0.5, "POST waited for the job")
        job = res.json()
        self.assertEqual(res.header("Location"), "/api/jobs/%d" % job["id"])
        self.assertEqual(set(job), {"id", "state", "progress", "created_at", "started_at", "finished_at",
                                    "result", "error"})
        self.assertEqual(job["state"], "running")
        self.assertLess(job["progress"], 1)
        self.assertIsNone(job["result"])
        self.assertIsNone(job["finished_at"])

        done = wait_state(self.srv, job["id"], {"done", "failed", "cancelled"})
        self.assertEqual(done["state"], "done", done)
        self.assertEqual(done["progress"], 1)
        self.assertIsNone(done["error"])
        result = done["result"]
        self.assertEqual(result["queries"], 10)
        self.assertEqual(result["rows"], 50)  # five rows a query
        self.assertGreater(result["primes"], 0)
        # Five rounds of 200 ms, not ten: two ran at a time.
        self.assertGreaterEqual(result["query_elapsed_ms"], 5 * 200 * 0.95)
        self.assertLess(result["query_elapsed_ms"], 10 * 200)
        self.assertGreaterEqual(result["cpu_elapsed_ms"], 100 * 0.95)
        self.assertTrue(done["created_at"] <= done["started_at"] <= done["finished_at"])

    def test_progress_rises_to_one_in_job_events_on_the_feed(self):
        with EventStream(self.srv.port, timeout=10.0) as stream:
            stream.open()
            job = started(self.srv, {"queries": 8, "delay_ms": 50, "parallel": 1})
            seen = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ev = stream.next_event(timeout=max(0.0, deadline - time.monotonic()))
                if ev.event != "job":
                    continue
                doc = ev.json()
                if doc["id"] != job["id"]:
                    continue
                seen.append(doc)
                if doc["state"] in ("done", "failed", "cancelled"):
                    break
        self.assertEqual(seen[-1]["state"], "done", seen)
        progress = [d["progress"] for d in seen]
        self.assertEqual(progress, sorted(progress), "progress went back")
        self.assertTrue(any(0 < p < 1 for p in progress), progress)
        self.assertEqual(progress[-1], 1)

    def test_cancel_while_running_ends_it_cancelled_within_a_second_then_409(self):
        job = started(self.srv, {"queries": 100, "delay_ms": 1000, "parallel": 1})
        res = self.srv.request("DELETE", "/api/jobs/%d" % job["id"])
        self.assertEqual(res.status, 202, res)
        t0 = time.monotonic()
        ended = wait_state(self.srv, job["id"], {"done", "failed", "cancelled"}, timeout=5.0)
        self.assertEqual(ended["state"], "cancelled", ended)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(ended["error"], "cancelled by request")
        self.assertIsNotNone(ended["finished_at"])
        again = self.srv.request("DELETE", "/api/jobs/%d" % job["id"])
        self.assertEqual(again.status, 409, again)
        self.assertIn("already finished", problem_fields(again)["detail"])

    def test_cancel_during_the_cpu_work_stops_it_within_a_second(self):
        job = started(self.srv, {"queries": 1, "delay_ms": 0, "cpu_ms": 10000})
        deadline = time.monotonic() + 5
        while get_job(self.srv, job["id"])["progress"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.srv.request("DELETE", "/api/jobs/%d" % job["id"]).status, 202)
        t0 = time.monotonic()
        ended = wait_state(self.srv, job["id"], {"done", "failed", "cancelled"}, timeout=5.0)
        self.assertEqual(ended["state"], "cancelled", ended)
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_a_finished_job_cannot_be_cancelled(self):
        job = started(self.srv, {"queries": 1, "delay_ms": 0})
        wait_state(self.srv, job["id"], {"done"})
        res = self.srv.request("DELETE", "/api/jobs/%d" % job["id"])
        self.assertEqual(res.status, 409)
        self.assertEqual(get_job(self.srv, job["id"])["state"], "done")

    def test_the_list_holds_the_newest_first(self):
        a = started(self.srv, {"queries": 1, "delay_ms": 0})
        b = started(self.srv, {"queries": 1, "delay_ms": 0})
        res = self.srv.request("GET", "/api/jobs?limit=2")
        self.assertEqual(res.status, 200)
        ids = [j["id"] for j in res.json()["jobs"]]
        self.assertEqual(ids, [b["id"], a["id"]])
        self.assertEqual(self.srv.request("GET", "/api/jobs?limit=0").status, 400)

    def test_unknown_and_malformed_ids(self):
        self.assertEqual(self.srv.request("GET", "/api/jobs/999999").status, 404)
        self.assertEqual(self.srv.request("DELETE", "/api/jobs/999999").status, 404)
        res = self.srv.request("GET", "/api/jobs/abc")
        self.assertEqual(res.status, 400)
        self.assertIn("job id", problem_fields(res)["detail"])

    def test_bad_bodies_are_problems_naming_the_fields(self):
        res = post_job(self.srv, {"queries": 0, "parallel": "four", "delay_ms": 10001, "cpu_ms": 1.5, "rows": 3})
        self.assertEqual(res.status, 422, res)
        doc = problem_fields(res)
        self.assertEqual(sorted(e["field"] for e in doc["errors"]), ["cpu_ms", "delay_ms", "parallel", "queries", "rows"])
        self.assertIn("queries must be an integer from 1 to 1000", doc["detail"])
        self.assertEqual(post_job(self.srv, raw=b"[1]").status, 422)
        self.assertEqual(post_job(self.srv, raw=b"{nope").status, 400)
        self.assertEqual(post_job(self.srv, raw=b"{}", content_type="text/plain").status, 415)

    def test_an_empty_body_takes_the_defaults(self):
        job = started(self.srv, None)
        done = wait_state(self.srv, job["id"], {"done", "failed", "cancelled"})
        self.assertEqual(done["state"], "done")
        self.assertEqual((done["result"]["queries"], done["result"]["parallel"], done["result"]["delay_ms"],
                          done["result"]["cpu_ms"]), (20, 4, 100, 0))


class JobBounds(unittest.TestCase):
    def test_past_max_jobs_they_queue_past_jobs_queue_503_and_a_queued_one_cancels_at_once(self):
        with Server("--max-jobs", "1", "--jobs-queue", "1", "--access-log", "off") as srv:
            long_spec = {"queries": 100, "delay_ms": 1000, "parallel": 1}
            running = started(srv, long_spec)
            queued = started(srv, long_spec)
            self.assertEqual(running["state"], "running")
            self.assertEqual(queued["state"], "queued")
            self.assertIsNone(queued["started_at"])
            refused = post_job(srv, long_spec)
            self.assertEqual(refused.status, 503, refused)
            self.assertIsNotNone(refused.header("Retry-After"))
            self.assertIn("--jobs-queue", problem_fields(refused)["detail"])

            res = srv.request("DELETE", "/api/jobs/%d" % queued["id"])
            self.assertEqual(res.status, 202)
            self.assertEqual(res.json()["state"], "cancelled")  # at once: it never ran
            self.assertIsNone(res.json()["started_at"])
            # The slot it held in the queue is free again.
            again = started(srv, long_spec)
            self.assertEqual(again["state"], "queued")
            self.assertEqual(srv.request("DELETE", "/api/jobs/%d" % running["id"]).status, 202)
            # The queued one takes the freed slot.
            wait_state(srv, again["id"], {"running"}, timeout=5.0)
            self.assertEqual(srv.request("DELETE", "/api/jobs/%d" % again["id"]).status, 202)
            self.assertEqual(srv.stop(), 0, srv.output())


class JobShutdown(unittest.TestCase):
    def test_sigterm_lets_a_short_job_finish_and_cancels_a_long_one_after_the_grace(self):
        grace = 1.0
        with Server("--shutdown-timeout-ms", str(int(grace * 1000)), "--access-log", "off") as srv:
            short = started(srv, {"queries": 3, "delay_ms": 150, "parallel": 1})
            long = started(srv, {"queries": 100, "delay_ms": 1000, "parallel": 1})
            t0 = time.monotonic()
            srv.signal(signal.SIGTERM)
            code = srv.wait(timeout=grace + 5)
            took = time.monotonic() - t0
            self.assertEqual(code, 0, srv.output())
            self.assertGreaterEqual(took, grace * 0.9, "the long job did not get its grace")
            self.assertLess(took, grace + 3)
            out = srv.output()
            self.assertIn("shutdown: job %d done" % short["id"], out)
            self.assertIn("shutdown: job %d cancelled (cancelled at shutdown: still running after the grace period)"
                          % long["id"], out)

    def test_sigterm_with_only_short_jobs_exits_once_they_are_done(self):
        with Server("--shutdown-timeout-ms", "10000", "--access-log", "off") as srv:
            job = started(srv, {"queries": 2, "delay_ms": 200, "parallel": 1})
            t0 = time.monotonic()
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(timeout=8), 0, srv.output())
            self.assertLess(time.monotonic() - t0, 5, "waited for the whole grace")
            self.assertIn("shutdown: job %d done" % job["id"], srv.output())


if __name__ == "__main__":
    unittest.main()
