#include <coroute/request.hpp>

#include <coroute/problem.hpp>
#include <coroute/router.hpp>

#include <catch2/catch.hpp>

#include "support.hpp"

using namespace coroute;
using namespace std::chrono_literals;

namespace {

// The router fills path parameters and the query; a request routed once is what tests
// read. The router stays with it: the request's route() points into it.
struct routed_request
{
    router r;
    request req;
};

routed_request routed(std::string target, std::string route)
{
    routed_request out{router{}, request{request::message_type{http::verb::get, target, 11}, "id",
                                         request::clock::now() + 1s}};
    out.r.get(route, [](request&) -> asio::awaitable<response> { co_return make_response(http::status::ok, "text/plain", {}); });
    coroute::test::run_sync([](const router& r, request& req) -> asio::awaitable<int> {
        co_await r.dispatch(req);
        co_return 0;
    }(out.r, out.req));
    return out;
}

} // namespace

TEST_CASE("request: parameters convert to integers only when they fit exactly", "[request]")
{
    auto routed_once = routed("/x/42/-1/4x/99999999999999999999?limit=10&limit=20&empty=", "/x/{id}/{neg}/{junk}/{big}");
    auto& req = routed_once.req;
    CHECK(req.route() == "/x/{id}/{neg}/{junk}/{big}");
    CHECK(req.param_as<int>("id") == 42);
    CHECK_FALSE(req.param_as<unsigned>("neg"));
    CHECK_FALSE(req.param_as<int>("junk"));
    CHECK_FALSE(req.param_as<std::uint64_t>("big"));
    CHECK_FALSE(req.param("missing"));
    CHECK(req.query("limit") == "10"); // the first value wins
    CHECK(req.query_as<int>("limit") == 10);
    CHECK(req.query("empty") == "");
    CHECK_FALSE(req.query_as<int>("empty"));
}

TEST_CASE("request: parameter helpers give the value or the 400 problem naming the parameter", "[request]")
{
    auto routed_once = routed("/x/42?limit=500&offset=abc", "/x/{id}");
    auto& req = routed_once.req;
    auto id = req.path_param<std::uint64_t>("id");
    REQUIRE(id.has_value());
    CHECK(*id == 42);
    auto limit = req.query_param<int>("limit", 1, 100, 20);
    REQUIRE_FALSE(limit.has_value());
    CHECK(limit.error().result() == http::status::bad_request);
    CHECK(limit.error().body().find("limit must be an integer from 1 to 100, not '500'") != std::string::npos);
    auto offset = req.query_param<int>("offset", 0, 10, 0);
    REQUIRE_FALSE(offset.has_value());
    CHECK(offset.error().body().find("offset") != std::string::npos);
    auto absent = req.query_param<int>("page", 1, 10, 3);
    REQUIRE(absent.has_value());
    CHECK(*absent == 3);
}

TEST_CASE("request: headers are found case-insensitively, absent ones are empty", "[request]")
{
    request::message_type msg{http::verb::post, "/x", 11};
    msg.set(http::field::content_type, "application/json");
    msg.set("X-Custom", "yes");
    request req{std::move(msg), "id", request::clock::now()};
    CHECK(req.header(http::field::content_type) == "application/json");
    CHECK(req.header("x-custom") == "yes");
    CHECK(req.header("X-Missing").empty());
}

TEST_CASE("request: time left counts down to zero and never below", "[request]")
{
    request soon{request::message_type{}, "a", request::clock::now() + 500ms};
    CHECK(soon.time_left() > 400ms);
    CHECK(soon.time_left() <= 500ms);
    request past{request::message_type{}, "b", request::clock::now() - 1s};
    CHECK(past.time_left() == 0ms);
    request none;
    CHECK(none.time_left() == std::chrono::milliseconds::max());
}
