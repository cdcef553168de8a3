"""Start-up failures of coroute-server (issue 14): each is one stderr line that names
what failed and what to do, with exit status 2 for a bad option and 1 for a failure
to start; and the banner says honestly which upstream is in use."""

import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Server, build_request, clean_env, default_www, run_cli, server_binary  # noqa: E402

FIX_PEM = "give --tls-cert a PEM certificate chain and --tls-key its PEM private key"


def make_cert(directory, name):
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=coroute test",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


class StartupFailures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert, cls.key = make_cert(cls.tmp.name, "a")
        cls.other_cert, cls.other_key = make_cert(cls.tmp.name, "b")
        cls.not_pem = os.path.join(cls.tmp.name, "not.pem")
        with open(cls.not_pem, "w") as f:
            f.write("this is not PEM\n")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def fails(self, code, *args):
        """Runs the server with `args` (on a free port unless they name one) and returns
        its one stderr line, having checked the exit status and that stdout is empty."""
        got, out, err = run_cli("--port", "0", *args)
        self.assertEqual(got, code, err)
        self.assertEqual(out, "")
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("coroute-server: "), err)
        return lines[0][len("coroute-server: "):]

    # -- failures to start: exit 1 ------------------------------------------------

    def test_a_busy_port_suggests_another(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            line = self.fails(1, "--port", str(port))
        self.assertEqual(line, "cannot listen on 127.0.0.1:%d: the port is in use by another program; "
                               "choose another with --port (--port 0 takes a free one)" % port)

    def test_an_address_not_of_this_machine_names_the_ones_to_use(self):
        # 192.0.2.1 is TEST-NET-1: never an address of this machine. Nothing is sent.
        line = self.fails(1, "--host", "192.0.2.1")
        self.assertEqual(line, "cannot listen on 192.0.2.1:0: 192.0.2.1 is not an address of this machine; "
                               "use --host 127.0.0.1 (this machine only), --host 0.0.0.0 (every interface) "
                               "or one of its own addresses")

    def test_a_host_name_that_does_not_resolve_says_so(self):
        # A label over 63 characters cannot exist, so the resolver fails without asking anyone.
        name = "a" * 64 + ".invalid"
        line = self.fails(1, "--host", name)
        self.assertTrue(line.startswith("cannot resolve --host %s: " % name), line)
        self.assertTrue(line.endswith("; give an IP address (127.0.0.1, ::1, 0.0.0.0) "
                                      "or a name this machine resolves"), line)

    def test_a_missing_certificate_is_named(self):
        missing = os.path.join(self.tmp.name, "missing.pem")
        line = self.fails(1, "--tls-cert", missing, "--tls-key", self.key)
        self.assertEqual(line, "cannot read the TLS certificate %s (--tls-cert): No such file or directory; "
                               "give a readable PEM certificate chain" % missing)

    def test_a_missing_key_is_named(self):
        missing = os.path.join(self.tmp.name, "missing.key")
        line = self.fails(1, "--tls-cert", self.cert, "--tls-key", missing)
        self.assertEqual(line, "cannot read the TLS private key %s (--tls-key): No such file or directory; "
                               "give a readable PEM private key" % missing)

    def test_a_directory_given_as_certificate_is_named(self):
        line = self.fails(1, "--tls-cert", self.tmp.name, "--tls-key", self.key)
        self.assertEqual(line, "cannot read the TLS certificate %s (--tls-cert): it is a directory; "
                               "give a readable PEM certificate chain" % self.tmp.name)

    def test_a_certificate_that_is_not_pem_is_named(self):
        line = self.fails(1, "--tls-cert", self.not_pem, "--tls-key", self.key)
        self.assertTrue(line.startswith("cannot load %s (--tls-cert): " % self.not_pem), line)
        self.assertTrue(line.endswith("; " + FIX_PEM), line)

    def test_a_key_that_is_not_pem_is_named(self):
        line = self.fails(1, "--tls-cert", self.cert, "--tls-key", self.not_pem)
        self.assertTrue(line.startswith("cannot load %s (--tls-key): " % self.not_pem), line)
        self.assertTrue(line.endswith("; " + FIX_PEM), line)

    def test_a_key_of_another_certificate_is_named(self):
        line = self.fails(1, "--tls-cert", self.cert, "--tls-key", self.other_key)
        self.assertEqual(line, "the key %s (--tls-key) does not belong to the certificate %s (--tls-cert): "
                               "key values mismatch (x509 certificate routines); give the key made with that "
                               "certificate" % (self.other_key, self.cert))

    def test_a_missing_www_directory_names_the_demo_one(self):
        missing = os.path.join(self.tmp.name, "no-www")
        line = self.fails(1, "--www", missing)
        self.assertEqual(line, "the www directory %s does not exist (--www); give the site's directory, "
                               "e.g. --www %s" % (missing, os.path.realpath(default_www())))

    def test_a_file_as_www_directory_is_named(self):
        line = self.fails(1, "--www", self.cert)
        self.assertEqual(line, "the www path %s is not a directory (--www); give the site's directory, "
                               "e.g. --www %s" % (self.cert, os.path.realpath(default_www())))

    def test_a_missing_upstream_ca_is_named(self):
        missing = os.path.join(self.tmp.name, "ca.pem")
        line = self.fails(1, "--upstream", "https://127.0.0.1:1/", "--upstream-ca", missing)
        self.assertEqual(line, "cannot read the CA file %s (--upstream-ca): No such file or directory; "
                               "give a readable PEM file of CA certificates" % missing)

    def test_an_upstream_ca_that_is_not_pem_is_named(self):
        line = self.fails(1, "--upstream", "https://127.0.0.1:1/", "--upstream-ca", self.not_pem)
        self.assertTrue(line.startswith("cannot load the CA file %s (--upstream-ca): " % self.not_pem), line)
        self.assertTrue(line.endswith("; give a PEM file of CA certificates"), line)

    def test_an_unwritable_certificate_out_file_is_named(self):
        path = os.path.join(self.tmp.name, "no-such-dir", "upstream.pem")
        line = self.fails(1, "--upstream-cert-out", path)
        self.assertEqual(line, "cannot write the built-in upstream's certificate to %s (--upstream-cert-out): "
                               "No such file or directory; give a writable file path" % path)

    # -- bad options: exit 2 --------------------------------------------------------

    def test_an_upstream_url_without_a_host_is_a_bad_option(self):
        for url in ("https://", "http://", "https:///todos/1"):
            with self.subTest(url=url):
                line = self.fails(2, "--upstream", url)
                self.assertEqual(line, "invalid value '%s' for --upstream: the URL has no host; give one, "
                                       "like https://api.example.com/todos/1" % url)

    def test_an_upstream_url_of_another_scheme_is_a_bad_option(self):
        line = self.fails(2, "--upstream", "ftp://example.com/x")
        self.assertEqual(line, "invalid value 'ftp://example.com/x' for --upstream: give an http:// or https:// "
                               "URL, like https://api.example.com/todos/1")

    def test_an_upstream_port_out_of_range_is_a_bad_option(self):
        line = self.fails(2, "--upstream", "http://127.0.0.1:99999/x")
        self.assertEqual(line, "invalid value 'http://127.0.0.1:99999/x' for --upstream: the port must be 1 to 65535")

    def test_upstream_cert_out_with_an_upstream_is_a_bad_option(self):
        line = self.fails(2, "--upstream", "https://127.0.0.1:1/", "--upstream-cert-out", "x.pem")
        self.assertEqual(line, "--upstream-cert-out writes the built-in upstream's certificate, and --upstream "
                               "replaces that upstream; drop one of them")

    def test_upstream_ca_without_an_upstream_is_a_bad_option(self):
        line = self.fails(2, "--upstream-ca", self.cert)
        self.assertEqual(line, "--upstream-ca names the CAs to trust for --upstream; the built-in upstream needs none")


    def test_an_upstream_url_with_credentials_is_a_bad_option(self):
        line = self.fails(2, "--upstream", "https://user:pw@127.0.0.1:1/x")
        self.assertEqual(line, "invalid value 'https://user:pw@127.0.0.1:1/x' for --upstream: credentials in the "
                               "URL are not supported; give it without user:password@")

    def test_an_argument_that_is_not_a_flag_is_a_bad_option(self):
        line = self.fails(2, "stray")
        self.assertEqual(line, "unexpected argument 'stray' (try --help)")

    def test_websocket_origins_that_are_not_origins_are_a_bad_option(self):
        for value in (",", "http://a.example,,http://b.example", "a.example", "http://", "http://a.example/",
                      "http://a.example:0", "null"):
            with self.subTest(value=value):
                line = self.fails(2, "--ws-allowed-origins", value)
                self.assertTrue(line.startswith("invalid value '%s' for --ws-allowed-origins (LIST: " % value), line)

    def test_on_off_options_take_nothing_else(self):
        for flag in ("--access-log", "--cancel-on-disconnect"):
            for value in ("yes", "1", "ON", "x"):
                with self.subTest(flag=flag, value=value):
                    line = self.fails(2, flag, value)
                    self.assertTrue(line.startswith("invalid value '%s' for %s (on|off: " % (value, flag)), line)

    def test_an_empty_value_is_a_bad_option(self):
        for flag in ("--host", "--www", "--upstream", "--upstream-cert-out"):
            with self.subTest(flag=flag):
                line = self.fails(2, flag, "")
                self.assertTrue(line.startswith("invalid value '' for %s (" % flag), line)

    def test_a_log_level_that_is_not_a_level_is_a_bad_option(self):
        line = self.fails(2, "--log-level", "loud")
        self.assertEqual(line, "invalid value 'loud' for --log-level (LEVEL: debug, info, warn, error or off)")

    def test_a_privileged_port_without_the_privilege_is_named(self):
        # Run as nobody when we are root; the kernel's own threshold says which ports need it.
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            first_free = int(f.read())
        if first_free == 0:
            self.skipTest("this machine lets anyone bind any port (ip_unprivileged_port_start is 0)")
        port = min(first_free - 1, 1023)

        def unprivileged():
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)

        p = subprocess.run([server_binary(), "--port", str(port), "--www", default_www()], capture_output=True,
                           text=True, timeout=10, env=clean_env(), preexec_fn=unprivileged)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(p.stdout, "")
        self.assertEqual(p.stderr, "coroute-server: cannot listen on 127.0.0.1:%d: permission denied (ports below "
                                   "1024 need privileges); choose --port 1024 or above\n" % port)


