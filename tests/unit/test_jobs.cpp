#include <coroute/jobs.hpp>

#include <catch2/catch.hpp>

#include <coroute/error.hpp>
#include <coroute/log.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include "support.hpp"

#include <stdexcept>

using namespace coroute;
using namespace std::chrono_literals;

namespace {

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

// Waits `step` `steps` times, reporting progress after each; its result counts the steps.
asio::awaitable<boost::json::value> stepper(job_context& ctx, std::chrono::milliseconds step, int steps)
{
    asio::steady_timer t{co_await asio::this_coro::executor};
    for (int i = 1; i <= steps; ++i)
    {
        t.expires_after(step);
        co_await t.async_wait(asio::use_awaitable); // throws when the job is cancelled
        ctx.progress(double(i) / steps);
    }
    co_return boost::json::object{{"steps", steps}, {"id", ctx.id()}};
}

job_function steps_of(std::chrono::milliseconds step, int steps)
{
    return [step, steps](job_context& c) { return stepper(c, step, steps); };
}

asio::awaitable<boost::json::value> thrower(job_context&)
{
    throw std::runtime_error("the report's source is gone");
    co_return nullptr;
}

// A job that swallows its cancellation and returns anyway.
asio::awaitable<boost::json::value> stubborn(job_context&)
{
    asio::steady_timer t{co_await asio::this_coro::executor, 10s};
    auto [ec] = co_await t.async_wait(nothrow_awaitable);
    co_return boost::json::value{ec ? "interrupted" : "slept"};
}

job_state state_of(const job_group& g, std::uint64_t id)
{
    auto j = g.find(id);
    REQUIRE(j);
    return j->state;
}

asio::awaitable<void> shut(job_group& g, std::chrono::milliseconds grace)
{
    co_await g.shutdown(grace);
}

} // namespace

TEST_CASE("jobs: a job outlives its starter and ends done with its result, progress 1 and its times", "[jobs]")
{
    asio::io_context ioc;
    job_group g{ioc.get_executor()};
    std::uint64_t id = 0;
    {
        auto started = g.start(steps_of(5ms, 4));
        REQUIRE(started.has_value());
        id = started->id;
        CHECK(started->state == job_state::running);
        CHECK(started->started_at);
    } // the starter is gone; the job is not
    CHECK(id == 1);
    REQUIRE(run_until(ioc, [&] { return g.find(id)->finished(); }));
    auto j = *g.find(id);
    CHECK(j.state == job_state::done);
    CHECK(j.progress == 1);
    CHECK(j.result.as_object().at("steps").as_int64() == 4);
    CHECK(j.error.empty());
    REQUIRE(j.finished_at);
    CHECK(*j.finished_at >= *j.started_at);
    CHECK(*j.started_at >= j.created_at);
    CHECK(g.running() == 0);
}

TEST_CASE("jobs: past max_running the rest queue and start in order as slots free; past max_queued start refuses",
          "[jobs]")
{
    asio::io_context ioc;
    job_group g{ioc.get_executor(), {.max_running = 2, .max_queued = 2}};
    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 4; ++i)
    {
        auto r = g.start(steps_of(30ms, 1));
        REQUIRE(r.has_value());
        ids.push_back(r->id);
    }
    CHECK(g.running() == 2);
    CHECK(g.queued() == 2);
    CHECK(state_of(g, ids[2]) == job_state::queued);
    auto refused = g.start(steps_of(1ms, 1));
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error() == boost::system::errc::resource_unavailable_try_again);

    REQUIRE(run_until(ioc, [&] { return g.queued() == 0; }));
    CHECK(state_of(g, ids[2]) == job_state::running);
    REQUIRE(run_until(ioc, [&] { return g.running() == 0; }));
    for (auto id : ids)
        CHECK(state_of(g, id) == job_state::done);
    // The queued ones started after the first ones finished.
    CHECK(*g.find(ids[2])->started_at >= *g.find(ids[0])->finished_at);
}

