#pragma once
// The external-API routes: /api/external and /api/combined.

#include "app/database.hpp"

#include <coroute/http_client.hpp>
#include <coroute/router.hpp>

#include <memory>
#include <string>

namespace coroute::app {

/// Adds `GET /api/external` (one call to `url` through `client`) and
/// `GET /api/combined` (a database query and that call at the same time).
void add_external_routes(router& r, std::shared_ptr<http_client> client, std::string url,
                         std::shared_ptr<database> db);

} // namespace coroute::app
