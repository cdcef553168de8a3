#include <coroute/http.hpp>
#include <coroute/problem.hpp>

#include <boost/json/serialize.hpp>

#include <cmath>

#include <charconv>
#include <cstdint>
#include <cstring>

namespace coroute {

namespace {

// A JSON string, escaped exactly as Boost.JSON's serializer escapes it (RFC 8259 §7:
// the quote, the backslash and control characters; \b \t \n \f \r by name, the rest
// as \u00xx), written straight into `out` rather than through a temporary string.
// True when one of the 8 bytes of `w` is below 0x20, a quote or a backslash (the
// classic SWAR tests for a zero byte and for a byte below n).
constexpr bool needs_escape(std::uint64_t w)
{
    constexpr std::uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    auto has_zero = [](std::uint64_t x) { return (x - ones) & ~x & highs; };
    auto below_0x20 = (w - ones * 0x20) & ~w & highs;
    return (below_0x20 | has_zero(w ^ (ones * '"')) | has_zero(w ^ (ones * '\\'))) != 0;
}

void write_string(std::string_view s, std::string& out)
{
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    std::size_t plain = 0; // start of the run not yet copied
    for (std::size_t i = 0; i < s.size(); ++i)
    {
        // Skip 8 plain bytes at a time: most text needs no escaping at all.
        while (i + 8 <= s.size())
        {
            std::uint64_t w;
            std::memcpy(&w, s.data() + i, 8);
            if (needs_escape(w))
                break;
            i += 8;
        }
        if (i >= s.size())
            break;
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        out.append(s.data() + plain, i - plain);
        plain = i + 1;
        switch (c)
        {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\t': out += "\\t"; break;
        case '\n': out += "\\n"; break;
        case '\f': out += "\\f"; break;
        case '\r': out += "\\r"; break;
        default:
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        }
    }
    out.append(s.data() + plain, s.size() - plain);
    out += '"';
}

template <class Int>
void write_integer(Int v, std::string& out)
{
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, end);
}

// Boost.JSON 1.81 prints doubles in exponent form (50.2 as 5.02E1); people read
// these bodies, so doubles are written in the shortest plain form that round-trips.
void write_json(const boost::json::value& v, std::string& out)
{
    switch (v.kind())
    {
    case boost::json::kind::double_:
    {
        char buf[64];
        auto d = v.get_double();
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
        if (ec != std::errc{} || !std::isfinite(d))
            out += "null";
        else
            out.append(buf, end);
        return;
    }
    case boost::json::kind::object:
    {
        out += '{';
        bool first = true;
        for (auto& kv : v.get_object())
        {
            if (!first)
                out += ',';
            first = false;
            write_string({kv.key().data(), kv.key().size()}, out);
            out += ':';
            write_json(kv.value(), out);
        }
        out += '}';
        return;
    }
    case boost::json::kind::array:
    {
        out += '[';
        bool first = true;
        for (auto& e : v.get_array())
        {
            if (!first)
                out += ',';
            first = false;
            write_json(e, out);
        }
        out += ']';
        return;
    }
    case boost::json::kind::string:
    {
        auto& str = v.get_string();
        write_string({str.data(), str.size()}, out);
        return;
    }
    case boost::json::kind::int64:
        write_integer(v.get_int64(), out);
        return;
    case boost::json::kind::uint64:
        write_integer(v.get_uint64(), out);
        return;
    case boost::json::kind::bool_:
        out += v.get_bool() ? "true" : "false";
        return;
    case boost::json::kind::null:
        out += "null";
        return;
    }
    out += boost::json::serialize(v);
}

} // namespace

std::string to_json_text(const boost::json::value& v)
{
    // Written into a buffer each thread keeps, then copied once at its final size: one
    // allocation per document instead of one per doubling.
    thread_local std::string scratch;
    scratch.clear();
    write_json(v, scratch);
    std::string out{scratch};
    if (scratch.capacity() > 64 * 1024)
        std::string{}.swap(scratch); // a rare huge document does not stay cached
    return out;
}

void finish_payload(response& res)
{
    auto s = res.result_int();
    if (s < 200 || s == 204 || s == 304)
    {
        res.body().clear();
        res.erase(http::field::content_length);
        res.erase(http::field::transfer_encoding);
        return;
    }
    if (res.chunked())
        return;
    // Most responses already say the right length (make_response set it): leave the
    // field alone then, since replacing it frees and allocates a field.
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, res.body().size());
    auto have = res[http::field::content_length];
    if (std::string_view{have.data(), have.size()} != std::string_view{digits, static_cast<std::size_t>(end - digits)})
        res.content_length(res.body().size());
}

response make_response(http::status status, std::string_view content_type, std::string body)
{
    response res{status, 11};
    res.set(http::field::content_type, content_type);
    res.body() = std::move(body);
    finish_payload(res);
    return res;
}

boost::json::object problem_body(http::status status, std::string_view detail)
{
    boost::json::object body;
    body["type"] = "about:blank";
    auto title = http::obsolete_reason(status);
    body["title"] = boost::json::string_view{title.data(), title.size()};
    body["status"] = static_cast<unsigned>(status);
    body["detail"] = detail;
    return body;
}

response problem(http::status status, std::string_view detail, boost::json::object extra)
{
    auto body = problem_body(status, detail);
    for (auto& kv : extra)
        body[kv.key()] = std::move(kv.value());
    return make_response(status, "application/problem+json", to_json_text(body));
}

response json_response(http::status status, const boost::json::value& value)
{
    return make_response(status, "application/json", to_json_text(value));
}

} // namespace coroute

#include "detail.hpp"

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

bool iequals(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
    {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = static_cast<char>(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

} // namespace coroute::detail
