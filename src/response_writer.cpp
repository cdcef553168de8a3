// The response writer's steps that do not wait.
#include "response_writer.hpp"

#include "http_date.hpp"

#include <boost/beast/core/string.hpp>

#include <charconv>
#include <cstring>

#include <unistd.h>

namespace coroute::detail::writing {

namespace {

// Connection follows `keep`; HTTP/1.0 keep-alive must be said out loud (RFC 9112 §9.3).
void set_connection(response& res, const write_context& ctx)
{
    if (res.result() == http::status::switching_protocols)
        return; // "Connection: upgrade", set with the upgrade
    // `keep` holds only when the response itself allows keep-alive (no "close"
    // token): then Beast's keep_alive(true) would change nothing.
    if (!ctx.keep_alive)
        res.keep_alive(false);
    else if (ctx.version < 11)
        res.set(http::field::connection, "keep-alive");
}

} // namespace

void decorate(response& res, const write_context& ctx)
{
    res.version(11);
    set_connection(res, ctx);
    auto fields = date_and_server_fields();
    // "Date: <value>\r\nServer: <value>\r\n"
    auto date_end = fields.find("\r\n");
    res.set(http::field::date, fields.substr(6, date_end - 6));
    auto server_start = date_end + 2 + 8;
    res.set(http::field::server, fields.substr(server_start, fields.size() - 2 - server_start));
    res.set("X-Request-Id", ctx.id);
}

void serialize_head(response& res, const write_context& ctx, std::string& out)
{
    using namespace std::string_view_literals;
    res.version(11);
    set_connection(res, ctx);
    out.clear();
    out.append("HTTP/1.1 "sv);
    char code[8];
    auto [end, cec] = std::to_chars(code, code + sizeof code, res.result_int());
    out.append(code, end);
    out += ' ';
    auto reason = res.reason();
    out.append(reason.data(), reason.size());
    out.append("\r\n"sv);
    out.append(date_and_server_fields());
    out.append("X-Request-Id: "sv);
    out.append(ctx.id);
    out.append("\r\n"sv);
    for (auto& f : res)
    {
        auto name = f.name();
        auto name_text = f.name_string();
        if (name == http::field::date || name == http::field::server ||
            (name == http::field::unknown && beast::iequals(name_text, "X-Request-Id")))
            continue;
        out.append(name_text.data(), name_text.size());
        out.append(": "sv);
        auto value = f.value();
        out.append(value.data(), value.size());
        out.append("\r\n"sv);
    }
    out.append("\r\n"sv);
}

boost::system::result<std::size_t> read_file(const file& f, std::uint64_t offset, char* buf, std::size_t n)
{
    for (;;)
    {
        auto got = ::pread(f.native_handle(), buf, n, static_cast<off_t>(offset));
        if (got >= 0)
            return static_cast<std::size_t>(got);
        if (errno != EINTR)
            return boost::system::error_code{errno, boost::system::system_category()};
    }
}

std::string_view chunk_size_line(std::size_t n, std::array<char, 20>& buf)
{
    auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size() - 2, n, 16);
    *end++ = '\r';
    *end++ = '\n';
    return {buf.data(), static_cast<std::size_t>(end - buf.data())};
}

} // namespace coroute::detail::writing
