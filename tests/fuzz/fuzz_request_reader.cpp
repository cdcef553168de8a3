// The request reader, fed what a client could send: every request it hands on is
// within the limits, every refusal is one of the statuses the README lists, and
// after a refusal nothing more is read (the session closes), as in session::serve.
#include "request_reader.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

using namespace coroute;
using namespace coroute::detail;
using test_stream = beast::test::stream;

namespace {

const reader_options& options()
{
    static const reader_options o = [] {
        reader_options r;
        r.limits.target_limit = 256;
        r.limits.header_limit = 1024;
        r.limits.max_fields = 16;
        r.body_limit = 2048;
        r.chunk_extension_limit = 64;
        return r;
    }();
    return o;
}

// Names the broken invariant before the abort, so a crash file explains itself.
void require(bool ok, const char* what)
{
    if (!ok)
    {
        std::fprintf(stderr, "fuzz_request_reader: invariant broken: %s\n", what);
        std::abort();
    }
}
#define REQUIRE(x) require((x), #x)

bool refusal_status(http::status s)
{
    switch (s)
    {
    case http::status::bad_request:
    case http::status::request_timeout:
    case http::status::length_required:
    case http::status::payload_too_large:
    case http::status::uri_too_long:
    case http::status::expectation_failed:
    case http::status::request_header_fields_too_large:
    case http::status::not_implemented:
    case http::status::http_version_not_supported:
        return true;
    default:
        return false;
    }
}

asio::awaitable<void> serve(request_reader<test_stream>& reader, std::size_t input, std::size_t& requests)
{
    std::atomic<bool> stopping{false};
    std::size_t taken = 0;
    for (;;)
    {
        if (reader.empty())
        {
            auto [ec, n] = co_await reader.idle_read();
            if (!reader.idle_read_done(ec, n))
                co_return;
        }
        auto failed = co_await reader.read(stopping);
        if (failed)
        {
            if (failed->answer)
                REQUIRE(refusal_status(failed->answer->status));
            co_return; // a refused request closes the connection: what follows is never read
        }
        auto msg = reader.take_message();
        REQUIRE(msg.target().size() <= options().limits.target_limit);
        REQUIRE(msg.body().size() <= options().body_limit);
        std::size_t fields = 0;
        for (auto it = msg.begin(); it != msg.end(); ++it)
            ++fields;
        REQUIRE(fields <= options().limits.max_fields);
        taken += msg.target().size() + msg.body().size();
        REQUIRE(taken <= input); // nothing is made up
        ++requests;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    asio::io_context ioc;
    test_stream server{ioc}, client{ioc};
    client.connect(server);
    server.append({reinterpret_cast<const char*>(data), size});
    server.close_remote(); // the client's bytes, then its end of the connection
    asio::cancellation_signal cancel;
    watchdog dog{ioc.get_executor(), cancel};
    dog.set_io_timeout_action([&server] { server.close(); });
    beast::flat_buffer buffer{options().limits.target_limit + options().limits.header_limit + 64 * 1024};
    request_ids ids;
    request_reader<test_stream> reader{server, buffer, dog, options(), ids};
    std::size_t requests = 0;
    bool done = false;
    asio::co_spawn(ioc, serve(reader, size, requests), [&](std::exception_ptr e) {
        REQUIRE(!e); // the reader never throws for what a client sends
        done = true;
        dog.stop();
    });
    ioc.run();
    REQUIRE(done);
    return 0;
}
