// The response writer alone, on Beast's in-memory test stream.
#include "response_writer.hpp"

#include <catch2/catch.hpp>

#include "support.hpp"

#include <coroute/problem.hpp>

#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/http/write.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace coroute;
using namespace coroute::detail;
using namespace std::chrono_literals;
using test_stream = beast::test::stream;

namespace {

struct writing_fixture
{
    writing_fixture() { server.connect(client); }
    // (No I/O timeout action: the test stream never blocks a write.)

    write_outcome write(response& res, write_context ctx)
    {
        return coroute::test::run_sync(ioc, writer.write(res, ctx), 5s);
    }

    asio::io_context ioc;
    test_stream server{ioc}, client{ioc};
    asio::cancellation_signal cancel;
    watchdog dog{ioc.get_executor(), cancel};
    response_writer<test_stream> writer{server, dog, 1s};
};

// What Beast's own serializer writes for `res`.
std::string beast_bytes(const response& res)
{
    std::ostringstream out;
    out << static_cast<const response::message_type&>(res);
    return out.str();
}

// Beast's bytes with Date, Server and X-Request-Id moved to the top, as the hand
// serializer orders them.
std::string reordered(const std::string& text)
{
    auto head_end = text.find("\r\n\r\n") + 2;
    auto body = text.substr(head_end + 2);
    auto line_end = text.find("\r\n") + 2;
    std::string first = text.substr(0, line_end), date, server, id, rest;
    std::string_view fields{text.data() + line_end, head_end - line_end};
    while (!fields.empty())
    {
        auto n = fields.find("\r\n") + 2;
        std::string line{fields.substr(0, n)};
        fields.remove_prefix(n);
        if (line.starts_with("Date: "))
            date = line;
        else if (line.starts_with("Server: "))
            server = line;
        else if (line.starts_with("X-Request-Id: "))
            id = line;
        else
            rest += line;
    }
    return first + date + server + id + rest + "\r\n" + body;
}

std::filesystem::path temp_file(std::string_view contents)
{
    auto p = std::filesystem::temp_directory_path() / ("coroute-writer-" + std::to_string(::getpid()) + ".bin");
    std::ofstream{p, std::ios::binary} << contents;
    return p;
}

} // namespace

TEST_CASE("response writer: the head it writes by hand equals Beast's serializer", "[writer]")
{
    struct shape
    {
        const char* what;
        write_context ctx;
        response res;
    };
    auto plain = make_response(http::status::ok, "text/plain", "hello");
    auto problem_res = problem(http::status::not_found, "no item 42");
    auto custom = make_response(http::status::created, "application/json", "{}");
    custom.set(http::field::location, "/api/items/7");
    custom.set("X-Custom", "yes");
    shape shapes[] = {
        {"keep-alive 1.1", {"id-1", true, 11, false}, plain},
        {"close", {"id-2", false, 11, false}, problem_res},
        {"1.0 keep-alive", {"id-3", true, 10, false}, custom},
    };
    for (auto& s : shapes)
    {
        INFO(s.what);
        auto general = s.res;
        writing::decorate(general, s.ctx);
        auto expected = reordered(beast_bytes(general));
        std::string head;
        auto fast = s.res;
        writing::serialize_head(fast, s.ctx, head);
        CHECK(head + fast.body() == expected);
    }
}

TEST_CASE("response writer: HEAD writes the header with the GET's length and no body", "[writer]")
{
    writing_fixture f;
    auto res = make_response(http::status::ok, "text/plain", "twelve bytes");
    auto out = f.write(res, {"id", true, 11, true});
    CHECK_FALSE(out.ec);
    auto text = f.client.str();
    CHECK(text.find("Content-Length: 12\r\n") != std::string::npos);
    CHECK(text.ends_with("\r\n\r\n"));
}

TEST_CASE("response writer: a file part is streamed in chunks, exactly its bytes", "[writer]")
{
    std::string contents;
    for (int i = 0; i < 300'000; ++i)
        contents += static_cast<char>('a' + i % 26);
    auto path = temp_file(contents);
    auto f = file::open(path);
    REQUIRE(f.has_value());
    writing_fixture w;
    response res{http::status::partial_content, 11};
    res.send_file({*f, 1000, 200'000});
    finish_payload(res);
    auto out = w.write(res, {"id", true, 11, false});
    CHECK_FALSE(out.ec);
    CHECK(out.reusable);
    auto text = w.client.str();
    auto body = text.substr(text.find("\r\n\r\n") + 4);
    CHECK(text.find("Content-Length: 200000\r\n") != std::string::npos);
    CHECK(body == contents.substr(1000, 200'000));
    std::filesystem::remove(path);
}

TEST_CASE("response writer: a produced body is chunked, ended, and bounded by its declared length", "[writer]")
{
    {
        writing_fixture w;
        response res{http::status::ok, 11};
        res.stream([](body_writer& out) -> asio::awaitable<void> {
            co_await out.write("hello ");
            co_await out.write("world");
        });
        finish_payload(res);
        auto out = w.write(res, {"id", true, 11, false});
        CHECK_FALSE(out.ec);
        CHECK(out.reusable);
        auto text = w.client.str();
        CHECK(text.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
        CHECK(text.ends_with("\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"));
    }
    {
        writing_fixture w;
        response res{http::status::ok, 11};
        res.stream([](body_writer& out) -> asio::awaitable<void> {
            co_await out.write("12345");
            co_await out.write("6"); // one byte more than declared
        }, 5);
        finish_payload(res);
        auto out = w.write(res, {"id", true, 11, false});
        CHECK(out.ec == coroute::error::body_length);
        CHECK_FALSE(out.reusable);
        CHECK(w.client.str().ends_with("\r\n\r\n12345"));
    }
    {
        writing_fixture w;
        response res{http::status::ok, 11};
        res.stream([](body_writer& out) -> asio::awaitable<void> { co_await out.write("123"); }, 5);
        finish_payload(res);
        auto out = w.write(res, {"id", true, 11, false});
        CHECK_FALSE(out.reusable); // two bytes short: the connection cannot carry another response
    }
}

TEST_CASE("response writer: a write to a client that has gone fails with the error", "[writer]")
{
    writing_fixture w;
    w.server.close(); // the connection is gone
    auto res = make_response(http::status::ok, "text/plain", "x");
    auto out = w.write(res, {"id", true, 11, false});
    CHECK(out.ec);
}
