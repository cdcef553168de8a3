#include <coroute/server.hpp>

#include <catch2/catch.hpp>

#include "server_fixture.hpp"

#include <coroute/problem.hpp>
#include <coroute/streaming.hpp>
#include <coroute/tls.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>

#include <future>

#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace coroute;
using namespace std::chrono_literals;
using tcp = asio::ip::tcp;
using namespace coroute::test;

TEST_CASE("server: an Asio program embeds routes and a listener on its own io_context", "[server][embed]")
{
    embedded app;
    auto res = app.get("/hello/world");
    CHECK(res.result() == http::status::ok);
    CHECK(res.body() == "hello world");
    CHECK(res[http::field::server].starts_with("coroute/"));
    CHECK(res["X-Request-Id"].size() == 16);
    CHECK_FALSE(res[http::field::date].empty());
    CHECK(app.get("/healthz").body() == R"({"status":"ok"})");
    CHECK(app.srv->stats().requests == 2);
}

TEST_CASE("server: past the request deadline the answer is 504 and the handler's wait is cancelled", "[server][deadline]")
{
    handler_cancelled = false;
    server_options o;
    o.request_timeout = 200ms;
    embedded app{o};
    auto start = std::chrono::steady_clock::now();
    auto res = app.get("/slow");
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(res.result() == http::status::gateway_timeout);
    CHECK(res[http::field::content_type] == "application/problem+json");
    CHECK(took >= 190ms);
    CHECK(took < 5s);
    CHECK(handler_cancelled);
}

TEST_CASE("server: a request within its deadline is not cut short", "[server][deadline]")
{
    server_options o;
    o.request_timeout = 5s;
    embedded app{o};
    CHECK(app.get("/hello/x").result() == http::status::ok);
}

TEST_CASE("server: draining makes /readyz answer 503 and responses close the connection", "[server][shutdown]")
{
    embedded app;
    CHECK(app.get("/readyz").result() == http::status::ok);
    app.srv->drain();
    auto res = app.get("/readyz");
    CHECK(res.result() == http::status::service_unavailable);
    CHECK_FALSE(res.keep_alive());
    CHECK(app.get("/healthz").result() == http::status::ok);
}

namespace {

// An io_context per thread, each run by one thread (so connections need no strand), and
// one server spreading its connections over them.
struct per_thread
{
    explicit per_thread(server_options opts = {})
    {
        opts.log = std::make_shared<logger>(log_level::off, false);
        opts.strand_per_connection = false;
        routes->get("/hello/{name}", &hello);
        routes->get("/slow", &slow);
        std::vector<asio::any_io_executor> executors;
        for (auto& c : contexts)
            executors.push_back(c.get_executor());
        srv = std::make_unique<server>(executors, routes, opts);
        port = srv->listen({asio::ip::make_address("127.0.0.1"), 0}).port();
        srv->start();
        for (auto& c : contexts)
            threads.emplace_back([&c] {
                auto guard = asio::make_work_guard(c);
                c.run();
            });
    }

    ~per_thread()
    {
        asio::co_spawn(contexts[0], srv->shutdown(1s), [this](std::exception_ptr) {
            for (auto& c : contexts)
                c.stop();
        });
        for (auto& t : threads)
            t.join();
    }

    http::response<http::string_body> get(std::string target) { return blocking_get(port, std::move(target)); }

    asio::io_context contexts[2]{asio::io_context{1}, asio::io_context{1}};
    std::shared_ptr<router> routes = std::make_shared<router>();
    std::unique_ptr<server> srv;
    unsigned short port = 0;
    std::vector<std::thread> threads;
};

} // namespace

TEST_CASE("server: connections spread over an io_context per thread are all answered", "[server][embed]")
{
    per_thread app;
    std::vector<std::thread> clients;
    std::atomic<int> ok{0};
    for (int i = 0; i < 8; ++i)
        clients.emplace_back([&app, &ok, i] {
            auto res = app.get("/hello/c" + std::to_string(i));
            if (res.result() == http::status::ok && res.body() == "hello c" + std::to_string(i))
                ++ok;
        });
    for (auto& t : clients)
        t.join();
    CHECK(ok == 8);
    CHECK(app.srv->stats().connections_accepted == 8);
    CHECK(app.srv->stats().requests == 8);
}

