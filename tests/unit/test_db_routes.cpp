#include "app/db_routes.hpp"

#include <catch2/catch.hpp>

#include <coroute/testing.hpp>

#include <boost/json/parse.hpp>

using namespace coroute;
using namespace coroute::app;
using namespace std::chrono_literals;

namespace {

struct fixture
{
    explicit fixture(db_options o = {})
    {
        if (!o.latency)
            o.latency = 5ms;
        db = std::make_shared<sim_database>(o);
        add_db_routes(routes, db);
    }

    response call(http::verb method, std::string target, std::string body = {},
                  std::string type = "application/json")
    {
        auto req = testing::make_request(method, target, {}, std::move(body));
        if (!req.body().empty() || method == http::verb::post || method == http::verb::put)
            req.set(http::field::content_type, type);
        testing::client client{routes};
        client.set_timeout(20s);
        return client.send_sync(std::move(req));
    }

    router routes;
    std::shared_ptr<database> db;
};

boost::json::value json_of(const response& res)
{
    return boost::json::parse(res.body());
}

} // namespace

TEST_CASE("db routes: /api/db answers the source, timing and items", "[db][routes]")
{
    fixture f;
    auto res = f.call(http::verb::get, "/api/db?delay_ms=30");
    REQUIRE(res.result() == http::status::ok);
    auto j = json_of(res);
    CHECK(j.at("source") == "database");
    CHECK(j.at("delay_ms") == 30);
    CHECK(j.at("elapsed_ms").to_number<double>() >= 29);
    CHECK(j.at("items").as_array().size() == 5);
}

TEST_CASE("db routes: a bad delay_ms is a 400 naming the parameter", "[db][routes]")
{
    fixture f;
    for (auto target : {"/api/db?delay_ms=-1", "/api/db?delay_ms=10001", "/api/db?delay_ms=x", "/api/db?delay_ms="})
    {
        auto res = f.call(http::verb::get, target);
        CHECK(res.result() == http::status::bad_request);
        CHECK(json_of(res).at("detail").as_string().starts_with("delay_ms must be an integer from 0 to 10000"));
    }
}

TEST_CASE("db routes: parallel queries take about one delay and report the sequential estimate", "[db][routes]")
{
    fixture f;
    auto res = f.call(http::verb::get, "/api/db/parallel?queries=20&delay_ms=200");
    REQUIRE(res.result() == http::status::ok);
    auto j = json_of(res);
    CHECK(j.at("queries") == 20);
    CHECK(j.at("sequential_estimate_ms") == 4000);
    CHECK(j.at("results").as_array().size() == 20);
    auto elapsed = j.at("elapsed_ms").to_number<double>();
    CHECK(elapsed >= 199);
    CHECK(elapsed < 400);
    CHECK(f.db->peak_in_flight() == 20);
}

TEST_CASE("db routes: parallel rejects a query count outside 1..100", "[db][routes]")
{
    fixture f;
    CHECK(f.call(http::verb::get, "/api/db/parallel?queries=0").result() == http::status::bad_request);
    CHECK(f.call(http::verb::get, "/api/db/parallel?queries=101").result() == http::status::bad_request);
}

TEST_CASE("db routes: a failing database is a 503 problem with Retry-After", "[db][routes]")
{
    db_options o;
    o.latency = 1ms;
    o.fail_rate = 1;
    fixture f{o};
    auto res = f.call(http::verb::get, "/api/db");
    CHECK(res.result() == http::status::service_unavailable);
    CHECK(res[http::field::retry_after] == "1");
    CHECK(json_of(res).at("detail").as_string().find("unavailable") != std::string::npos);
    CHECK(f.call(http::verb::get, "/api/db/parallel?queries=3").result() == http::status::service_unavailable);
}

TEST_CASE("db routes: items are created, read, replaced and deleted", "[db][routes][items]")
{
    fixture f;
    auto made = f.call(http::verb::post, "/api/items", R"({"name":"Bolt","price":1.25})");
    REQUIRE(made.result() == http::status::created);
    CHECK(made[http::field::location] == "/api/items/6");
    CHECK(json_of(made).at("name") == "Bolt");

    auto read = f.call(http::verb::get, "/api/items/6");
    CHECK(read.result() == http::status::ok);
    CHECK(json_of(read).at("price").to_number<double>() == 1.25);

    auto replaced = f.call(http::verb::put, "/api/items/6", R"({"name":"Nut","price":0})");
    CHECK(replaced.result() == http::status::ok);
    CHECK(json_of(replaced).at("name") == "Nut");

    CHECK(f.call(http::verb::delete_, "/api/items/6").result() == http::status::no_content);
    CHECK(f.call(http::verb::get, "/api/items/6").result() == http::status::not_found);
    CHECK(f.call(http::verb::delete_, "/api/items/6").result() == http::status::not_found);
    CHECK(f.call(http::verb::put, "/api/items/6", R"({"name":"X","price":1})").result() == http::status::not_found);
}

