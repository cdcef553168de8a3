// The request reader alone, on Beast's in-memory test stream.
#include "request_reader.hpp"

#include <catch2/catch.hpp>

#include "support.hpp"

#include <boost/beast/_experimental/test/stream.hpp>

using namespace coroute;
using namespace coroute::detail;
using namespace std::chrono_literals;
using test_stream = beast::test::stream;

namespace {

using read_result = boost::system::result<incoming, read_failure>;

// A reader over the server side of a connected pair of test streams.
struct reading_fixture
{
    explicit reading_fixture(reader_options o = {}) : opts(o)
    {
        client.connect(server);
        dog.set_io_timeout_action([this] { server.close(); }); // completes the pending read
    }

    read_result read()
    {
        auto failed = coroute::test::run_sync(ioc, reader.read(stopping), 5s);
        if (failed)
            return std::move(*failed);
        return reader.take();
    }

    // Sends `bytes` as the client would.
    void send(std::string_view bytes) { server.append(bytes); }

    asio::io_context ioc;
    test_stream server{ioc}, client{ioc};
    reader_options opts;
    asio::cancellation_signal cancel;
    watchdog dog{ioc.get_executor(), cancel};
    beast::flat_buffer buffer{64 * 1024};
    request_ids ids;
    std::atomic<bool> stopping{false};
    request_reader<test_stream> reader{server, buffer, dog, opts, ids};
};

http::status answer_of(const read_result& r)
{
    REQUIRE_FALSE(r.has_value());
    REQUIRE(r.error().answer);
    return r.error().answer->status;
}

} // namespace

