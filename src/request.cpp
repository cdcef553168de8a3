// The request a handler sees.
#include <coroute/request.hpp>

#include <coroute/problem.hpp>

#include <algorithm>

namespace coroute {

request::request(message_type msg, std::string id, clock::time_point deadline, logger* log, std::string remote)
    : msg_(std::move(msg)), id_(std::move(id)), deadline_(deadline), log_(log), remote_(std::move(remote))
{
}

std::string_view request::header(http::field f) const
{
    auto it = msg_.find(f);
    if (it == msg_.end())
        return {};
    return {it->value().data(), it->value().size()};
}

std::string_view request::header(std::string_view name) const
{
    auto it = msg_.find(beast::string_view{name.data(), name.size()});
    if (it == msg_.end())
        return {};
    return {it->value().data(), it->value().size()};
}

std::optional<std::string_view> request::param(std::string_view name) const
{
    for (auto& [k, v] : params_)
        if (k == name)
            return std::string_view{v};
    return std::nullopt;
}

std::optional<std::string_view> request::query(std::string_view key) const
{
    for (auto& [k, v] : query_)
        if (k == key)
            return std::string_view{v};
    return std::nullopt;
}

response request::bad_parameter(std::string_view name, std::string_view value, std::string_view rule)
{
    return problem(http::status::bad_request,
                   std::string{name} + " " + std::string{rule} + ", not '" + std::string{value} + "'");
}

std::chrono::milliseconds request::time_left() const noexcept
{
    if (deadline_ == clock::time_point::max())
        return std::chrono::milliseconds::max();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - clock::now());
    return std::max(left, std::chrono::milliseconds{0});
}

} // namespace coroute
