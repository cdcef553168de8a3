#pragma once
// A live event feed over Server-Sent Events: publish from anywhere, and every
// subscribed client receives it, with replay after a reconnect.

#include <coroute/fwd.hpp>
#include <coroute/response.hpp>

#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace coroute {

/// The bounds of an event feed; each is a server flag in coroute-server.
struct event_options
{
    std::size_t history = 1000; ///< events kept for clients that reconnect with Last-Event-ID
    std::size_t buffer = 256;   ///< events a subscriber may fall behind before it is dropped
    std::chrono::milliseconds heartbeat{15'000}; ///< a ": ping" comment this often keeps proxies from closing
    std::size_t send_buffer = 16 * 1024;         ///< a stream's socket send buffer, so falling behind shows
};

/// One published event.
struct event
{
    std::uint64_t id = 0;
    std::string name; ///< "item"
    std::string data; ///< as published (the demo's are JSON)
};

/// A feed's events for code that passes them on elsewhere (a WebSocket), from the
/// moment it was made. Bounded like an SSE stream: one that falls `buffer` events
/// behind is dropped.
class event_subscription
{
public:
    virtual ~event_subscription() = default;

    /// Waits for events and yields every one that arrived since the last call, in
    /// order. Fails with `error::slow_consumer` once dropped, and with
    /// `operation_aborted` when the awaiting coroutine is cancelled.
    virtual asio::awaitable<boost::system::result<std::vector<event>>> next() = 0;
};

/// Numbers events (1, 2, 3, ... across the process), keeps the last `history` of them,
/// and streams them to subscribers as `text/event-stream`:
///
///     id: 7
///     event: item
///     data: {"op":"created","item":{...}}
///
/// A client that sends `Last-Event-ID: N` first receives every event after N still
/// kept; if events after N were dropped from the history (or N is ahead of the
/// feed, from an earlier process), it first receives `event: reset` with
/// `data: {"last_event_id":N,"oldest_id":M}` and the feed's current id, and should
/// reload its state. A
/// subscriber more than `buffer` events behind is disconnected, so memory never
/// grows with a slow reader. Streams end cleanly when the server shuts down.
///
/// Thread-safe: publish from any thread; each stream runs on its connection.
class event_hub : public std::enable_shared_from_this<event_hub>
{
public:
    explicit event_hub(event_options options = {});
    ~event_hub();

    /// Publishes one event to every subscriber; its id. `data` may hold newlines
    /// (each line becomes a `data:` line).
    std::uint64_t publish(std::string_view event, std::string_view data);

    /// The SSE response for `req`: replay per its Last-Event-ID, then live events.
    response subscribe(const request& req);

    /// A subscription whose waits run on `ex` (the executor of the coroutine that
    /// calls `next`); it ends when the last copy of the pointer goes.
    std::shared_ptr<event_subscription> listen(asio::any_io_executor ex);

    /// A route handler answering with `subscribe`; it keeps the hub alive.
    std::function<asio::awaitable<response>(request&)> handler();

    std::size_t subscribers() const;
    std::uint64_t last_id() const;
    const event_options& options() const noexcept;

    struct impl; // defined in the source

private:
    std::shared_ptr<impl> impl_;
};

} // namespace coroute
