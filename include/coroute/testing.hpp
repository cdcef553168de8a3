#pragma once
// Testing routes (target coroute::testing): an in-process client that sends requests
// through the server's own connection code without a socket, and a server on a
// loopback port for tests that need a real one.

#include <coroute/response.hpp>
#include <coroute/router.hpp>
#include <coroute/server.hpp>
#include <coroute/websocket.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace coroute::testing {

/// Header fields to add to a request: `{{"Authorization", "Bearer x"}}`.
using fields = std::vector<std::pair<std::string, std::string>>;

/// Thrown by the `*_sync` calls and `run` when the answer does not come in time.
struct timeout_error : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

/// A response whose body is read as it arrives (a file, a produced body, an event
/// stream). Owns its connection; destroying it closes the connection, and the server
/// ends the response as it would for a client that left.
class streamed_response
{
public:
    streamed_response(streamed_response&&) noexcept;
    streamed_response& operator=(streamed_response&&) noexcept;
    ~streamed_response();

    /// The status line and fields; the body is empty (it comes through the reads).
    const response& head() const noexcept;

    /// The next bytes of the body: a chunk, or what arrived. An empty string once the
    /// body has ended (`done()` is then true); the error when the connection broke first.
    asio::awaitable<boost::system::result<std::string>> read_some();

    /// Reads until the body read by this call contains `text` (or the body ends); all of it.
    asio::awaitable<boost::system::result<std::string>> read_until(std::string text);

    /// The rest of the body.
    asio::awaitable<boost::system::result<std::string>> read_all();

    /// True once the body's end has been read.
    bool done() const noexcept;

    struct impl;
    explicit streamed_response(std::unique_ptr<impl> p);

private:
    std::unique_ptr<impl> impl_;
};

/// The client's end of a WebSocket opened through `client::websocket`.
class websocket_client
{
public:
    websocket_client(websocket_client&&) noexcept;
    websocket_client& operator=(websocket_client&&) noexcept;
    ~websocket_client();

    /// The server's `101 Switching Protocols`.
    const response& handshake() const noexcept;

    /// Sends one message; the error when the socket is closed.
    asio::awaitable<boost::system::error_code> send(std::string data, bool text = true);

    /// The next message; `beast::websocket::error::closed` once the server has closed
    /// (`close_code()` then says its code), or what broke the connection.
    asio::awaitable<boost::system::result<ws_message>> read();

    /// Begins the close handshake with `code`; `read` then ends once the server answers.
    asio::awaitable<boost::system::error_code> close(std::uint16_t code = close_code::normal);

    /// The code of the server's close frame; 0 before there was one.
    std::uint16_t close_code() const noexcept;

    struct impl;
    explicit websocket_client(std::unique_ptr<impl> p);

private:
    std::unique_ptr<impl> impl_;
};

/// Sends requests to a router through the same path a connection to a server takes:
/// the request reader with the limits and framing rules of `server_options`, the hooks,
/// routing, the request deadline, and the response writer; the client parses what was
/// written with Beast's parser. So a HEAD's fields, a 405's `Allow`, a problem's body and
/// `Content-Length` are what a client over TCP would get. No socket is opened: each
/// request is a connection of its own over an in-memory stream.
///
/// Two ways to call it. From a coroutine on the client's executor:
/// `auto res = co_await client.get("/api/items/1");`. From a plain test, with a client
/// that owns its `io_context` (the constructor without an executor): `client.get_sync(...)`
/// or `client.run(awaitable)`, which throw `timeout_error` when the answer takes longer
/// than `timeout()`, so a hung handler fails the test instead of hanging it.
///
/// Requests get `Host: test` unless they carry one, and the `Content-Length` of their
/// body. Raw upgrades (`response::upgrade`) need a socket: test those with `live_server`;
/// WebSocket routes work here (`websocket`).
class client
{
public:
    /// A client with an `io_context` of its own, run by the `*_sync` calls and `run`.
    explicit client(std::shared_ptr<const router> routes, server_options opts = {});
    /// A client whose connections run on `ex` (coroutine calls only).
    client(asio::any_io_executor ex, std::shared_ptr<const router> routes, server_options opts = {});
    /// As above, for a router that outlives the client.
    explicit client(const router& routes, server_options opts = {});
    ~client();
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    /// Sends `req` and reads the whole response. Throws boost::system::system_error when
    /// the server closes the connection without an answer.
    asio::awaitable<response> send(http::request<http::string_body> req);

    /// Sends bytes as they are (a malformed request, a pipelined pair) and reads one response.
    asio::awaitable<response> send_raw(std::string bytes);

    asio::awaitable<response> get(std::string_view target, fields headers = {});
    asio::awaitable<response> head(std::string_view target, fields headers = {});
    asio::awaitable<response> del(std::string_view target, fields headers = {});
    asio::awaitable<response> post(std::string_view target, std::string body, std::string_view content_type,
                                   fields headers = {});
    asio::awaitable<response> post_json(std::string_view target, const boost::json::value& body, fields headers = {});
    asio::awaitable<response> put_json(std::string_view target, const boost::json::value& body, fields headers = {});

