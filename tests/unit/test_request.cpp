#include <coroute/request.hpp>

#include <catch2/catch.hpp>

using namespace coroute;
using namespace std::chrono_literals;

TEST_CASE("request: parameters convert to integers only when they fit exactly", "[request]")
{
    request req{request::message_type{http::verb::get, "/x", 11}, "id", request::clock::now() + 1s};
    req.mutable_params() = {{"id", "42"}, {"neg", "-1"}, {"junk", "4x"}, {"big", "99999999999999999999"}};
    req.mutable_query() = {{"limit", "10"}, {"limit", "20"}, {"empty", ""}};
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
