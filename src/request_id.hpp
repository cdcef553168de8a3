#pragma once
// Request ids: the client's X-Request-Id when it is sane, otherwise a fresh one.

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace coroute::detail {

/// Makes unique, unguessable-enough 16-hex-digit ids; thread-safe.
class request_ids
{
public:
    request_ids();

    std::string next();

    /// The id for a request that sent `given` (empty when it sent none).
    std::string for_request(std::string_view given);

    /// A client's id is echoed only when short and plain: letters, digits, "-_.:".
    static bool sane(std::string_view id) noexcept;

private:
    std::atomic<std::uint64_t> count_{0};
    std::uint64_t seed_;
};

} // namespace coroute::detail
