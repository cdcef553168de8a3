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
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <atomic>
#include <thread>

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

    // A plain blocking client on its own io_context.
    http::response<http::string_body> get(std::string target)
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
