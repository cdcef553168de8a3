#pragma once
// The server binary's options: every flag, its environment variable, its default.

#include "app/database.hpp"

#include <coroute/events.hpp>
#include <coroute/log.hpp>
#include <coroute/static_files.hpp>
#include <coroute/server.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace coroute::app {

/// Everything `coroute-server` can be told on its command line or in its environment.
struct config
{
    std::string host = "127.0.0.1";
    unsigned short port = 8080;
    unsigned threads = 0; ///< 0: one per core
    std::string www;      ///< static site root; empty: the source tree's www/
    log_level level = log_level::info;
    bool access_log = true;
    std::string tls_cert, tls_key;
    std::chrono::milliseconds shutdown_timeout{10'000};
    std::chrono::milliseconds drain_delay{0};
    server_options server;
    event_options events;   ///< the /api/events feed
    static_options site;    ///< the static site

    db_options db;
    std::string upstream;      ///< empty: the built-in upstream
    std::string upstream_ca;   ///< PEM CAs to trust instead of the system store
    std::chrono::milliseconds upstream_timeout{5'000};
    std::chrono::milliseconds upstream_latency{100}; ///< the built-in upstream's answer time
    std::size_t upstream_pool = 128;                 ///< idle connections kept per host; 0: none
};

/// What parsing the command line produced.
struct parse_result
{
    config cfg;
    bool help = false;
    bool version = false;
    std::string error; ///< non-empty: the message for stderr, exit status 2
};

/// Reads `COROUTE_*` variables through `getenv`, then the arguments (which win).
parse_result parse_args(int argc, const char* const* argv,
                        const std::function<const char*(const char*)>& getenv);

/// The `--help` text.
std::string help_text();

/// The www directory to serve when none is configured.
std::string default_www();

} // namespace coroute::app