class Environment(unittest.TestCase):
    def test_a_coroute_variable_that_names_no_option_is_ignored(self):
        # A typo of COROUTE_THREADS: the server starts as if it were not there.
        with Server("--access-log", "off", env={"COROUTE_THREAD": "not-a-number", "COROUTE_": "x"}) as s:
            self.assertEqual(s.request("GET", "/healthz").status, 200)
            self.assertEqual(s.output().count("COROUTE_"), 0, s.output())


class Signals(unittest.TestCase):
    def test_a_second_signal_during_the_graceful_stop_stops_at_once(self):
        # A request that waits 20 s on the database holds the graceful stop, which would wait
        # for it up to --shutdown-timeout-ms; the second SIGTERM ends the process instead.
        s = Server("--access-log", "off", "--shutdown-timeout-ms", "30000").start()
        try:
            c = s.connect(timeout=30)
            c.send(build_request("GET", "/api/db?delay_ms=20000"))
            time.sleep(0.3)  # the request is in its handler
            s.signal(signal.SIGTERM)
            self.assertIsNotNone(s.wait_for_stderr(lambda l: "stop" in l or "drain" in l, 5), s.output())
            time.sleep(0.5)
            self.assertIsNone(s.proc.poll(), "the first signal alone must wait for the request: " + s.output())
            sent = time.monotonic()
            s.signal(signal.SIGTERM)
            code = s.wait(timeout=5)
            self.assertLess(time.monotonic() - sent, 3.0)
            self.assertEqual(code, 0, s.output())
            self.assertIn("second signal: stopping now", s.output())
            c.close()
        finally:
            if s.proc.poll() is None:
                s.proc.kill()


