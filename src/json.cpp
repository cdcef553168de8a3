// JSON text as the library writes it: Boost.JSON's escaping, plain doubles.
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

} // namespace coroute
