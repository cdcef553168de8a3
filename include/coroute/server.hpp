#pragma once
// The HTTP/1.1 server: a listener and one coroutine per connection, on the caller's executor.

#include <coroute/fwd.hpp>
#include <coroute/health.hpp>
#include <coroute/log.hpp>
#include <coroute/router.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

namespace coroute {

namespace detail {
struct server_state;
}

/// Limits and timeouts of one server. Defaults stay close to nginx's.
struct server_options
{
    std::size_t header_limit = 8 * 1024;        ///< request line + fields, bytes (431 past it)
    std::size_t target_limit = 8 * 1024;        ///< request target, bytes (414 past it)
    std::size_t max_header_fields = 100;        ///< fields per request (431 past it)
    std::uint64_t body_limit = 1024 * 1024;     ///< body bytes (413 past it)
    std::size_t chunk_extension_limit = 1024;   ///< bytes of one chunk's extensions (400 past it)
    std::chrono::milliseconds header_timeout{10'000};   ///< whole header, from its first byte (408)
    std::chrono::milliseconds body_timeout{60'000};     ///< whole body, from the end of the header (408)
    std::chrono::milliseconds idle_timeout{30'000};     ///< keep-alive wait for the next request
    std::chrono::milliseconds write_timeout{30'000};    ///< longest a response may make no progress (a client that stops reading is dropped)
    std::chrono::milliseconds request_timeout{30'000};  ///< handler deadline (504 past it)
    std::chrono::milliseconds handshake_timeout{10'000}; ///< TLS handshake
    std::size_t max_connections = 16'384;       ///< open connections; more are closed at once
    /// Watch the socket while a handler runs and cancel the handler when the client
    /// leaves (plain TCP). Off by default: it costs one more epoll registration per
    /// request, about a fifth of the throughput of the smallest requests.
    bool cancel_on_disconnect = false;
    /// Give every connection a strand of its executor. Turn it off only when each
    /// executor is run by one thread (an `io_context` per thread, or a one-thread
    /// pool): its handlers then never run concurrently, and each completion saves the
    /// strand's queue and its second trip through the scheduler.
    bool strand_per_connection = true;
    /// Serve HTTPS with this context when set.
    std::shared_ptr<asio::ssl::context> tls;
    /// Where diagnostics and the access log go; a default logger when null.
    std::shared_ptr<logger> log;
};

/// Counters a server keeps; read them from any thread.
struct server_stats
{
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_rejected = 0;  ///< closed at once over max_connections
    std::uint64_t connections_open = 0;
    std::uint64_t requests = 0;
    std::uint64_t in_flight = 0;      ///< requests being dispatched now (a streamed body or an upgraded socket no longer counts)
    std::uint64_t peak_in_flight = 0; ///< the most at once, since the start or `reset_peak()`
};

/// An HTTP/1.1 (or HTTPS) server for one router.
///
/// It owns no threads: every connection is a coroutine on a strand of the executor
/// given at construction, so it joins whatever `io_context` the program already runs.
/// Keep-alive, pipelining (answered in order), `Expect: 100-continue`, HEAD, strict
/// RFC 9112 framing and the limits of `server_options` are handled here; handlers
/// only see complete, valid requests. Every response carries `Date`,
/// `Server: coroute/<version>` and `X-Request-Id`.
///
/// Shutdown has two phases: `drain()` makes `/readyz` answer 503 and every response
/// carry `Connection: close`; `shutdown()` then stops accepting, closes idle
/// connections, ends streamed bodies, tells upgraded connections, lets requests in
/// flight finish within a grace period, and closes what is left.
class server
{
public:
    server(asio::any_io_executor ex, std::shared_ptr<const router> routes, server_options options = {});

    /// A server whose connections are spread, round robin, over `executors`; the
    /// acceptor and the server's own work run on the first. Give it one executor per
    /// thread (an `io_context` per thread) and a connection's handlers never leave
    /// its thread: no contention between threads on the scheduler, the heap or a
    /// strand. Each connection still has its own strand, so an executor run by
    /// several threads is safe too. Throws std::invalid_argument when `executors` is empty.
    server(std::vector<asio::any_io_executor> executors, std::shared_ptr<const router> routes,
           server_options options = {});
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// Binds and listens (SO_REUSEADDR); port 0 takes a free port. Returns the bound endpoint.
    /// Throws boost::system::system_error when the address cannot be bound.
    asio::ip::tcp::endpoint listen(const asio::ip::tcp::endpoint& where);

    /// Starts accepting on the listening socket. Call once, after listen().
    void start();

    /// The bound endpoint (after listen()).
    asio::ip::tcp::endpoint local_endpoint() const;

    /// "http" or "https".
    std::string_view scheme() const noexcept;

    /// Phase one of shutdown; thread-safe and idempotent.
    void drain();
    bool draining() const noexcept;

    /// Phase two: stops accepting, closes idle connections, waits up to `grace` for
    /// requests in flight (the last connection to end wakes it), then closes every
    /// connection and waits for them to end. Completes on the server's executor.
    asio::awaitable<void> shutdown(std::chrono::milliseconds grace);

    server_stats stats() const noexcept;

    /// Starts a new peak: `peak_in_flight` becomes the number in flight now.
    void reset_peak() noexcept;
    const server_options& options() const noexcept;
    logger& log() const noexcept;

private:
    friend void add_health_routes(router& r, const server& srv);
    friend void add_health_routes(router& r, const server& srv, std::function<std::optional<std::string>()> not_ready);
    std::shared_ptr<detail::server_state> impl_;
};

} // namespace coroute
