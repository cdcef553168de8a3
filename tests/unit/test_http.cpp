#include <coroute/http.hpp>

#include "http_date.hpp"

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

TEST_CASE("http date: the three forms of RFC 9110 read as one time, anything else as none", "[http]")
{
    using detail::parse_http_date;
    auto t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT");
    REQUIRE(t);
    CHECK(detail::format_http_date(*t) == "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == t);
    CHECK(parse_http_date("Sun Nov  6 08:49:37 1994") == t);
    CHECK(parse_http_date("Sun Nov 06 08:49:37 1994") == t);
    // A two-digit year more than 50 years ahead is in the past.
    auto now = std::chrono::system_clock::now();
    auto soon = parse_http_date("Monday, 01-Jan-" + detail::format_http_date(now).substr(14, 2) + " 00:00:00 GMT");
    REQUIRE(soon);
    CHECK(*soon <= now);
    CHECK(*soon > now - std::chrono::hours(24 * 367));
    for (auto bad : {"", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC", "sun, 06 nov 1994 08:49:37 GMT",
                     "Xyz, 06 Nov 1994 08:49:37 GMT", "Sun, 32 Dec 1994 08:49:37 GMT", "Sun, 29 Feb 1995 08:49:37 GMT",
                     "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 6 Nov 1994 08:49:37 GMT",
                     "Sunday, 06-Nov-1994 08:49:37 GMT", "Sun, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 94",
                     "Sun Nov 6 08:49:37 1994", "1994-11-06T08:49:37Z", "tomorrow"})
    {
        INFO(bad);
        CHECK_FALSE(parse_http_date(bad));
    }
    CHECK(parse_http_date("Wed, 29 Feb 2012 23:59:60 GMT")); // a leap day and a leap second
}