TEST_CASE("request reader: a request and the pipelined one behind it are read one at a time", "[reader]")
{
    reading_fixture f;
    f.send("GET /a HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-1\r\n\r\n"
           "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    auto first = f.read();
    REQUIRE(first.has_value());
    CHECK(first->message.target() == "/a");
    CHECK(first->id == "abc-1");
    auto second = f.read();
    REQUIRE(second.has_value());
    CHECK(second->message.method() == http::verb::post);
    CHECK(second->message.body() == "hello");
    CHECK(second->id.size() == 16); // no id sent: a fresh one
    CHECK(f.buffer.size() == 0);
}

TEST_CASE("request reader: leading empty lines are skipped, a closed idle connection ends quietly", "[reader]")
{
    reading_fixture f;
    f.send("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(f.read().has_value());
    f.server.close_remote();
    auto r = f.read();
    REQUIRE_FALSE(r.has_value());
    CHECK_FALSE(r.error().answer);
}

TEST_CASE("request reader: each limit answers with its status (414, 431, 413)", "[reader]")
{
    reader_options o;
    o.limits.target_limit = 64;
    o.limits.header_limit = 256;
    o.limits.max_fields = 4;
    o.body_limit = 10;
    {
        reading_fixture f{o};
        f.send("GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(answer_of(f.read()) == http::status::uri_too_long);
    }
    {
        reading_fixture f{o};
        f.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(300, 'b') + "\r\n\r\n");
        CHECK(answer_of(f.read()) == http::status::request_header_fields_too_large);
    }
    {
        reading_fixture f{o};
        f.send("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
        CHECK(answer_of(f.read()) == http::status::request_header_fields_too_large);
    }
    {
        reading_fixture f{o};
        f.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n");
        auto r = f.read();
        CHECK(answer_of(r) == http::status::payload_too_large);
    }
    {
        // Exactly at each limit: no rejection.
        reading_fixture f{o};
        f.send("POST /" + std::string(63, 'a') + " HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789");
        auto r = f.read();
        REQUIRE(r.has_value());
        CHECK(r->message.body() == "0123456789");
    }
}

TEST_CASE("request reader: a slow header or body is a 408, an idle connection just closes", "[reader]")
{
    reader_options o;
    o.header_timeout = 100ms;
    o.body_timeout = 100ms;
    o.idle_timeout = 100ms;
    {
        reading_fixture f{o};
        f.send("GET / HTTP/1.1\r\nHost: x\r\n");
        CHECK(answer_of(f.read()) == http::status::request_timeout);
    }
    {
        reading_fixture f{o};
        f.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
        auto r = f.read();
        CHECK(answer_of(r) == http::status::request_timeout);
        CHECK_FALSE(r.error().id.empty()); // the header was read: its id is known
    }
    {
        reading_fixture f{o};
        auto start = std::chrono::steady_clock::now();
        auto r = f.read();
        REQUIRE_FALSE(r.has_value());
        CHECK_FALSE(r.error().answer);
        CHECK(std::chrono::steady_clock::now() - start >= 90ms);
    }
}

TEST_CASE("request reader: a chunked body's trailer fields are dropped, and too many are 431", "[reader]")
{
    reading_fixture f;
    f.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n0\r\nX-Injected: 1\r\nContent-Type: text/evil\r\n\r\n");
    auto r = f.read();
    REQUIRE(r.has_value());
    CHECK(r->message.body() == "hello");
    CHECK(r->message.count("X-Injected") == 0);
    CHECK(r->message.count(http::field::content_type) == 0);
    CHECK(r->message[http::field::host] == "x");

    reader_options few;
    few.limits.max_fields = 3;
    reading_fixture g{few};
    std::string trailers;
    for (int i = 0; i < 4; ++i)
        trailers += "T" + std::to_string(i) + ": v\r\n";
    g.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + trailers +
           "\r\n");
    CHECK(answer_of(g.read()) == http::status::request_header_fields_too_large);
}

TEST_CASE("request reader: framing rules reject smuggling shapes and bad Host values", "[reader]")
{
    const char* bad[] = {
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: example.com:80x\r\n\r\n",
    };
    for (auto text : bad)
    {
        reading_fixture f;
        f.send(text);
        INFO(text);
        CHECK(answer_of(f.read()) == http::status::bad_request);
    }
    const char* good[] = {"localhost:8080", "[::1]:80", "127.0.0.1", "example.com", ""};
    for (auto host : good)
    {
        reading_fixture f;
        f.send("GET / HTTP/1.1\r\nHost: " + std::string{host} + "\r\n\r\n");
        INFO(host);
        CHECK(f.read().has_value());
    }
}

TEST_CASE("request reader: a request line that cannot be valid is refused before the header ends", "[reader]")
{
    const char* lines[] = {"GARBAGE\r\n", "GET /a b HTTP/1.1\r\n", "GET /x FTP/1.1\r\n", "G(T /x HTTP/1.1\r\n",
                           "GET /x HTTP/1.1 extra\r\n"};
    for (auto line : lines)
    {
        reader_options o;
        o.header_timeout = 10s; // were it waited for, run_sync's 5 s bound would fail the test
        reading_fixture f{o};
        f.send(line);
        INFO(line);
        CHECK(answer_of(f.read()) == http::status::bad_request);
    }
}

TEST_CASE("request reader: HTTP/1.2 is read as HTTP/1.1, another major version is 505 at once", "[reader]")
{
    for (auto minor : {'2', '9'})
    {
        reading_fixture f;
        f.send(std::string{"GET /v HTTP/1."} + minor + "\r\nHost: x\r\nX-Request-Id: v1\r\n\r\n");
        auto r = f.read();
        REQUIRE(r.has_value());
        CHECK(r->message.version() == 11);
        CHECK(r->message.target() == "/v");
        CHECK(r->id == "v1");
    }
    {
        reading_fixture f; // as HTTP/1.1, it needs its Host
        f.send("GET /v HTTP/1.2\r\n\r\n");
        CHECK(answer_of(f.read()) == http::status::bad_request);
    }
    for (auto version : {"HTTP/2.0", "HTTP/0.9"})
    {
        reader_options o;
        o.header_timeout = 10s; // were the header waited for, run_sync's 5 s bound would fail the test
        reading_fixture f{o};
        f.send(std::string{"GET /v "} + version + "\r\n");
        INFO(version);
        CHECK(answer_of(f.read()) == http::status::http_version_not_supported);
    }
}

TEST_CASE("request reader: Expect 100-continue is answered before the body is read", "[reader]")
{
    reading_fixture f;
    f.send("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok");
    auto r = f.read();
    REQUIRE(r.has_value());
    CHECK(r->message.body() == "ok");
    CHECK(f.client.str() == "HTTP/1.1 100 Continue\r\n\r\n");

    reading_fixture g;
    g.send("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: magic\r\n\r\nok");
    CHECK(answer_of(g.read()) == http::status::expectation_failed);
}
