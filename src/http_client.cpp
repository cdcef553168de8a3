#include "coroute/http_client.hpp"

#include "coroute/tls.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/verify_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <vector>

namespace coroute {

namespace {

namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using error_code = boost::system::error_code;
using tls_stream = beast::ssl_stream<beast::tcp_stream>;
using std::chrono::milliseconds;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// Where a URL points, split the way each step needs it.
struct target
{
    bool https = false;
    std::string host;        // no brackets: for DNS, SNI and certificate checks
    bool host_is_ip = false;
    std::uint16_t port = 0;
    std::string host_header; // RFC 9110 section 7.2: brackets for IPv6, port if not default
    std::string path;        // origin-form: path and query, never empty
};

struct pool_key
{
    bool https;
    std::string host;
    std::uint16_t port;
    auto operator<=>(const pool_key&) const = default;
};

/// One TCP or TLS connection, with the bytes read past the last response.
struct connection
{
    connection(const asio::any_io_executor& ex, std::shared_ptr<ssl::context> context)
        : tls_context(std::move(context))
    {
        if (tls_context)
            stream.emplace<tls_stream>(ex, *tls_context);
        else
            stream.emplace<beast::tcp_stream>(ex);
    }

    beast::tcp_stream& tcp()
    {
        if (auto* s = std::get_if<tls_stream>(&stream))
            return s->next_layer();
        return std::get<beast::tcp_stream>(stream);
    }

    // Declared first so it is destroyed last: the stream's SSL object uses the
    // context's verify settings, and the context may be the caller's to drop.
    std::shared_ptr<ssl::context> tls_context;
    std::variant<std::monostate, beast::tcp_stream, tls_stream> stream;
    beast::flat_buffer buffer;
    clock_type::time_point idle_since{};
};

client_error make_error(client_phase phase, std::string message, error_code ec = {})
{
    return client_error{phase, phase, std::string(to_string(phase)) + ": " + message, ec};
}

// Asio's system messages come from strerror ("Connection refused"); ours are
// mid-sentence, so they start in lower case.
std::string describe(const error_code& ec)
{
    std::string text = ec.message();
    if (text.size() > 1 && std::isupper(static_cast<unsigned char>(text[0])) &&
        std::islower(static_cast<unsigned char>(text[1])))
        text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
    return text;
}

long long to_ms(clock_type::duration d)
{
    return std::max<long long>(0, std::chrono::ceil<milliseconds>(d).count());
}

/// Time limits of one phase: the phase's own limit, clipped by the call's deadline.
struct phase_limit
{
    clock_type::time_point at;
    long long ms; // the limit that applies, for the message

