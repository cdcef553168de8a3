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

using readiness_check = std::function<std::optional<std::string>()>;

asio::awaitable<response> readyz(std::weak_ptr<const detail::server_state> srv, const readiness_check& check)
{
    auto s = srv.lock();
    if (!s || s->draining.load())
        co_return problem(http::status::service_unavailable, "the server is shutting down");
    if (check)
        if (auto why = check())
        {
            auto res = problem(http::status::service_unavailable, *why);
            res.set(http::field::retry_after, "1");
            co_return res;
        }
    co_return status_ok();
}

} // namespace

void add_health_routes(router& r, const server& srv)
{
    add_health_routes(r, srv, {});
}

void add_health_routes(router& r, const server& srv, readiness_check not_ready)
{
    r.get("/healthz", &healthz);
    auto check = std::make_shared<const readiness_check>(std::move(not_ready));
    r.get("/readyz", [s = std::weak_ptr<const detail::server_state>{srv.impl_}, check](request&) {
        return readyz(s, *check);
    });
}

} // namespace coroute
