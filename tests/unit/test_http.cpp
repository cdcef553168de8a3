#include <coroute/http.hpp>

#include <catch2/catch.hpp>

using namespace coroute;

TEST_CASE("http: make_response sets status, type, body and Content-Length", "[http]")
{
    auto res = make_response(http::status::accepted, "text/plain", "queued");
    CHECK(res.result() == http::status::accepted);
    CHECK(res[http::field::content_type] == "text/plain");
    CHECK(res.body() == "queued");
    CHECK(res[http::field::content_length] == "6");
    CHECK(res.version() == 11);
}

TEST_CASE("http: a 204 made by make_response has no Content-Length", "[http]")
{
    auto res = make_response(http::status::no_content, "text/plain", {});
    CHECK(res.find(http::field::content_length) == res.end());
}

TEST_CASE("http: finish_payload follows a body changed after the response was made", "[http]")
{
    auto res = make_response(http::status::ok, "text/plain", "short");
    res.body() += " and longer";
    finish_payload(res);
    CHECK(res[http::field::content_length] == "16");
    response not_modified{http::status::not_modified, 11};
    not_modified.body() = "stray";
    finish_payload(not_modified);
    CHECK(not_modified.body().empty());
    CHECK(not_modified.find(http::field::content_length) == not_modified.end());
}
