// JSON bodies of the items routes, through the router and the real items view on the
// simulated database (no latency), and of POST /api/jobs, through its parser: every
// body gets 2xx, 400, 413, 415 or 422, never a 500 and never an exception; a job's
// accepted spec is within its documented ranges.
#include "app/db_routes.hpp"
#include "app/jobs_routes.hpp"

#include <coroute/router.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

using namespace coroute;

namespace {

void require(bool ok)
{
    if (!ok)
        std::abort();
}

std::shared_ptr<router> make_routes()
{
    auto r = std::make_shared<router>();
    app::db_options o;
    o.latency = std::chrono::milliseconds{0};
    app::add_db_routes(*r, std::make_shared<app::sim_database>(o));
    return r;
}

bool expected(unsigned status)
{
    return (status >= 200 && status < 300) || status == 400 || status == 404 || status == 413 || status == 415 ||
           status == 422;
}

// POST /api/jobs: a spec within the ranges, or a problem JSON of 400, 415 or 422.
void check_job_body(bool json_type, const std::uint8_t* data, std::size_t size)
{
    request::message_type msg{http::verb::post, "/api/jobs", 11};
    msg.set(http::field::host, "x");
    msg.set(http::field::content_type, json_type ? "application/json" : "text/plain");
    msg.body().assign(reinterpret_cast<const char*>(data), size);
    msg.prepare_payload();
    request req{std::move(msg), "fuzz", request::clock::now() + std::chrono::seconds(5)};
    auto spec = app::parse_report_spec(req);
    if (spec)
    {
        require(spec->queries >= 1 && spec->queries <= 1000 && spec->delay_ms >= 0 && spec->delay_ms <= 10'000 &&
                spec->parallel >= 1 && spec->parallel <= 100 && spec->cpu_ms >= 0 && spec->cpu_ms <= 10'000);
        return;
    }
    auto res = spec.error();
    auto status = res.result_int();
    require(status == 400 || status == 415 || status == 422);
    require(res[http::field::content_type] == "application/problem+json");
    boost::system::error_code ec;
    auto doc = boost::json::parse(res.body(), ec);
    require(!ec && doc.is_object() && doc.as_object().contains("status") &&
            doc.at("status").is_int64() && doc.at("status").as_int64() == status);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    // A fresh table each time, so what one input creates does not pile up.
    auto routes = make_routes();
    if (size == 0)
        return 0;
    // The first byte picks the call (a new item, a replaced one, or a job) and the content type.
    bool put = data[0] & 1;
    bool json_type = !(data[0] & 2);
    if (data[0] & 4)
    {
        check_job_body(json_type, data + 1, size - 1);
        return 0;
    }
    request::message_type msg{put ? http::verb::put : http::verb::post, put ? "/api/items/1" : "/api/items", 11};
    msg.set(http::field::host, "x");
    msg.set(http::field::content_type, json_type ? "application/json" : "text/plain");
    msg.body().assign(reinterpret_cast<const char*>(data) + 1, size - 1);
    msg.prepare_payload();
    request req{std::move(msg), "fuzz", request::clock::now() + std::chrono::seconds(5)};

    asio::io_context ioc;
    unsigned status = 0;
    asio::co_spawn(ioc, routes->dispatch(req), [&](std::exception_ptr e, response r) {
        require(!e);
        status = r.result_int();
    });
    ioc.run();
    require(expected(status));
    return 0;
}
