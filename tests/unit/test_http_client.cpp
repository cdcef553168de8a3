#include "coroute/http_client.hpp"

#include "coroute/tls.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <unistd.h>

// Every upstream here is a minimal Beast listener on 127.0.0.1 written for the test,
// so the client is tested against real sockets and real TLS, and nothing depends on
// coroute's own server.

namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;
using coroute::client_phase;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using coroute::test::run_sync;

asio::awaitable<void> sleep_for(milliseconds d)
{
    asio::steady_timer timer{co_await asio::this_coro::executor, d};
    co_await timer.async_wait(use_tuple);
}

long long ms_since(clock_type::time_point start)
{
    return std::chrono::duration_cast<milliseconds>(clock_type::now() - start).count();
}

// ---------------------------------------------------------------------------
// Test upstreams.

/// What a test upstream does with each request.
enum class act
{
    answer,              // 200 with a JSON body (or `size` bytes), keep-alive, after `delay`
    never_answer,        // reads the request, then says nothing
    drip_body,           // headers for 1000 body bytes, then one byte per `delay`
    close_mid_body,      // headers for 100 body bytes, 10 bytes, then a TCP close
    declare_huge_body,   // Content-Length: 10 MiB, then nothing
    chunked_body,        // a chunked body of `size` bytes
    big_header,          // a header field of `size` bytes
    drop_second_request, // answers the first request of each connection, closes on the second
    close_after_answer,  // answers, then closes although it said keep-alive
    no_handshake,        // accepts TCP and never speaks TLS
};

struct upstream_options
{
    act what = act::answer;
    bool tls = true;
    coroute::tls_identity identity; // served when `tls`
    milliseconds delay{0};
    std::size_t size = 0;
};

struct upstream_state
{
    upstream_state(asio::any_io_executor ex, upstream_options o) : acceptor(std::move(ex)), options(std::move(o)) {}

    tcp::acceptor acceptor;
    upstream_options options;
    std::shared_ptr<ssl::context> tls;
    std::atomic<int> connections{0};
    std::atomic<int> handshakes{0};
    std::atomic<int> requests{0};
    std::atomic<int> bytes_dripped{0};
    std::mutex mutex;
    std::vector<std::string> server_names; // SNI per handshake, "" when none was sent
    std::string last_request_body;
};

asio::awaitable<void> write_text(auto& stream, std::string text)
{
    co_await asio::async_write(stream, asio::buffer(text), use_tuple);
}

void close_tcp(auto& stream)
{
    beast::error_code ignored;
    beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream).socket().close(ignored);
}

