#include "app/database.hpp"

#include <catch2/catch.hpp>

#include "support.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

using namespace coroute;
using namespace coroute::app;
using namespace std::chrono_literals;
using coroute::test::run_sync;
using clock_type = std::chrono::steady_clock;

namespace {

db_options fast(std::chrono::milliseconds latency = 20ms)
{
    db_options o;
    o.latency = latency;
    return o;
}

// Runs `n` sample queries at once on one thread; returns how long they all took.
std::chrono::milliseconds run_concurrently(database& db, int n, int& failures)
{
    asio::io_context ioc;
    int done = 0;
    failures = 0;
    auto start = clock_type::now();
    for (int i = 0; i < n; ++i)
        asio::co_spawn(ioc, db.query(1), [&](std::exception_ptr e, db_result<std::vector<item>> r) {
            ++done;
            if (e || !r)
                ++failures;
        });
    ioc.run_for(10s);
    REQUIRE(done == n);
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - start);
}

} // namespace

// Arguments to coroutines are named locals, never braced temporaries: GCC 12 can
// destroy a braced temporary passed to a coroutine twice.

TEST_CASE("database: a query waits its latency and returns the seeded rows", "[db]")
{
    sim_database db{fast(50ms)};
    auto start = clock_type::now();
    auto rows = run_sync(db.query(10));
    auto took = clock_type::now() - start;
    REQUIRE(rows.has_value());
    CHECK(rows->size() == 5);
    CHECK(rows->front().name == "Widget");
    CHECK(took >= 45ms);
}

TEST_CASE("database: a per-call latency overrides the configured one", "[db]")
{
    sim_database db{fast(5s)};
    auto start = clock_type::now();
    auto rows = run_sync(db.query(1, 10ms));
    REQUIRE(rows.has_value());
    CHECK(clock_type::now() - start < 2s);
}

TEST_CASE("database: 20 queries on one thread overlap instead of queueing", "[db]")
{
    sim_database db{fast(200ms)};
    int failures = 0;
    auto took = run_concurrently(db, 20, failures);
    CHECK(failures == 0);
    CHECK(db.peak_in_flight() == 20);
    // Sequentially this would be 4 s; overlapped it is about one latency.
    CHECK(took < 1000ms);
}

TEST_CASE("database: insert, find, replace and remove work on the table", "[db]")
{
    sim_database db{fast(1ms)};
    item_fields bolt{"Bolt", 1.5}, nut{"Nut", 2}, other{"X", 1};
    auto made = run_sync(db.insert(bolt));
    REQUIRE(made.has_value());
    CHECK(made->id == 6);
    CHECK(made->name == "Bolt");
    auto found = run_sync(db.find(6));
    REQUIRE(found.has_value());
    REQUIRE(*found);
    CHECK((*found)->price == 1.5);
    auto replaced = run_sync(db.replace(6, nut));
    REQUIRE(replaced.has_value());
    REQUIRE(*replaced);
    CHECK((*replaced)->name == "Nut");
    auto removed = run_sync(db.remove(6));
    REQUIRE(removed.has_value());
    CHECK(*removed);
    auto gone = run_sync(db.find(6));
    REQUIRE(gone.has_value());
    CHECK_FALSE(*gone);
    auto again = run_sync(db.remove(6));
    REQUIRE(again.has_value());
    CHECK_FALSE(*again);
    auto missing = run_sync(db.replace(99, other));
    REQUIRE(missing.has_value());
    CHECK_FALSE(*missing);
}

TEST_CASE("database: list pages through the rows and counts them all", "[db]")
{
    sim_database db{fast(1ms)};
    auto page = run_sync(db.list(2, 3));
    REQUIRE(page.has_value());
    CHECK(page->total == 5);
    REQUIRE(page->items.size() == 2);
    CHECK(page->items[0].id == 4);
    auto past = run_sync(db.list(10, 100));
    REQUIRE(past.has_value());
    CHECK(past->items.empty());
}

TEST_CASE("database: a cancelled query stops waiting and changes nothing", "[db]")
{
    sim_database db{fast(5s)};
    asio::io_context ioc;
    asio::cancellation_signal cancel;
    std::optional<db_result<item>> outcome;
    item_fields never{"Never", 1};
    asio::co_spawn(ioc, db.insert(never),
                   asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr, db_result<item> r) { outcome = r; }));
    asio::steady_timer t{ioc, 50ms};
    t.async_wait([&](auto) { cancel.emit(asio::cancellation_type::terminal); });
    auto start = clock_type::now();
    ioc.run_for(3s);
    REQUIRE(outcome);
    REQUIRE(outcome->has_error());
    CHECK(outcome->error() == asio::error::operation_aborted);
    CHECK(clock_type::now() - start < 2s);
    CHECK(db.in_flight() == 0);
    auto page = run_sync(db.list(100, 0, 0ms));
    REQUIRE(page.has_value());
    CHECK(page->total == 5);
}

TEST_CASE("database: a pool bound makes further queries wait their turn", "[db][pool]")
{
    auto o = fast(100ms);
    o.pool = 2;
    sim_database db{o};
    int failures = 0;
    auto took = run_concurrently(db, 6, failures);
    CHECK(failures == 0);
    CHECK(db.peak_in_flight() == 2);
    // Three rounds of two: about 300 ms, never less.
    CHECK(took >= 290ms);
    CHECK(took < 2000ms);
}

TEST_CASE("database: without a pool bound nothing waits", "[db][pool]")
{
    sim_database db{fast(100ms)};
    int failures = 0;
    auto took = run_concurrently(db, 6, failures);
    CHECK(db.peak_in_flight() == 6);
    CHECK(took < 290ms);
}

TEST_CASE("database: a query cancelled while queued for the pool leaves the queue", "[db][pool]")
{
    auto o = fast(300ms);
    o.pool = 1;
    sim_database db{o};
    asio::io_context ioc;
    asio::cancellation_signal cancel;
    std::vector<std::string> events;
    auto start = clock_type::now();
    asio::co_spawn(ioc, db.query(1), [&](std::exception_ptr, auto r) { events.push_back(r ? "first ok" : "first failed"); });
    asio::co_spawn(ioc, db.query(1),
                   asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr, auto r) {
                       events.push_back(!r && r.error() == asio::error::operation_aborted ? "second cancelled" : "second ?");
                   }));
    asio::co_spawn(ioc, db.query(1), [&](std::exception_ptr, auto r) { events.push_back(r ? "third ok" : "third failed"); });
    asio::steady_timer t{ioc, 50ms};
    t.async_wait([&](auto) { cancel.emit(asio::cancellation_type::terminal); });
    ioc.run_for(5s);
    CHECK(events == std::vector<std::string>{"second cancelled", "first ok", "third ok"});
    // The third took the slot the second left: two latencies (600 ms), not three (900 ms).
    CHECK(clock_type::now() - start < 850ms);
}

TEST_CASE("database: a fail rate of 1 fails every query, of 0 none", "[db]")
{
    auto o = fast(1ms);
    o.fail_rate = 1;
    sim_database failing{o};
    auto r = run_sync(failing.query(1));
    REQUIRE(r.has_error());
    CHECK(r.error() == db_error::unavailable);
    CHECK(r.error().message().find("unavailable") != std::string::npos);

    sim_database fine{fast(1ms)};
    int failures = 0;
    run_concurrently(fine, 20, failures);
    CHECK(failures == 0);
}
