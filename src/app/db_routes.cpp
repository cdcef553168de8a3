#include "app/db_routes.hpp"

#include <coroute/error.hpp>

#include <coroute/problem.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <cmath>

namespace coroute::app {

namespace {

using clock_type = std::chrono::steady_clock;
constexpr long long max_delay_ms = 10'000;


asio::awaitable<response> db_query(std::shared_ptr<database> db, request& req)
{
    auto delay = delay_param(req);
    if (!delay)
        co_return delay.error();
    auto start = clock_type::now();
    auto rows = co_await db->query(10, *delay);
    if (!rows)
        co_return db_failure(rows.error());
    co_return json_response(http::status::ok,
                            {{"source", "database"},
                             {"elapsed_ms", ms_since(start)},
                             {"delay_ms", delay->value_or(db->default_latency()).count()},
                             {"items", to_json(*rows)}});
}


asio::awaitable<response> db_parallel(std::shared_ptr<database> db, request& req)
{
    auto queries = req.query_param<long long>("queries", 1, 100, 10);
    if (!queries)
        co_return queries.error();
    auto n = *queries;
    auto parsed_delay = delay_param(req);
    if (!parsed_delay)
        co_return parsed_delay.error();
    auto delay = *parsed_delay;
    auto d = delay.value_or(db->default_latency());

    // All N queries start at once; the group completes when the last one does.
    auto ex = co_await asio::this_coro::executor;
    using op_type = decltype(asio::co_spawn(ex, timed_query(db, 1, delay), asio::deferred));
    std::vector<op_type> ops;
    ops.reserve(static_cast<std::size_t>(n));
    for (long long i = 0; i < n; ++i)
        ops.push_back(asio::co_spawn(ex, timed_query(db, 5, delay), asio::deferred));
    auto start = clock_type::now();
    auto [order, errors, outcomes] = co_await asio::experimental::make_parallel_group(std::move(ops))
                                         .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    auto elapsed = ms_since(start);

    boost::json::array results;
    for (std::size_t i = 0; i < outcomes.size(); ++i)
    {
        if (errors[i])
            std::rethrow_exception(errors[i]);
        auto& o = outcomes[i];
        if (!o.rows)
            co_return db_failure(o.rows.error());
        boost::json::object r{{"query", i}, {"elapsed_ms", o.elapsed_ms}};
        if (!o.rows->empty())
            r["item"] = app::to_json((*o.rows)[i % o.rows->size()]);
        results.push_back(std::move(r));
    }
    co_return json_response(http::status::ok, {{"source", "database"},
                                               {"queries", n},
                                               {"delay_ms", d.count()},
                                               {"elapsed_ms", elapsed},
                                               {"sequential_estimate_ms", n * d.count()},
                                               {"results", std::move(results)}});
}

// Counts UTF-8 code points, so a name's length is what a person would count.
std::size_t utf8_length(std::string_view s)
{
    std::size_t n = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80)
            ++n;
    return n;
}

// The item id of an item path: a positive integer, or the 400 that says so.
boost::system::result<std::uint64_t, response> item_id(const request& req)
{
    auto v = req.param_as<std::uint64_t>("id");
    if (!v || *v == 0)
        return problem(http::status::bad_request,
                       "item id must be a positive integer, not '" + std::string{req.param("id").value_or("")} + "'");
    return *v;
}

// What every item-path request carries: the id and the latency override.
struct item_target
{
    std::uint64_t id;
    database::latency delay;
};

boost::system::result<item_target, response> item_target_of(const request& req)
{
    auto id = item_id(req);
    if (!id)
        return id.error();
    auto delay = delay_param(req);
    if (!delay)
        return delay.error();
    return item_target{*id, *delay};
}

// One item, or why there is none.
response item_answer(const db_result<std::optional<item>>& row, std::uint64_t id)
{
    if (!row)
        return db_failure(row.error());
    if (!*row)
        return problem(http::status::not_found, "no item " + std::to_string(id));
    return json_response(http::status::ok, app::to_json(**row));
}

// Flask's MethodView: one class, a member per method; registered on the collection
// path (get, post) and the item path (get, put, del).
class items_view
{
public:
    explicit items_view(std::shared_ptr<database> db) : db_(std::move(db)) {}

    asio::awaitable<response> get(request& req)
    {
        if (req.param("id"))
            co_return co_await get_one(req);
        auto limit = req.query_param<long long>("limit", 1, 100, 20);
        if (!limit)
            co_return limit.error();
        auto offset = req.query_param<long long>("offset", 0, 1'000'000'000, 0);
        if (!offset)
            co_return offset.error();
        auto delay = delay_param(req);
        if (!delay)
            co_return delay.error();
        auto page = co_await db_->list(static_cast<std::size_t>(*limit), static_cast<std::size_t>(*offset), *delay);
        if (!page)
            co_return db_failure(page.error());
        co_return json_response(http::status::ok, {{"items", to_json(page->items)},
                                                   {"total", page->total},
                                                   {"limit", *limit},
                                                   {"offset", *offset}});
    }

    asio::awaitable<response> post(request& req)
    {
        item_fields fields;
        if (auto bad = parse_item(req, fields))
            co_return std::move(*bad);
        auto delay = delay_param(req);
        if (!delay)
            co_return delay.error();
        auto row = co_await db_->insert(std::move(fields), *delay);
        if (!row)
            co_return db_failure(row.error());
        auto res = json_response(http::status::created, app::to_json(*row));
        res.set(http::field::location, "/api/items/" + std::to_string(row->id));
        co_return res;
    }

    asio::awaitable<response> put(request& req)
    {
        auto target = item_target_of(req);
        if (!target)
            co_return target.error();
        auto [id, delay] = *target;
        item_fields fields;
        if (auto bad = parse_item(req, fields))
            co_return std::move(*bad);
        auto row = co_await db_->replace(id, std::move(fields), delay);
        co_return item_answer(row, id);
    }

    asio::awaitable<response> del(request& req)
    {
        auto target = item_target_of(req);
        if (!target)
            co_return target.error();
        auto [id, delay] = *target;
        auto removed = co_await db_->remove(id, delay);
        if (!removed)
            co_return db_failure(removed.error());
        if (!*removed)
            co_return problem(http::status::not_found, "no item " + std::to_string(id));
        co_return make_response(http::status::no_content, "text/plain", {});
    }

private:
    asio::awaitable<response> get_one(request& req)
    {
        auto target = item_target_of(req);
        if (!target)
            co_return target.error();
        auto [id, delay] = *target;
        auto row = co_await db_->find(id, delay);
        co_return item_answer(row, id);
    }

    std::shared_ptr<database> db_;
};

} // namespace

double ms_since(clock_type::time_point start)
{
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - start).count();
    return std::round(static_cast<double>(us) / 100.0) / 10.0;
}