template <class Stream>
asio::awaitable<void> serve_requests(std::shared_ptr<upstream_state> st, Stream& stream)
{
    const auto& o = st->options;
    beast::flat_buffer buffer;
    for (int on_this_connection = 0;; ++on_this_connection)
    {
        http::request<http::string_body> req;
        auto [ec, n] = co_await http::async_read(stream, buffer, req, use_tuple);
        if (ec)
            co_return;
        const int number = ++st->requests;
        {
            std::lock_guard lock{st->mutex};
            st->last_request_body = req.body();
        }

        switch (o.what)
        {
        case act::drop_second_request:
            if (on_this_connection == 1)
            {
                close_tcp(stream);
                co_return;
            }
            [[fallthrough]];
        case act::answer:
        case act::close_after_answer: {
            if (o.delay > 0ms)
                co_await sleep_for(o.delay);
            http::response<http::string_body> res{http::status::ok, req.version()};
            res.set(http::field::content_type, "application/json");
            res.set("X-Echo-Method", req.method_string());
            res.set("X-Echo-Target", req.target());
            res.set("X-Echo-Test", req["X-Test"]);
            res.body() = o.size > 0 ? std::string(o.size, 'a') : R"({"n":)" + std::to_string(number) + "}";
            res.keep_alive(req.keep_alive());
            res.prepare_payload();
            auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
            if (wec || o.what == act::close_after_answer || !req.keep_alive())
            {
                close_tcp(stream);
                co_return;
            }
            break;
        }
        case act::never_answer:
            co_await sleep_for(60s);
            co_return;
        case act::drip_body:
            co_await write_text(stream, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            for (int i = 0; i < 1000; ++i)
            {
                co_await sleep_for(o.delay);
                auto [dec, dn] = co_await asio::async_write(stream, asio::buffer("x", 1), use_tuple);
                if (dec)
                    co_return;
                ++st->bytes_dripped;
            }
            co_return;
        case act::close_mid_body:
            co_await write_text(stream, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + std::string(10, 'b'));
            close_tcp(stream);
            co_return;
        case act::declare_huge_body:
            co_await write_text(stream, "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n");
            co_await sleep_for(60s);
            co_return;
        case act::chunked_body: {
            char size_hex[32];
            std::snprintf(size_hex, sizeof size_hex, "%zx", o.size);
            co_await write_text(stream, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                            std::string(size_hex) + "\r\n" + std::string(o.size, 'c') +
                                            "\r\n0\r\n\r\n");
            break;
        }
        case act::big_header:
            // Written raw: Beast's own fields refuse a value this long.
            co_await write_text(stream, "HTTP/1.1 200 OK\r\nX-Big: " + std::string(o.size, 'h') +
                                            "\r\nContent-Length: 2\r\n\r\nok");
            break;
        case act::no_handshake:
            co_return;
        }
    }
}

asio::awaitable<void> serve_connection(std::shared_ptr<upstream_state> st, tcp::socket socket)
{
    if (st->options.what == act::no_handshake)
    {
        co_await sleep_for(60s);
        co_return;
    }
    if (!st->tls)
    {
        beast::tcp_stream stream{std::move(socket)};
        co_await serve_requests(st, stream);
        co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream{std::move(socket), *st->tls};
    auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
    if (ec)
        co_return;
    ++st->handshakes;
    {
        const char* name = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
        std::lock_guard lock{st->mutex};
        st->server_names.emplace_back(name ? name : "");
    }
    co_await serve_requests(st, stream);
}

asio::awaitable<void> accept_loop(std::shared_ptr<upstream_state> st)
{
    for (;;)
    {
        auto [ec, socket] = co_await st->acceptor.async_accept(use_tuple);
        if (ec)
            co_return;
        ++st->connections;
        // A strand per connection, as a real server has; it matters only in the
        // multi-threaded test. Failures in the upstream are the test's own bugs.
        asio::co_spawn(asio::make_strand(st->acceptor.get_executor()), serve_connection(st, std::move(socket)),
                       [](std::exception_ptr e) {
                           if (e)
                               std::rethrow_exception(e);
                       });
    }
}

/// A listener on 127.0.0.1 and a free port, serving on `io` until destroyed.
class upstream
{
public:
    upstream(asio::io_context& io, upstream_options options)
        : state_(std::make_shared<upstream_state>(io.get_executor(), std::move(options)))
    {
        if (state_->options.tls)
            state_->tls = coroute::make_server_tls_context(state_->options.identity);
        const tcp::endpoint endpoint{asio::ip::make_address("127.0.0.1"), 0};
        state_->acceptor.open(endpoint.protocol());
        state_->acceptor.bind(endpoint);
        state_->acceptor.listen();
        port_ = state_->acceptor.local_endpoint().port();
        asio::co_spawn(io, accept_loop(state_), [](std::exception_ptr e) {
            if (e)
                std::rethrow_exception(e);
        });
    }

    ~upstream()
    {
        beast::error_code ignored;
        state_->acceptor.close(ignored);
    }

    upstream(const upstream&) = delete;
    upstream& operator=(const upstream&) = delete;

    std::uint16_t port() const { return port_; }

    std::string url(std::string_view path = "/") const
    {
        return std::string(state_->options.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) +
               std::string(path);
    }

    upstream_state& state() { return *state_; }

private:
    std::shared_ptr<upstream_state> state_;
    std::uint16_t port_ = 0;
};

/// The identity made once per test binary: key generation is quick, but not free.
const coroute::tls_identity& loopback_identity()
{
    static const auto identity = coroute::make_self_signed("127.0.0.1");
    return identity;
}

upstream_options tls_upstream(act what = act::answer)
{
    upstream_options o;
    o.what = what;
    o.identity = loopback_identity();
    return o;
}

/// Client options that trust exactly the upstream's certificate.
coroute::client_options trusting(const coroute::tls_identity& identity)
{
    coroute::client_options o;
    o.tls = coroute::make_client_tls_context_trusting(identity.certificate_pem);
    return o;
}

std::uint16_t refused_port()
{
    asio::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    return acceptor.local_endpoint().port(); // closed on return: nobody listens there now
}

asio::awaitable<std::vector<coroute::client_result>> get_n_times(coroute::http_client& client, std::string url,
                                                                 int n, milliseconds pause = 0ms)
{
    std::vector<coroute::client_result> results;
    for (int i = 0; i < n; ++i)
    {
        if (i > 0 && pause > 0ms)
            co_await sleep_for(pause);
        results.push_back(co_await client.get(url));
    }
    co_return results;
}

} // namespace

// ---------------------------------------------------------------------------
// Success.

TEST_CASE("http_client: a GET over verified TLS returns status, headers and body", "[client]")
{
    asio::io_context io;
    upstream up{io, tls_upstream()};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())};

    auto result = run_sync(io, client.get(up.url("/todos/1?x=2")));

    REQUIRE(result);
    CHECK(result.value().result_int() == 200);
    CHECK(result.value()[http::field::content_type] == "application/json");
    CHECK(result.value()["X-Echo-Target"] == "/todos/1?x=2");
    CHECK(result.value().body() == R"({"n":1})");
    CHECK(up.state().handshakes == 1);
    // RFC 6066: no SNI for an IP literal.
    REQUIRE(up.state().server_names.size() == 1);
    CHECK(up.state().server_names[0].empty());
}

