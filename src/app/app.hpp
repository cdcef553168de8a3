#pragma once
// The demo app: the routes of the HTTP contract, wired to their backends.

#include "app/database.hpp"

#include <coroute/events.hpp>
#include <coroute/jobs.hpp>
#include <coroute/log.hpp>
#include <coroute/offload.hpp>
#include <coroute/router.hpp>
#include <coroute/server.hpp>
#include <coroute/static_files.hpp>
#include <coroute/websocket.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace coroute::app {

/// What the demo app is told: its backends and its site.
struct app_options
{
    std::string www;            ///< static site root; empty: the source tree's www/
    static_options site;        ///< how the site is served
    db_options db;              ///< the database: simulated or PostgreSQL
    event_options events;       ///< the /api/events feed
    websocket_options ws;       ///< the /ws socket's limits
    std::string upstream;       ///< empty: the built-in upstream
    std::string upstream_ca;    ///< PEM CAs to trust instead of the system store
    std::string upstream_cert_out; ///< where to write the built-in upstream's certificate (PEM)
    std::chrono::milliseconds upstream_timeout{5'000};
    std::chrono::milliseconds upstream_latency{100}; ///< the built-in upstream's answer time
    double upstream_fail_rate = 0;                   ///< the built-in upstream's share of faults, 0 to 1
    std::size_t upstream_pool = 128;                 ///< idle connections kept per host; 0: none
    offload_options offload;    ///< the pool of /api/cpu, /api/blocking and the jobs' CPU work
    job_options jobs;           ///< the /api/jobs group's bounds
    unsigned threads = 0;       ///< the event loop's threads, as /api/stats reports them
};

/// The www directory to serve when none is configured: the source tree's.
std::string default_www();

/// Owns the demo's backends (the database, HTTPS client, built-in upstream)
/// and adds their routes and the static site to a router. Runs on the executor it
/// is given and owns no threads.
class demo_app
{
public:
    /// Throws std::runtime_error, whose what() is one line, when a backend cannot
    /// start (the www directory is missing, the certificate cannot be written).
    demo_app(asio::any_io_executor ex, const app_options& cfg, std::shared_ptr<logger> log);
    ~demo_app();

    /// Adds every demo route and the static-file fallback to `r`; /api/stats reads
    /// the counters of `srv` when given (it must outlive the requests).
    void install(router& r, server* srv = nullptr);

    /// Lines for stdout after the listening line: the upstream in use first, then the
    /// site and the database.
    std::vector<std::string> banner() const;

    /// Why the app cannot serve now (its database is unreachable), for /readyz.
    std::function<std::optional<std::string>()> readiness() const;

    /// Shutdown's first part, while the server finishes its requests: refuses new
    /// jobs and gives the running ones `grace` to finish, then cancels them.
    asio::awaitable<void> stop_jobs(std::chrono::milliseconds grace);

    /// Stops the offload pool (queued calls fail, running ones finish) and the
    /// backends' own listeners (the built-in upstream), and logs the outbound
    /// client's counters; safe to call twice.
    asio::awaitable<void> stop();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace coroute::app
