// The in-memory stream pair under the test client: bytes across, back-pressure, end of
// stream, a closed peer, and both kinds of cancellation.
#include "memory_stream.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <optional>
#include <string>

using namespace coroute;
using coroute::detail::memory_stream;
using namespace std::chrono_literals;

namespace {

struct outcome
{
    boost::system::error_code ec;
    std::size_t n = 0;
};

auto record(std::optional<outcome>& out)
{
    return [&out](boost::system::error_code ec, std::size_t n) { out = outcome{ec, n}; };
}

} // namespace

TEST_CASE("memory stream: what one end writes the other reads, and a writer waits for room", "[memory_stream]")
{
    asio::io_context io;
    auto [a, b] = memory_stream::make_pair(io.get_executor(), io.get_executor(), 4);
    std::string data = "0123456789";
    std::optional<outcome> wrote, got;
    asio::async_write(a, asio::buffer(data), record(wrote));
    io.run_for(50ms);
    io.restart();
    CHECK_FALSE(wrote); // 4 bytes of room: the write waits for the reader
    std::string sink(10, '\0');
    asio::async_read(b, asio::buffer(sink), record(got));
    io.run_for(200ms);
    REQUIRE(wrote);
    REQUIRE(got);
    CHECK(wrote->n == 10);
    CHECK(got->n == 10);
    CHECK(sink == data);
}

TEST_CASE("memory stream: after the peer's shutdown or close a read drains, then ends; a write fails", "[memory_stream]")
{
    asio::io_context io;
    auto [a, b] = memory_stream::make_pair(io.get_executor(), io.get_executor());
    std::string data = "last words";
    std::optional<outcome> wrote, got, after;
    asio::async_write(a, asio::buffer(data), record(wrote));
    io.run_for(20ms);
    io.restart();
    boost::system::error_code ec;
    a.shutdown(asio::socket_base::shutdown_send, ec);
    char buf[64];
    b.async_read_some(asio::buffer(buf), record(got));
    io.run_for(20ms);
    io.restart();
    REQUIRE(got);
    CHECK(std::string(buf, got->n) == data);
    b.async_read_some(asio::buffer(buf), record(after));
    io.run_for(20ms);
    io.restart();
    REQUIRE(after);
    CHECK(after->ec == asio::error::eof);

    std::string more = "x";
    std::optional<outcome> to_closed;
    auto [c, d] = memory_stream::make_pair(io.get_executor(), io.get_executor());
    d.close();
    c.async_write_some(asio::buffer(more), record(to_closed));
    io.run_for(20ms);
    REQUIRE(to_closed);
    CHECK(to_closed->ec == asio::error::broken_pipe);
}

TEST_CASE("memory stream: cancel() and a per-operation cancellation end a waiting read with operation_aborted",
          "[memory_stream]")
{
    asio::io_context io;
    auto [a, b] = memory_stream::make_pair(io.get_executor(), io.get_executor());
    char buf[8];
    std::optional<outcome> first, second;
    a.async_read_some(asio::buffer(buf), record(first));
    io.run_for(20ms);
    io.restart();
    CHECK_FALSE(first);
    boost::system::error_code ec;
    a.cancel(ec);
    io.run_for(20ms);
    io.restart();
    REQUIRE(first);
    CHECK(first->ec == asio::error::operation_aborted);

    asio::cancellation_signal sig;
    a.async_read_some(asio::buffer(buf), asio::bind_cancellation_slot(sig.slot(), record(second)));
    io.run_for(20ms);
    io.restart();
    CHECK_FALSE(second);
    sig.emit(asio::cancellation_type::terminal);
    io.run_for(20ms);
    REQUIRE(second);
    CHECK(second->ec == asio::error::operation_aborted);
}