TEST_CASE("http_client: a host name URL sends SNI and is verified against the name", "[client]")
{
    asio::io_context io;
    upstream_options o;
    o.identity = coroute::make_self_signed("localhost");
    upstream up{io, o};
    coroute::http_client client{io.get_executor(), trusting(o.identity)};

    auto result = run_sync(io, client.get("https://localhost:" + std::to_string(up.port()) + "/"));

    REQUIRE(result);
    CHECK(result.value().result_int() == 200);
    REQUIRE(up.state().server_names.size() == 1);
    CHECK(up.state().server_names[0] == "localhost");
}

TEST_CASE("http_client: plain http works and the request carries method, headers and body", "[client]")
{
    asio::io_context io;
    upstream_options o;
    o.tls = false;
    upstream up{io, o};
    coroute::http_client client{io.get_executor()};

    http::fields headers;
    headers.set("X-Test", "hello");
    auto result = run_sync(io, client.request(http::verb::post, up.url("/items"), headers, R"({"name":"a"})"));

    REQUIRE(result);
    CHECK(result.value().result_int() == 200);
    CHECK(result.value()["X-Echo-Method"] == "POST");
    CHECK(result.value()["X-Echo-Test"] == "hello");
    CHECK(up.state().last_request_body == R"({"name":"a"})");
    CHECK(client.stats().tls_handshakes == 0);
}

TEST_CASE("http_client: a HEAD response's Content-Length is not waited for", "[client]")
{
    asio::io_context io;
    upstream up{io, tls_upstream()};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())};

    auto start = clock_type::now();
    auto result = run_sync(io, client.request(http::verb::head, up.url(), {}, {}));

    REQUIRE(result);
    CHECK(result.value().body().empty());
    CHECK(ms_since(start) < 1000);
}

TEST_CASE("http_client: the client may be destroyed while a call is in flight", "[client]")
{
    asio::io_context io;
    upstream_options o = tls_upstream();
    o.delay = 100ms;
    upstream up{io, o};
    auto client = std::make_unique<coroute::http_client>(io.get_executor(), trusting(loopback_identity()));

    auto call = client->get(up.url());
    client.reset();
    auto result = run_sync(io, std::move(call));

    REQUIRE(result);
    CHECK(result.value().result_int() == 200);
}

// ---------------------------------------------------------------------------
// TLS failures.

TEST_CASE("http_client: a wrong CA fails verification with phase tls", "[client]")
{
    asio::io_context io;
    upstream up{io, tls_upstream()};
    coroute::http_client client{io.get_executor(), trusting(coroute::make_self_signed("127.0.0.1"))};

    auto result = run_sync(io, client.get(up.url()));

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::tls);
    CHECK(result.error().message == "tls: certificate verify failed: self-signed certificate");
    CHECK(up.state().requests == 0);
}

