#pragma once
// Namespace aliases and the response type every handler returns.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/beast/http/field.hpp>

namespace coroute {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

/// A complete HTTP response held in memory; handlers return it by value.
using response = http::response<http::string_body>;

/// A handler's result: the response, produced without blocking a thread.
using task_response = asio::awaitable<response>;

/// Makes the framing match the body: `Content-Length` is the body's size, or, for
/// 1xx, 204 and 304 (which never have a body, RFC 9110 §8.6), body and length are removed.
/// The server calls it on every response, so hooks may change a body freely.
void finish_payload(response& res);

/// A response with `status`, `Content-Type` and `body`, payload prepared.
response make_response(http::status status, std::string_view content_type, std::string body);

} // namespace coroute
