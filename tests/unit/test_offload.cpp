#include <coroute/offload.hpp>

#include <catch2/catch.hpp>

#include <coroute/error.hpp>

#include "support.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>

#include <atomic>
#include <future>
#include <stdexcept>
#include <thread>

using namespace coroute;
using namespace std::chrono_literals;

namespace {

// Every test declares its io_context before its pool, so that the pool is destroyed
// first: a pool thread that posted a completion may still be inside that post (Asio
// signals the io_context's condition variable after queueing the handler) when the
// handler has already run, and only the pool's destructor, which joins its threads,
// says it is done. The other order destroyed the io_context under that post (TSan).

// Runs `ioc` until `done()` or `limit`; a hang fails the test instead of hanging it.
template <class Pred>
bool run_until(asio::io_context& ioc, Pred done, std::chrono::milliseconds limit = 5s)
{
    auto guard = asio::make_work_guard(ioc);
    ioc.restart();
    auto end = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < end)
        ioc.run_one_for(5ms);
    return done();
}

// What a callback-style completion saw.
struct outcome
{
    bool completed = false;
    std::thread::id on;
    std::exception_ptr error;
    std::optional<int> value;
};

boost::system::error_code code_of(std::exception_ptr e)
{
    try
    {
        std::rethrow_exception(e);
    }
    catch (const boost::system::system_error& s)
    {
        return s.code();
    }
    catch (...)
    {
        return {};
    }
}

// A gate a pool thread waits at until the test opens it.
struct gate
{
    std::promise<void> open_;
    std::shared_future<void> opened = open_.get_future().share();
    void open() { open_.set_value(); }
};

asio::awaitable<std::pair<int, std::thread::id>> add_on_pool(offload_pool& pool, std::thread::id* ran_on)
{
    auto v = co_await pool.run([ran_on] {
        *ran_on = std::this_thread::get_id();
        return 40 + 2;
    });
    co_return std::pair{v, std::this_thread::get_id()};
}

asio::awaitable<int> throw_on_pool(offload_pool& pool)
{
    co_await pool.run([] { throw std::runtime_error("boom"); });
    co_return 0;
}

} // namespace

TEST_CASE("offload: the callable runs on a pool thread and the caller resumes on its own thread with the result",
          "[offload]")
{
    asio::io_context ioc;
    offload_pool pool{{.threads = 2}};
    CHECK(pool.threads() == 2);
    std::thread::id ran_on;
    auto [value, resumed_on] = test::run_sync(ioc, add_on_pool(pool, &ran_on));
    CHECK(value == 42);
    CHECK(resumed_on == std::this_thread::get_id()); // run_sync runs the io_context here
    CHECK(ran_on != std::this_thread::get_id());
    CHECK(ran_on != std::thread::id{});
}

TEST_CASE("offload: what the callable throws is rethrown to the caller", "[offload]")
{
    asio::io_context ioc;
    offload_pool pool{{.threads = 1}};
    CHECK_THROWS_WITH(test::run_sync(ioc, throw_on_pool(pool)), "boom");
}

TEST_CASE("offload: calls run threads() at a time, never more", "[offload]")
{
    asio::io_context ioc;
    offload_pool pool{{.threads = 2}};
    std::atomic<int> now{0}, peak{0};
    int completed = 0;
    for (int i = 0; i < 6; ++i)
        pool.async_run(
            [&] {
                int n = ++now;
                int p = peak.load();
                while (n > p && !peak.compare_exchange_weak(p, n))
                    ;
                std::this_thread::sleep_for(20ms);
                --now;
                return 0;
            },
            asio::bind_executor(ioc, [&](std::exception_ptr, std::optional<int>) { ++completed; }));
    REQUIRE(run_until(ioc, [&] { return completed == 6; }));
    CHECK(peak.load() == 2);
}