TEST_CASE("http_client: ca_file makes the client trust that CA, and a missing one fails construction", "[client]")
{
    asio::io_context io;
    upstream up{io, tls_upstream()};
    const auto path = std::filesystem::temp_directory_path() /
                      ("coroute-test-client-ca-" + std::to_string(::getpid()) + ".pem");
    std::ofstream{path} << loopback_identity().certificate_pem;

    coroute::client_options options;
    options.ca_file = path;
    coroute::http_client client{io.get_executor(), options};
    auto result = run_sync(io, client.get(up.url()));
    std::filesystem::remove(path);

    REQUIRE(result);
    CHECK(result.value().result_int() == 200);
    options.ca_file = "/nonexistent/coroute-ca.pem";
    CHECK_THROWS_WITH(coroute::http_client(io.get_executor(), options),
                      Catch::Contains("/nonexistent/coroute-ca.pem"));
}

TEST_CASE("http_client: the system CA store does not trust a self-signed upstream", "[client]")
{
    asio::io_context io;
    upstream up{io, tls_upstream()};
    coroute::http_client client{io.get_executor()};

    auto result = run_sync(io, client.get(up.url()));

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::tls);
    CHECK_THAT(result.error().message, Catch::StartsWith("tls: certificate verify failed"));
}

TEST_CASE("http_client: a certificate for another host name fails with phase tls", "[client]")
{
    asio::io_context io;
    upstream_options o;
    SECTION("a DNS name, called by IP address") { o.identity = coroute::make_self_signed("other.example"); }
    SECTION("another IP address") { o.identity = coroute::make_self_signed("127.0.0.2"); }
    upstream up{io, o};
    coroute::http_client client{io.get_executor(), trusting(o.identity)};

    auto result = run_sync(io, client.get(up.url()));

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::tls);
    CHECK(result.error().message == "tls: host name mismatch: the certificate is not valid for 127.0.0.1");
    CHECK(up.state().requests == 0);
}

namespace {
/// `identity` with its validity moved to the past and re-signed with its own key.
coroute::tls_identity expired_copy(const coroute::tls_identity& identity)
{
    std::unique_ptr<BIO, decltype(&BIO_free)> in{
        BIO_new_mem_buf(identity.certificate_pem.data(), static_cast<int>(identity.certificate_pem.size())),
        &BIO_free};
    std::unique_ptr<X509, decltype(&X509_free)> cert{PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr),
                                                     &X509_free};
    std::unique_ptr<BIO, decltype(&BIO_free)> key_in{
        BIO_new_mem_buf(identity.private_key_pem.data(), static_cast<int>(identity.private_key_pem.size())),
        &BIO_free};
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{
        PEM_read_bio_PrivateKey(key_in.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free};
    REQUIRE(cert);
    REQUIRE(key);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -2L * 86400);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), -1L * 86400);
    REQUIRE(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0);
    std::unique_ptr<BIO, decltype(&BIO_free)> out{BIO_new(BIO_s_mem()), &BIO_free};
    REQUIRE(PEM_write_bio_X509(out.get(), cert.get()) == 1);
    char* data = nullptr;
    const long size = BIO_get_mem_data(out.get(), &data);
    return {std::string(data, static_cast<std::size_t>(size)), identity.private_key_pem};
}
} // namespace

TEST_CASE("http_client: an expired certificate fails verification and says so", "[client]")
{
    asio::io_context io;
    upstream_options o;
    o.identity = expired_copy(coroute::make_self_signed("127.0.0.1"));
    upstream up{io, o};
    coroute::http_client client{io.get_executor(), trusting(o.identity)};

    auto result = run_sync(io, client.get(up.url()));

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::tls);
    CHECK(result.error().message == "tls: certificate verify failed: certificate has expired");
}

TEST_CASE("http_client: a context that turns verification off still verifies", "[client]")
{
    asio::io_context io;
    upstream up{io, tls_upstream()};
    coroute::client_options options;
    options.tls = std::make_shared<ssl::context>(ssl::context::tls_client);
    options.tls->set_verify_mode(ssl::verify_none);
    coroute::http_client client{io.get_executor(), options};

    auto result = run_sync(io, client.get(up.url()));

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::tls);
}

