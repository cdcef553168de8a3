#pragma once
// GET /ws: the demo's WebSocket, carrying many queries at once on one connection.

#include "app/database.hpp"

#include <coroute/events.hpp>
#include <coroute/router.hpp>
#include <coroute/websocket.hpp>

#include <memory>

namespace coroute::app {

/// Adds `GET /ws`. Messages are JSON text, each with an `op`:
///  - `{"op":"echo","data":…}` is answered with the same message;
///  - `{"op":"db","id":K,"delay_ms":D}` runs one simulated query and answers
///    `{"op":"db","id":K,"elapsed_ms":…,"items":[…]}` when it is done, so answers come
///    in the order queries finish;
///  - `{"op":"subscribe","topic":"items"}` forwards the item events of `events`
///    (`{"op":"event","topic":"items","seq":N,"data":{…}}`) until `unsubscribe`;
///  - anything else is answered `{"op":"error","detail":…}` and the socket stays open.
void add_ws_routes(router& r, std::shared_ptr<database> db, std::shared_ptr<event_hub> events,
                   websocket_options opts);

} // namespace coroute::app
