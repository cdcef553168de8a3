#include "app/offload_routes.hpp"

#include "app/db_routes.hpp"

#include <coroute/problem.hpp>

#include <boost/json/object.hpp>
#include <boost/system/system_error.hpp>

#include <cmath>
#include <thread>

namespace coroute::app {

namespace {

using clock_type = std::chrono::steady_clock;
constexpr long long max_work_ms = 10'000;
constexpr long long max_loop_ms = 2'000; // how long /api/cpu?offload=false may hold a loop thread

bool is_prime(std::uint64_t n)
{
    if (n < 4)
        return n >= 2;
    if (n % 2 == 0)
        return false;
    for (std::uint64_t d = 3; d * d <= n; d += 2)
        if (n % d == 0)
            return false;
    return true;
}

// The answer when the pool refused or dropped the call (full, stopping, cancelled).
response offload_failure(const boost::system::error_code& ec)
{
    if (ec == boost::system::errc::resource_unavailable_try_again)
        return problem_for(ec, "the offload pool's queue is full (--offload-queue); try again later");
    return problem_for(ec, "the offloaded call did not run: " + ec.message());
}

boost::system::result<bool, response> offload_param(const request& req)
{
    auto v = req.query("offload");
    if (!v || *v == "true" || *v == "1")
        return true;
    if (*v == "false" || *v == "0")
        return false;
    return problem(http::status::bad_request,
                   "query parameter offload must be true or false, not '" + std::string{*v} + "'");
}

asio::awaitable<response> cpu(std::shared_ptr<offload_pool> pool, request& req)
{
    auto offload = offload_param(req);
    if (!offload)
        co_return offload.error();
    auto ms = req.query_param<long long>("ms", 0, *offload ? max_work_ms : max_loop_ms, 100);
    if (!ms)
        co_return ms.error();
    std::chrono::milliseconds budget{*ms};
    auto start = clock_type::now();
    prime_count counted;
    if (*offload)
    {
        try
        {
            counted = co_await pool->run([budget] { return count_primes({}, budget); });
        }
        catch (const boost::system::system_error& e)
        {
            co_return offload_failure(e.code());
        }
    }
    else
        counted = count_primes({}, budget); // on purpose: this is what the demo shows not to do
    co_return json_response(http::status::ok, {{"ms", *ms},
                                               {"offload", *offload},
                                               {"elapsed_ms", ms_since(start)},
                                               {"primes", counted.primes},
                                               {"tested_up_to", counted.next - 1}});
}

asio::awaitable<response> blocking(std::shared_ptr<offload_pool> pool, request& req)
{
    auto ms = req.query_param<long long>("ms", 0, max_work_ms, 100);
    if (!ms)
        co_return ms.error();
    std::chrono::milliseconds d{*ms};
    auto start = clock_type::now();
    clock_type::time_point began;
    try
    {
        began = co_await pool->run([d] {
            auto at = clock_type::now();
            std::this_thread::sleep_for(d); // a blocking call, as a worker-per-request server makes one
            return at;
        });
    }
    catch (const boost::system::system_error& e)
    {
        co_return offload_failure(e.code());
    }
    auto queued = std::chrono::duration_cast<std::chrono::microseconds>(began - start).count();
    co_return json_response(http::status::ok, {{"ms", *ms},
                                               {"elapsed_ms", ms_since(start)},
                                               {"queued_ms", std::round(static_cast<double>(queued) / 100.0) / 10.0},
                                               {"offload_threads", pool->threads()}});
}

boost::json::object stats_json(const stats_sources& src, const offload_pool& pool, const job_group& jobs)
{
    auto s = src.server ? src.server() : server_stats{};
    return {{"threads", src.threads},
            {"offload_threads", pool.threads()},
            {"offload_running", pool.running()},
            {"offload_queued", pool.queued()},
            {"in_flight", s.in_flight},
            {"peak_in_flight", s.peak_in_flight},
            {"connections_open", s.connections_open},
            {"requests", s.requests},
            {"jobs_running", jobs.running()},
            {"jobs_queued", jobs.queued()}};
}

asio::awaitable<response> stats(std::shared_ptr<const stats_sources> src, std::shared_ptr<offload_pool> pool,
                                std::shared_ptr<job_group> jobs, bool reset_peak)
{
    if (reset_peak && src->reset_peak)
        src->reset_peak();
    co_return json_response(http::status::ok, stats_json(*src, *pool, *jobs));
}

} // namespace

prime_count count_primes(prime_count from, std::chrono::milliseconds budget)
{
    auto until = clock_type::now() + budget;
    do
    {
        // The clock is read once per 256 numbers: cheap next to the tests themselves.
        for (int i = 0; i < 256; ++i, ++from.next)
            if (is_prime(from.next))
                ++from.primes;
    } while (clock_type::now() < until);
    return from;
}

void add_offload_routes(router& r, std::shared_ptr<offload_pool> pool)
{
    r.get("/api/cpu", [pool](request& req) { return cpu(pool, req); });
    r.get("/api/blocking", [pool](request& req) { return blocking(pool, req); });
}

void add_stats_routes(router& r, stats_sources sources, std::shared_ptr<offload_pool> pool,
                      std::shared_ptr<job_group> jobs)
{
    auto src = std::make_shared<const stats_sources>(std::move(sources));
    r.get("/api/stats", [src, pool, jobs](request&) { return stats(src, pool, jobs, false); });
    r.post("/api/stats/peak", [src, pool, jobs](request&) { return stats(src, pool, jobs, true); });
}

} // namespace coroute::app