TEST_CASE("http_client: https to a plain-http upstream fails with phase tls", "[client]")
{
    asio::io_context io;
    upstream_options o;
    o.tls = false;
    upstream up{io, o};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())};

    auto result = run_sync(io, client.get("https://127.0.0.1:" + std::to_string(up.port()) + "/"));

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::tls);
}

// ---------------------------------------------------------------------------
// Timeouts: each fires at its limit, and none fires early.

TEST_CASE("http_client: an upstream that accepts and never answers times out at the total deadline",
          "[client][timeout]")
{
    asio::io_context io;
    upstream up{io, tls_upstream(act::never_answer)};
    auto options = trusting(loopback_identity());
    options.total_timeout = 500ms;
    coroute::http_client client{io.get_executor(), options};

    auto start = clock_type::now();
    auto result = run_sync(io, client.get(up.url()));
    auto elapsed = ms_since(start);

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::timeout);
    CHECK(result.error().during == client_phase::status);
    CHECK(result.error().message == "timeout after 500 ms (waiting for the status line)");
    CHECK(elapsed >= 450);
    CHECK(elapsed < 1500);
}

TEST_CASE("http_client: an upstream that drips bytes fails at the total deadline, not after the drip",
          "[client][timeout]")
{
    asio::io_context io;
    upstream_options o = tls_upstream(act::drip_body);
    o.delay = 50ms; // 1000 bytes: 50 s for the whole body
    upstream up{io, o};
    auto options = trusting(loopback_identity());
    options.total_timeout = 800ms;
    coroute::http_client client{io.get_executor(), options};

    auto start = clock_type::now();
    auto result = run_sync(io, client.get(up.url()));
    auto elapsed = ms_since(start);

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::timeout);
    CHECK(result.error().during == client_phase::body);
    CHECK_THAT(result.error().message, Catch::StartsWith("timeout after 800 ms (reading the body, received "));
    CHECK(elapsed >= 750);
    CHECK(elapsed < 1800);
    // Bytes kept arriving well inside any per-read limit: only a total deadline ends this.
    CHECK(up.state().bytes_dripped >= 5);
}

TEST_CASE("http_client: a call's own deadline shortens the total timeout", "[client][timeout]")
{
    asio::io_context io;
    upstream up{io, tls_upstream(act::never_answer)};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())}; // total: 5000 ms

    auto start = clock_type::now();
    auto result = run_sync(io, client.get(up.url(), clock_type::now() + 300ms));
    auto elapsed = ms_since(start);

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::timeout);
    CHECK_THAT(result.error().message, Catch::StartsWith("timeout after 300 ms"));
    CHECK(elapsed >= 250);
    CHECK(elapsed < 1500);
}

TEST_CASE("http_client: a TLS handshake that never completes times out at the handshake limit", "[client][timeout]")
{
    asio::io_context io;
    upstream up{io, tls_upstream(act::no_handshake)};
    auto options = trusting(loopback_identity());
    options.handshake_timeout = 300ms;
    coroute::http_client client{io.get_executor(), options};

    auto start = clock_type::now();
    auto result = run_sync(io, client.get(up.url()));
    auto elapsed = ms_since(start);

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::timeout);
    CHECK(result.error().during == client_phase::tls);
    CHECK(result.error().message == "timeout after 300 ms (TLS handshake)");
    CHECK(elapsed >= 250);
    CHECK(elapsed < 1500);
}

TEST_CASE("http_client: a connect that gets no answer times out at the connect limit", "[client][timeout]")
{
    asio::io_context io;
    // A listener that never accepts, with its one-entry queue taken: Linux drops
    // further SYNs, so the next connect hangs, as to a host that is down.
    tcp::acceptor full{io, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    full.listen(0);
    const auto port = full.local_endpoint().port();
    tcp::socket filler{io};
    filler.connect(full.local_endpoint());

    coroute::client_options options;
    options.connect_timeout = 300ms;
    coroute::http_client client{io.get_executor(), options};

    auto start = clock_type::now();
    auto result = run_sync(io, client.get("http://127.0.0.1:" + std::to_string(port) + "/"));
    auto elapsed = ms_since(start);

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::timeout);
    CHECK(result.error().during == client_phase::connect);
    CHECK_THAT(result.error().message, Catch::StartsWith("timeout after 300 ms (connecting to 127.0.0.1:"));
    CHECK(elapsed >= 250);
    CHECK(elapsed < 1500);
}