TEST_CASE("jobs: what a job throws fails it, recorded in error and logged", "[jobs]")
{
    asio::io_context ioc;
    job_group g{ioc.get_executor(), {}, std::make_shared<logger>(log_level::off)};
    auto r = g.start([](job_context& c) { return thrower(c); });
    REQUIRE(r.has_value());
    REQUIRE(run_until(ioc, [&] { return g.find(r->id)->finished(); }));
    auto j = *g.find(r->id);
    CHECK(j.state == job_state::failed);
    CHECK(j.error == "the report's source is gone");
    CHECK(j.result.is_null());
}

TEST_CASE("jobs: cancel ends a queued job at once, a running one as cancelled, and leaves a finished one", "[jobs]")
{
    asio::io_context ioc;
    job_group g{ioc.get_executor(), {.max_running = 1}};
    auto running = g.start(steps_of(20ms, 100));
    auto queued = g.start(steps_of(1ms, 1));
    REQUIRE(running.has_value());
    REQUIRE(queued.has_value());
    CHECK(g.cancel(queued->id) == cancel_outcome::cancelled);
    CHECK(state_of(g, queued->id) == job_state::cancelled);
    CHECK(g.queued() == 0);

    REQUIRE(run_until(ioc, [&] { return g.find(running->id)->progress > 0; }));
    CHECK(g.cancel(running->id) == cancel_outcome::cancelling);
    REQUIRE(run_until(ioc, [&] { return g.find(running->id)->finished(); }, 1s));
    auto j = *g.find(running->id);
    CHECK(j.state == job_state::cancelled);
    CHECK(j.error == "cancelled by request");
    CHECK(j.progress < 1);
    CHECK(g.cancel(running->id) == cancel_outcome::finished);
    CHECK(g.cancel(999) == cancel_outcome::not_found);

    // A job that swallows the cancellation still ends cancelled: what it returned is discarded.
    auto s = g.start([](job_context& c) { return stubborn(c); });
    REQUIRE(s.has_value());
    run_until(ioc, [] { return false; }, 20ms);
    CHECK(g.cancel(s->id) == cancel_outcome::cancelling);
    REQUIRE(run_until(ioc, [&] { return g.find(s->id)->finished(); }, 1s));
    CHECK(g.find(s->id)->state == job_state::cancelled);
    CHECK(g.find(s->id)->result.is_null());
}

TEST_CASE("jobs: a queued job cancelled as it starts ends cancelled without running, and nothing escapes the loop",
          "[jobs]")
{
    // The observer hears the queued job become running before its coroutine is
    // spawned, and cancels it there: the window in which a DELETE can land when a
    // slot frees. That cancellation used to reach the coroutine before its first
    // resumption, and Asio 1.26's co_spawn then threw out of io_context::run
    // ("co_await: Operation canceled"), which ends the server.
    asio::io_context ioc;
    job_group g{ioc.get_executor(), {.max_running = 1}};
    auto first = g.start(steps_of(5ms, 1));
    bool ran = false;
    auto second = g.start([&ran](job_context& c) {
        ran = true;
        return stepper(c, 5ms, 1);
    });
    REQUIRE(first.has_value());
    REQUIRE(second.has_value());
    REQUIRE(second->state == job_state::queued);
    std::optional<cancel_outcome> outcome;
    g.on_change([&](const job_info& j) {
        if (j.id == second->id && j.state == job_state::running && !outcome)
            outcome = g.cancel(j.id);
    });
    REQUIRE(run_until(ioc, [&] { return g.find(second->id)->finished(); }));
    REQUIRE(outcome);
    CHECK(*outcome == cancel_outcome::cancelling);
    auto j = *g.find(second->id);
    CHECK(j.state == job_state::cancelled);
    CHECK(j.error == "cancelled by request");
    CHECK_FALSE(ran);
    CHECK(g.running() == 0);
}

