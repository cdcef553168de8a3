// Request targets: one parse, one normalization, for routing and hooks alike.
#include "target.hpp"

#include <boost/url/parse.hpp>

namespace coroute::detail {

namespace {

// Characters of an origin-form target that need no decoding and no validation beyond
// this check (RFC 3986 pchar without '%', plus '/' and '?').
constexpr bool plain_target_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    switch (c)
    {
    case '-': case '.': case '_': case '~': case '!': case '$': case '&': case '\'': case '(': case ')':
    case '*': case '+': case ',': case ';': case '=': case ':': case '@': case '/': case '?':
        return true;
    default:
        return false;
    }
}

// A target the fast path may split by hand: plain characters, and a path with no
// "//" and no segment starting with '.', so it is already normalized.
bool is_plain(std::string_view t)
{
    if (t.empty() || t.front() != '/')
        return false;
    auto qpos = t.find('?');
    auto path = t.substr(0, qpos);
    for (std::size_t i = 0; i < path.size(); ++i)
    {
        unsigned char c = path[i];
        if (!plain_target_char(c) || c == '?')
            return false;
        if (c == '/' && i + 1 < path.size() && (path[i + 1] == '/' || path[i + 1] == '.'))
            return false;
    }
    for (unsigned char c : t.substr(path.size()))
        if (!plain_target_char(c))
            return false;
    return true;
}

// A query key or value as Boost.URL's params() decodes it: '+' is a space.
std::string plus_as_space(std::string_view s)
{
    std::string out{s};
    for (auto& c : out)
        if (c == '+')
            c = ' ';
    return out;
}

void split_query(std::string_view query, request::param_list& out)
{
    for (;;)
    {
        auto amp = query.find('&');
        auto param = query.substr(0, amp);
        auto eq = param.find('=');
        out.emplace_back(plus_as_space(param.substr(0, eq)),
                         eq == std::string_view::npos ? std::string{} : plus_as_space(param.substr(eq + 1)));
        if (amp == std::string_view::npos)
            break;
        query.remove_prefix(amp + 1);
    }
}

} // namespace

bool parse_target(std::string_view target, std::string& path, request::param_list& query)
{
    query.clear();
    if (is_plain(target))
    {
        auto qpos = target.find('?');
        path.assign(target.substr(0, qpos));
        if (qpos != std::string_view::npos)
            split_query(target.substr(qpos + 1), query);
        return true;
    }

    // Origin-form, or absolute-form, which a server must accept too (RFC 9112 §3.2.2).
    auto parsed = !target.empty() && target.front() == '/'
                      ? boost::urls::parse_origin_form(boost::core::string_view{target.data(), target.size()})
                      : boost::urls::parse_absolute_uri(boost::core::string_view{target.data(), target.size()});
    if (!parsed)
        return false;
    auto& u = *parsed;
    if (!u.is_path_absolute() && !u.encoded_path().empty())
        return false;
    // Decoded segments, normalized: "." dropped, ".." pops, empty ones (from "//") merged.
    // A trailing slash stays: "/a/" and "/a" are different resources.
    std::vector<std::string> segs;
    bool trailing = false;
    auto encoded = u.encoded_segments();
    std::size_t n = 0, count = encoded.size();
    for (auto enc : encoded)
    {
        ++n;
        std::string seg = enc.decode();
        if (seg.find('/') != std::string::npos || seg.find('\0') != std::string::npos)
            return false;
        trailing = n == count && (seg.empty() || seg == "." || seg == "..");
        if (seg.empty() || seg == ".")
            continue;
        if (seg == "..")
        {
            if (segs.empty())
                return false;
            segs.pop_back();
            continue;
        }
        segs.push_back(std::move(seg));
    }
    path.clear();
    for (auto& s : segs)
    {
        path += '/';
        path += s;
    }
    if (path.empty() || trailing)
        path += '/';
    for (auto p : u.params())
        query.emplace_back(std::string(p.key), p.has_value ? std::string(p.value) : std::string{});
    return true;
}

} // namespace coroute::detail
