// Embedding coroute in an existing Asio program: the program owns the io_context and
// its thread; coroute adds a router and a listener to it. Exits 0 when a request to
// its own route comes back right.
#include <coroute/problem.hpp>
#include <coroute/router.hpp>
#include <coroute/server.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <iostream>
#include <thread>

namespace asio = boost::asio;
namespace http = boost::beast::http;

asio::awaitable<coroute::response> greet(coroute::request& req)
{
    co_return coroute::json_response(http::status::ok, {{"hello", *req.param("name")}});
}

int main()
{
    asio::io_context ioc; // the program's own

    auto routes = std::make_shared<coroute::router>();
    routes->get("/greet/{name}", &greet);
    coroute::server_options opts;
    opts.log = std::make_shared<coroute::logger>(coroute::log_level::warn, false);
    coroute::server srv{ioc.get_executor(), routes, opts};
    auto ep = srv.listen({asio::ip::make_address("127.0.0.1"), 0});
    srv.start();
    std::thread io{[&] { ioc.run(); }};

    asio::io_context client;
    asio::ip::tcp::socket s{client};
    s.connect(ep);
    http::request<http::empty_body> req{http::verb::get, "/greet/asio", 11};
    req.set(http::field::host, "localhost");
    http::write(s, req);
    boost::beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);

    asio::co_spawn(ioc, srv.shutdown(std::chrono::seconds(1)), [&](std::exception_ptr) { ioc.stop(); });
    io.join();

    std::cout << res.result_int() << " " << res.body() << "\n";
    return res.result() == http::status::ok && res.body() == R"({"hello":"asio"})" ? 0 : 1;
}
