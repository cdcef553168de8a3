#pragma once
// What router::websocket registers: a GET handler that checks the handshake and
// answers it with a takeover of the connection.

#include <coroute/router.hpp>
#include <coroute/websocket.hpp>

namespace coroute::detail {

/// The route handler for a WebSocket route. Handshake errors are HTTP answers:
/// a plain request 426, a wrong version 426 with `Sec-WebSocket-Version: 13`, a
/// malformed handshake 400, a foreign `Origin` 403.
handler websocket_route(websocket_handler h, websocket_options opts);

/// Whether `req` asks for a WebSocket upgrade (`Upgrade: websocket`), whatever its method.
bool asks_for_websocket(const request& req);

} // namespace coroute::detail
