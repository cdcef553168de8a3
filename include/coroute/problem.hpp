#pragma once
// RFC 9457 problem details: the body of every error the server or a handler produces,
// and the one mapping from error codes to problems.

#include <coroute/response.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <string>

namespace coroute {

/// An `application/problem+json` response:
/// `{"type":"about:blank","title":<reason phrase>,"status":<n>,"detail":<detail>}`
/// plus any members of `extra` (for instance `errors` for a 422).
response problem(http::status status, std::string_view detail, boost::json::object extra = {});

/// The problem for an error code, the only place these mappings live:
/// deadline_exceeded, a timeout or an aborted wait → 504; client_gone → 499;
/// shutting_down → 503; anything equivalent to `errc::resource_unavailable_try_again`
/// (a backend that is down) → 503 with `Retry-After: 1`; anything else → 500.
/// `detail` defaults to the code's message.
response problem_for(const boost::system::error_code& ec, std::string_view detail = {});

/// The problem document itself, for embedding one problem inside another response.
boost::json::object problem_body(http::status status, std::string_view detail);

/// `value` as JSON text; doubles in their shortest plain form ("50.2", not "5.02E1").
std::string to_json_text(const boost::json::value& value);

/// An `application/json` response with `value` serialized as its body.
response json_response(http::status status, const boost::json::value& value);

} // namespace coroute
