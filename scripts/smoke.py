#!/usr/bin/env python3
"""Does this coroute deployment answer as it should? Checks a running server (one
process, or the balancer in front of replicas) from the outside.

usage: scripts/smoke.sh URL [--ca FILE] [--timeout SECONDS] [--skip NAME,...]

One line per check, with its time; exit status 0 when every check passed, 1 when
one failed (the last line names them), 2 for a bad argument. Python 3 standard
library only. The items check deletes what it creates, even when a step fails.
"""

import argparse
import html.parser
import http.client
import json
import re
import socket
import ssl
import sys
import time
import urllib.parse

CHECKS = ("healthz", "readyz", "database", "external", "items", "events", "page")


class Failed(Exception):
    """A check's failure: what was expected and what came instead."""


class Target:
    def __init__(self, url, ca=None, timeout=10.0):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("URL must be http://HOST[:PORT] or https://HOST[:PORT], not %r" % url)
        self.scheme, self.host = u.scheme, u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.base = u.path.rstrip("/")
        self.timeout = timeout
        self.tls = None
        if self.scheme == "https":
            self.tls = ssl.create_default_context(cafile=ca)
        elif ca:
            raise ValueError("--ca is for an https:// URL")

    def connect(self):
        if self.tls:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method, path, body=None, headers=None):
        """(status, headers, body bytes) on a connection of its own: behind a balancer,
        each request may reach another replica, as a client's would."""
        conn = self.connect()
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, bytes):
                body = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, self.base + path, body=body, headers=hdrs)
            res = conn.getresponse()
            data = res.read()
            return res.status, res, data
        except (OSError, http.client.HTTPException) as e:
            raise Failed("%s %s: %s" % (method, path, describe(e)))
        finally:
            conn.close()


def describe(e):
    if isinstance(e, ssl.SSLCertVerificationError):
        return "TLS: certificate verify failed: %s" % e.verify_message
    if isinstance(e, socket.timeout):
        return "no answer in time"
    return str(e) or type(e).__name__


def expect_status(method, path, status, want, data):
    if status != want:
        raise Failed("%s %s: %d, expected %d%s" % (method, path, status, want, problem_detail(data)))


def problem_detail(data):
    """': detail' of a problem body, so the line says why."""
    try:
        j = json.loads(data)
    except ValueError:
        return ""
    if isinstance(j, dict) and j.get("detail"):
        return ": " + str(j["detail"])
    return ""


def json_of(method, path, data):
    try:
        return json.loads(data)
    except ValueError:
        raise Failed("%s %s: the body is not JSON: %r" % (method, path, data[:80]))


def get_json(t, path, want=200):
    status, _, data = t.request("GET", path)
    expect_status("GET", path, status, want, data)
    return json_of("GET", path, data)


# -- the checks: each returns a short note, or raises Failed ---------------------

def check_healthz(t):
    j = get_json(t, "/healthz")
    if j.get("status") != "ok":
        raise Failed("GET /healthz: status is %r, expected 'ok'" % j.get("status"))
    return ""


def check_readyz(t):
    get_json(t, "/readyz")
    return ""


def check_database(t):
    j = get_json(t, "/api/db?delay_ms=0")
    if j.get("source") != "database" or not isinstance(j.get("items"), list):
        raise Failed("GET /api/db: not a database answer: %r" % j)
    return "%d items" % len(j["items"])


def check_external(t):
    j = get_json(t, "/api/external")
    if j.get("source") != "external" or j.get("status") != 200:
        raise Failed("GET /api/external: not an upstream answer: %r" % j)
    return "upstream %s in %s ms" % (j.get("url"), j.get("elapsed_ms"))


def check_items(t):
    name = "smoke-%d" % int(time.time() * 1000)
    status, res, data = t.request("POST", "/api/items", {"name": name, "price": 1})
    expect_status("POST", "/api/items", status, 201, data)
    created = json_of("POST", "/api/items", data)
    location = res.getheader("Location") or "/api/items/%s" % created.get("id")
    deleted = False
    try:
        got = get_json(t, location)
        if got.get("name") != name:
            raise Failed("GET %s: name %r, expected %r" % (location, got.get("name"), name))
        status, _, data = t.request("PUT", location, {"name": name + "-2", "price": 2})
        expect_status("PUT", location, status, 200, data)
        if get_json(t, location).get("name") != name + "-2":
            raise Failed("GET %s: the PUT did not stick" % location)
        status, _, data = t.request("DELETE", location)
        expect_status("DELETE", location, status, 204, data)
        deleted = True
        status, _, data = t.request("GET", location)
        expect_status("GET", location + " after DELETE", status, 404, data)
    finally:
        if not deleted:
            try:
                t.request("DELETE", location)
            except Failed:
                pass
    return "created, read, replaced, deleted %s" % location


