#include <coroute/server.hpp>

#include <catch2/catch.hpp>

#include <coroute/problem.hpp>

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

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace coroute;
using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

namespace {

std::atomic<bool> handler_cancelled{false};

asio::awaitable<response> hello(request& req)
{
    co_return make_response(http::status::ok, "text/plain", "hello " + std::string{req.param("name").value_or("?")});
}

// Waits far longer than the request deadline; records that the deadline cancelled it.
asio::awaitable<response> slow(request&)
{
    asio::steady_timer t{co_await asio::this_coro::executor, 10s};
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    handler_cancelled = ec == asio::error::operation_aborted;
    co_return make_response(http::status::ok, "text/plain", "late");
}

// A plain blocking client on its own io_context.
http::response<http::string_body> blocking_get(unsigned short port, std::string target)
{
    asio::io_context client;
    tcp::socket s{client};
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "localhost");
    http::write(s, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);
    return res;
}

// An existing Asio program: its own io_context and threads, with coroute added to it.
struct embedded
{
    explicit embedded(server_options opts = {})
    {
        opts.log = std::make_shared<logger>(log_level::off, false);
        routes->get("/hello/{name}", &hello);
        routes->get("/slow", &slow);
        srv = std::make_unique<server>(ioc.get_executor(), routes, opts);
        add_health_routes(*routes, *srv);
        port = srv->listen({asio::ip::make_address("127.0.0.1"), 0}).port();
        srv->start();
        thread = std::thread([this] { ioc.run(); });
    }

    ~embedded()
    {
        asio::co_spawn(ioc, srv->shutdown(1s), [this](std::exception_ptr) { ioc.stop(); });
        thread.join();
    }

    http::response<http::string_body> get(std::string target) { return blocking_get(port, std::move(target)); }

    asio::io_context ioc;
    std::shared_ptr<router> routes = std::make_shared<router>();
    std::unique_ptr<server> srv;
    unsigned short port = 0;
    std::thread thread;
};

} // namespace

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

// An io_context per thread, each made with a concurrency hint of 1 (so connections get no
// strand), and one server spreading its connections over them.
struct per_thread
{
    explicit per_thread(server_options opts = {})
    {
        opts.log = std::make_shared<logger>(log_level::off, false);
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

TEST_CASE("server: a server needs at least one executor", "[server]")
{
    auto routes = std::make_shared<router>();
    CHECK_THROWS_AS(server(std::vector<asio::any_io_executor>{}, routes), std::invalid_argument);
}
