#pragma once
// Liveness and readiness routes.

#include <coroute/fwd.hpp>

#include <functional>
#include <optional>
#include <string>

namespace coroute {

class server;

/// Adds `GET /healthz` (`{"status":"ok"}` while the process runs) and `GET /readyz`
/// (200, or a 503 problem once `srv` drains). The routes hold no pointer to `srv`:
/// after it is gone, `/readyz` answers 503.
void add_health_routes(router& r, const server& srv);

/// As above; `/readyz` also answers 503 with the reason `not_ready` gives while it
/// gives one (a backend that is down). It is called on every /readyz, on any thread.
void add_health_routes(router& r, const server& srv, std::function<std::optional<std::string>()> not_ready);

} // namespace coroute
