#pragma once
// The server's log: leveled diagnostics on stderr and one access line per request on stdout.

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string_view>

namespace coroute {

/// Severity of a diagnostic line; `off` silences them all.
enum class log_level { debug, info, warn, error, off };

/// Parses "debug", "info", "warn", "error" or "off"; false for anything else.
bool parse_log_level(std::string_view text, log_level& out);

/// What the access log records of one request.
struct access_entry
{
    std::string_view remote;
    std::string_view method;
    std::string_view target;
    unsigned status = 0;
    std::uint64_t bytes = 0;
    std::chrono::microseconds duration{};
    std::string_view request_id;
};

/// A thread-safe sink for diagnostics and the access log. Lines are written whole;
/// the library never logs anywhere but through the logger it is given.
class logger
{
public:
    explicit logger(log_level level = log_level::info, bool access_log = true,
                    std::FILE* access_out = stdout, std::FILE* diag_out = stderr);

    log_level level() const noexcept { return level_; }
    bool enabled(log_level l) const noexcept { return level_ != log_level::off && l >= level_; }
    bool access_enabled() const noexcept { return access_; }

    void debug(std::string_view msg) { write(log_level::debug, msg); }
    void info(std::string_view msg) { write(log_level::info, msg); }
    void warn(std::string_view msg) { write(log_level::warn, msg); }
    void error(std::string_view msg) { write(log_level::error, msg); }
    void write(log_level l, std::string_view msg);

    /// One access-log line: `remote "METHOD target" status bytes duration_ms id=…`.
    void access(const access_entry& e);

private:
    log_level level_;
    bool access_;
    std::FILE* access_out_;
    std::FILE* diag_out_;
    std::mutex mutex_;
};

} // namespace coroute