TEST_CASE("http_client: a slow answer inside the deadline is not cut short", "[client][timeout]")
{
    asio::io_context io;
    upstream_options o = tls_upstream();
    o.delay = 400ms;
    upstream up{io, o};
    auto options = trusting(loopback_identity());
    options.total_timeout = 1500ms;
    options.handshake_timeout = 1000ms;
    coroute::http_client client{io.get_executor(), options};

    auto result = run_sync(io, client.get(up.url()));

    REQUIRE(result);
    CHECK(result.value().result_int() == 200);
}

// ---------------------------------------------------------------------------
// Bad and oversized responses.

TEST_CASE("http_client: an upstream that closes mid-body fails with phase body", "[client]")
{
    asio::io_context io;
    upstream_options o = tls_upstream(act::close_mid_body);
    SECTION("over TLS") {}
    SECTION("over plain TCP") { o.tls = false; }
    upstream up{io, o};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())};

    auto result = run_sync(io, client.get(up.url()));

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::body);
    CHECK(result.error().message == "body: connection closed after 10 of 100 body bytes");
}

TEST_CASE("http_client: a declared Content-Length over the cap fails at once with phase body", "[client]")
{
    asio::io_context io;
    upstream up{io, tls_upstream(act::declare_huge_body)};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())}; // cap: 1 MiB, total: 5 s

    auto start = clock_type::now();
    auto result = run_sync(io, client.get(up.url()));

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::body);
    CHECK(result.error().message == "body: declared Content-Length 10485760 exceeds the 1048576-byte limit");
    CHECK(ms_since(start) < 1000);
}

TEST_CASE("http_client: a body over the cap fails with phase body, and one at the cap passes", "[client]")
{
    asio::io_context io;
    upstream_options o = tls_upstream(act::chunked_body);
    auto options = trusting(loopback_identity());
    options.max_body_bytes = 1000;

    SECTION("chunked, one byte over")
    {
        o.size = 1001;
        upstream up{io, o};
        coroute::http_client client{io.get_executor(), options};
        auto result = run_sync(io, client.get(up.url()));
        REQUIRE_FALSE(result);
        CHECK(result.error().phase == client_phase::body);
        CHECK(result.error().message == "body: the body exceeds the 1000-byte limit");
    }
    SECTION("chunked, exactly at the cap")
    {
        o.size = 1000;
        upstream up{io, o};
        coroute::http_client client{io.get_executor(), options};
        auto result = run_sync(io, client.get(up.url()));
        REQUIRE(result);
        CHECK(result.value().body().size() == 1000);
    }
    SECTION("with Content-Length, exactly at the cap")
    {
        o.what = act::answer;
        o.size = 1000;
        upstream up{io, o};
        coroute::http_client client{io.get_executor(), options};
        auto result = run_sync(io, client.get(up.url()));
        REQUIRE(result);
        CHECK(result.value().body().size() == 1000);
    }
}

TEST_CASE("http_client: response headers over the cap fail with phase headers, and ones under it pass", "[client]")
{
    asio::io_context io;
    upstream_options o = tls_upstream(act::big_header);
    coroute::client_options options = trusting(loopback_identity()); // cap: 64 KiB

    SECTION("over")
    {
        o.size = 70 * 1024;
        upstream up{io, o};
        coroute::http_client client{io.get_executor(), options};
        auto result = run_sync(io, client.get(up.url()));
        REQUIRE_FALSE(result);
        CHECK(result.error().phase == client_phase::headers);
        CHECK(result.error().message == "headers: the response header exceeds 65536 bytes");
    }
    SECTION("under")
    {
        o.size = 60 * 1024;
        upstream up{io, o};
        coroute::http_client client{io.get_executor(), options};
        auto result = run_sync(io, client.get(up.url()));
        REQUIRE(result);
        CHECK(result.value()["X-Big"].size() == 60 * 1024);
    }
}

// ---------------------------------------------------------------------------
// Connection and URL failures.

TEST_CASE("http_client: a refused port fails with phase connect", "[client]")
{
    asio::io_context io;
    coroute::http_client client{io.get_executor()};
    const auto port = std::to_string(refused_port());

    auto result = run_sync(io, client.get("https://127.0.0.1:" + port + "/"));

    REQUIRE_FALSE(result);
    CHECK(result.error().phase == client_phase::connect);
    CHECK(result.error().message == "connect: connection refused (127.0.0.1:" + port + ")");
}