boost::system::result<database::latency, response> delay_param(const request& req)
{
    auto d = req.query_param<long long>("delay_ms", 0, max_delay_ms, -1);
    if (!d)
        return d.error();
    if (*d < 0)
        return database::latency{}; // absent: the database's own latency
    return database::latency{std::chrono::milliseconds{*d}};
}

response db_failure(const boost::system::error_code& ec)
{
    if (ec == asio::error::operation_aborted || ec == coroute::error::deadline_exceeded)
        return problem_for(ec, "the database query was cancelled at the request's deadline");
    if (ec == db_error::rejected)
        return problem(http::status::unprocessable_entity, "the database refused the item: " + ec.message());
    return problem_for(ec, "database query failed: " + ec.message());
}

boost::json::array to_json(const std::vector<item>& items)
{
    boost::json::array out;
    out.reserve(items.size());
    for (auto& i : items)
        out.push_back(app::to_json(i));
    return out;
}

asio::awaitable<timed_rows> timed_query(std::shared_ptr<database> db, std::size_t limit, database::latency delay)
{
    auto start = clock_type::now();
    timed_rows out;
    out.rows = co_await db->query(limit, delay);
    out.elapsed_ms = ms_since(start);
    co_return out;
}

std::optional<response> parse_item(const request& req, item_fields& out)
{
    auto type = req.header(http::field::content_type);
    auto media = type.substr(0, type.find(';'));
    while (!media.empty() && (media.back() == ' ' || media.back() == '\t'))
        media.remove_suffix(1);
    if (media.size() != 16 || !std::equal(media.begin(), media.end(), "application/json",
                                          [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; }))
        return problem(http::status::unsupported_media_type,
                       "Content-Type must be application/json, not '" + std::string{type} + "'");

    boost::system::error_code ec;
    auto doc = boost::json::parse(req.body(), ec);
    if (ec)
        return problem(http::status::bad_request, "malformed JSON: " + ec.message());
    if (!doc.is_object())
        return problem(http::status::unprocessable_entity, "the body must be a JSON object",
                       {{"errors", boost::json::array{boost::json::object{{"field", ""}, {"message", "must be an object"}}}}});

    boost::json::array errors;
    auto fail = [&](std::string_view field, std::string_view message) {
        errors.push_back(boost::json::object{{"field", field}, {"message", message}});
    };
    auto& obj = doc.as_object();
    if (auto* name = obj.if_contains("name"); !name)
        fail("name", "is required");
    else if (!name->is_string())
        fail("name", "must be a string");
    else if (auto len = utf8_length(name->as_string()); len < 1 || len > 100)
        fail("name", "must be 1 to 100 characters long");
    else if (name->as_string().find('\0') != boost::json::string::npos)
        fail("name", "must not contain the character U+0000");
    else
        out.name = name->as_string();

    if (auto* price = obj.if_contains("price"); !price)
        fail("price", "is required");
    else if (!price->is_number())
        fail("price", "must be a number");
    else if (auto p = price->to_number<double>(); !(p >= 0))
        fail("price", "must be zero or more");
    else if (!std::isfinite(p))
        fail("price", "must be a finite number");
    else
        out.price = p;

    for (auto& kv : obj)
        if (kv.key() != "name" && kv.key() != "price")
            fail(kv.key(), "is not a field of an item");

    if (!errors.empty())
    {
        std::string detail = "invalid item:";
        for (auto& e : errors)
        {
            detail += " ";
            detail += e.at("field").as_string();
            detail += " ";
            detail += e.at("message").as_string();
            detail += ";";
        }
        detail.pop_back();
        return problem(http::status::unprocessable_entity, detail, {{"errors", std::move(errors)}});
    }
    return std::nullopt;
}

void add_db_routes(router& r, std::shared_ptr<database> db, std::shared_ptr<event_hub> events)
{
    // Each lambda copies `db` and only calls a named coroutine, which takes it by value:
    // a lambda with captures is never itself a coroutine (README, "Add a route").
    r.get("/api/db", [db](request& req) { return db_query(db, req); });
    r.get("/api/db/parallel", [db](request& req) { return db_parallel(db, req); });
    // Every change to the table is an `item` event, whichever process made it.
    if (events)
        db->on_change([events](const std::string& event) { events->publish("item", event); });
    auto view = std::make_shared<items_view>(db);
    r.view("/api/items", view, {http::verb::get, http::verb::post});
    r.view("/api/items/{id}", view, {http::verb::get, http::verb::put, http::verb::delete_});
}

} // namespace coroute::app
