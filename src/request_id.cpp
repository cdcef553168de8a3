// Request ids.
#include "request_id.hpp"

#include <cctype>
#include <random>

namespace coroute::detail {

namespace {

// splitmix64: consecutive counters give well-spread ids.
std::uint64_t mix(std::uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

} // namespace

request_ids::request_ids() : seed_(std::random_device{}() * 0x100000001ULL ^ std::random_device{}()) {}

std::string request_ids::next()
{
    static constexpr char hex[] = "0123456789abcdef";
    auto v = mix(seed_ + count_.fetch_add(1, std::memory_order_relaxed));
    std::string out(16, '0');
    for (int i = 15; i >= 0; --i, v >>= 4)
        out[static_cast<std::size_t>(i)] = hex[v & 0xf];
    return out;
}

std::string request_ids::for_request(std::string_view given)
{
    if (sane(given))
        return std::string{given};
    return next();
}

bool request_ids::sane(std::string_view id) noexcept
{
    if (id.empty() || id.size() > 128)
        return false;
    for (unsigned char c : id)
        if (!(std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    return true;
}

} // namespace coroute::detail