    static phase_limit of(clock_type::time_point deadline, long long total_ms, milliseconds own)
    {
        auto own_end = clock_type::now() + own;
        if (own_end < deadline)
            return {own_end, static_cast<long long>(own.count())};
        return {deadline, total_ms};
    }
};

client_error timeout_error(client_phase during, long long ms, std::string_view doing, error_code ec)
{
    client_error e;
    e.phase = client_phase::timeout;
    e.during = during;
    e.message = "timeout after " + std::to_string(ms) + " ms (" + std::string(doing) + ")";
    e.code = ec;
    return e;
}

bool is_idempotent(http::verb v)
{
    // RFC 9110 section 9.2.2.
    switch (v)
    {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::trace:
    case http::verb::put:
    case http::verb::delete_:
        return true;
    default:
        return false;
    }
}

std::variant<target, client_error> parse_target(std::string_view text)
{
    auto parsed = boost::urls::parse_uri(text);
    if (!parsed)
        return make_error(client_phase::url, "not an absolute URL: '" + std::string(text) + "'", parsed.error());
    const auto& u = *parsed;

    target t;
    if (u.scheme_id() == boost::urls::scheme::https)
        t.https = true;
    else if (u.scheme_id() != boost::urls::scheme::http)
        return make_error(client_phase::url, "unsupported scheme '" + std::string(u.scheme()) +
                                                 "' (only http and https)");
    if (u.has_userinfo())
        return make_error(client_phase::url, "credentials in the URL are not supported");

    switch (u.host_type())
    {
    case boost::urls::host_type::ipv4:
        t.host = u.host_ipv4_address().to_string();
        t.host_is_ip = true;
        t.host_header = t.host;
        break;
    case boost::urls::host_type::ipv6:
        t.host = u.host_ipv6_address().to_string();
        t.host_is_ip = true;
        t.host_header = "[" + t.host + "]";
        break;
    case boost::urls::host_type::name:
        t.host = u.host_name();
        // Names compare case-insensitively (RFC 4343); one spelling per pool entry.
        std::transform(t.host.begin(), t.host.end(), t.host.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        t.host_header = t.host;
        break;
    default:
        break;
    }
    if (t.host.empty())
        return make_error(client_phase::url, "no host in '" + std::string(text) + "'");

    const std::uint16_t default_port = t.https ? 443 : 80;
    t.port = default_port;
    if (u.has_port() && !u.port().empty())
    {
        // port_number() wraps values over 65535 around instead of failing.
        const auto digits = u.port();
        unsigned long value = 0;
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
        if (ec != std::errc() || end != digits.data() + digits.size() || value == 0 || value > 65535)
            return make_error(client_phase::url, "invalid port '" + std::string(digits) + "'");
        t.port = static_cast<std::uint16_t>(value);
    }
    if (t.port != default_port)
        t.host_header += ":" + std::to_string(t.port);

    t.path = std::string(u.encoded_target());
    if (t.path.empty())
        t.path = "/";
    else if (t.path.front() != '/')
        return make_error(client_phase::url, "the path of '" + std::string(text) + "' is not absolute");
    return t;
}

// ---------------------------------------------------------------------------
// DNS with a deadline.
//
// tcp::resolver runs getaddrinfo on a private thread, and cancelling it does not
// interrupt that call, so neither expires_at nor awaitable_operators can bound it.
// Instead the answer and a timer race, and whichever comes first completes the
// wait; a late answer is dropped.

struct resolve_outcome
{
    error_code ec;
    tcp::resolver::results_type endpoints;
    bool timed_out = false;
};

template <class Handler>
struct resolve_race
{
    resolve_race(const asio::any_io_executor& ex, Handler h) : timer(ex), resolver(ex), handler(std::move(h)) {}

    void finish(resolve_outcome out)
    {
        std::optional<Handler> h;
        {
            std::lock_guard lock{mutex};
            if (handler)
            {
                h.emplace(std::move(*handler));
                handler.reset();
            }
        }
        if (!h)
            return;
        // Complete on the awaiting coroutine's executor, never inside the resolver's
        // or the timer's handler.
        auto ex = asio::get_associated_executor(*h, timer.get_executor());
        asio::post(ex, beast::bind_front_handler(std::move(*h), std::move(out)));
    }

    asio::steady_timer timer;
    tcp::resolver resolver;
    std::mutex mutex;
    std::optional<Handler> handler;
};

struct resolve_until_initiation
{
    template <class Handler>
    void operator()(Handler handler, asio::any_io_executor ex, std::string host, std::string port,
                    clock_type::time_point deadline) const
    {
        auto race = std::make_shared<resolve_race<Handler>>(ex, std::move(handler));
        race->timer.expires_at(deadline);
        // The timer's handler never touches the resolver: the resolve may still be
        // being started on this thread when the timer fires on another.
        race->timer.async_wait([race](error_code ec) {
            if (!ec)
                race->finish({asio::error::timed_out, {}, true});
        });
        race->resolver.async_resolve(host, port, tcp::resolver::numeric_service,
                                     [race](error_code ec, tcp::resolver::results_type endpoints) {
                                         race->timer.cancel();
                                         race->finish({ec, std::move(endpoints), false});
                                     });
    }
};

template <class Token>
auto async_resolve_until(asio::any_io_executor ex, std::string host, std::string port,
                         clock_type::time_point deadline, Token&& token)
{
    return asio::async_initiate<Token, void(resolve_outcome)>(resolve_until_initiation{}, token, std::move(ex),
                                                               std::move(host), std::move(port), deadline);
}

// ---------------------------------------------------------------------------
// TLS verification.

/// ssl::host_name_verification, plus the reason. Asio's check returns false on a
/// mismatch without recording why, so OpenSSL would report "certificate verify
/// failed" with a verify result of "ok"; setting the X509 error makes the failure
/// say "host name mismatch".
struct verify_host
{
    ssl::host_name_verification check;
    bool host_is_ip;

    bool operator()(bool preverified, ssl::verify_context& ctx) const
    {
        if (check(preverified, ctx))
            return true;
        if (preverified)
            X509_STORE_CTX_set_error(ctx.native_handle(),
                                     host_is_ip ? X509_V_ERR_IP_ADDRESS_MISMATCH : X509_V_ERR_HOSTNAME_MISMATCH);
        return false;
    }
};

client_error tls_error(const error_code& ec, tls_stream& stream, const target& t)
{
    if (ec.category() == asio::error::get_ssl_category() &&
        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED)
    {
        const long result = SSL_get_verify_result(stream.native_handle());
        if (result == X509_V_ERR_HOSTNAME_MISMATCH || result == X509_V_ERR_IP_ADDRESS_MISMATCH)
            return make_error(client_phase::tls, "host name mismatch: the certificate is not valid for " + t.host,
                              ec);
        return make_error(client_phase::tls,
                          std::string("certificate verify failed: ") + X509_verify_cert_error_string(result), ec);
    }
    if (ec == ssl::error::stream_truncated || ec == asio::error::eof || ec == asio::error::connection_reset)
        return make_error(client_phase::tls, "the server closed the connection during the handshake", ec);
    return make_error(client_phase::tls, describe(ec), ec);
}

// ---------------------------------------------------------------------------
// Connecting.

struct call_context
{
    const client_options& options;
    const target& where;
    clock_type::time_point deadline;
    long long total_ms;
};

std::string endpoint_text(const target& t)
{
    const bool v6 = t.host_is_ip && t.host.find(':') != std::string::npos;
    return (v6 ? "[" + t.host + "]" : t.host) + ":" + std::to_string(t.port);
}

asio::awaitable<std::variant<std::unique_ptr<connection>, client_error>>
open_connection(asio::any_io_executor ex, std::shared_ptr<ssl::context> tls_context, call_context call,
                std::atomic<std::uint64_t>& opened, std::atomic<std::uint64_t>& handshakes)
{
    const target& t = call.where;
    const auto connect_limit = phase_limit::of(call.deadline, call.total_ms, call.options.connect_timeout);

    std::vector<tcp::endpoint> endpoints;
    if (t.host_is_ip)
    {
        endpoints.emplace_back(asio::ip::make_address(t.host), t.port);
    }
    else
    {
        auto service = std::to_string(t.port); // a named local: no temporary lives across the co_await
        auto resolved = co_await async_resolve_until(ex, t.host, service, connect_limit.at, asio::use_awaitable);
        if (resolved.timed_out)
            co_return timeout_error(client_phase::resolve, connect_limit.ms, "resolving " + t.host, resolved.ec);
        if (resolved.ec == asio::error::host_not_found || resolved.ec == asio::error::host_not_found_try_again)
            co_return make_error(client_phase::resolve, "host not found: " + t.host, resolved.ec);
        if (resolved.ec)
            co_return make_error(client_phase::resolve, describe(resolved.ec) + " (" + t.host + ")", resolved.ec);
        for (const auto& entry : resolved.endpoints)
            endpoints.push_back(entry.endpoint());
        if (endpoints.empty())
            co_return make_error(client_phase::resolve, "no address for " + t.host);
    }

    auto conn = std::make_unique<connection>(ex, t.https ? std::move(tls_context) : nullptr);
    auto& tcp = conn->tcp();
    tcp.expires_at(connect_limit.at);
    auto [cec, ep] = co_await tcp.async_connect(endpoints, use_tuple);
    if (cec == beast::error::timeout)
        co_return timeout_error(client_phase::connect, connect_limit.ms, "connecting to " + endpoint_text(t), cec);
    if (cec)
        co_return make_error(client_phase::connect, describe(cec) + " (" + endpoint_text(t) + ")", cec);
    ++opened;
    error_code ignored;
    tcp.socket().set_option(tcp::no_delay(true), ignored); // requests are small and latency-bound

    if (auto* tls = std::get_if<tls_stream>(&conn->stream))
    {
        // SNI carries host names only (RFC 6066 section 3: "Literal IPv4 and IPv6
        // addresses are not permitted").
        if (!t.host_is_ip && !SSL_set_tlsext_host_name(tls->native_handle(), t.host.c_str()))
        {
            error_code sni_ec{static_cast<int>(ERR_get_error()), asio::error::get_ssl_category()};
            co_return make_error(client_phase::tls, "cannot set SNI: " + describe(sni_ec), sni_ec);
        }
        // Per stream, so that a context made with verify_none cannot switch it off.
        tls->set_verify_mode(ssl::verify_peer);
        tls->set_verify_callback(verify_host{ssl::host_name_verification(t.host), t.host_is_ip});

        const auto handshake_limit = phase_limit::of(call.deadline, call.total_ms, call.options.handshake_timeout);
        tcp.expires_at(handshake_limit.at);
        auto [hec] = co_await tls->async_handshake(ssl::stream_base::client, use_tuple);
        if (hec == beast::error::timeout)
            co_return timeout_error(client_phase::tls, handshake_limit.ms, "TLS handshake", hec);
        if (hec)
            co_return tls_error(hec, *tls, t);
        ++handshakes;
    }
    co_return std::move(conn);
}

// ---------------------------------------------------------------------------
// One request and response on an open connection.

struct exchange_outcome
{
    std::optional<client_response> response;
    client_error error;
    bool nothing_received = false; // failed before any response byte: safe to retry
    bool reusable = false;         // the connection can carry another request
};

bool is_connection_gone(const error_code& ec)
{
    return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
           ec == asio::error::broken_pipe || ec == asio::error::connection_aborted ||
           ec == ssl::error::stream_truncated;
}

bool buffer_has_line(const beast::flat_buffer& b)
{
    std::string_view data{static_cast<const char*>(b.data().data()), b.size()};
    return data.find("\r\n") != std::string_view::npos;
}

client_error header_error(const error_code& ec, const beast::flat_buffer& buffer,
                          const http::response_parser<http::string_body>& parser, const call_context& call)
{
    // A failure before the first line is complete is the status line's; after it, the headers'.
    const bool in_headers = buffer_has_line(buffer);
    const auto during = in_headers ? client_phase::headers : client_phase::status;

    if (ec == beast::error::timeout)
        return timeout_error(during, call.total_ms,
                             in_headers ? "reading the headers" : "waiting for the status line", ec);
    if (ec == http::error::body_limit)
    {
        auto declared = parser.content_length();
        return make_error(client_phase::body,
                          "declared Content-Length " + (declared ? std::to_string(*declared) : std::string("?")) +
                              " exceeds the " + std::to_string(call.options.max_body_bytes) + "-byte limit",
                          ec);
    }
    if (ec == http::error::header_limit)
        return make_error(client_phase::headers,
                          "the response header exceeds " + std::to_string(call.options.max_header_bytes) + " bytes",
                          ec);
    if (ec == http::error::bad_version || ec == http::error::bad_status || ec == http::error::bad_reason)
        return make_error(client_phase::status, "malformed status line (" + describe(ec) + ")", ec);
    if (ec == http::error::end_of_stream || (is_connection_gone(ec) && buffer.size() == 0))
        return make_error(client_phase::status, "connection closed before the status line", ec);
    if (is_connection_gone(ec) || ec == http::error::partial_message)
        return make_error(during, in_headers ? "connection closed in the middle of the headers"
                                             : "connection closed in the middle of the status line",
                          ec);
    if (ec.category() == http::make_error_code(http::error::bad_field).category())
        return make_error(client_phase::headers, "malformed header (" + describe(ec) + ")", ec);
    return make_error(during, describe(ec), ec);
}

client_error body_error(const error_code& ec, const http::response_parser<http::string_body>& parser,
                        const call_context& call)
{
    const auto received = parser.get().body().size();
    const auto declared = parser.content_length();
    std::string progress = declared ? std::to_string(received) + " of " + std::to_string(*declared) + " body bytes"
                                    : std::to_string(received) + " body bytes";

    if (ec == beast::error::timeout)
        return timeout_error(client_phase::body, call.total_ms, "reading the body, received " + progress, ec);
    if (ec == http::error::body_limit)
        return make_error(client_phase::body,
                          "the body exceeds the " + std::to_string(call.options.max_body_bytes) + "-byte limit", ec);
    if (ec == ssl::error::stream_truncated && !declared && !parser.chunked())
        // The body ends at the end of the stream, and the stream ended without TLS's
        // close_notify: an attacker could have cut it (RFC 9112 section 9.8), so it
        // is not taken as complete.
        return make_error(client_phase::body,
                          "connection closed without TLS close_notify after " + progress +
                              "; the body may be truncated",
                          ec);
    if (is_connection_gone(ec) || ec == http::error::partial_message)
        return make_error(client_phase::body, "connection closed after " + progress, ec);
    if (ec == http::error::bad_chunk || ec == http::error::bad_chunk_extension)
        return make_error(client_phase::body, "malformed chunked body (" + describe(ec) + ")", ec);
    return make_error(client_phase::body, describe(ec) + " after " + progress, ec);
}

template <class Stream>
asio::awaitable<exchange_outcome> exchange(Stream& stream, connection& conn,
                                           const http::request<http::string_body>& req, call_context call)
{
    exchange_outcome out;
    auto& tcp = conn.tcp();

    tcp.expires_at(call.deadline);
    auto [wec, written] = co_await http::async_write(stream, req, use_tuple);
    if (wec)
    {
        out.error = wec == beast::error::timeout
                        ? timeout_error(client_phase::send, call.total_ms, "sending the request", wec)
                        : make_error(client_phase::send, describe(wec), wec);
        out.nothing_received = wec != beast::error::timeout;
        co_return out;
    }

    for (;;)
    {
        // A fresh parser per response, as Beast requires.
        http::response_parser<http::string_body> parser;
        parser.header_limit(call.options.max_header_bytes);
        parser.body_limit(call.options.max_body_bytes);
        if (req.method() == http::verb::head)
            parser.skip(true);

        tcp.expires_at(call.deadline);
        auto [hec, header_bytes] = co_await http::async_read_header(stream, conn.buffer, parser, use_tuple);
        if (hec)
        {
            out.nothing_received = is_connection_gone(hec) && conn.buffer.size() == 0 && header_bytes == 0;
            out.error = header_error(hec, conn.buffer, parser, call);
            co_return out;
        }

        const unsigned status = parser.get().result_int();
        // Interim responses (RFC 9110 section 15.2) precede the real one: skip them.
        // 101 is not interim here: this client never asks to switch protocols.
        if (status / 100 == 1 && status != 101)
            continue;
        if (status == 101)
        {
            out.error = make_error(client_phase::status, "unexpected 101 Switching Protocols");
            co_return out;
        }

        if (!parser.is_done())
        {
            tcp.expires_at(call.deadline);
            auto [bec, body_bytes] = co_await http::async_read(stream, conn.buffer, parser, use_tuple);
            if (bec)
            {
                out.error = body_error(bec, parser, call);
                co_return out;
            }
        }

        out.reusable = parser.keep_alive() && !parser.need_eof() && conn.buffer.size() == 0;
        out.response.emplace(parser.release());
        co_return out;
    }
}

asio::awaitable<exchange_outcome> run_exchange(connection& conn, const http::request<http::string_body>& req,
                                               call_context call)
{
    if (auto* tls = std::get_if<tls_stream>(&conn.stream))
        co_return co_await exchange(*tls, conn, req, call);
    co_return co_await exchange(std::get<beast::tcp_stream>(conn.stream), conn, req, call);
}

// An idle connection the server has closed (or written to, which HTTP/1.1 never
// does unasked) would fail the next request. A non-blocking peek finds most of
// them for free; the retry covers the ones that close while we write.
bool looks_alive(connection& conn)
{
    auto& socket = conn.tcp().socket();
    if (!socket.is_open())
        return false;
    error_code ec;
    socket.non_blocking(true, ec);
    if (ec)
        return false;
    char byte;
    socket.receive(asio::buffer(&byte, 1), tcp::socket::message_peek, ec);
    error_code restore;
    socket.non_blocking(false, restore);
    return ec == asio::error::would_block && !restore;
}

} // namespace

// ---------------------------------------------------------------------------

namespace detail {

struct client_state
{
    client_state(asio::any_io_executor ex, client_options opts) : executor(std::move(ex)), options(std::move(opts))
    {
        // Beast's fields hold values of at most 65533 bytes and throw on longer
        // ones, from inside the parser, out of io_context::run. A header limit of
        // 64 KiB keeps every value under that.
        if (options.max_header_bytes > 65536)
            throw std::invalid_argument("client_options::max_header_bytes is over 65536");
        if (!options.tls)
            options.tls = options.ca_file ? make_client_tls_context_trusting_file(*options.ca_file)
                                          : make_client_tls_context();
    }

