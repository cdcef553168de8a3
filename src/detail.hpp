#pragma once
// Small text helpers shared by the library's sources; not part of the public API.

#include <string_view>

namespace coroute::detail {

/// `s` without leading and trailing spaces and tabs (optional whitespace, RFC 9110 §5.6.3).
constexpr std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

} // namespace coroute::detail
