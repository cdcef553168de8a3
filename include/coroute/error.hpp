#pragma once
// coroute's own error codes: the outcomes that are not bugs, as values.

#include <boost/system/error_code.hpp>

namespace coroute {

/// Why a request, a wait or a call ended without its result.
enum class error
{
    deadline_exceeded = 1, ///< the request's deadline passed first (answered 504)
    client_gone,           ///< the client closed its connection first (logged 499)
    shutting_down,         ///< the server is stopping (answered 503)
    slow_consumer,         ///< a streamed reader fell too far behind and was dropped
    body_length,           ///< a producer wrote more or less than the length it declared
};

/// The "coroute" category.
const boost::system::error_category& error_category() noexcept;
boost::system::error_code make_error_code(error e) noexcept;

} // namespace coroute

namespace boost::system {
template <>
struct is_error_code_enum<coroute::error> : std::true_type
{
};
} // namespace boost::system
