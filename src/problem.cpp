// Problem responses (RFC 9457) and the one mapping from error codes to them.
#include <coroute/problem.hpp>

#include <coroute/error.hpp>

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>

namespace coroute {

boost::json::object problem_body(http::status status, std::string_view detail)
{
    boost::json::object body;
    body["type"] = "about:blank";
    auto title = http::obsolete_reason(status);
    body["title"] = boost::json::string_view{title.data(), title.size()};
    body["status"] = static_cast<unsigned>(status);
    body["detail"] = detail;
    return body;
}

response problem(http::status status, std::string_view detail, boost::json::object extra)
{
    auto body = problem_body(status, detail);
    for (auto& kv : extra)
        body[kv.key()] = std::move(kv.value());
    return make_response(status, "application/problem+json", to_json_text(body));
}

response problem_for(const boost::system::error_code& ec, std::string_view detail)
{
    std::string text = detail.empty() ? ec.message() : std::string{detail};
    if (ec == error::client_gone)
        return problem(static_cast<http::status>(499), text);
    if (ec == error::shutting_down)
        return problem(http::status::service_unavailable, text);
    // A wait cut short is the request deadline's doing: the server cancels a handler's
    // waits only at its deadline, at shutdown (the connection then closes unanswered)
    // or when the client leaves (answered above).
    if (ec == boost::system::errc::timed_out || ec == asio::error::operation_aborted || ec == beast::error::timeout)
        return problem(http::status::gateway_timeout, text);
    if (ec == boost::system::errc::resource_unavailable_try_again)
    {
        auto res = problem(http::status::service_unavailable, text);
        res.set(http::field::retry_after, "1");
        return res;
    }
    return problem(http::status::internal_server_error, text);
}

response json_response(http::status status, const boost::json::value& value)
{
    return make_response(status, "application/json", to_json_text(value));
}

} // namespace coroute

