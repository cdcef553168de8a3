#include <coroute/deadline.hpp>

#include <catch2/catch.hpp>

#include "support.hpp"
#include "watchdog.hpp"

using namespace coroute;
using namespace std::chrono_literals;

namespace {

// Waits `d`, then gives `value`; a cancelled wait gives its error.
asio::awaitable<boost::system::result<int>> slow_value(std::chrono::milliseconds d, int value)
{
    asio::steady_timer t{co_await asio::this_coro::executor, d};
    auto [ec] = co_await t.async_wait(nothrow_awaitable);
    if (ec)
        co_return ec;
    co_return value;
}

} // namespace

TEST_CASE("deadline: within() gives the result when it comes first", "[deadline]")
{
    auto r = coroute::test::run_sync(within(deadline::after(2s), slow_value(10ms, 7)));
    REQUIRE(r.has_value());
    CHECK(*r == 7);
    auto unbounded = coroute::test::run_sync(within(deadline::none(), slow_value(10ms, 8)));
    CHECK(*unbounded == 8);
}

TEST_CASE("deadline: within() gives deadline_exceeded and cancels the work when the deadline comes first", "[deadline]")
{
    auto start = std::chrono::steady_clock::now();
    auto r = coroute::test::run_sync(within(deadline::after(50ms), slow_value(5s, 7)));
    CHECK_FALSE(r.has_value());
    CHECK(r.error() == coroute::error::deadline_exceeded);
    CHECK(std::chrono::steady_clock::now() - start < 3s); // not the 5 s of the work
    auto past = coroute::test::run_sync(within(deadline{deadline::clock::now() - 1s}, slow_value(5s, 7)));
    CHECK(past.error() == coroute::error::deadline_exceeded);
}

TEST_CASE("deadline: values compare, the earliest wins, none never passes", "[deadline]")
{
    auto soon = deadline::after(100ms), later = deadline::after(10s);
    CHECK(earliest(soon, later) == soon);
    CHECK(earliest(deadline::none(), later) == later);
    CHECK_FALSE(deadline::none().passed());
    CHECK(deadline::none().left() == std::chrono::milliseconds::max());
    CHECK(later.left() > 9s);
}

TEST_CASE("watchdog: the I/O deadline runs the timeout action, the request deadline emits the signal", "[watchdog]")
{
    asio::io_context ioc;
    asio::cancellation_signal handler;
    bool handler_cancelled = false;
    handler.slot().assign([&](asio::cancellation_type) { handler_cancelled = true; });
    detail::watchdog dog{ioc.get_executor(), handler};
    int io_timeouts = 0;
    dog.set_io_timeout_action([&] { ++io_timeouts; });

    dog.io_after(300ms);
    dog.io_after(1000ms); // moved later: no new wait, the timer re-arms itself when it fires early
    ioc.run_for(500ms);   // past the first deadline, well before the second
    CHECK(io_timeouts == 0);
    ioc.restart();
    ioc.run_for(2s);
    CHECK(io_timeouts == 1);
    CHECK(dog.io_expired());

    dog.request_until(std::chrono::steady_clock::now() + 20ms);
    ioc.restart();
    ioc.run_for(500ms);
    CHECK(dog.request_expired());
    CHECK(handler_cancelled);

    dog.io_after(20ms);
    dog.io_clear(); // a cleared deadline does not fire
    ioc.restart();
    ioc.run_for(200ms);
    CHECK(io_timeouts == 1);
    dog.stop();
}
