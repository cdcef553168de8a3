// JSON bodies of the items routes, through the router and the real items view on the
// simulated database (no latency): every body gets 2xx, 400, 413, 415 or 422, never a
// 500 and never an exception.
#include "app/db_routes.hpp"

#include <coroute/router.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

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

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    // A fresh table each time, so what one input creates does not pile up.
    auto routes = make_routes();
    if (size == 0)
        return 0;
    // The first byte picks the call: a new item or a replaced one, and the content type.
    bool put = data[0] & 1;
    bool json_type = !(data[0] & 2);
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
