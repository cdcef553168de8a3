#pragma once
// Liveness and readiness routes.

#include <coroute/fwd.hpp>

namespace coroute {

class server;

/// Adds `GET /healthz` (`{"status":"ok"}` while the process runs) and `GET /readyz`
/// (200, or a 503 problem once `srv` drains). The routes hold no pointer to `srv`:
/// after it is gone, `/readyz` answers 503.
void add_health_routes(router& r, const server& srv);

} // namespace coroute
