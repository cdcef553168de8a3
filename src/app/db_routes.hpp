#pragma once
// The database routes: /api/db, /api/db/parallel and the /api/items method view.

#include "app/database.hpp"

#include <coroute/router.hpp>

#include <memory>

namespace coroute::app {

/// Adds `GET /api/db`, `GET /api/db/parallel` and `/api/items[/{id}]` to `r`.
void add_db_routes(router& r, std::shared_ptr<database> db);

/// Validates a JSON item body: fills `out` or returns the problem to answer
/// (400 malformed JSON, 415 wrong content type, 422 naming each bad field).
std::optional<response> parse_item(const request& req, item_fields& out);

} // namespace coroute::app