TEST_CASE("http_client: a bad URL fails with phase url and opens nothing", "[client]")
{
    asio::io_context io;
    coroute::http_client client{io.get_executor()};

    for (std::string url : {"not a url", "ftp://127.0.0.1/", "https:///path", "http://user:pw@127.0.0.1/",
                            "http://127.0.0.1:99999/", "http://127.0.0.1:0/"})
    {
        INFO(url);
        auto result = run_sync(io, client.get(url));
        REQUIRE_FALSE(result);
        CHECK(result.error().phase == client_phase::url);
        CHECK_THAT(result.error().message, Catch::StartsWith("url: "));
    }
    CHECK(client.stats().connections_opened == 0);
}

TEST_CASE("http_client: a header limit over 64 KiB is refused when the client is made", "[client]")
{
    asio::io_context io;
    coroute::client_options options;
    options.max_header_bytes = 65537;
    CHECK_THROWS_AS(coroute::http_client(io.get_executor(), options), std::invalid_argument);
}

TEST_CASE("http_client: value() of a failed call throws logic_error naming the failure", "[client]")
{
    coroute::client_result result{coroute::client_error{client_phase::connect, client_phase::connect,
                                                        "connect: connection refused", {}}};
    CHECK_THROWS_AS(result.value(), std::logic_error);
    CHECK_THROWS_WITH(result.value(), Catch::Contains("connect: connection refused"));
    CHECK(coroute::to_string(client_phase::headers) == "headers");
}

// ---------------------------------------------------------------------------
// The pool.

TEST_CASE("http_client: 20 sequential calls share one connection and one TLS handshake", "[client][pool]")
{
    asio::io_context io;
    upstream up{io, tls_upstream()};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())};

    auto results = run_sync(io, get_n_times(client, up.url(), 20));

    REQUIRE(results.size() == 20);
    for (auto& r : results)
        REQUIRE(r);
    CHECK(results.back().value().body() == R"({"n":20})");
    CHECK(up.state().connections == 1);
    CHECK(up.state().handshakes == 1);
    auto stats = client.stats();
    CHECK(stats.connections_opened == 1);
    CHECK(stats.tls_handshakes == 1);
    CHECK(stats.reuses == 19);
    CHECK(stats.idle_connections == 1);
}

TEST_CASE("http_client: with the pool off every call opens a connection", "[client][pool]")
{
    asio::io_context io;
    upstream up{io, tls_upstream()};
    auto options = trusting(loopback_identity());
    options.max_idle_per_host = 0;
    coroute::http_client client{io.get_executor(), options};

    auto results = run_sync(io, get_n_times(client, up.url(), 3));

    for (auto& r : results)
        REQUIRE(r);
    CHECK(up.state().handshakes == 3);
    CHECK(client.stats().reuses == 0);
    CHECK(client.stats().idle_connections == 0);
}

TEST_CASE("http_client: a call that asks for Connection: close leaves nothing in the pool", "[client][pool]")
{
    asio::io_context io;
    upstream up{io, tls_upstream()};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())};

    http::fields headers;
    headers.set(http::field::connection, "close");
    auto result = run_sync(io, client.request(http::verb::get, up.url(), headers, {}));

    REQUIRE(result);
    CHECK(client.stats().idle_connections == 0);
}

TEST_CASE("http_client: a pooled connection dropped by the upstream is retried once for GET, not for POST",
          "[client][pool]")
{
    asio::io_context io;
    upstream up{io, tls_upstream(act::drop_second_request)};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())};

    SECTION("GET: retried on a fresh connection")
    {
        auto results = run_sync(io, get_n_times(client, up.url(), 2));
        REQUIRE(results[0]);
        REQUIRE(results[1]);
        CHECK(client.stats().retries == 1);
        CHECK(client.stats().connections_opened == 2);
        CHECK(up.state().requests == 3);
    }
    SECTION("POST: not retried")
    {
        auto first = run_sync(io, client.request(http::verb::post, up.url(), {}, "a"));
        REQUIRE(first);
        auto second = run_sync(io, client.request(http::verb::post, up.url(), {}, "b"));
        REQUIRE_FALSE(second);
        CHECK(second.error().phase == client_phase::status);
        CHECK(second.error().message == "status: connection closed before the status line");
        CHECK(client.stats().retries == 0);
    }
}

