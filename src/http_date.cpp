// IMF-fixdate (RFC 9110 §5.6.7) for Date, Last-Modified and If-Modified-Since.
#include "http_date.hpp"

#include <cstdio>
#include <ctime>

namespace coroute::detail {

std::string format_http_date(std::chrono::system_clock::time_point t)
{
    auto secs = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                  months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text)
{
    static constexpr std::string_view months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    // "Sun, 06 Nov 1994 08:49:37 GMT" is exactly 29 characters.
    if (text.size() != 29 || text.substr(3, 2) != ", " || text.substr(25) != " GMT")
        return std::nullopt;
    auto num = [&](std::size_t pos, std::size_t len) -> int {
        int v = 0;
        for (std::size_t i = pos; i < pos + len; ++i)
        {
            if (text[i] < '0' || text[i] > '9')
                return -1;
            v = v * 10 + (text[i] - '0');
        }
        return v;
    };
    auto mon = months.find(text.substr(8, 3));
    std::tm tm{};
    tm.tm_mday = num(5, 2);
    tm.tm_year = num(12, 4) - 1900;
    tm.tm_hour = num(17, 2);
    tm.tm_min = num(20, 2);
    tm.tm_sec = num(23, 2);
    if (mon == std::string_view::npos || mon % 3 != 0 || tm.tm_mday < 1 || tm.tm_year < 0 || tm.tm_hour < 0 ||
        tm.tm_min < 0 || tm.tm_sec < 0 || text[11] != ' ' || text[16] != ' ' || text[19] != ':' || text[22] != ':')
        return std::nullopt;
    tm.tm_mon = static_cast<int>(mon / 3);
    return std::chrono::system_clock::from_time_t(timegm(&tm));
}

} // namespace coroute::detail

#include <coroute/version.hpp>

namespace coroute::detail {

const std::string& server_header()
{
    static const std::string value = "coroute/" + std::string{version};
    return value;
}

std::string_view date_and_server_fields()
{
    thread_local std::time_t last = 0;
    thread_local std::string cached;
    auto now = std::chrono::system_clock::now();
    auto t = std::chrono::system_clock::to_time_t(now);
    if (t != last)
    {
        cached = "Date: " + format_http_date(now) + "\r\nServer: " + server_header() + "\r\n";
        last = t;
    }
    return cached;
}

} // namespace coroute::detail
