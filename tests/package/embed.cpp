// Embeds coroute in a program of its own: the router and the server on its io_context.
// usage: embed [PORT]   (0 takes a free port; the default is 8080)
#include <coroute/health.hpp>
#include <coroute/problem.hpp>
#include <coroute/router.hpp>
#include <coroute/server.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdlib>
#include <iostream>

namespace asio = boost::asio;
namespace http = boost::beast::http;

// A handler is a coroutine taking the request and returning the response.
asio::awaitable<coroute::response> greet(coroute::request& req)
{
    co_return coroute::json_response(http::status::ok, {{"hello", *req.param("name")}});
}

int main(int argc, char** argv)
{
    auto port = static_cast<unsigned short>(argc > 1 ? std::atoi(argv[1]) : 8080);

    asio::io_context ioc; // the program's own
    auto routes = std::make_shared<coroute::router>();
    routes->get("/greet/{name}", &greet);

    coroute::server srv{ioc.get_executor(), routes};
    coroute::add_health_routes(*routes, srv); // GET /healthz and GET /readyz

    // listen() returns the endpoint it bound: with port 0, the free port it took.
    auto ep = srv.listen({asio::ip::make_address("127.0.0.1"), port});
    srv.start();
    std::cout << "listening on http://" << ep << std::endl;

    // SIGINT or SIGTERM: stop accepting, give requests in flight 5 s, then leave run().
    asio::signal_set signals{ioc, SIGINT, SIGTERM};
    signals.async_wait([&](boost::system::error_code ec, int) {
        if (ec)
            return;
        asio::co_spawn(ioc, srv.shutdown(std::chrono::seconds(5)), [&](std::exception_ptr) { ioc.stop(); });
    });
    ioc.run(); // or run it on threads of your own
}