TEST_CASE("http_client: an idle connection the upstream closed is not reused", "[client][pool]")
{
    asio::io_context io;
    upstream up{io, tls_upstream(act::close_after_answer)};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())};

    auto results = run_sync(io, get_n_times(client, up.url(), 2, 50ms));

    REQUIRE(results[0]);
    REQUIRE(results[1]);
    CHECK(client.stats().connections_opened == 2);
    CHECK(client.stats().reuses == 0);
    CHECK(client.stats().retries == 0);
}

TEST_CASE("http_client: idle connections expire", "[client][pool]")
{
    asio::io_context io;
    upstream up{io, tls_upstream()};
    auto options = trusting(loopback_identity());
    options.idle_timeout = 100ms;
    coroute::http_client client{io.get_executor(), options};

    SECTION("an expired one is replaced")
    {
        auto results = run_sync(io, get_n_times(client, up.url(), 2, 250ms));
        REQUIRE(results[1]);
        CHECK(client.stats().connections_opened == 2);
        CHECK(client.stats().reuses == 0);
    }
    SECTION("a fresh one is reused")
    {
        auto results = run_sync(io, get_n_times(client, up.url(), 2, 10ms));
        REQUIRE(results[1]);
        CHECK(client.stats().connections_opened == 1);
        CHECK(client.stats().reuses == 1);
    }
}

namespace {
asio::awaitable<std::vector<coroute::client_result>> get_four_at_once(coroute::http_client& client, std::string url)
{
    using namespace asio::experimental::awaitable_operators;
    auto [a, b, c, d] = co_await (client.get(url) && client.get(url) && client.get(url) && client.get(url));
    co_return std::vector<coroute::client_result>{a, b, c, d};
}
} // namespace

TEST_CASE("http_client: the pool keeps at most max_idle_per_host connections", "[client][pool]")
{
    asio::io_context io;
    upstream_options o = tls_upstream();
    o.delay = 100ms; // so that the four calls overlap
    upstream up{io, o};
    auto options = trusting(loopback_identity());
    options.max_idle_per_host = 2;
    coroute::http_client client{io.get_executor(), options};

    auto results = run_sync(io, get_four_at_once(client, up.url()));

    for (auto& r : results)
        REQUIRE(r);
    CHECK(client.stats().connections_opened == 4);
    CHECK(client.stats().idle_connections == 2);
    client.close_idle();
    CHECK(client.stats().idle_connections == 0);
}

namespace {
asio::awaitable<void> get_many(coroute::http_client& client, std::string url, int n, std::atomic<int>& ok,
                               std::atomic<int>& failed)
{
    for (int i = 0; i < n; ++i)
    {
        auto r = co_await client.get(url);
        ++(r ? ok : failed);
    }
}
} // namespace

TEST_CASE("http_client: coroutines on many strands and threads share one client", "[client][pool]")
{
    asio::io_context io{2};
    upstream up{io, tls_upstream()};
    coroute::http_client client{io.get_executor(), trusting(loopback_identity())};

    constexpr int strands = 8;
    constexpr int calls = 10;
    std::atomic<int> ok{0};
    std::atomic<int> failed{0};
    std::atomic<int> finished{0};
    for (int i = 0; i < strands; ++i)
        asio::co_spawn(asio::make_strand(io), get_many(client, up.url(), calls, ok, failed),
                       [&](std::exception_ptr e) {
                           if (e)
                               ++failed;
                           if (++finished == strands)
                               io.stop();
                       });
    std::thread second{[&] { io.run_for(20s); }};
    io.run_for(20s);
    second.join();

    CHECK(finished == strands);
    CHECK(ok == strands * calls);
    CHECK(failed == 0);
    auto stats = client.stats();
    CHECK(stats.connections_opened + stats.reuses == strands * calls);
    CHECK(stats.connections_opened <= strands);
    CHECK(stats.tls_handshakes == stats.connections_opened);
    CHECK(up.state().handshakes == static_cast<int>(stats.connections_opened));
}
