#pragma once
// The request a handler sees: the parsed message plus routing results, id and deadline.

#include <coroute/deadline.hpp>
#include <coroute/response.hpp>

#include <boost/beast/http/message.hpp>
#include <boost/system/result.hpp>

#include <charconv>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coroute {

/// One HTTP request as it reaches the router and its handlers.
///
/// It is owned by the connection that read it and stays valid until the handler's
/// awaitable completes; a handler that starts background work copies what it needs.
/// The router fills in the decoded path, the matched route and its parameters
/// before any before-hook runs, so hooks see exactly what routing sees.
class request
{
public:
    using clock = std::chrono::steady_clock;
    using message_type = http::request<http::string_body>;
    using param_list = std::vector<std::pair<std::string, std::string>>;

    request() = default;
    request(message_type msg, std::string id, clock::time_point deadline, logger* log = nullptr,
            std::string remote = {});

    message_type& message() noexcept { return msg_; }
    const message_type& message() const noexcept { return msg_; }

    http::verb method() const noexcept { return msg_.method(); }
    std::string_view target() const noexcept { return {msg_.target().data(), msg_.target().size()}; }
    const std::string& body() const noexcept { return msg_.body(); }

    /// A header's value, or an empty view when absent.
    std::string_view header(http::field f) const;
    std::string_view header(std::string_view name) const;

    /// The normalized path that routing matches: percent-decoded, dot segments
    /// removed, doubled slashes merged (empty before the router has seen it).
    const std::string& path() const noexcept { return path_; }

    /// The template of the matched route ("/api/items/{id}"); empty when no route
    /// matched. It points into the router, which outlives the requests it dispatches.
    std::string_view route() const noexcept { return route_; }

    /// A path parameter captured by `{name}` in the route template.
    std::optional<std::string_view> param(std::string_view name) const;

    /// A path parameter converted to an integer; empty when absent, malformed or out of range.
    template <class T>
    std::optional<T> param_as(std::string_view name) const { return to_number<T>(param(name)); }

    /// The first value of a query parameter, percent-decoded; empty when absent.
    std::optional<std::string_view> query(std::string_view key) const;

    /// A query parameter converted to an integer; empty when absent, malformed or out of range.
    template <class T>
    std::optional<T> query_as(std::string_view key) const { return to_number<T>(query(key)); }

    /// A path parameter as a number, or the 400 problem that names it.
    template <class T>
    boost::system::result<T, response> path_param(std::string_view name) const
    {
        if (auto v = param_as<T>(name))
            return *v;
        return bad_parameter(name, param(name).value_or(""), "must be a number");
    }

    /// A query parameter as a number from `lo` to `hi`; `fallback` when absent, and
    /// the 400 problem that names it when malformed or out of range.
    template <class T>
    boost::system::result<T, response> query_param(std::string_view name, T lo, T hi, T fallback) const
    {
        auto raw = query(name);
        if (!raw)
            return fallback;
        auto v = to_number<T>(raw);
        if (!v || *v < lo || *v > hi)
            return bad_parameter(name, *raw, "must be an integer from " + std::to_string(lo) + " to " +
                                                 std::to_string(hi));
        return *v;
    }

    const param_list& query_params() const noexcept { return query_; }
    const param_list& params() const noexcept { return params_; }

    /// The request id: the client's `X-Request-Id` when sane, otherwise a fresh one.
    const std::string& id() const noexcept { return id_; }

    /// When the server stops waiting for this request's handler (it then answers 504).
    /// Pass it down: a database wait or an outbound call should end by then.
    clock::time_point deadline() const noexcept { return deadline_; }

    /// The same deadline as a value to pass down (`within(req.until(), ...)`).
    coroute::deadline until() const noexcept { return coroute::deadline{deadline_}; }

    /// Time left before the deadline, never negative.
    std::chrono::milliseconds time_left() const noexcept;

    /// The peer's address, as text.
    const std::string& remote() const noexcept { return remote_; }

    /// The server's logger; never null while a server dispatches the request.
    logger* log() const noexcept { return log_; }

private:
    friend class router; // fills path, route, params and query before the hooks run

    static response bad_parameter(std::string_view name, std::string_view value, std::string_view rule);

    template <class T>
    static std::optional<T> to_number(std::optional<std::string_view> s)
    {
        if (!s || s->empty())
            return std::nullopt;
        T value{};
        auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), value);
        if (ec != std::errc{} || end != s->data() + s->size())
            return std::nullopt;
        return value;
    }

    message_type msg_;
    std::string id_;
    clock::time_point deadline_ = clock::time_point::max();
    logger* log_ = nullptr;
    std::string remote_;
    std::string path_;
    std::string_view route_;
    param_list params_;
    param_list query_;
};

} // namespace coroute
