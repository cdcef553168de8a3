#pragma once
// What a streamed body's producer writes through, and what an upgrade handler is given.

#include <coroute/fwd.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <functional>
#include <string_view>

namespace coroute {

/// The sink of a produced body (see `response::stream`). Used from the producer's
/// own coroutine, which runs on its connection's executor.
class body_writer
{
public:
    virtual ~body_writer() = default;

    /// Writes `data` as the next piece of the body and completes once the socket has
    /// taken all of it. Fails (client gone, no progress for the write timeout, more
    /// than a declared length, cancelled) with the error; the producer should return.
    virtual asio::awaitable<boost::system::error_code> write(std::string_view data) = 0;

    /// Caps the socket's send buffer, so that a reader who falls behind shows up as a
    /// backlog the producer can see instead of megabytes hidden in the kernel.
    virtual void limit_send_buffer(std::size_t bytes) = 0;

    /// Ends the response without its proper end (no terminal chunk): the client sees
    /// a cut body and the connection closes. For a reader that was dropped.
    virtual void abort() = 0;

    /// Cancels the write in progress, as a write timeout would; call it on the
    /// connection's executor (for a reader dropped while a write to it is stuck).
    virtual void cancel() = 0;
};

/// A connection taken over after `101 Switching Protocols` (see `response::upgrade`).
/// Valid until the upgrade handler returns; the connection then closes. It still
/// counts toward the server's connection limit.
class upgraded
{
public:
    virtual ~upgraded() = default;

    /// The TCP socket; under TLS, the stream's lowest layer.
    virtual asio::ip::tcp::socket& socket() = 0;

    /// The TLS stream on an HTTPS server, null on plain HTTP.
    virtual asio::ssl::stream<asio::ip::tcp::socket>* tls() = 0;

    /// Bytes the client sent after the request, already read: consume them first.
    virtual beast::flat_buffer& buffer() = 0;

    /// True once the server has begun to shut down.
    virtual bool stopping() const = 0;

    /// Completes when the server begins to shut down (or at once if it has): close
    /// politely then, within the shutdown grace, after which the socket is closed.
    virtual asio::awaitable<void> until_stopping() = 0;

    /// Calls `f` on the connection's executor when the server begins to shut down (soon,
    /// if it has): the same moment as `until_stopping`, for code that keeps no
    /// coroutine waiting. Not called when the upgrade ends first.
    virtual void on_stopping(std::function<void()> f) = 0;
};

} // namespace coroute
