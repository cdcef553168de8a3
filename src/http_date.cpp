// HTTP dates (RFC 9110 §5.6.7): IMF-fixdate for Date and Last-Modified; all three
// forms read, for If-Modified-Since.
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

namespace {

// RFC 9110 §5.6.7: names and months are case-sensitive.
int month_of(std::string_view s)
{
    static constexpr std::string_view months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    auto at = s.size() == 3 ? months.find(s) : std::string_view::npos;
    return at == std::string_view::npos || at % 3 != 0 ? -1 : static_cast<int>(at / 3);
}

bool is_day_name(std::string_view s, bool long_form)
{
    static constexpr std::string_view short_names[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static constexpr std::string_view long_names[] = {"Monday", "Tuesday", "Wednesday", "Thursday",
                                                      "Friday", "Saturday", "Sunday"};
    for (std::size_t i = 0; i < 7; ++i)
        if (s == (long_form ? long_names[i] : short_names[i]))
            return true;
    return false;
}

// The value of a run of digits; -1 for anything else.
int digits(std::string_view s)
{
    if (s.empty())
        return -1;
    int v = 0;
    for (char c : s)
    {
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    return v;
}

// A calendar date and an "HH:MM:SS" time-of-day (second 60: a leap second), checked.
std::optional<std::chrono::system_clock::time_point> make_time(int year, int mon, int mday, std::string_view hms)
{
    if (hms.size() != 8 || hms[2] != ':' || hms[5] != ':')
        return std::nullopt;
    int hour = digits(hms.substr(0, 2)), min = digits(hms.substr(3, 2)), sec = digits(hms.substr(6, 2));
    static constexpr int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (year < 0 || mon < 0 || mday < 1 || mday > month_days[mon] || (mon == 1 && mday == 29 && !leap) ||
        hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 60)
        return std::nullopt;
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon;
    tm.tm_mday = mday;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    return std::chrono::system_clock::from_time_t(timegm(&tm));
}

// RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is the most recent past
// year with those digits (and one more than 50 years back, the coming one).
int full_year(int yy)
{
    auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&now, &tm);
    int this_year = tm.tm_year + 1900;
    int year = this_year - this_year % 100 + yy;
    if (year > this_year + 50)
        year -= 100;
    else if (year <= this_year - 50)
        year += 100;
    return year;
}

} // namespace

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text)
{
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
    if (text.size() == 29 && text.substr(3, 2) == ", " && text[7] == ' ' && text[11] == ' ' && text[16] == ' ' &&
        text.substr(25) == " GMT")
    {
        if (!is_day_name(text.substr(0, 3), false))
            return std::nullopt;
        return make_time(digits(text.substr(12, 4)), month_of(text.substr(8, 3)), digits(text.substr(5, 2)),
                         text.substr(17, 8));
    }
    // rfc850-date (obsolete): "Sunday, 06-Nov-94 08:49:37 GMT".
    if (auto comma = text.find(", "); comma != std::string_view::npos && is_day_name(text.substr(0, comma), true))
    {
        auto rest = text.substr(comma + 2);
        if (rest.size() != 22 || rest[2] != '-' || rest[6] != '-' || rest[9] != ' ' || rest.substr(18) != " GMT")
            return std::nullopt;
        int yy = digits(rest.substr(7, 2));
        if (yy < 0)
            return std::nullopt;
        return make_time(full_year(yy), month_of(rest.substr(3, 3)), digits(rest.substr(0, 2)), rest.substr(10, 8));
    }
    // asctime-date (obsolete): "Sun Nov  6 08:49:37 1994", the day as two digits or SP DIGIT.
    if (text.size() == 24 && text[3] == ' ' && text[7] == ' ' && text[10] == ' ' && text[19] == ' ')
    {
        if (!is_day_name(text.substr(0, 3), false))
            return std::nullopt;
        auto day = text[8] == ' ' ? text.substr(9, 1) : text.substr(8, 2);
        return make_time(digits(text.substr(20, 4)), month_of(text.substr(4, 3)), digits(day), text.substr(11, 8));
    }
    return std::nullopt;
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
