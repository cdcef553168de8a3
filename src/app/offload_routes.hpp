#pragma once
// Offloaded work on the page: GET /api/cpu, GET /api/blocking, and the server's own
// counters, GET /api/stats.

#include <coroute/jobs.hpp>
#include <coroute/offload.hpp>
#include <coroute/router.hpp>
#include <coroute/server.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

namespace coroute::app {

/// Where a prime count stopped, so that the next slice goes on from there.
struct prime_count
{
    std::uint64_t next = 2;  ///< the next number to test
    std::uint64_t primes = 0;
};

/// Real CPU work for the demo: tests numbers for primality by trial division, from
/// `from.next`, for `budget` of wall-clock time. Runs on the calling thread.
prime_count count_primes(prime_count from, std::chrono::milliseconds budget);

/// Adds `GET /api/cpu?ms=M[&offload=false]` and `GET /api/blocking?ms=M`, both through
/// `pool` (the first on the event loop's thread with offload=false).
void add_offload_routes(router& r, std::shared_ptr<offload_pool> pool);

/// What /api/stats reports besides the pool and the jobs.
struct stats_sources
{
    unsigned threads = 0;                 ///< the event loop's threads
    std::function<server_stats()> server; ///< empty: the server's counters are reported as 0
    std::function<void()> reset_peak;
};

/// Adds `GET /api/stats` and `POST /api/stats/peak` (starts a new peak_in_flight).
void add_stats_routes(router& r, stats_sources sources, std::shared_ptr<offload_pool> pool,
                      std::shared_ptr<job_group> jobs);

} // namespace coroute::app