TEST_CASE("server: on an io_context per thread the request deadline still cancels the handler", "[server][deadline]")
{
    handler_cancelled = false;
    server_options o;
    o.request_timeout = 200ms;
    per_thread app{o};
    // Two connections: one on each io_context.
    CHECK(app.get("/slow").result() == http::status::gateway_timeout);
    CHECK(app.get("/slow").result() == http::status::gateway_timeout);
    CHECK(handler_cancelled);
}

TEST_CASE("server: clients already queued by the kernel are accepted together, not one per turn", "[server]")
{
    // The io_context is run here one handler at a time, as a busy one would reach the
    // accept loop: once per turn of its queue. The clients connect before the first
    // turn, so all of them wait in the kernel's accept queue.
    asio::io_context ioc;
    auto routes = std::make_shared<router>();
    server_options opts;
    opts.strand_per_connection = false;
    server srv{ioc.get_executor(), routes, opts};
    auto ep = srv.listen({asio::ip::make_address("127.0.0.1"), 0});
    srv.start();
    ioc.poll(); // the accept loop reaches its wait
    asio::io_context client;
    std::vector<tcp::socket> clients;
    for (int i = 0; i < 40; ++i)
    {
        clients.emplace_back(client);
        clients.back().connect(ep);
    }
    for (int turn = 0; turn < 6 && srv.stats().connections_accepted < 40; ++turn)
        ioc.run_one_for(2s);
    CHECK(srv.stats().connections_accepted == 40);
}

TEST_CASE("server: a server needs at least one executor", "[server]")
{
    auto routes = std::make_shared<router>();
    CHECK_THROWS_AS(server(std::vector<asio::any_io_executor>{}, routes), std::invalid_argument);
}

namespace {

// A raw client socket with a bounded wait for what it expects.
struct raw_client
{
    explicit raw_client(unsigned short port) { s.connect({asio::ip::make_address("127.0.0.1"), port}); }

    void send(std::string_view bytes) { asio::write(s, asio::buffer(bytes)); }

    // Reads until `marker` has arrived (or the peer closes, or 5 s pass); all read so far.
    std::string read_until(std::string_view marker)
    {
        s.non_blocking(true);
        auto until = std::chrono::steady_clock::now() + 5s;
        while (got.find(marker) == std::string::npos && std::chrono::steady_clock::now() < until)
        {
            char buf[4096];
            boost::system::error_code ec;
            auto n = s.read_some(asio::buffer(buf), ec);
            if (ec == asio::error::would_block)
            {
                std::this_thread::sleep_for(5ms);
                continue;
            }
            if (ec)
                break;
            got.append(buf, n);
        }
        return got;
    }

    asio::io_context ioc;
    tcp::socket s{ioc};
    std::string got;
};

// An upgrade to a line-echo protocol: echoes lines until "bye", or says "going away"
// when the server shuts down. Over the TLS stream on HTTPS, the socket on HTTP.
template <class Stream>
asio::awaitable<void> echo_on(Stream& stream, upgraded& conn)
{
    using namespace asio::experimental::awaitable_operators;
    auto& buf = conn.buffer();
    for (;;)
    {
        auto data = std::string_view{static_cast<const char*>(buf.data().data()), buf.size()};
        if (auto nl = data.find('\n'); nl != std::string_view::npos)
        {
            std::string line{data.substr(0, nl + 1)};
            buf.consume(nl + 1);
            if (line == "bye\n")
                co_return;
            co_await asio::async_write(stream, asio::buffer(line), nothrow_awaitable);
            continue;
        }
        auto raced = co_await (stream.async_read_some(buf.prepare(1024), nothrow_awaitable) || conn.until_stopping());
        if (raced.index() == 1)
        {
            co_await asio::async_write(stream, asio::buffer("going away\n", 11), nothrow_awaitable);
            co_return;
        }
        auto [ec, n] = std::get<0>(raced);
        if (ec)
            co_return;
        buf.commit(n);
    }
}

asio::awaitable<void> echo_lines(upgraded& conn)
{
    if (auto* tls = conn.tls())
        co_await echo_on(*tls, conn);
    else
        co_await echo_on(conn.socket(), conn);
}

asio::awaitable<response> upgrade_to_echo(request&)
{
    response res;
    res.upgrade("echo", &echo_lines);
    co_return res;
}

// A body produced over time: a line every 20 ms until cancelled (or 1000 lines).
asio::awaitable<void> tick_lines(body_writer& out)
{
    asio::steady_timer t{co_await asio::this_coro::executor};
    for (int i = 0; i < 1000; ++i)
    {
        auto ec = co_await out.write("tick " + std::to_string(i) + "\n");
        if (ec)
            co_return;
        t.expires_after(20ms);
        auto [wec] = co_await t.async_wait(nothrow_awaitable);
        if (wec)
            co_return;
    }
}

asio::awaitable<response> ticks(request&)
{
    response res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain");
    res.stream(&tick_lines);
    co_return res;
}

void streaming_routes(router& r)
{
    r.get("/echo", &upgrade_to_echo);
    r.get("/ticks", &ticks);
}

} // namespace