    /// Sends `req` and reads the response's head; the body is read from the result.
    asio::awaitable<streamed_response> open(http::request<http::string_body> req);

    /// Opens a WebSocket on `target`; the handshake's answer when it is refused (a 401
    /// from a hook, a 426, a 403 for a foreign `Origin`).
    asio::awaitable<boost::system::result<websocket_client, response>> websocket(std::string_view target,
                                                                                fields headers = {});

    /// The same, for a plain test: bounded by `timeout()`.
    response send_sync(http::request<http::string_body> req) { return run(send(std::move(req))); }
    response get_sync(std::string_view target, fields headers = {}) { return run(get(target, std::move(headers))); }
    response head_sync(std::string_view target, fields headers = {}) { return run(head(target, std::move(headers))); }
    response del_sync(std::string_view target, fields headers = {}) { return run(del(target, std::move(headers))); }
    response post_json_sync(std::string_view target, const boost::json::value& body, fields headers = {})
    {
        return run(post_json(target, body, std::move(headers)));
    }
    response put_json_sync(std::string_view target, const boost::json::value& body, fields headers = {})
    {
        return run(put_json(target, body, std::move(headers)));
    }

    /// Runs `a` on the client's own `io_context` until it completes; rethrows what it
    /// threw. Past `timeout()` the client's connections are closed (their handlers are
    /// cancelled) and `timeout_error` is thrown. Throws std::logic_error for a client
    /// built on an executor of the caller's.
    template <class T>
    T run(asio::awaitable<T> a)
    {
        auto fut = asio::co_spawn(own_context(), held(std::move(a)), asio::use_future);
        wait_for([&fut] { return fut.wait_for(std::chrono::seconds(0)) == std::future_status::ready; });
        if constexpr (std::is_void_v<T>)
            fut.get();
        else
            return std::move(*fut.get());
    }

    /// How long a `*_sync` call or `run` waits (10 s unless set).
    std::chrono::milliseconds timeout() const noexcept { return timeout_; }
    void set_timeout(std::chrono::milliseconds t) noexcept { timeout_ = t; }

    /// Makes every response carry `Connection: close`, as a draining server's do.
    void drain();

    /// Connections the client has open (each request's, while it lasts).
    std::size_t connections() const noexcept;

    asio::any_io_executor get_executor() const noexcept { return ex_; }

    struct impl;

private:
    // co_spawn's future wants a default-constructible value: results without one ride in an optional.
    template <class T>
    static asio::awaitable<std::conditional_t<std::is_void_v<T>, void, std::optional<T>>> held(asio::awaitable<T> a)
    {
        if constexpr (std::is_void_v<T>)
            co_await std::move(a);
        else
        {
            auto v = co_await std::move(a);
            co_return std::optional<T>{std::move(v)};
        }
    }

    asio::io_context& own_context();
    void wait_for(const std::function<bool()>& ready);
    asio::awaitable<response> exchange(http::request<http::string_body> req);
    asio::awaitable<response> exchange_raw(std::string bytes);
    asio::awaitable<streamed_response> start_stream(http::request<http::string_body> req);
    asio::awaitable<boost::system::result<websocket_client, response>> start_websocket(std::string target,
                                                                                     fields headers);

    std::unique_ptr<asio::io_context> own_; // declared first: destroyed after the connections
    asio::any_io_executor ex_;
    std::unique_ptr<impl> impl_;
    std::chrono::milliseconds timeout_{10'000};
};

/// The body of `res` parsed as JSON; throws boost::system::system_error when it is not JSON.
boost::json::value json_body(const response& res);

/// A request with `method`, `target`, `Host: test` and `headers`.
http::request<http::string_body> make_request(http::verb method, std::string_view target, fields headers = {},
                                              std::string body = {});

/// A server for one router on 127.0.0.1 and a port the OS picks, on a thread of its
/// own, for tests that need a real socket (TLS, raw upgrades, a client library, a
/// script). Stopped at scope exit: shutdown with a one-second grace, then joined.
class live_server
{
public:
    /// Starts at once. With `health`, `/healthz` and `/readyz` are added to `routes`
    /// before it starts. Throws what `server::listen` throws.
    explicit live_server(std::shared_ptr<router> routes, server_options opts = {}, bool health = false);
    ~live_server();
    live_server(const live_server&) = delete;
    live_server& operator=(const live_server&) = delete;

    /// "http://127.0.0.1:PORT" (or https, with `opts.tls`).
    std::string url() const;
    unsigned short port() const noexcept { return port_; }
    coroute::server& server() noexcept { return *server_; }
    asio::io_context& context() noexcept { return ioc_; }

    /// A blocking GET on a connection of its own, bounded by `timeout` (plain HTTP only).
    http::response<http::string_body> get(std::string_view target, fields headers = {},
                                          std::chrono::milliseconds timeout = std::chrono::seconds(10));

private:
    asio::io_context ioc_;
    std::shared_ptr<router> routes_;
    std::unique_ptr<coroute::server> server_;
    unsigned short port_ = 0;
    std::thread thread_;
};

} // namespace coroute::testing
