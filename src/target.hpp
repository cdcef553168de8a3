#pragma once
// The one parser of a request target: the normalized path that routing, hooks and
// static files all see, and the query parameters.

#include <coroute/request.hpp>

#include <string>
#include <string_view>

namespace coroute::detail {

/// Parses an origin-form target ("/a/b?x=1") into `path` and `query`.
///
/// The path is percent-decoded, its dot segments removed (RFC 3986 §5.2.4) and runs
/// of slashes merged, so "/%61dmin/./x", "/a/../admin/x" and "//admin//x" all become
/// "/admin/x": a hook that guards a prefix sees the path the route will match. An
/// encoded slash or NUL in the path is refused (it would make the decoded path
/// ambiguous), as is a path that climbs above the root. False: not a valid target.
bool parse_target(std::string_view target, std::string& path, request::param_list& query);

} // namespace coroute::detail
