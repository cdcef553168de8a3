#pragma once
// The demo app: the routes of the HTTP contract, wired to their backends.

#include "app/config.hpp"

#include <coroute/router.hpp>

#include <memory>
#include <string>
#include <vector>

namespace coroute::app {

/// Owns the demo's backends (simulated database, HTTPS client, built-in upstream)
/// and adds their routes and the static site to a router. Runs on the executor it
/// is given and owns no threads.
class demo_app
{
public:
    /// Throws std::runtime_error when a backend cannot start (e.g. the www directory is missing).
    demo_app(asio::any_io_executor ex, const config& cfg, std::shared_ptr<logger> log);
    ~demo_app();

    /// Adds every demo route and the static-file fallback to `r`.
    void install(router& r);

    /// Lines for stdout after the listening line: which upstream is in use, and so on.
    std::vector<std::string> banner() const;

    /// Stops the backends' own listeners (the built-in upstream) and logs the
    /// outbound client's counters; safe to call twice.
    asio::awaitable<void> stop();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace coroute::app
