// The request reader's steps that do not wait.
#include "request_reader.hpp"

#include <algorithm>

namespace coroute::detail::reading {

std::optional<rejection> parse_head(std::string_view header, const reader_options& o,
                                    http::request_parser<http::string_body>& parser)
{
    if (auto r = check_header_bytes(header, o.limits))
        return r;
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