TEST_CASE("offload: a call still queued when its caller is cancelled is dropped and never runs", "[offload]")
{
    asio::io_context ioc;
    offload_pool pool{{.threads = 1}};
    gate g;
    outcome first, second;
    bool second_ran = false;
    pool.async_run([&] { g.opened.wait(); return 1; },
                   asio::bind_executor(ioc, [&](std::exception_ptr e, std::optional<int> v) {
                       first = {true, std::this_thread::get_id(), e, v};
                   }));
    asio::cancellation_signal cancel;
    pool.async_run([&] { second_ran = true; return 2; },
                   asio::bind_cancellation_slot(
                       cancel.slot(), asio::bind_executor(ioc, [&](std::exception_ptr e, std::optional<int> v) {
                           second = {true, std::this_thread::get_id(), e, v};
                       })));
    REQUIRE(run_until(ioc, [&] { return pool.running() == 1 && pool.queued() == 1; }));
    cancel.emit(asio::cancellation_type::terminal);
    REQUIRE(run_until(ioc, [&] { return second.completed; }));
    CHECK(pool.queued() == 0);
    CHECK(code_of(second.error) == asio::error::operation_aborted);
    CHECK_FALSE(second.value);
    CHECK_FALSE(first.completed); // the first one still runs
    g.open();
    REQUIRE(run_until(ioc, [&] { return first.completed; }));
    CHECK(first.value == 1);
    CHECK(first.on == std::this_thread::get_id());
    CHECK_FALSE(second_ran);
}

TEST_CASE("offload: a running call whose caller is cancelled finishes, and its result is discarded", "[offload]")
{
    asio::io_context ioc;
    offload_pool pool{{.threads = 1}};
    gate g;
    std::atomic<bool> finished{false};
    outcome out;
    asio::cancellation_signal cancel;
    pool.async_run([&] { g.opened.wait(); finished = true; return 7; },
                   asio::bind_cancellation_slot(
                       cancel.slot(), asio::bind_executor(ioc, [&](std::exception_ptr e, std::optional<int> v) {
                           out = {true, std::this_thread::get_id(), e, v};
                       })));
    REQUIRE(run_until(ioc, [&] { return pool.running() == 1; }));
    cancel.emit(asio::cancellation_type::terminal);
    CHECK_FALSE(run_until(ioc, [&] { return out.completed; }, 100ms)); // not interrupted
    g.open();
    REQUIRE(run_until(ioc, [&] { return out.completed; }));
    CHECK(finished.load());
    CHECK(code_of(out.error) == asio::error::operation_aborted);
    CHECK_FALSE(out.value);
}

TEST_CASE("offload: past max_queued a call fails at once, and the queue takes calls again once it drains",
          "[offload]")
{
    asio::io_context ioc;
    offload_pool pool{{.threads = 1, .max_queued = 1}};
    gate g;
    int done = 0;
    std::vector<boost::system::error_code> codes;
    auto record = asio::bind_executor(ioc, [&](std::exception_ptr e, std::optional<int>) {
        codes.push_back(e ? code_of(e) : boost::system::error_code{});
        ++done;
    });
    pool.async_run([&] { g.opened.wait(); return 0; }, record);
    REQUIRE(run_until(ioc, [&] { return pool.running() == 1; }));
    pool.async_run([] { return 0; }, record); // queued
    pool.async_run([] { return 0; }, record); // refused
    REQUIRE(run_until(ioc, [&] { return done == 1; }));
    CHECK(codes[0] == boost::system::errc::resource_unavailable_try_again);
    g.open();
    REQUIRE(run_until(ioc, [&] { return done == 3; }));
    CHECK_FALSE(codes[1]);
    CHECK_FALSE(codes[2]);
    pool.async_run([] { return 0; }, record);
    REQUIRE(run_until(ioc, [&] { return done == 4; }));
    CHECK_FALSE(codes[3]);
}

TEST_CASE("offload: stop drops the queued calls with shutting_down, lets the running one finish, refuses new ones",
          "[offload]")
{
    asio::io_context ioc;
    offload_pool pool{{.threads = 1}};
    gate g;
    outcome running, queued, late;
    auto into = [&](outcome& o) {
        return asio::bind_executor(ioc, [&o](std::exception_ptr e, std::optional<int> v) {
            o = {true, std::this_thread::get_id(), e, v};
        });
    };
    pool.async_run([&] { g.opened.wait(); return 1; }, into(running));
    REQUIRE(run_until(ioc, [&] { return pool.running() == 1; }));
    pool.async_run([] { return 2; }, into(queued));
    pool.stop();
    pool.async_run([] { return 3; }, into(late));
    REQUIRE(run_until(ioc, [&] { return queued.completed && late.completed; }));
    CHECK(code_of(queued.error) == error::shutting_down);
    CHECK(code_of(late.error) == error::shutting_down);
    g.open();
    REQUIRE(run_until(ioc, [&] { return running.completed; }));
    CHECK(running.value == 1);
}