TEST_CASE("server: an upgrade hands over the connection with the bytes already read", "[server][upgrade]")
{
    embedded app{{}, &streaming_routes};
    raw_client c{app.port};
    // The first line rides in the same packet as the request: it is in the buffer handed over.
    c.send("GET /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nhello\n");
    auto text = c.read_until("hello\n");
    CHECK(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    CHECK(text.find("Upgrade: echo\r\n") != std::string::npos);
    CHECK(text.find("Content-Length") == std::string::npos);
    CHECK(text.ends_with("\r\n\r\nhello\n"));
    CHECK(app.srv->stats().connections_open == 1); // an upgraded connection still counts
    c.send("again\n");
    CHECK(c.read_until("again\n").ends_with("hello\nagain\n"));
    c.send("bye\n");
    c.read_until("\x01"); // the server closes once the handler returns
    CHECK(c.got.ends_with("again\n"));
}

TEST_CASE("server: shutdown tells an upgraded connection, which ends within the grace", "[server][upgrade][shutdown]")
{
    embedded app{{}, &streaming_routes};
    raw_client c{app.port};
    c.send("GET /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nping\n");
    c.read_until("ping\n");
    auto start = std::chrono::steady_clock::now();
    std::promise<void> done;
    asio::co_spawn(app.ioc, app.srv->shutdown(5s), [&](std::exception_ptr) { done.set_value(); });
    CHECK(c.read_until("going away\n").ends_with("going away\n"));
    REQUIRE(done.get_future().wait_for(5s) == std::future_status::ready);
    CHECK(std::chrono::steady_clock::now() - start < 4s); // woken by the last connection, not the grace
    CHECK(app.srv->stats().connections_open == 0);
}

TEST_CASE("server: a produced body streams chunked and ends cleanly at shutdown", "[server][stream][shutdown]")
{
    embedded app{{}, &streaming_routes};
    raw_client c{app.port};
    c.send("GET /ticks HTTP/1.1\r\nHost: x\r\n\r\n");
    auto text = c.read_until("tick 2\n");
    CHECK(text.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
    CHECK(text.find("7\r\ntick 0\n\r\n") != std::string::npos);
    std::promise<void> done;
    asio::co_spawn(app.ioc, app.srv->shutdown(5s), [&](std::exception_ptr) { done.set_value(); });
    CHECK(c.read_until("\r\n0\r\n\r\n").ends_with("\r\n0\r\n\r\n")); // the terminal chunk
    REQUIRE(done.get_future().wait_for(5s) == std::future_status::ready);
    CHECK(app.srv->stats().connections_open == 0);
}

TEST_CASE("server: a produced body's producer is cancelled when its client leaves", "[server][stream]")
{
    embedded app{{}, &streaming_routes};
    {
        raw_client c{app.port};
        c.send("GET /ticks HTTP/1.1\r\nHost: x\r\n\r\n");
        c.read_until("tick 1\n");
    } // closed here
    auto until = std::chrono::steady_clock::now() + 5s;
    while (app.srv->stats().connections_open > 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(10ms);
    CHECK(app.srv->stats().connections_open == 0); // well before the 1000 ticks (20 s)
}

namespace {

// The README's auth example: every route under /admin needs a token.
asio::awaitable<std::optional<response>> require_token(request& req)
{
    if (req.route().starts_with("/admin/") && req.header(http::field::authorization) != "Bearer let-me-in")
        co_return problem(http::status::unauthorized, "this route needs a token");
    co_return std::nullopt;
}

// The same guard written against the path instead of the route template.
asio::awaitable<std::optional<response>> require_token_by_path(request& req)
{
    if (req.path().starts_with("/admin/") && req.header(http::field::authorization) != "Bearer let-me-in")
        co_return problem(http::status::unauthorized, "this route needs a token");
    co_return std::nullopt;
}

asio::awaitable<response> secret(request& req)
{
    co_return make_response(http::status::ok, "text/plain", "secret " + std::string{*req.param("name")});
}

} // namespace

TEST_CASE("server: an auth hook cannot be slipped past with encoded, dotted or doubled paths", "[server][hooks]")
{
    const char* targets[] = {
        "/admin/plans", "/%61dmin/plans", "/admin/%70lans", "/./admin/plans", "/x/../admin/plans",
        "//admin/plans", "/admin//plans", "/admin/./plans", "/%2e/admin/plans", "/x/%2e%2e/admin/plans",
        "http://x/admin/plans",
    };
    for (auto guard : {&require_token, &require_token_by_path})
    {
        embedded app{{}, [guard](router& r) {
                         r.before(guard);
                         r.get("/admin/{name}", &secret);
                     }};
        for (auto target : targets)
        {
            INFO(target);
            auto res = app.get(target);
            CHECK(res.result() == http::status::unauthorized);
            CHECK(res.body().find("secret") == std::string::npos);
        }
        asio::io_context client;
        tcp::socket s{client};
        s.connect({asio::ip::make_address("127.0.0.1"), app.port});
        http::request<http::empty_body> req{http::verb::get, "/%61dmin/./plans", 11};
        req.set(http::field::host, "localhost");
        req.set(http::field::authorization, "Bearer let-me-in");
        http::write(s, req);
        beast::flat_buffer buf;
        http::response<http::string_body> res;
        http::read(s, buf, res);
        CHECK(res.result() == http::status::ok);
        CHECK(res.body() == "secret plans");
    }
}

TEST_CASE("server: over TLS an upgrade gets the TLS stream and a produced body streams", "[server][upgrade][tls]")
{
    auto identity = make_self_signed("127.0.0.1");
    server_options o;
    o.tls = make_server_tls_context(identity);
    embedded app{o, &streaming_routes};

    auto client_tls = make_client_tls_context_trusting(identity.certificate_pem);
    auto talk = [&](std::string_view request, std::string_view until) {
        asio::io_context ioc;
        asio::ssl::stream<tcp::socket> s{ioc, *client_tls};
        s.next_layer().connect({asio::ip::make_address("127.0.0.1"), app.port});
        timeval tv{5, 0}; // a server that does not answer fails the test, not hangs it
        ::setsockopt(s.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        s.handshake(asio::ssl::stream_base::client);
        asio::write(s, asio::buffer(request));
        std::string got;
        while (got.find(until) == std::string::npos)
        {
            char buf[4096];
            boost::system::error_code ec;
            auto n = s.read_some(asio::buffer(buf), ec);
            if (ec)
                break;
            got.append(buf, n);
        }
        return got;
    };
    auto echoed = talk("GET /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nhello\n",
                       "hello\n");
    CHECK(echoed.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    CHECK(echoed.ends_with("\r\n\r\nhello\n"));
    auto ticks = talk("GET /ticks HTTP/1.1\r\nHost: x\r\n\r\n", "tick 2\n");
    CHECK(ticks.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
    CHECK(ticks.find("7\r\ntick 1\n\r\n") != std::string::npos);
}
