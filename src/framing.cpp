#include "framing.hpp"

#include "detail.hpp"

#include <boost/beast/core/string.hpp>

#include <vector>

namespace coroute::detail {

namespace {

// RFC 9110 §5.6.2 tchar.
bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    switch (c)
    {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

rejection bad(std::string detail)
{
    return {http::status::bad_request, std::move(detail)};
}

// The request line's target, or empty when the line has no second space yet.
std::optional<std::string_view> target_of(std::string_view line)
{
    auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos)
        return std::nullopt;
    auto rest = line.substr(sp1 + 1);
    auto sp2 = rest.find(' ');
    if (sp2 == std::string_view::npos)
        return std::nullopt;
    return rest.substr(0, sp2);
}

// RFC 9112 §3: method SP request-target SP HTTP-version, checked as soon as the line is
// whole so that a line that cannot be valid is answered at once, not at the header
// timeout. The target's own grammar is the router's; here it is any run of visible
// characters.
std::optional<rejection> check_request_line(std::string_view line)
{
    if (!line.empty() && line.back() == '\r')
        line.remove_suffix(1);
    auto sp1 = line.find(' ');
    if (sp1 == 0 || sp1 == std::string_view::npos)
        return bad("malformed request line");
    for (unsigned char c : line.substr(0, sp1))
        if (!is_tchar(c))
            return bad("malformed request method");
    auto rest = line.substr(sp1 + 1);
    auto sp2 = rest.find(' ');
    if (sp2 == 0 || sp2 == std::string_view::npos)
        return bad("malformed request line");
    for (unsigned char c : rest.substr(0, sp2))
        if (c <= 0x20 || c == 0x7f)
            return bad("malformed request target");
    auto version = rest.substr(sp2 + 1);
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
        version[5] > '9' || version[7] < '0' || version[7] > '9')
        return bad("malformed HTTP version in the request line");
    // RFC 9110 §2.5: another major version is refused with 505; a higher minor one of
    // HTTP/1 is read as HTTP/1.1 (parse_head).
    if (version[5] != '1')
        return rejection{http::status::http_version_not_supported,
                         std::string{version} + " is not supported: this server speaks HTTP/1.0 and HTTP/1.1"};
    return std::nullopt;
}

// RFC 9110 §7.2: Host = uri-host [ ":" port ], with uri-host as RFC 3986 §3.2.2 has it
// (an IP-literal in brackets, or a reg-name of unreserved, sub-delims and
// percent-encoded octets, which also covers IPv4) and port = *DIGIT. No userinfo.
bool valid_host(std::string_view v)
{
    auto is_unreserved_or_sub = [](unsigned char c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            return true;
        return std::string_view{"-._~!$&'()*+,;="}.find(static_cast<char>(c)) != std::string_view::npos;
    };
    auto is_hex = [](unsigned char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    };
    std::string_view host = v, port;
    if (!v.empty() && v.front() == '[')
    {
        auto close = v.find(']');
        if (close == std::string_view::npos || close < 3)
            return false;
        for (unsigned char c : v.substr(1, close - 1))
            if (!is_hex(c) && c != ':' && c != '.' && !(c == 'v' || c == 'V'))
                return false;
        auto after = v.substr(close + 1);
        if (!after.empty() && after.front() != ':')
            return false;
        port = after.empty() ? after : after.substr(1);
        host = {};
    }
    else if (auto colon = v.find(':'); colon != std::string_view::npos)
    {
        host = v.substr(0, colon);
        port = v.substr(colon + 1);
    }
    for (std::size_t i = 0; i < host.size(); ++i)
    {
        unsigned char c = host[i];
        if (c == '%')
        {
            if (i + 2 >= host.size() || !is_hex(host[i + 1]) || !is_hex(host[i + 2]))
                return false;
            i += 2;
        }
        else if (!is_unreserved_or_sub(c))
            return false;
    }
    for (unsigned char c : port)
        if (c < '0' || c > '9')
            return false;
    return true;
}

// Splits a comma-separated field value list (RFC 9110 §5.6.1), dropping empty elements.
void split_list(std::string_view v, std::vector<std::string_view>& out)
{
    while (!v.empty())
    {
        auto comma = v.find(',');
        auto item = trim(v.substr(0, comma));
        if (!item.empty())
            out.push_back(item);
        if (comma == std::string_view::npos)
            break;
        v.remove_prefix(comma + 1);
    }
}

} // namespace

