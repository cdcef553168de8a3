#pragma once
// Small helpers shared by the library's sources; not part of the public API.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace coroute::detail {

/// IMF-fixdate (RFC 9110 §5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
std::string format_http_date(std::chrono::system_clock::time_point t);

/// Parses an IMF-fixdate; empty when the text is not one.
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text);

/// ASCII case-insensitive equality, as header names and tokens compare.
bool iequals(std::string_view a, std::string_view b) noexcept;

/// `s` without leading and trailing spaces and tabs.
std::string_view trim(std::string_view s) noexcept;

} // namespace coroute::detail
