#pragma once
// RFC 9112 checks that Boost 1.81's parser does not make: run on the raw header
// bytes before Beast parses them, and on the parsed fields before any body is read.

#include <coroute/http.hpp>

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace coroute::detail {

/// Why a request is refused before it reaches the router; the connection then closes.
struct rejection
{
    http::status status;
    std::string detail;
};

struct header_limits
{
    std::size_t target_limit = 8 * 1024;
    std::size_t header_limit = 8 * 1024;
    std::size_t max_fields = 100;
};

/// Where a buffered header stands.
struct header_scan
{
    enum state_type { incomplete, complete, rejected } state = incomplete;
    std::size_t skip = 0;  ///< leading empty lines to discard (RFC 9112 §2.2)
    std::size_t end = 0;   ///< with complete: bytes through the empty line ending the header
    std::optional<rejection> error;
};

/// Looks for the end of the header in `buf`. `resume` carries the search position
/// between calls on a growing buffer; start it at 0 for each request.
header_scan scan_header(std::string_view buf, const header_limits& limits, std::size_t& resume);

/// Checks a complete header's bytes (request line and fields, no leading empty
/// lines): obs-fold, whitespace before a colon, control characters, field count.
std::optional<rejection> check_header_bytes(std::string_view header, const header_limits& limits);

/// Checks the parsed header's framing: Host, Transfer-Encoding, Content-Length.
std::optional<rejection> check_framing(const http::request_header<>& h);

} // namespace coroute::detail
