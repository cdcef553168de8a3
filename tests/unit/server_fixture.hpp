#pragma once
// A server embedded in a test: its own io_context on a thread of its own, a
// loopback port chosen by the OS, shut down at scope exit; and a plain blocking client.

#include <coroute/health.hpp>
#include <coroute/response.hpp>
#include <coroute/server.hpp>
#include <coroute/testing.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace coroute::test {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

inline std::atomic<bool> handler_cancelled{false};

inline asio::awaitable<response> hello(request& req)
{
    co_return make_response(http::status::ok, "text/plain", "hello " + std::string{req.param("name").value_or("?")});
}

// Waits far longer than the request deadline; records that the deadline cancelled it.
inline asio::awaitable<response> slow(request&)
{
    asio::steady_timer t{co_await asio::this_coro::executor, 10s};
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    handler_cancelled = ec == asio::error::operation_aborted;
    co_return make_response(http::status::ok, "text/plain", "late");
}


// A plain blocking client on its own io_context.
inline http::response<http::string_body> blocking_get(unsigned short port, std::string target)
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

// An existing Asio program: its own io_context and thread, with coroute added to it
// (coroute::testing's loopback server, with the routes above and /healthz, /readyz).
struct embedded
{
    explicit embedded(server_options opts = {}, const std::function<void(router&)>& extra = {})
        : live(routes_with(extra), quiet(std::move(opts)), true)
    {
    }

    static std::shared_ptr<router> routes_with(const std::function<void(router&)>& extra)
    {
        auto r = std::make_shared<router>();
        r->get("/hello/{name}", &hello);
        r->get("/slow", &slow);
        if (extra)
            extra(*r);
        return r;
    }

    static server_options quiet(server_options o)
    {
        o.log = std::make_shared<logger>(log_level::off, false);
        return o;
    }

    http::response<http::string_body> get(std::string target) { return live.get(target); }

    testing::live_server live;
    asio::io_context& ioc = live.context();
    server* srv = &live.server();
    unsigned short port = live.port();
};

} // namespace coroute::test
