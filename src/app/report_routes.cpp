// GET /api/report/{id}: the route the README's "Add a route" section builds, step by step.
#include "app/report_routes.hpp"

#include "app/db_routes.hpp" // delay_param, db_failure, to_json

#include <coroute/deadline.hpp>
#include <coroute/problem.hpp>

#include <boost/json/parse.hpp>

namespace coroute::app {

namespace {

// A named coroutine that owns what it uses: the shared pointers and the URL are
// copies, so they live as long as the coroutine, whatever happens to the caller.
asio::awaitable<response> report(std::shared_ptr<database> db, std::shared_ptr<http_client> client,
                                 std::string url, request& req)
{
    // Bad input answers a 400 problem that names the parameter.
    auto id = req.path_param<std::uint64_t>("id");
    if (!id)
        co_return id.error();
    auto delay = delay_param(req); // ?delay_ms=0..10000, as on every database route
    if (!delay)
        co_return delay.error();

    // The database, raced against the request's deadline: past it, the query is cancelled.
    auto row = co_await within(req.until(), db->find(*id, *delay));
    if (!row)
        co_return db_failure(row.error()); // 504 at the deadline, 503 when the database fails
    if (!*row)
        co_return problem(http::status::not_found, "no item " + std::to_string(*id));

    // The HTTPS call ends by the same deadline at the latest.
    auto answer = co_await client->get(url, req.deadline());
    if (!answer)
    {
        auto status = answer.error().phase == client_phase::timeout ? http::status::gateway_timeout
                                                                     : http::status::bad_gateway;
        co_return problem(status, "upstream " + url + ": " + answer.error().message);
    }
    boost::system::error_code ec;
    auto todo = boost::json::parse(answer.value().body(), ec);
    if (ec || answer.value().result_int() != 200)
        co_return problem(http::status::bad_gateway, "upstream " + url + " did not answer 200 with JSON");

    co_return json_response(http::status::ok, {{"item", to_json(**row)}, {"todo", std::move(todo)}});
}

} // namespace

void add_report_routes(router& r, std::shared_ptr<database> db, std::shared_ptr<http_client> client,
                       std::string url)
{
    // The safe shape (README, "A lambda with captures is not a coroutine"): the lambda
    // only calls report(), passing its captures by value.
    r.get("/api/report/{id}",
          [db, client, url](request& req) { return report(db, client, url, req); });
}

} // namespace coroute::app
