#include "app/external_routes.hpp"

#include "app/db_routes.hpp"

#include <coroute/problem.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

namespace coroute::app {

namespace {

using clock_type = std::chrono::steady_clock;

// What one external call came to: the JSON to show, or the problem to answer.
struct external_outcome
{
    bool ok = false;
    http::status status = http::status::bad_gateway; // of the problem, when !ok
    boost::json::object body;                         // the result, or the problem document
};

asio::awaitable<external_outcome> call_external(std::shared_ptr<http_client> client, std::string url,
                                                clock_type::time_point deadline)
{
    external_outcome out;
    auto start = clock_type::now();
    // The call ends by the request's deadline at the latest, whatever the client's own limit.
    auto result = co_await client->get(url, deadline);
    auto elapsed = ms_since(start);
    auto fail = [&](http::status s, std::string detail, std::string_view phase) {
        out.status = s;
        out.body = problem_body(s, detail);
        out.body["phase"] = phase;
        out.body["url"] = url;
        out.body["elapsed_ms"] = elapsed;
    };
    if (!result)
    {
        auto& e = result.error();
        fail(e.phase == client_phase::timeout ? http::status::gateway_timeout : http::status::bad_gateway,
             "upstream " + url + ": " + e.message, to_string(e.phase));
        co_return out;
    }
    auto& res = result.value();
    if (res.result_int() < 200 || res.result_int() > 299)
    {
        fail(http::status::bad_gateway,
             "upstream " + url + " answered " + std::to_string(res.result_int()) + " " +
                 std::string{res.reason()},
             "status");
        co_return out;
    }
    boost::system::error_code ec;
    auto data = boost::json::parse(res.body(), ec);
    if (ec)
    {
        fail(http::status::bad_gateway, "upstream " + url + " sent a body that is not JSON: " + ec.message(), "body");
        co_return out;
    }
    out.ok = true;
    out.body = {{"source", "external"},
                {"url", url},
                {"status", res.result_int()},
                {"elapsed_ms", elapsed},
                {"data", std::move(data)}};
    co_return out;
}

asio::awaitable<response> external(std::shared_ptr<http_client> client, std::string url, request& req)
{
    auto outcome = co_await call_external(std::move(client), std::move(url), req.deadline());
    if (!outcome.ok)
        co_return make_response(outcome.status, "application/problem+json", to_json_text(outcome.body));
    co_return json_response(http::status::ok, outcome.body);
}

asio::awaitable<response> combined(std::shared_ptr<http_client> client, std::string url,
                                   std::shared_ptr<database> db, request& req)
{
    auto parsed_delay = delay_param(req);
    if (!parsed_delay)
        co_return parsed_delay.error();
    auto delay = *parsed_delay;

    // Both start now; the group completes when the slower one does.
    auto ex = co_await asio::this_coro::executor;
    auto start = clock_type::now();
    auto [order, db_error, db_side, ext_error, ext_side] =
        co_await asio::experimental::make_parallel_group(
            asio::co_spawn(ex, timed_query(db, 3, delay), asio::deferred),
            asio::co_spawn(ex, call_external(client, url, req.deadline()), asio::deferred))
            .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    auto elapsed = ms_since(start);
    if (db_error)
        std::rethrow_exception(db_error);
    if (ext_error)
        std::rethrow_exception(ext_error);

    boost::json::object db_json{{"elapsed_ms", db_side.elapsed_ms}};
    std::optional<http::status> failed;
    std::string detail;
    if (db_side.rows)
        db_json["items"] = to_json(*db_side.rows);
    else
    {
        auto problem = db_failure(db_side.rows.error());
        db_json["error"] = problem_body(problem.result(), "the database query failed: " +
                                                               db_side.rows.error().message());
        failed = problem.result() == http::status::gateway_timeout ? http::status::gateway_timeout
                                                                    : http::status::bad_gateway;
        detail = "the database query failed: " + db_side.rows.error().message();
    }

    boost::json::object ext_json;
    if (ext_side.ok)
        ext_json = std::move(ext_side.body);
    else
    {
        ext_json = {{"elapsed_ms", ext_side.body["elapsed_ms"]}, {"url", url}, {"error", ext_side.body}};
        if (!failed || ext_side.status == http::status::gateway_timeout)
            failed = ext_side.status;
        detail = detail.empty() ? std::string{"the external call failed: "} + ext_side.body["detail"].as_string().c_str()
                                : detail + "; the external call failed too";
    }

    boost::json::object body{{"source", "combined"},
                             {"elapsed_ms", elapsed},
                             {"database", std::move(db_json)},
                             {"external", std::move(ext_json)}};
    if (!failed)
        co_return json_response(http::status::ok, body);
    // A partial result is still a problem document; its extension members keep what worked.
    co_return problem(*failed, detail, std::move(body));
}

} // namespace

void add_external_routes(router& r, std::shared_ptr<http_client> client, std::string url,
                         std::shared_ptr<database> db)
{
    // Lambdas that call named coroutines, captures passed by value (README, "Add a route").
    r.get("/api/external", [client, url](request& req) { return external(client, url, req); });
    r.get("/api/combined", [client, url, db](request& req) { return combined(client, url, db, req); });
}

} // namespace coroute::app
