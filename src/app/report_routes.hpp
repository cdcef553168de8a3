#pragma once
// The README's "Add a route" tutorial: GET /api/report/{id}.

#include "app/database.hpp"

#include <coroute/http_client.hpp>
#include <coroute/router.hpp>

#include <memory>
#include <string>

namespace coroute::app {

/// Adds `GET /api/report/{id}`: item {id} from `db`, then the answer of `url` through
/// `client`, both within the request's deadline, as one JSON object.
void add_report_routes(router& r, std::shared_ptr<database> db, std::shared_ptr<http_client> client,
                       std::string url);

} // namespace coroute::app
