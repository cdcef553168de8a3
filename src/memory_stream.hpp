#pragma once
// A connected pair of in-memory byte streams: what a socket pair is, without a socket.
// The test client (coroute::testing) serves a connection through the real session
// over one end and speaks HTTP or WebSocket over the other.

#include <coroute/fwd.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace coroute::detail {

/// One end of an in-memory, full-duplex stream (Asio's AsyncReadStream and
/// AsyncWriteStream). Each direction holds at most `capacity` bytes, so a writer waits
/// for its reader, as on TCP. Reads after the peer's `shutdown(send)` or `close` end
/// with `asio::error::eof`; writes after the peer's `close` fail with `broken_pipe`.
/// Operations honour per-operation cancellation (they end with `operation_aborted`),
/// and `cancel()` ends this end's pending operations the same way. The two ends may run
/// on different executors and threads; each completes on its handler's executor.
class memory_stream
{
public:
    using executor_type = asio::any_io_executor;

    /// A connected pair: what one writes the other reads.
    static std::pair<memory_stream, memory_stream> make_pair(asio::any_io_executor a, asio::any_io_executor b,
                                                             std::size_t capacity = 64 * 1024);

    memory_stream(memory_stream&& other) noexcept;
    memory_stream& operator=(memory_stream&& other) noexcept;
    memory_stream(const memory_stream&) = delete;
    memory_stream& operator=(const memory_stream&) = delete;
    ~memory_stream(); ///< closes this end

    executor_type get_executor() const noexcept { return ex_; }

    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token)
    {
        return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const MutableBuffers& b) {
                start<reading>(op<reading, MutableBuffers, decltype(handler)>{state_, side_, ex_, b, std::move(handler)});
            },
            token, buffers);
    }

    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token)
    {
        return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& b) {
                start<writing>(op<writing, ConstBuffers, decltype(handler)>{state_, side_, ex_, b, std::move(handler)});
            },
            token, buffers);
    }

    bool is_open() const noexcept;
    /// Ends this end: pending operations end with `operation_aborted`, the peer reads
    /// what was written and then end of stream; what the peer wrote and was not read is dropped.
    void close(boost::system::error_code& ec);
    void close()
    {
        boost::system::error_code ec;
        close(ec);
    }
    /// Ends this end's pending operations with `operation_aborted`.
    void cancel(boost::system::error_code& ec);
    /// `shutdown_send`: the peer reads end of stream after what was written.
    void shutdown(asio::socket_base::shutdown_type what, boost::system::error_code& ec);

    /// Calls `f` on this end's executor once the peer has closed (soon, if it has), as
    /// the server's peer watch does for TCP: a client that left cancels its handler.
    /// A later `watch_peer` or `unwatch_peer` replaces it.
    void watch_peer(std::function<void()> f);
    void unwatch_peer();

    /// Beast's close_socket (WebSocket timeouts) closes this end.
    friend void beast_close_socket(memory_stream& s) { s.close(); }

private:
    struct state;
    enum direction { reading, writing };

    /// A parked operation, woken when its pipe changes (or with an error).
    struct waiter
    {
        virtual ~waiter() = default;
        virtual void wake(boost::system::error_code ec) = 0;
    };

    /// A transfer tried once: (error, bytes) when it is done, or `would_block`.
    struct attempt
    {
        boost::system::error_code ec;
        std::size_t n = 0;
        bool would_block = false;
    };

    // Under the pair's lock: tries the transfer, and parks `w` (with a serial number the
    // cancellation handler names it by) when it would block.
    static attempt try_read(state& s, int side, const asio::mutable_buffer* b, std::size_t count);
    static attempt try_write(state& s, int side, const asio::const_buffer* b, std::size_t count);
    static std::uint64_t park(state& s, int side, direction d, std::unique_ptr<waiter> w);
    static void cancel_parked(state& s, int side, direction d, std::uint64_t serial);
    static std::unique_lock<std::mutex> lock(state& s);

    template <direction D, class Buffers, class Handler>
    struct op
    {
        static constexpr direction dir = D;
        std::shared_ptr<state> st;
        int side;
        asio::any_io_executor ex; // the stream's: where a handler without one of its own completes
        Buffers buffers;
        Handler handler;

        attempt try_once()
        {
            // The sequence flattened: Asio and Beast pass a few buffers at most.
            using buffer_type = std::conditional_t<D == reading, asio::mutable_buffer, asio::const_buffer>;
            buffer_type flat[16];
            std::size_t count = 0;
            for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers) && count < 16;
                 ++it)
                flat[count++] = buffer_type(*it);
            if constexpr (D == reading)
                return try_read(*st, side, flat, count);
            else
                return try_write(*st, side, flat, count);
        }

        void complete(boost::system::error_code ec, std::size_t n)
        {
            asio::get_associated_cancellation_slot(handler).clear();
            auto to = asio::get_associated_executor(handler, ex);
            asio::post(to, asio::append(std::move(handler), ec, n));
        }
    };

    template <class Op>
    struct parked final : waiter
    {
        explicit parked(Op o)
            : work(asio::prefer(asio::get_associated_executor(o.handler, o.ex), asio::execution::outstanding_work.tracked)),
              op(std::move(o))
        {
        }
        void wake(boost::system::error_code ec) override
        {
            asio::post(work, [o = std::move(op), ec]() mutable {
                if (ec)
                    o.complete(ec, 0);
                else
                    start<Op::dir>(std::move(o));
            });
        }
        asio::any_io_executor work; // keeps the handler's context running while parked
        Op op;
    };

    template <direction D, class Op>
    static void start(Op o)
    {
        if (!o.st)
            return o.complete(asio::error::bad_descriptor, 0);
        auto st = o.st;
        auto l = lock(*st);
        auto r = o.try_once();
        if (!r.would_block)
        {
            l.unlock();
            return o.complete(r.ec, r.n);
        }
        auto slot = asio::get_associated_cancellation_slot(o.handler);
        auto side = o.side;
        auto serial = park(*st, side, D, std::make_unique<parked<Op>>(std::move(o)));
        if (slot.is_connected())
            // Per-operation cancellation: the parked operation ends with operation_aborted.
            slot.assign([st, side, serial](asio::cancellation_type) { cancel_parked(*st, side, D, serial); });
    }

    memory_stream(std::shared_ptr<state> s, int side, asio::any_io_executor ex)
        : state_(std::move(s)), side_(side), ex_(std::move(ex))
    {
    }

    std::shared_ptr<state> state_;
    int side_ = 0;
    asio::any_io_executor ex_;
};

/// What the in-memory session's upgraded connection carries besides `upgraded`: its
/// stream, for the WebSocket layer (an in-memory connection has no TCP socket).
struct memory_connection
{
    memory_stream* memory = nullptr;
};

// The WebSocket closing handshake ends the stream under it: a shutdown of what this
// end sends, then the close.
void teardown(beast::role_type role, memory_stream& s, boost::system::error_code& ec);

template <class Handler>
void async_teardown(beast::role_type role, memory_stream& s, Handler&& handler)
{
    boost::system::error_code ec;
    teardown(role, s, ec);
    auto ex = asio::get_associated_executor(handler, s.get_executor());
    asio::post(ex, asio::append(std::forward<Handler>(handler), ec));
}

} // namespace coroute::detail