TEST_CASE("db routes: the item list pages with limit and offset and reports the total", "[db][routes][items]")
{
    fixture f;
    auto res = f.call(http::verb::get, "/api/items?limit=2&offset=1");
    REQUIRE(res.result() == http::status::ok);
    auto j = json_of(res);
    CHECK(j.at("total") == 5);
    CHECK(j.at("limit") == 2);
    REQUIRE(j.at("items").as_array().size() == 2);
    CHECK(j.at("items").as_array()[0].at("id") == 2);
    CHECK(f.call(http::verb::get, "/api/items?limit=0").result() == http::status::bad_request);
    CHECK(f.call(http::verb::get, "/api/items?limit=101").result() == http::status::bad_request);
    CHECK(f.call(http::verb::get, "/api/items?offset=-1").result() == http::status::bad_request);
    CHECK(json_of(f.call(http::verb::get, "/api/items")).at("limit") == 20);
}

TEST_CASE("db routes: item bodies are validated: 415, 400, 422 naming each field", "[db][routes][items]")
{
    fixture f;
    CHECK(f.call(http::verb::post, "/api/items", R"({"name":"a","price":1})", "text/plain").result() ==
          http::status::unsupported_media_type);
    CHECK(f.call(http::verb::post, "/api/items", R"({"name":"a","price":1})", "application/json; charset=utf-8")
              .result() == http::status::created);
    auto malformed = f.call(http::verb::post, "/api/items", R"({"name":)");
    CHECK(malformed.result() == http::status::bad_request);
    CHECK(json_of(malformed).at("detail").as_string().starts_with("malformed JSON"));

    auto invalid = f.call(http::verb::post, "/api/items", R"({"name":"","price":-2,"colour":"red"})");
    REQUIRE(invalid.result() == http::status::unprocessable_entity);
    auto errors = json_of(invalid).at("errors").as_array();
    REQUIRE(errors.size() == 3);
    CHECK(errors[0].at("field") == "name");
    CHECK(errors[1].at("field") == "price");
    CHECK(errors[2].at("field") == "colour");

    auto missing = f.call(http::verb::post, "/api/items", R"({})");
    CHECK(json_of(missing).at("errors").as_array().size() == 2);
    auto long_name = f.call(http::verb::post, "/api/items", R"({"name":")" + std::string(101, 'a') + R"(","price":1})");
    CHECK(long_name.result() == http::status::unprocessable_entity);
    // Length counts characters, not bytes: 100 two-byte characters fit, 101 do not.
    std::string e_acute = "\xC3\xA9", hundred;
    for (int i = 0; i < 100; ++i)
        hundred += e_acute;
    CHECK(f.call(http::verb::post, "/api/items", R"({"name":")" + hundred + R"(","price":1})").result() ==
          http::status::created);
    CHECK(f.call(http::verb::post, "/api/items", R"({"name":")" + hundred + e_acute + R"(","price":1})").result() ==
          http::status::unprocessable_entity);
    CHECK(f.call(http::verb::post, "/api/items", R"([1,2])").result() == http::status::unprocessable_entity);
    CHECK(f.call(http::verb::post, "/api/items", R"({"name":5,"price":"1"})").result() ==
          http::status::unprocessable_entity);
}

TEST_CASE("db routes: a bad item id is 400, other methods 405 with Allow", "[db][routes][items]")
{
    fixture f;
    CHECK(f.call(http::verb::get, "/api/items/abc").result() == http::status::bad_request);
    CHECK(f.call(http::verb::get, "/api/items/0").result() == http::status::bad_request);
    auto patch = f.call(http::verb::patch, "/api/items/1");
    CHECK(patch.result() == http::status::method_not_allowed);
    CHECK(patch[http::field::allow] == "GET, HEAD, PUT, DELETE, OPTIONS");
    auto put_collection = f.call(http::verb::put, "/api/items", "{}");
    CHECK(put_collection.result() == http::status::method_not_allowed);
    CHECK(put_collection[http::field::allow] == "GET, HEAD, POST, OPTIONS");
}
