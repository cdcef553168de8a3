#pragma once
// The built-in upstream: a small HTTPS JSON API on a loopback port, so the demo's
// external call works offline and still crosses real TLS with real verification.

#include <coroute/http.hpp>
#include <coroute/log.hpp>

#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace coroute::app {

/// Serves `GET /todos` and `GET /todos/{id}` (`{"userId":…,"id":…,"title":…,"completed":…}`)
/// over HTTPS on 127.0.0.1 and a free port, with a P-256 certificate made at start-up.
/// Each answer waits `latency` (or `?delay_ms=`), like a remote API would. A share
/// `fail_rate` (0 to 1) of the answers are faults instead, for soaks and for trying the
/// external call's errors: a 500, a 200 that is not JSON, or a body cut after a few
/// bytes (its connection then closes), a third of the faults each.
class builtin_upstream
{
public:
    /// Starts listening at once; throws when it cannot.
    builtin_upstream(asio::any_io_executor ex, std::chrono::milliseconds latency, double fail_rate = 0);
    ~builtin_upstream();

    /// `https://127.0.0.1:PORT/todos/1`.
    std::string url() const;

    /// This upstream's certificate, PEM: what a client outside the process trusts.
    const std::string& certificate_pem() const;

    /// A client TLS context that trusts this upstream's certificate and nothing else.
    std::shared_ptr<asio::ssl::context> client_tls() const;

    /// Stops accepting and closes its connections.
    asio::awaitable<void> stop();

    /// TLS handshakes this upstream has accepted (each new client connection is one).
    std::uint64_t connections() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace coroute::app
