#pragma once
// The request a handler sees: the parsed message plus routing results, id and deadline.

#include <coroute/http.hpp>

#include <boost/beast/http/message.hpp>

#include <charconv>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coroute {

class logger;

/// One HTTP request as it reaches the router and its handlers.
///
/// It is owned by the connection that read it and stays valid until the handler's
/// awaitable completes; a handler that starts background work copies what it needs.
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

    /// The percent-decoded path, set by the router (empty before routing).
    const std::string& path() const noexcept { return path_; }

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

    const param_list& query_params() const noexcept { return query_; }
    const param_list& params() const noexcept { return params_; }

    /// The request id: the client's `X-Request-Id` when sane, otherwise a fresh one.
    const std::string& id() const noexcept { return id_; }

    /// When the server stops waiting for this request's handler (it then answers 504).
    /// Pass it down: a database wait or an outbound call should end by then.
    clock::time_point deadline() const noexcept { return deadline_; }

    /// Time left before the deadline, never negative.
    std::chrono::milliseconds time_left() const noexcept;

    /// The peer's address, as text.
    const std::string& remote() const noexcept { return remote_; }

    /// The server's logger; never null while a server dispatches the request.
    logger* log() const noexcept { return log_; }

    // Set by the router while dispatching.
    void set_path(std::string p) { path_ = std::move(p); }
    param_list& mutable_params() noexcept { return params_; }
    param_list& mutable_query() noexcept { return query_; }

private:
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
    param_list params_;
    param_list query_;
};

} // namespace coroute
