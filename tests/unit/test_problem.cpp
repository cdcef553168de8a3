#include <coroute/problem.hpp>

#include <catch2/catch.hpp>

#include <coroute/error.hpp>

#include <boost/asio/error.hpp>
#include <boost/json/parse.hpp>

using namespace coroute;

TEST_CASE("problem: a 404 is RFC 9457 problem JSON with title and detail", "[problem]")
{
    auto res = problem(http::status::not_found, "no item 42");
    CHECK(res.result() == http::status::not_found);
    CHECK(res[http::field::content_type] == "application/problem+json");
    auto body = boost::json::parse(res.body()).as_object();
    CHECK(body.at("type") == "about:blank");
    CHECK(body.at("title") == "Not Found");
    CHECK(body.at("status") == 404);
    CHECK(body.at("detail") == "no item 42");
    CHECK(res[http::field::content_length] == std::to_string(res.body().size()));
}

TEST_CASE("problem: extra members are added beside the standard ones", "[problem]")
{
    boost::json::object extra;
    extra["errors"] = boost::json::array{"name is required"};
    auto res = problem(http::status::unprocessable_entity, "invalid item", extra);
    auto body = boost::json::parse(res.body()).as_object();
    CHECK(body.at("status") == 422);
    CHECK(body.at("errors").as_array().at(0) == "name is required");
}

TEST_CASE("problem: json_response serializes the value with application/json", "[problem]")
{
    auto res = json_response(http::status::created, {{"id", 7}});
    CHECK(res.result() == http::status::created);
    CHECK(res[http::field::content_type] == "application/json");
    CHECK(res.body() == R"({"id":7})");
}

TEST_CASE("problem: doubles are written plainly and strings escaped", "[problem]")
{
    boost::json::object o;
    o["elapsed_ms"] = 50.2;
    o["price"] = 9.99;
    o["count"] = 3;
    o["say \"hi\""] = "line\nbreak";
    o["list"] = boost::json::array{0.5, nullptr, true};
    CHECK(to_json_text(o) == R"({"elapsed_ms":50.2,"price":9.99,"count":3,"say \"hi\"":"line\nbreak","list":[0.5,null,true]})");
    CHECK(boost::json::parse(to_json_text(o)) == o);
}

TEST_CASE("problem: problem_for is the one mapping from error codes to answers", "[problem][error]")
{
    CHECK(problem_for(coroute::error::deadline_exceeded).result() == http::status::gateway_timeout);
    CHECK(problem_for(boost::asio::error::operation_aborted).result() == http::status::gateway_timeout);
    CHECK(problem_for(boost::system::errc::make_error_code(boost::system::errc::timed_out)).result() ==
          http::status::gateway_timeout);
    CHECK(problem_for(coroute::error::client_gone).result_int() == 499);
    CHECK(problem_for(coroute::error::shutting_down).result() == http::status::service_unavailable);
    auto down = problem_for(boost::system::errc::make_error_code(boost::system::errc::resource_unavailable_try_again),
                            "database query failed");
    CHECK(down.result() == http::status::service_unavailable);
    CHECK(down[http::field::retry_after] == "1");
    CHECK(boost::json::parse(down.body()).at("detail") == "database query failed");
    CHECK(problem_for(boost::system::errc::make_error_code(boost::system::errc::invalid_argument)).result() ==
          http::status::internal_server_error);
}

TEST_CASE("error: the coroute category names its values and maps the deadline to timed_out", "[error]")
{
    boost::system::error_code ec = coroute::error::deadline_exceeded;
    CHECK(std::string{ec.category().name()} == "coroute");
    CHECK(ec.message() == "the request's deadline passed");
    CHECK(ec == boost::system::errc::timed_out);
    CHECK(boost::system::error_code{coroute::error::client_gone} != boost::system::errc::timed_out);
}
