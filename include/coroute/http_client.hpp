#pragma once
// An outbound HTTP/1.1 client for http:// and https:// URLs, with verified TLS, one
// deadline per call and a keep-alive connection pool.
//
//     coroute::http_client client{io.get_executor()};
//     auto result = co_await client.get("https://api.example.com/todos/1");
//     if (result)
//         use(result.value().result_int(), result.value().body());
//     else
//         log(result.error().message);   // e.g. "tls: host name mismatch: ..."

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace coroute {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

/// Limits, pool and TLS settings of an http_client. The defaults suit a call made
/// from a request handler.
struct client_options
{
    /// Limit on resolving the host and opening the TCP connection, together.
    std::chrono::milliseconds connect_timeout{3000};
    /// Limit on the TLS handshake.
    std::chrono::milliseconds handshake_timeout{3000};
    /// Limit on a whole call, from the call to the last byte of the body; a call's
    /// own deadline can only shorten it. Retries and connecting count against it.
    std::chrono::milliseconds total_timeout{5000};
    /// Most bytes of status line and headers accepted in a response; at most 65536.
    std::uint32_t max_header_bytes = 64 * 1024;
    /// Most body bytes accepted in a response; a larger declared Content-Length
    /// fails as soon as the headers arrive.
    std::uint64_t max_body_bytes = 1024 * 1024;
    /// Most idle keep-alive connections kept per (scheme, host, port); 0 turns the
    /// pool off and sends `Connection: close`.
    std::size_t max_idle_per_host = 8;
    /// An idle connection older than this is closed instead of reused.
    std::chrono::milliseconds idle_timeout{30000};
    /// The TLS client context. When null: one that trusts `ca_file` only if it is
    /// set, else the system CA store. Whatever the context says, every connection
    /// verifies the peer's chain and host name.
    std::shared_ptr<asio::ssl::context> tls;
    /// A PEM file of CAs to trust instead of the system store; ignored if `tls` is set.
    std::optional<std::filesystem::path> ca_file;
    /// Sent as `User-Agent` unless the caller's headers have one.
    std::string user_agent = "coroute";
};

/// The phase of a call that failed.
enum class client_phase
{
    url,     ///< the URL does not parse, or its scheme is not http or https
    resolve, ///< DNS resolution failed
    connect, ///< no TCP connection could be opened
    tls,     ///< the TLS handshake failed, verification included
    send,    ///< writing the request failed
    status,  ///< no valid status line arrived
    headers, ///< the response headers were malformed, too large or cut short
    body,    ///< the body was cut short, malformed or over the cap
    timeout, ///< a time limit ran out (the error's `during` says in which phase)
};

/// The phase's name as used in messages: "url", "resolve", … "timeout".
std::string_view to_string(client_phase phase) noexcept;

/// Why a call failed, as a value: upstream failures are expected, not exceptional.
struct client_error
{
    /// The phase that failed; `timeout` whenever a time limit ran out.
    client_phase phase = client_phase::url;
    /// The phase in progress when it failed (differs from `phase` for timeouts).
    client_phase during = client_phase::url;
    /// A sentence for people, starting with the phase, e.g.
    /// "tls: certificate verify failed: self-signed certificate",
    /// "connect: connection refused (127.0.0.1:9)", "timeout after 5000 ms (reading the body)".
    std::string message;
    /// The underlying error code, when there is one.
    boost::system::error_code code;
};

/// A complete response held in memory.
using client_response = http::response<http::string_body>;

/// Either a response (any status, 4xx and 5xx included) or a client_error.
class client_result
{
public:
    /// An error with an empty message. It exists because Asio's `co_spawn` and
    /// awaitable operators (`&&`, `||`) need default-constructible results.
    client_result() : value_(client_error{}) {}
    client_result(client_response response) : value_(std::move(response)) {}
    client_result(client_error error) : value_(std::move(error)) {}

    /// True when a response arrived.
    bool has_value() const noexcept { return value_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    /// The response. Throws std::logic_error (a bug in the caller) if there is none.
    client_response& value() &;
    const client_response& value() const&;
    client_response&& value() &&;

    /// The error. Throws std::logic_error (a bug in the caller) if there is none.
    const client_error& error() const;

private:
    std::variant<client_response, client_error> value_;
};

/// Counters since the client was made, for tests and metrics.
struct client_stats
{
    /// TCP connections established.
    std::uint64_t connections_opened = 0;
    /// TLS handshakes completed.
    std::uint64_t tls_handshakes = 0;
    /// Calls served on a pooled connection instead of a new one.
    std::uint64_t reuses = 0;
    /// Calls retried on a fresh connection after a pooled one turned out broken.
    std::uint64_t retries = 0;
    /// Connections idle in the pool right now.
    std::size_t idle_connections = 0;
};

namespace detail {
struct client_state;
} // namespace detail

/// An HTTP/1.1 client over TCP (http://) or TLS (https://) with a keep-alive pool.
///
/// One client may be used by many coroutines at once, on any strands and threads of
/// the executor's execution context; each call completes on the executor of the
/// coroutine that awaits it. Connections run on the executor given here. A call in
/// flight keeps what it needs alive, so the client may be destroyed before its
/// calls complete; like any Asio I/O object, it must not outlive the execution
/// context. Idle connections are closed lazily (by the next call, `close_idle` or
/// the destructor): the client keeps no timer that would hold `run()` open.
///
/// TLS: SNI is sent for host names (not for IP literals), the chain is verified and
/// the host name or IP address is checked against the certificate
/// (`ssl::host_name_verification`); there is no switch to turn that off.
class http_client
{
public:
    /// A client whose connections run on `executor`. Throws std::invalid_argument
    /// if `options.max_header_bytes` is over 65536, and boost::system::system_error
    /// if `options.ca_file` does not load.
    explicit http_client(asio::any_io_executor executor, client_options options = {});
    ~http_client();
    http_client(http_client&&) noexcept;
    http_client& operator=(http_client&&) noexcept;
    http_client(const http_client&) = delete;
    http_client& operator=(const http_client&) = delete;

    /// `GET url`. See `request`.
    asio::awaitable<client_result> get(std::string_view url,
                                       std::optional<std::chrono::steady_clock::time_point> deadline = {});

    /// Sends `method url` with `headers` and `body` and reads the whole response.
    ///
    /// The arguments are copied before the call returns, so temporaries are fine.
    /// The call ends by the earlier of `deadline` and now + `total_timeout`, whatever
    /// the upstream does: a slow drip of bytes fails at that point, not later.
    /// Failures (bad URL, DNS, refused, TLS, timeout, malformed or oversized
    /// response) come back as a client_error; exceptions mean bugs or exhaustion.
    /// An idempotent request that fails on a pooled connection before any response
    /// byte arrives is retried once on a new connection. `Host`, `User-Agent` and
    /// `Content-Length` are set unless `headers` has them.
    /// Cancellation: a cancelled awaiting coroutine makes the call fail sooner
    /// where Asio supports per-operation cancellation; the deadline bounds it anyway.
    asio::awaitable<client_result> request(http::verb method, std::string_view url, http::fields headers = {},
                                           std::string body = {},
                                           std::optional<std::chrono::steady_clock::time_point> deadline = {});

    /// The counters so far.
    client_stats stats() const;

    /// Closes every idle pooled connection now (e.g. at shutdown); calls in flight
    /// are not affected.
    void close_idle();

    /// The options the client was made with (with `tls` filled in).
    const client_options& options() const noexcept;

    /// The executor the client's connections run on.
    asio::any_io_executor get_executor() const noexcept;

private:
    std::shared_ptr<detail::client_state> state_;
};

} // namespace coroute