    /// The most recently used live connection to `key`, or null.
    std::unique_ptr<connection> take_idle(const pool_key& key)
    {
        std::vector<std::unique_ptr<connection>> dropped; // closed outside the lock
        std::unique_ptr<connection> found;
        {
            std::lock_guard lock{mutex};
            auto it = idle.find(key);
            if (it == idle.end())
                return nullptr;
            auto& list = it->second;
            const auto oldest_allowed = clock_type::now() - options.idle_timeout;
            while (!list.empty() && !found)
            {
                auto candidate = std::move(list.back());
                list.pop_back();
                if (candidate->idle_since >= oldest_allowed && looks_alive(*candidate))
                    found = std::move(candidate);
                else
                    dropped.push_back(std::move(candidate));
            }
            if (list.empty())
                idle.erase(it);
        }
        if (found)
            ++reuses;
        return found;
    }

    void put_idle(const pool_key& key, std::unique_ptr<connection> conn)
    {
        std::vector<std::unique_ptr<connection>> dropped;
        conn->tcp().expires_never();
        conn->idle_since = clock_type::now();
        {
            std::lock_guard lock{mutex};
            prune_locked(dropped);
            auto& list = idle[key];
            list.push_back(std::move(conn));
            // Over the bound, the least recently used goes.
            while (list.size() > options.max_idle_per_host)
            {
                dropped.push_back(std::move(list.front()));
                list.erase(list.begin());
            }
            if (list.empty())
                idle.erase(key);
        }
    }

