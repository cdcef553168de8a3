#pragma once
// The server binary's options: every flag, its environment variable, its default.

#include "app/app.hpp"

#include <coroute/log.hpp>
#include <coroute/server.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace coroute::cli {

/// Everything `coroute-server` can be told on its command line or in its environment.
struct config
{
    std::string host = "127.0.0.1";
    unsigned short port = 8080;
    unsigned threads = 0; ///< 0: one per core
    log_level level = log_level::info;
    bool access_log = true;
    std::string tls_cert, tls_key;
    std::chrono::milliseconds shutdown_timeout{10'000};
    std::chrono::milliseconds drain_delay{0};
    server_options server;
    app::app_options app; ///< the demo app's backends and site
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

} // namespace coroute::cli