namespace {

rejection target_too_long(const header_limits& limits)
{
    return {http::status::uri_too_long, "request target over " + std::to_string(limits.target_limit) + " bytes"};
}

rejection fields_too_large(const header_limits& limits)
{
    return {http::status::request_header_fields_too_large,
            "header fields over " + std::to_string(limits.header_limit) + " bytes"};
}

// The request line, whole or not yet: its target has its own limit (414), apart from
// the fields (431), and a whole line is checked at once. 32 bytes cover any method,
// the two spaces and "HTTP/1.1\r\n".
std::optional<rejection> scan_request_line(std::string_view data, std::size_t line_end, const header_limits& limits)
{
    std::size_t line_limit = limits.target_limit + 32;
    if (line_end == std::string_view::npos)
    {
        // Before the first space, the bytes are the method: only the line's limit applies.
        auto sp = data.find(' ');
        auto partial_target = sp == std::string_view::npos ? std::string_view{} : data.substr(sp + 1);
        if (partial_target.substr(0, partial_target.find(' ')).size() > limits.target_limit)
            return target_too_long(limits);
        if (data.size() > line_limit)
            return bad("request line too long");
        return std::nullopt;
    }
    auto line = data.substr(0, line_end);
    if (auto target = target_of(line); target && target->size() > limits.target_limit)
        return target_too_long(limits);
    if (line.size() > line_limit)
        return bad("request line too long");
    return check_request_line(line);
}

// Where the empty line that ends the fields ends, from `i` on: "\n\r\n", or "\n\n"
// from a bare-LF client (which Beast then refuses with a clear 400 rather than a
// timeout). 0 while it has not arrived; `i` is left where the search can resume.
std::size_t find_header_end(std::string_view buf, std::size_t& i)
{
    for (; i < buf.size(); ++i)
    {
        if (buf[i] != '\n')
            continue;
        if (i + 1 >= buf.size())
            break;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (buf[i + 1] == '\r')
        {
            if (i + 2 >= buf.size())
                break;
            if (buf[i + 2] == '\n')
                return i + 3;
        }
    }
    return 0;
}

} // namespace

header_scan scan_header(std::string_view buf, const header_limits& limits, std::size_t& resume)
{
    header_scan r;
    auto reject = [&r](rejection e) {
        r.state = header_scan::rejected;
        r.error = std::move(e);
        return r;
    };
    while (r.skip < buf.size() && (buf[r.skip] == '\r' || buf[r.skip] == '\n'))
        ++r.skip;
    // Leading empty lines are allowed, but not without bound.
    if (r.skip > 64)
        return reject(bad("too many empty lines before the request line"));
    auto data = buf.substr(r.skip);
    if (resume < r.skip)
        resume = r.skip;

    auto line_end = data.find('\n');
    if (auto e = scan_request_line(data, line_end, limits))
        return reject(std::move(*e));
    if (line_end == std::string_view::npos)
        return r;

    std::size_t fields_start = r.skip + line_end + 1;
    std::size_t i = std::max(resume, r.skip + line_end);
    r.end = find_header_end(buf, i);
    if (r.end)
    {
        if (r.end - fields_start > limits.header_limit + 2)
            return reject(fields_too_large(limits));
        r.state = header_scan::complete;
        return r;
    }
    resume = i;
    if (buf.size() - fields_start > limits.header_limit + 2)
        return reject(fields_too_large(limits));
    return r;
}