class StartupBanner(unittest.TestCase):
    def test_a_host_name_is_resolved(self):
        with Server("--host", "localhost") as srv:
            self.assertEqual(srv.host, "127.0.0.1")
            self.assertEqual(srv.request("GET", "/healthz").status, 200)
            self.assertEqual(srv.stop(), 0)

    def test_the_upstream_is_the_line_after_the_listening_line(self):
        with Server() as srv:
            srv.wait_for_stdout(lambda l: l.startswith("database: "))
            self.assertRegex(srv.stdout_lines[1], r"^upstream: https://127\.0\.0\.1:\d+/todos/1 \(built-in, "
                                                  r"self-signed certificate trusted explicitly, 100 ms latency\)$")
            self.assertEqual(srv.stop(), 0)

    def test_a_plain_http_upstream_is_not_called_verified(self):
        with Server("--upstream", "http://127.0.0.1:1/x") as srv:
            srv.wait_for_stdout(lambda l: l.startswith("database: "))
            self.assertEqual(srv.stdout_lines[1], "upstream: http://127.0.0.1:1/x (plain HTTP: not encrypted, not verified)")
            self.assertEqual(srv.stop(), 0)

    def test_an_https_upstream_names_what_verifies_it(self):
        with Server("--upstream", "https://127.0.0.1:1/x") as srv:
            srv.wait_for_stdout(lambda l: l.startswith("database: "))
            self.assertEqual(srv.stdout_lines[1], "upstream: https://127.0.0.1:1/x (verified with the system CA store)")
            self.assertEqual(srv.stop(), 0)

    def test_the_built_in_certificate_is_written_where_asked_and_trusted_by_a_client(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "upstream.pem")
            with Server("--upstream-cert-out", path) as srv:
                line = srv.wait_for_stdout(lambda l: l.startswith("upstream: "))
                self.assertIsNotNone(line, srv.output())
                self.assertTrue(line.endswith(", certificate in %s)" % path), line)
                url = line.split()[1]
                ctx = ssl.create_default_context(cafile=path)
                with urllib.request.urlopen(url, context=ctx, timeout=5) as res:
                    self.assertEqual(res.status, 200)
                    self.assertIn(b'"id":1', res.read())
                self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main()
