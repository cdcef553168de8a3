// Tests a route with Catch2 and coroute::testing: no server to start, no socket, and
// the answer is the one a client over TCP would get.
#include <coroute/problem.hpp>
#include <coroute/testing.hpp>

#include <catch2/catch.hpp>

namespace asio = boost::asio;
namespace http = boost::beast::http;

asio::awaitable<coroute::response> greet(coroute::request& req)
{
    co_return coroute::json_response(http::status::ok, {{"hello", *req.param("name")}});
}

TEST_CASE("GET /greet/{name} greets by name")
{
    auto routes = std::make_shared<coroute::router>();
    routes->get("/greet/{name}", &greet);
    coroute::testing::client client{routes};
    auto res = client.get_sync("/greet/asio");
    CHECK(coroute::testing::json_body(res).at("hello") == "asio");
}

TEST_CASE("another method is a 405 with Allow, HEAD has the length and no body")
{
    auto routes = std::make_shared<coroute::router>();
    routes->get("/greet/{name}", &greet);
    coroute::testing::client client{routes};
    auto res = client.post_json_sync("/greet/asio", {{"x", 1}});
    CHECK(res.result() == http::status::method_not_allowed);
    CHECK(res[http::field::allow] == "GET, HEAD, OPTIONS");
    auto head = client.head_sync("/greet/asio");
    CHECK(head[http::field::content_length] == "16");
    CHECK(head.body().empty());
}