    // Expired connections are closed lazily, on the next put, rather than by a
    // timer: the client then owns no pending operation that would keep a
    // caller's io_context running.
    void prune_locked(std::vector<std::unique_ptr<connection>>& dropped)
    {
        const auto oldest_allowed = clock_type::now() - options.idle_timeout;
        for (auto it = idle.begin(); it != idle.end();)
        {
            auto& list = it->second;
            auto keep = std::find_if(list.begin(), list.end(),
                                     [&](const auto& c) { return c->idle_since >= oldest_allowed; });
            std::move(list.begin(), keep, std::back_inserter(dropped));
            list.erase(list.begin(), keep);
            it = list.empty() ? idle.erase(it) : std::next(it);
        }
    }

    std::size_t idle_count()
    {
        std::lock_guard lock{mutex};
        std::size_t n = 0;
        for (auto& [key, list] : idle)
            n += list.size();
        return n;
    }

    asio::any_io_executor executor;
    client_options options;
    std::atomic<std::uint64_t> connections_opened{0};
    std::atomic<std::uint64_t> tls_handshakes{0};
    std::atomic<std::uint64_t> reuses{0};
    std::atomic<std::uint64_t> retries{0};
    std::mutex mutex;
    std::map<pool_key, std::vector<std::unique_ptr<connection>>> idle; // oldest first
};

} // namespace detail

namespace {

// The call itself. It owns its arguments and shares the client's state, so it
// survives the client object and the caller's strings.
asio::awaitable<client_result> perform(std::shared_ptr<detail::client_state> state, http::verb method,
                                       std::string url, http::fields headers, std::string body,
                                       std::optional<clock_type::time_point> deadline)
{
    const auto start = clock_type::now();
    auto end = start + state->options.total_timeout;
    if (deadline && *deadline < end)
        end = *deadline;

    auto parsed = parse_target(url);
    if (auto* e = std::get_if<client_error>(&parsed))
        co_return std::move(*e);
    const target where = std::get<target>(std::move(parsed));
    const pool_key key{where.https, where.host, where.port};
    const call_context call{state->options, where, end, to_ms(end - start)};

    http::request<http::string_body> req{method, where.path, 11};
    for (const auto& field : headers)
    {
        if (field.name() != http::field::unknown)
            req.insert(field.name(), field.value());
        else
            req.insert(field.name_string(), field.value());
    }
    if (req.find(http::field::host) == req.end())
        req.set(http::field::host, where.host_header);
    if (req.find(http::field::user_agent) == req.end() && !state->options.user_agent.empty())
        req.set(http::field::user_agent, state->options.user_agent);
    if (state->options.max_idle_per_host == 0)
        req.keep_alive(false);
    req.body() = std::move(body);
    if (req.find(http::field::content_length) == req.end() && req.find(http::field::transfer_encoding) == req.end())
        req.prepare_payload();

    const bool may_retry = is_idempotent(method);
    for (int attempt = 0;; ++attempt)
    {
        std::unique_ptr<connection> conn = attempt == 0 ? state->take_idle(key) : nullptr;
        const bool reused = conn != nullptr;
        if (!conn)
        {
            auto opened = co_await open_connection(state->executor, state->options.tls, call,
                                                   state->connections_opened, state->tls_handshakes);
            if (auto* e = std::get_if<client_error>(&opened))
                co_return std::move(*e);
            conn = std::get<std::unique_ptr<connection>>(std::move(opened));
        }

        auto out = co_await run_exchange(*conn, req, call);
        if (out.response)
        {
            if (out.reusable && state->options.max_idle_per_host > 0)
                state->put_idle(key, std::move(conn));
            co_return std::move(*out.response);
        }
        // A pooled connection may have been closed by the server while idle; the
        // request never reached it, so a fresh connection may try again
        // (RFC 9112 section 9.3.1), once, and only for idempotent methods.
        if (reused && attempt == 0 && may_retry && out.nothing_received && clock_type::now() < end)
        {
            ++state->retries;
            continue;
        }
        co_return std::move(out.error);
    }
}

} // namespace

// ---------------------------------------------------------------------------

std::string_view to_string(client_phase phase) noexcept
{
    switch (phase)
    {
    case client_phase::url: return "url";
    case client_phase::resolve: return "resolve";
    case client_phase::connect: return "connect";
    case client_phase::tls: return "tls";
    case client_phase::send: return "send";
    case client_phase::status: return "status";
    case client_phase::headers: return "headers";
    case client_phase::body: return "body";
    case client_phase::timeout: return "timeout";
    }
    return "unknown";
}

namespace {
[[noreturn]] void throw_no_value(const client_error& e)
{
    throw std::logic_error("client_result has no response: " + e.message);
}
} // namespace

client_response& client_result::value() &
{
    if (auto* r = std::get_if<client_response>(&value_))
        return *r;
    throw_no_value(std::get<client_error>(value_));
}

const client_response& client_result::value() const&
{
    if (auto* r = std::get_if<client_response>(&value_))
        return *r;
    throw_no_value(std::get<client_error>(value_));
}

client_response&& client_result::value() &&
{
    if (auto* r = std::get_if<client_response>(&value_))
        return std::move(*r);
    throw_no_value(std::get<client_error>(value_));
}

const client_error& client_result::error() const
{
    if (auto* e = std::get_if<client_error>(&value_))
        return *e;
    throw std::logic_error("client_result has a response, not an error");
}

http_client::http_client(asio::any_io_executor executor, client_options options)
    : state_(std::make_shared<detail::client_state>(std::move(executor), std::move(options)))
{
}

http_client::~http_client() = default;
http_client::http_client(http_client&&) noexcept = default;
http_client& http_client::operator=(http_client&&) noexcept = default;

// Not coroutines themselves: they copy the views into the coroutine's frame before
// returning, so a caller's temporary string cannot dangle.
asio::awaitable<client_result> http_client::get(std::string_view url,
                                                std::optional<std::chrono::steady_clock::time_point> deadline)
{
    return perform(state_, http::verb::get, std::string(url), {}, {}, deadline);
}

asio::awaitable<client_result> http_client::request(http::verb method, std::string_view url, http::fields headers,
                                                    std::string body,
                                                    std::optional<std::chrono::steady_clock::time_point> deadline)
{
    return perform(state_, method, std::string(url), std::move(headers), std::move(body), deadline);
}

client_stats http_client::stats() const
{
    client_stats s;
    s.connections_opened = state_->connections_opened.load();
    s.tls_handshakes = state_->tls_handshakes.load();
    s.reuses = state_->reuses.load();
    s.retries = state_->retries.load();
    s.idle_connections = state_->idle_count();
    return s;
}

void http_client::close_idle()
{
    decltype(state_->idle) dropped;
    {
        std::lock_guard lock{state_->mutex};
        dropped.swap(state_->idle);
    }
}

const client_options& http_client::options() const noexcept
{
    return state_->options;
}

asio::any_io_executor http_client::get_executor() const noexcept
{
    return state_->executor;
}

} // namespace coroute
