#pragma once
// The database routes: /api/db, /api/db/parallel and the /api/items method view.

#include "app/database.hpp"

#include <coroute/events.hpp>
#include <coroute/router.hpp>

#include <boost/json/array.hpp>

#include <memory>

namespace coroute::app {

/// A sample query's rows and how long it took, as the routes report it.
struct timed_rows
{
    db_result<std::vector<item>> rows{std::vector<item>{}};
    double elapsed_ms = 0;
};

/// Runs a sample query of `limit` rows and times it; never throws for a failed query.
asio::awaitable<timed_rows> timed_query(std::shared_ptr<database> db, std::size_t limit, database::latency delay);

/// Items as a JSON array.
boost::json::array to_json(const std::vector<item>& items);

/// The answer for a failed query: 504 when it was cancelled or ran past the
/// database's statement timeout, 503 with Retry-After while the database is
/// unavailable, 422 when it refused a value, else 500.
response db_failure(const boost::system::error_code& ec);

/// Milliseconds since `start`, rounded to 0.1.
double ms_since(std::chrono::steady_clock::time_point start);

/// The optional `delay_ms` (0..10000) query parameter (empty when absent), or the
/// 400 problem that names it.
boost::system::result<database::latency, response> delay_param(const request& req);

/// Adds `GET /api/db`, `GET /api/db/parallel` and `/api/items[/{id}]` to `r`; every
/// change to the items is published on `events` (when given) as an `item` event.
void add_db_routes(router& r, std::shared_ptr<database> db, std::shared_ptr<event_hub> events = {});

/// Validates a JSON item body: fills `out` or returns the problem to answer
/// (400 malformed JSON, 415 wrong content type, 422 naming each bad field).
std::optional<response> parse_item(const request& req, item_fields& out);

} // namespace coroute::app
