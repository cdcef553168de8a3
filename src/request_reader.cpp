// The request reader's steps that do not wait.
#include "request_reader.hpp"

#include <algorithm>
#include <string>

namespace coroute::detail::reading {

std::optional<rejection> parse_head(std::string_view header, const reader_options& o,
                                    http::request_parser<http::string_body>& parser)
{
    if (auto r = check_header_bytes(header, o.limits))
        return r;
    // RFC 9110 §2.5: HTTP/1.2 and above are processed as HTTP/1.1, which Beast would
    // refuse as they are; the line was checked, so its version is its last 8 bytes.
    std::string as_1_1;
    auto line = header.substr(0, header.find('\n'));
    if (!line.empty() && line.back() == '\r')
        line.remove_suffix(1);
    if (line.size() >= 8 && line.substr(line.size() - 8, 7) == "HTTP/1." && line.back() > '1')
    {
        as_1_1.assign(header);
        as_1_1[line.size() - 1] = '1';
        header = as_1_1;
    }
    parser.header_limit(static_cast<std::uint32_t>(header.size() + 1));
    parser.body_limit(boost::none); // checked below, once the framing is known to be sane
    parser.eager(false);
    boost::system::error_code ec;
    parser.put(asio::buffer(header.data(), header.size()), ec);
    if (ec || !parser.is_header_done())
        return rejection{http::status::bad_request,
                         "malformed request: " + (ec ? ec.message() : std::string{"incomplete header"})};
    if (auto r = check_framing(parser.get()))
        return r;
    if (auto len = parser.content_length(); len && *len > o.body_limit)
        return rejection{http::status::payload_too_large, "body of " + std::to_string(*len) +
                                                              " bytes is over the limit of " +
                                                              std::to_string(o.body_limit)};
    return std::nullopt;
}

std::optional<rejection> body_failure(boost::system::error_code ec, bool timed_out, const reader_options& o)
{
    if (timed_out)
        return rejection{http::status::request_timeout, "the request body took too long"};
    if (ec == http::error::body_limit)
        return rejection{http::status::payload_too_large,
                         "body over the limit of " + std::to_string(o.body_limit) + " bytes"};
    if (ec.category() == http::make_error_code(http::error::bad_chunk).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message)
        return rejection{http::status::bad_request, "malformed body: " + ec.message()};
    return std::nullopt;
}

std::size_t read_room(const beast::flat_buffer& b)
{
    auto want = std::max<std::size_t>(small_read, b.capacity() - b.size());
    want = std::min<std::size_t>(want, 16 * 1024);
    return std::min(want, b.max_size() - b.size());
}

} // namespace coroute::detail::reading
