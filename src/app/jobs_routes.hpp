#pragma once
// The background jobs of the demo: POST/GET /api/jobs, GET/DELETE /api/jobs/{id}.

#include "app/database.hpp"

#include <coroute/events.hpp>
#include <coroute/jobs.hpp>
#include <coroute/offload.hpp>
#include <coroute/router.hpp>

#include <memory>
#include <optional>

namespace coroute::app {

/// What a report job is asked to do.
struct report_spec
{
    long long queries = 20;  ///< simulated queries, 1..1000
    long long delay_ms = 100; ///< each one's latency, 0..10000
    long long parallel = 4;  ///< at most this many at a time, 1..100
    long long cpu_ms = 0;    ///< then this much CPU work on the offload pool, 0..10000
};

/// The body of POST /api/jobs as a spec (every field optional; an empty body is
/// `{}`), or the problem to answer: 415, 400 malformed JSON, 422 naming each bad field.
boost::system::result<report_spec, response> parse_report_spec(const request& req);

/// The report job: `spec.queries` queries on `db`, `spec.parallel` at a time, then
/// `spec.cpu_ms` of prime counting on `pool` in slices (so that cancelling it takes
/// effect within one slice). Its result: rows read, primes found and the times taken.
asio::awaitable<boost::json::value> run_report(job_context& ctx, std::shared_ptr<database> db,
                                               std::shared_ptr<offload_pool> pool, report_spec spec);

/// Adds the /api/jobs routes. When `events` is given, every change of a job is
/// published on it as an event `job` whose data is the job's JSON.
void add_jobs_routes(router& r, std::shared_ptr<job_group> jobs, std::shared_ptr<database> db,
                     std::shared_ptr<offload_pool> pool);

} // namespace coroute::app