def check_events(t):
    """The stream opens as text/event-stream and says it is connected."""
    conn = t.connect()
    try:
        conn.request("GET", t.base + "/api/events", headers={"Accept": "text/event-stream"})
        res = conn.getresponse()
        if res.status != 200:
            raise Failed("GET /api/events: %d, expected 200%s" % (res.status, problem_detail(res.read())))
        kind = res.getheader("Content-Type", "")
        if not kind.startswith("text/event-stream"):
            raise Failed("GET /api/events: Content-Type %r, expected text/event-stream" % kind)
        seen = b""
        deadline = time.monotonic() + t.timeout
        while b"\n\n" not in seen:
            if time.monotonic() > deadline:
                raise Failed("GET /api/events: nothing within %.0f s" % t.timeout)
            piece = res.read1(4096)
            if not piece:
                raise Failed("GET /api/events: the stream ended at once")
            seen += piece
        return ""
    except (OSError, http.client.HTTPException) as e:
        raise Failed("GET /api/events: %s" % describe(e))
    finally:
        conn.close()


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.found.append(a["src"])
        elif tag == "link" and a.get("href") and a.get("rel") in ("stylesheet", "icon", "modulepreload"):
            self.found.append(a["href"])


IMPORT = re.compile(r"""(?:^|\n)\s*import\s[^'"]*?['"](\.{1,2}/[^'"]+)['"]""")


def check_page(t):
    """`/`, then every local file it names, and the modules those import."""
    status, res, data = t.request("GET", "/")
    expect_status("GET", "/", status, 200, data)
    if not res.getheader("Content-Type", "").startswith("text/html"):
        raise Failed("GET /: Content-Type %r, expected text/html" % res.getheader("Content-Type"))
    links = Links()
    links.feed(data.decode("utf-8", "replace"))
    todo = [urllib.parse.urljoin("/", p) for p in links.found if not urllib.parse.urlsplit(p).netloc]
    seen = set()
    while todo and len(seen) < 200:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        status, _, body = t.request("GET", path)
        expect_status("GET", path, status, 200, body)
        if path.endswith(".js"):
            for m in IMPORT.finditer(body.decode("utf-8", "replace")):
                todo.append(urllib.parse.urljoin(path, m.group(1)))
    if not seen:
        raise Failed("GET /: the page names no file")
    return "/ and %d files" % len(seen)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="smoke.sh", description="Checks a running coroute server from outside.")
    ap.add_argument("url", help="the server or balancer: http://HOST:PORT or https://HOST:PORT")
    ap.add_argument("--ca", metavar="FILE", help="trust this CA (PEM) instead of the system store, for an https:// URL")
    ap.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="per request (default 10)")
    ap.add_argument("--skip", default="", metavar="NAME,...", help="checks to leave out: " + ",".join(CHECKS))
    args = ap.parse_args(argv)
    skip = [s for s in args.skip.split(",") if s]
    unknown = [s for s in skip if s not in CHECKS]
    if unknown:
        ap.error("--skip: no check named %s (they are %s)" % (", ".join(unknown), ", ".join(CHECKS)))
    try:
        target = Target(args.url, args.ca, args.timeout)
    except (ValueError, OSError, ssl.SSLError) as e:
        ap.error(str(e))

    failed = []
    for name in CHECKS:
        if name in skip:
            print("skip  %-9s" % name, flush=True)
            continue
        started = time.monotonic()
        try:
            note = globals()["check_" + name](target)
            ok, text = True, note
        except Failed as e:
            ok, text = False, str(e)
        ms = (time.monotonic() - started) * 1000
        print("%s  %-9s %8.1f ms  %s" % ("ok  " if ok else "FAIL", name, ms, text), flush=True)
        if not ok:
            failed.append(name)
    if failed:
        print("smoke: %s failed: %s" % (args.url, ", ".join(failed)), flush=True)
        return 1
    print("smoke: %s passed %d checks" % (args.url, len(CHECKS) - len(skip)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
