#include "framing.hpp"

#include <catch2/catch.hpp>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/empty_body.hpp>

using namespace coroute;
using namespace coroute::detail;

namespace {

header_scan scan(std::string_view buf, header_limits limits = {})
{
    std::size_t resume = 0;
    return scan_header(buf, limits, resume);
}

// Parses a header with Beast and runs the framing checks on it.
std::optional<rejection> framing(std::string_view raw)
{
    http::request_parser<http::empty_body> p;
    p.eager(false);
    boost::system::error_code ec;
    p.put(boost::asio::buffer(raw.data(), raw.size()), ec);
    REQUIRE_FALSE(ec);
    REQUIRE(p.is_header_done());
    return check_framing(p.get());
}

} // namespace

TEST_CASE("framing: a header is complete at its empty line", "[framing]")
{
    auto r = scan("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next");
    CHECK(r.state == header_scan::complete);
    CHECK(r.end == std::string_view{"GET / HTTP/1.1\r\nHost: a\r\n\r\n"}.size());
}

TEST_CASE("framing: a partial header is incomplete", "[framing]")
{
    CHECK(scan("GET / HTTP/1.1\r\nHost: a\r\n").state == header_scan::incomplete);
    CHECK(scan("GET / HT").state == header_scan::incomplete);
}

TEST_CASE("framing: leading empty lines are skipped", "[framing]")
{
    auto r = scan("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(r.state == header_scan::complete);
    CHECK(r.skip == 4);
}

TEST_CASE("framing: a target over the limit is 414, even before the line ends", "[framing]")
{
    header_limits l;
    l.target_limit = 100;
    auto done = scan("GET /" + std::string(200, 'a') + " HTTP/1.1\r\n\r\n", l);
    CHECK(done.state == header_scan::rejected);
    CHECK(done.error->status == http::status::uri_too_long);
    auto partial = scan("GET /" + std::string(200, 'a'), l);
    CHECK(partial.state == header_scan::rejected);
    CHECK(partial.error->status == http::status::uri_too_long);
    CHECK(scan("GET /" + std::string(99, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", l).state == header_scan::complete);
}

TEST_CASE("framing: a line over its limit before its first space is a 400, not a 414", "[framing]")
{
    header_limits l;
    l.target_limit = 100; // the line's limit: 132
    for (auto line : {std::string(200, 'M'), std::string(200, 'M') + " /x HTTP/1.1\r\n"})
    {
        auto r = scan(line, l);
        REQUIRE(r.state == header_scan::rejected);
        CHECK(r.error->status == http::status::bad_request);
        CHECK(r.error->detail == "request line too long");
    }
    CHECK(scan(std::string(100, 'M'), l).state == header_scan::incomplete);
}

TEST_CASE("framing: a major version other than 1 is 505 as soon as the line ends", "[framing]")
{
    for (auto v : {"HTTP/2.0", "HTTP/0.9", "HTTP/3.1"})
    {
        auto r = scan(std::string{"GET / "} + v + "\r\n");
        INFO(v);
        REQUIRE(r.state == header_scan::rejected);
        CHECK(r.error->status == http::status::http_version_not_supported);
    }
    for (auto v : {"HTTP/1.0", "HTTP/1.1", "HTTP/1.2"})
        CHECK(scan(std::string{"GET / "} + v + "\r\nHost: a\r\n\r\n").state == header_scan::complete);
}

TEST_CASE("framing: header fields over the limit are 431", "[framing]")
{
    header_limits l;
    l.header_limit = 100;
    auto r = scan("GET / HTTP/1.1\r\nX-Big: " + std::string(200, 'b') + "\r\n", l);
    CHECK(r.state == header_scan::rejected);
    CHECK(r.error->status == http::status::request_header_fields_too_large);
    CHECK(scan("GET / HTTP/1.1\r\nX-Ok: " + std::string(50, 'b') + "\r\n\r\n", l).state == header_scan::complete);
}

TEST_CASE("framing: obs-fold, whitespace before a colon and control characters are 400", "[framing]")
{
    header_limits l;
    auto fold = check_header_bytes("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", l);
    REQUIRE(fold);
    CHECK(fold->status == http::status::bad_request);
    CHECK(fold->detail.find("folding") != std::string::npos);
    auto space = check_header_bytes("GET / HTTP/1.1\r\nHost : a\r\n\r\n", l);
    REQUIRE(space);
    CHECK(space->detail.find("whitespace") != std::string::npos);
    auto ctl = check_header_bytes(std::string("GET / HTTP/1.1\r\nX-A: a\x01z\r\n\r\n"), l);
    REQUIRE(ctl);
    CHECK(ctl->status == http::status::bad_request);
    CHECK_FALSE(check_header_bytes("GET / HTTP/1.1\r\nHost: a\r\nX-Tab: a\tb\r\n\r\n", l));
}

TEST_CASE("framing: a field over 64 KiB is 431 whatever the header limit", "[framing]")
{
    header_limits l;
    l.header_limit = 1 << 20;
    auto big = check_header_bytes("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(70'000, 'v') + "\r\n\r\n", l);
    REQUIRE(big);
    CHECK(big->status == http::status::request_header_fields_too_large);
    CHECK(big->detail.find("X-Big") != std::string::npos);
    CHECK_FALSE(check_header_bytes("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(65'000, 'v') + "\r\n\r\n", l));
}

TEST_CASE("framing: more header fields than allowed is 431", "[framing]")
{
    header_limits l;
    l.max_fields = 3;
    CHECK_FALSE(check_header_bytes("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", l));
    auto r = check_header_bytes("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", l);
    REQUIRE(r);
    CHECK(r->status == http::status::request_header_fields_too_large);
}

TEST_CASE("framing: HTTP/1.1 needs exactly one Host", "[framing]")
{
    CHECK(framing("GET / HTTP/1.1\r\n\r\n")->status == http::status::bad_request);
    CHECK(framing("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")->status == http::status::bad_request);
    CHECK_FALSE(framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    CHECK_FALSE(framing("GET / HTTP/1.0\r\n\r\n"));
}

TEST_CASE("framing: Transfer-Encoding must end in chunked and not meet Content-Length", "[framing]")
{
    CHECK(framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")->status == http::status::bad_request);
    CHECK(framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")->status ==
          http::status::bad_request);
    CHECK(framing("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")->status == http::status::bad_request);
    CHECK(framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")->status ==
          http::status::not_implemented);
    CHECK_FALSE(framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"));
}

TEST_CASE("framing: Content-Length lists must agree", "[framing]")
{
    CHECK_FALSE(framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"));
}