TEST_CASE("jobs: observers hear every state change, and progress at most once per percent", "[jobs]")
{
    asio::io_context ioc;
    job_group g{ioc.get_executor()};
    std::vector<job_info> seen;
    g.on_change([&](const job_info& j) { seen.push_back(j); }); // one thread runs ioc
    auto r = g.start(steps_of(0ms, 1000));
    REQUIRE(r.has_value());
    REQUIRE(run_until(ioc, [&] { return g.find(r->id)->finished(); }));
    REQUIRE(seen.size() >= 2);
    CHECK(seen.front().state == job_state::running);
    CHECK(seen.back().state == job_state::done);
    CHECK(seen.back().progress == 1);
    CHECK(seen.size() < 120); // 1000 steps, not 1000 events
    for (std::size_t i = 1; i < seen.size(); ++i)
        CHECK(seen[i].progress >= seen[i - 1].progress);
}

TEST_CASE("jobs: recent lists the newest first, and keep bounds the finished ones remembered", "[jobs]")
{
    asio::io_context ioc;
    job_group g{ioc.get_executor(), {.keep = 3}};
    for (int i = 0; i < 5; ++i)
        REQUIRE(g.start(steps_of(0ms, 1)).has_value());
    REQUIRE(run_until(ioc, [&] { return g.running() == 0; }));
    auto list = g.recent(10);
    REQUIRE(list.size() == 3);
    CHECK(list[0].id == 5);
    CHECK(list[2].id == 3);
    CHECK_FALSE(g.find(1));
    CHECK(g.recent(1).size() == 1);
}

TEST_CASE("jobs: shutdown lets a short job finish, cancels a long one after the grace, and refuses new ones",
          "[jobs]")
{
    asio::io_context ioc;
    job_group g{ioc.get_executor(), {.max_running = 2}};
    auto quick = g.start(steps_of(20ms, 2));
    auto slow = g.start(steps_of(50ms, 200));
    auto waiting = g.start(steps_of(1ms, 1));
    REQUIRE(quick.has_value());
    REQUIRE(slow.has_value());
    REQUIRE(waiting.has_value());
    auto t0 = std::chrono::steady_clock::now();
    test::run_sync(ioc, shut(g, 300ms), 5s);
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took >= 300ms);
    CHECK(took < 2s);
    CHECK(state_of(g, quick->id) == job_state::done);
    CHECK(state_of(g, slow->id) == job_state::cancelled);
    CHECK(g.find(slow->id)->error == "cancelled at shutdown: still running after the grace period");
    CHECK(state_of(g, waiting->id) == job_state::cancelled);
    CHECK(g.running() == 0);
    auto late = g.start(steps_of(1ms, 1));
    REQUIRE_FALSE(late.has_value());
    CHECK(late.error() == error::shutting_down);
}

TEST_CASE("jobs: shutdown ends as soon as the last job does, well before the grace", "[jobs]")
{
    asio::io_context ioc;
    job_group g{ioc.get_executor()};
    REQUIRE(g.start(steps_of(20ms, 1)).has_value());
    auto t0 = std::chrono::steady_clock::now();
    test::run_sync(ioc, shut(g, 5s), 5s);
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    CHECK(g.recent(1)[0].state == job_state::done);
}

TEST_CASE("jobs: to_json has every field, times in RFC 3339 UTC and null where unset", "[jobs]")
{
    job_info j;
    j.id = 7;
    j.created_at = job_info::time_point{std::chrono::milliseconds{1'700'000'000'123}};
    auto o = to_json(j);
    CHECK(o.at("id").as_uint64() == 7);
    CHECK(o.at("state").as_string() == "queued");
    CHECK(o.at("created_at").as_string() == "2023-11-14T22:13:20.123Z");
    CHECK(o.at("started_at").is_null());
    CHECK(o.at("finished_at").is_null());
    CHECK(o.at("result").is_null());
    CHECK(o.at("error").is_null());
    CHECK(o.at("progress").as_double() == 0);
    j.error = "cancelled by request";
    CHECK(to_json(j).at("error").as_string() == "cancelled by request");
}
