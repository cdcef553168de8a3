#pragma once
// WebSockets on the server's own port: the handshake's checks, the limits, and the
// socket a route's handler talks through.

#include <coroute/fwd.hpp>

#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace coroute {

/// The limits of one WebSocket route; each is a flag of coroute-server.
struct websocket_options
{
    std::size_t max_message_bytes = 1024 * 1024; ///< a larger message closes with 1009
    /// A peer that sends nothing, pongs included, for this long is dropped; the
    /// server pings it at half this interval. Zero: never.
    std::chrono::milliseconds idle_timeout{60'000};
    /// The longest the opening handshake's answer and the closing handshake may take.
    std::chrono::milliseconds handshake_timeout{10'000};
    /// The longest one message may take to reach the socket; past it the connection is dropped.
    std::chrono::milliseconds write_timeout{30'000};
    /// Messages waiting to be written, and their bytes: past either, the peer reads too
    /// slowly and is closed with 1008, so memory never grows with a slow reader.
    std::size_t send_queue = 256;
    std::size_t send_queue_bytes = 16 * 1024 * 1024;
    /// The origins a browser's handshake may come from (`https://app.example`), or `*`.
    /// Empty: only the server's own origin, the one in `Host`. A handshake without an
    /// `Origin` is not from a browser and is let through.
    std::vector<std::string> allowed_origins;
};

/// Close codes of RFC 6455 §7.4.1 that the server sends.
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;      ///< the server shuts down
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t bad_payload = 1007;     ///< text that is not UTF-8
inline constexpr std::uint16_t policy_violation = 1008; ///< the peer reads too slowly
inline constexpr std::uint16_t too_big = 1009;
inline constexpr std::uint16_t internal_error = 1011;  ///< the handler threw
} // namespace close_code

/// One message as it arrived: whole, however it was fragmented.
struct ws_message
{
    std::string data;
    bool text = true; ///< a text message (valid UTF-8), else binary
};

/// An open WebSocket, as its route's handler sees it. Valid until the handler
/// returns; the connection then closes (with 1000 unless a close was begun).
///
/// One coroutine reads (`read`); sending never waits: a message joins the socket's
/// send queue and a writer of the socket's own takes it from there, so many
/// coroutines of the socket (see `spawn`) may answer at once. Use it on the
/// socket's executor, where the handler and its tasks run.
///
/// Pings, pongs and the close handshake are answered while `read` waits, so keep
/// reading: the idle timeout counts from the last frame the peer sent.
class websocket
{
public:
    virtual ~websocket() = default;

    /// The next message. An error when the socket is closed: `beast::websocket::error::closed`
    /// after a close handshake (`peer_close_code` says the peer's code), otherwise what
    /// broke it (a protocol error, a message over the limit, a timeout, the peer gone).
    virtual asio::awaitable<boost::system::result<ws_message>> read() = 0;

    /// Queues a text (or binary) message. False when it cannot be sent: the socket is
    /// closing, or the queue is full, and then the socket closes with 1008.
    virtual bool send(std::string data, bool text = true) = 0;

    /// Queues a ping; the peer's pong arrives through `read`'s wait.
    virtual void ping(std::string payload = {}) = 0;

    /// Begins the close handshake with `code` and `reason` (at most 123 bytes) after
    /// what is queued; `read` then ends once the peer answers. Later calls do nothing.
    virtual void close(std::uint16_t code = close_code::normal, std::string reason = {}) = 0;

    /// Runs `task` beside the handler, on the socket's executor: a query whose answer
    /// goes out when it is done, a feed. The socket lives until every task has ended;
    /// when the handler returns or the socket closes, the tasks are cancelled. Returns
    /// an id for `cancel`.
    virtual std::uint64_t spawn(asio::awaitable<void> task) = 0;

    /// Cancels a task started with `spawn` (nothing when it has ended).
    virtual void cancel(std::uint64_t task) = 0;

    /// True once a close handshake has begun, from either side, or the socket broke.
    virtual bool closing() const = 0;

    /// The code of the peer's close frame; 0 when there was none.
    virtual std::uint16_t peer_close_code() const = 0;

    /// Messages waiting in the send queue.
    virtual std::size_t queued() const = 0;

    /// The handshake request: its path parameters, query and headers (what the
    /// before-hooks saw). Its deadline no longer applies.
    virtual coroute::request& request() = 0;

    virtual asio::any_io_executor get_executor() = 0;
};

/// A WebSocket route's handler: a coroutine that owns the socket until it returns.
/// Write it as a named coroutine function (or a capture-less lambda calling one),
/// like an HTTP handler.
using websocket_handler = std::function<asio::awaitable<void>(websocket&)>;

} // namespace coroute
