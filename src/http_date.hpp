#pragma once
// HTTP dates, and the Date and Server fields every response starts with.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace coroute::detail {

/// IMF-fixdate (RFC 9110 §5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
std::string format_http_date(std::chrono::system_clock::time_point t);

/// Parses an HTTP-date in any of its three forms (IMF-fixdate, and the obsolete RFC 850
/// and asctime ones, which RFC 9110 §5.6.7 says a recipient must accept); empty when
/// the text is none of them or names no real time.
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text);

/// "coroute/<version>".
const std::string& server_header();

/// "Date: …\r\nServer: coroute/…\r\n", formatted once a second per thread: the
/// Date field changes only that often.
std::string_view date_and_server_fields();

} // namespace coroute::detail