std::optional<rejection> check_header_bytes(std::string_view header, const header_limits& limits)
{
    constexpr std::size_t max_field_bytes = 65'533;
    auto nl = header.find('\n');
    if (nl == std::string_view::npos)
        return bad("malformed request line");
    header.remove_prefix(nl + 1);
    std::size_t count = 0;
    while (!header.empty())
    {
        nl = header.find('\n');
        auto line = header.substr(0, nl);
        header.remove_prefix(nl == std::string_view::npos ? header.size() : nl + 1);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (line.empty())
            break; // the end of the header
        if (line.front() == ' ' || line.front() == '\t')
            return bad("obsolete line folding in a header field (RFC 9112 §5.2)");
        auto colon = line.find(':');
        if (colon == std::string_view::npos)
            return bad("header line without a colon");
        auto name = line.substr(0, colon);
        if (name.empty())
            return bad("empty header field name");
        for (unsigned char c : name)
        {
            if (c == ' ' || c == '\t')
                return bad("whitespace between a header field name and its colon (RFC 9112 §5.1)");
            if (!is_tchar(c))
                return bad("invalid character in header field name");
        }
        for (unsigned char c : line.substr(colon + 1))
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return bad("control character in header field " + std::string{name});
        if (++count > limits.max_fields)
            return rejection{http::status::request_header_fields_too_large,
                             "more than " + std::to_string(limits.max_fields) + " header fields"};
        // Beast stores a field's name and value lengths in 16 bits (and throws past them),
        // whatever --header-limit-bytes allows.
        if (line.size() - colon - 1 > max_field_bytes || name.size() > max_field_bytes)
            return rejection{http::status::request_header_fields_too_large,
                             "header field " + std::string{name.substr(0, 64)} + " is longer than " +
                                 std::to_string(max_field_bytes) + " bytes"};
    }
    return std::nullopt;
}

std::optional<rejection> check_framing(const http::request_header<>& h)
{
    std::size_t hosts = 0;
    std::vector<std::string_view> codings, lengths;
    bool has_te = false, has_cl = false;
    for (auto& f : h)
    {
        std::string_view value{f.value().data(), f.value().size()};
        switch (f.name())
        {
        case http::field::host:
            ++hosts;
            if (!valid_host(trim(value)))
                return bad("the Host header is not a valid host[:port]");
            break;
        case http::field::transfer_encoding:
            has_te = true;
            split_list(value, codings);
            break;
        case http::field::content_length:
            has_cl = true;
            split_list(value, lengths);
            if (trim(value).empty())
                lengths.push_back({});
            break;
        default:
            break;
        }
    }
    // RFC 9112 §3.2: exactly one Host on HTTP/1.1, at most one on HTTP/1.0.
    if (h.version() >= 11 && hosts == 0)
        return bad("missing Host header");
    if (hosts > 1)
        return bad("more than one Host header");

    // RFC 9112 §6.1 and §6.3: the rules that keep a body from being read two ways.
    if (has_te)
    {
        if (h.version() < 11)
            return bad("Transfer-Encoding in an HTTP/1.0 request");
        if (has_cl)
            return bad("both Transfer-Encoding and Content-Length");
        if (codings.empty() || !beast::iequals(codings.back(), "chunked"))
            return bad("Transfer-Encoding must end with chunked");
        for (std::size_t i = 0; i + 1 < codings.size(); ++i)
        {
            if (beast::iequals(codings[i], "chunked"))
                return bad("chunked applied more than once");
        }
        if (codings.size() > 1)
            return rejection{http::status::not_implemented,
                             "transfer coding " + std::string{codings.front()} + " is not supported"};
    }
    if (has_cl)
    {
        if (lengths.empty())
            return bad("empty Content-Length");
        for (auto v : lengths)
        {
            if (v.empty() || v.size() > 19)
                return bad("invalid Content-Length");
            for (char c : v)
                if (c < '0' || c > '9')
                    return bad("invalid Content-Length");
            if (v != lengths.front())
                return bad("conflicting Content-Length values");
        }
    }
    return std::nullopt;
}

} // namespace coroute::detail
