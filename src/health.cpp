// /healthz and /readyz.
#include <coroute/health.hpp>

#include <coroute/problem.hpp>
#include <coroute/router.hpp>
#include <coroute/server.hpp>

#include "server_state.hpp"

namespace coroute {

namespace {

// The answers are constant: no JSON document is built for them.
response status_ok()
{
    return make_response(http::status::ok, "application/json", R"({"status":"ok"})");
}

asio::awaitable<response> healthz(request&)
{
    co_return status_ok();
}

asio::awaitable<response> readyz(std::weak_ptr<const detail::server_state> srv)
{
    auto s = srv.lock();
    if (!s || s->draining.load())
        co_return problem(http::status::service_unavailable, "the server is shutting down");
    co_return status_ok();
}

} // namespace

void add_health_routes(router& r, const server& srv)
{
    r.get("/healthz", &healthz);
    r.get("/readyz", [s = std::weak_ptr<const detail::server_state>{srv.impl_}](request&) { return readyz(s); });
}

} // namespace coroute
