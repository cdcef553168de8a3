#pragma once
// RFC 9457 problem details: the body of every error the server or a handler produces.

#include <coroute/http.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <string>

namespace coroute {

/// An `application/problem+json` response:
/// `{"type":"about:blank","title":<reason phrase>,"status":<n>,"detail":<detail>}`
/// plus any members of `extra` (for instance `errors` for a 422).
response problem(http::status status, std::string_view detail, boost::json::object extra = {});

/// The problem document itself, for embedding one problem inside another response.
boost::json::object problem_body(http::status status, std::string_view detail);

/// `value` as JSON text; doubles in their shortest plain form ("50.2", not "5.02E1").
std::string to_json_text(const boost::json::value& value);

/// An `application/json` response with `value` serialized as its body.
response json_response(http::status status, const boost::json::value& value);

} // namespace coroute
