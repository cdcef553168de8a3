#include <coroute/log.hpp>

#include <cstdio>
#include <ctime>
#include <string>

namespace coroute {

namespace {

constexpr std::string_view level_names[] = {"debug", "info", "warn", "error", "off"};

// "2026-11-27T23:06:54.123Z": UTC, millisecond resolution.
std::string timestamp()
{
    auto now = std::chrono::system_clock::now();
    auto secs = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    return buf;
}

} // namespace

bool parse_log_level(std::string_view text, log_level& out)
{
    for (std::size_t i = 0; i < std::size(level_names); ++i)
        if (text == level_names[i])
        {
            out = static_cast<log_level>(i);
            return true;
        }
    return false;
}

logger::logger(log_level level, bool access_log, std::FILE* access_out, std::FILE* diag_out)
    : level_(level), access_(access_log), access_out_(access_out), diag_out_(diag_out)
{
}

void logger::write(log_level l, std::string_view msg)
{
    if (!enabled(l))
        return;
    std::string line = timestamp();
    line += ' ';
    line += level_names[static_cast<int>(l)];
    line += ' ';
    line += msg;
    line += '\n';
    std::lock_guard lock{mutex_};
    std::fwrite(line.data(), 1, line.size(), diag_out_);
    std::fflush(diag_out_);
}

void logger::access(const access_entry& e)
{
    if (!access_)
        return;
    char nums[96];
    std::snprintf(nums, sizeof nums, "\" %u %llu %.3fms id=", e.status, static_cast<unsigned long long>(e.bytes),
                  static_cast<double>(e.duration.count()) / 1000.0);
    std::string line = timestamp();
    line.reserve(line.size() + e.remote.size() + e.method.size() + e.target.size() + 128);
    line += ' ';
    line += e.remote;
    line += " \"";
    line += e.method;
    line += ' ';
    // The target is the client's text: keep the line one line.
    for (char c : e.target)
        line += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '"') ? '?' : c;
    line += nums;
    line += e.request_id;
    line += '\n';
    std::lock_guard lock{mutex_};
    std::fwrite(line.data(), 1, line.size(), access_out_);
    std::fflush(access_out_);
}

} // namespace coroute
