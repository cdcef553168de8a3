#pragma once
// One write path for every response: the head (Date, Server, X-Request-Id,
// Connection), then the body from memory, from a file, or from a producer, each
// write bounded by the no-progress timeout.

#include "watchdog.hpp"

#include <coroute/error.hpp>
#include <coroute/response.hpp>
#include <coroute/streaming.hpp>

#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <cstring>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>

namespace coroute::detail {

/// What the writer needs to know of the request it answers.
struct write_context
{
    std::string_view id;
    bool keep_alive = true;
    unsigned version = 11;
    bool head = false; ///< a HEAD request: the header only
};

/// How writing went.
struct write_outcome
{
    boost::system::error_code ec;
    std::uint64_t bytes = 0;
    bool reusable = true; ///< the framing ended properly: the connection may serve another request
};

namespace writing {

/// The status line and fields, written by hand into `out`: Beast's serializer is
/// general (chunked bodies, views over views) and costs more than the whole response
/// here. The same bytes as Beast's serializer writes for `decorate(res, ctx)`, except
/// that Date, Server and X-Request-Id come first (tests/unit/test_response_writer.cpp).
void serialize_head(response& res, const write_context& ctx, std::string& out);

/// Sets Date, Server, X-Request-Id and Connection on `res` as `serialize_head` writes
/// them: the general path, for the test that compares the two.
void decorate(response& res, const write_context& ctx);

/// Reads up to `n` bytes of `f` at `offset` into `buf`; the count, or the error.
boost::system::result<std::size_t> read_file(const file& f, std::uint64_t offset, char* buf, std::size_t n);

inline constexpr std::size_t file_chunk = 64 * 1024;
inline constexpr std::size_t stream_send_buffer = 256 * 1024;

/// "1a2b\r\n": a chunk's size line.
std::string_view chunk_size_line(std::size_t n, std::array<char, 20>& buf);

} // namespace writing

/// Writes responses to `Stream`. `no_progress` is the longest a write may move no
/// byte (nginx's send_timeout): a slow but moving download completes.
template <class Stream>
class response_writer
{
public:
    response_writer(Stream& s, watchdog& w, std::chrono::milliseconds no_progress)
        : stream_(s), watchdog_(w), no_progress_(no_progress)
    {
    }

    /// Writes the head and, unless `ctx.head`, the body. A produced body's producer
    /// runs here, in the caller's coroutine (its waits see the caller's cancellation).
    /// An upgrade's head only: the caller hands the connection over next.
    asio::awaitable<write_outcome> write(response& res, const write_context& ctx)
    {
        write_outcome out;
        auto* produced = std::get_if<produced_body>(&res.source());
        bool raw = produced && !produced->length && ctx.version < 11; // HTTP/1.0: close-delimited
        auto w = ctx;
        if (raw)
        {
            res.chunked(false);
            w.keep_alive = false;
        }
        writing::serialize_head(res, w, head_);
        if (auto* part = std::get_if<file_part>(&res.source()); part && !ctx.head)
            co_return co_await write_file(*part);
        if (produced && !ctx.head)
        {
            out.ec = co_await write_counted(std::array{asio::buffer(head_)}, out.bytes);
            if (out.ec)
                co_return out;
            co_return co_await produce(*produced, res.chunked(), out.bytes);
        }
        // The head and an in-memory body (empty for HEAD and upgrades).
        auto [ec, n] = co_await send_head_and_body(res, ctx.head);
        out.ec = finished(ec);
        out.bytes = n;
        co_return out;
    }

    /// The common case on its own, no coroutine frame: a response whose body is in
    /// memory. Completes with (error, bytes); call `finished` with the error after.
    auto write_memory(response& res, const write_context& ctx)
    {
        writing::serialize_head(res, ctx, head_);
        return send_head_and_body(res, ctx.head);
    }

    /// Ends a write's deadline; passes its error on.
    boost::system::error_code finished(boost::system::error_code ec)
    {
        watchdog_.io_clear();
        watchdog_.clear_io_expired();
        return ec;
    }

private:
    auto send_head_and_body(const response& res, bool head_only)
    {
        auto body = head_only || res.streamed() ? asio::const_buffer{} : asio::buffer(res.body());
        return write_all(std::array<asio::const_buffer, 2>{asio::buffer(head_), body});
    }

    // Writes every byte of `buffers`: one composed operation (no coroutine frame of
    // its own) whose completion condition re-arms the no-progress deadline each time
    // bytes have moved.
    template <class Buffers>
    auto write_all(const Buffers& buffers)
    {
        watchdog_.io_after(no_progress_);
        auto size = asio::buffer_size(buffers);
        return asio::async_write(
            stream_, buffers,
            [this, size, moved = std::size_t{0}](const boost::system::error_code& ec, std::size_t n) mutable {
                if (ec || n >= size)
                    return std::size_t{0};
                if (n > moved) // progress: the clock starts again
                {
                    moved = n;
                    watchdog_.io_after(no_progress_);
                }
                return std::size_t{64 * 1024};
            },
            nothrow_awaitable);
    }

    // Writes `buffers`, adds what was written to `total`; the error, if any.
    template <class Buffers>
    asio::awaitable<boost::system::error_code> write_counted(const Buffers& buffers, std::uint64_t& total)
    {
        auto [ec, n] = co_await write_all(buffers);
        total += n;
        co_return finished(ec);
    }

    asio::awaitable<write_outcome> write_file(const file_part& part)
    {
        write_outcome out;
        // The kernel says a socket is writable only once a third of its send buffer is
        // free; with a buffer autotuned to megabytes a slow reader's progress would stay
        // invisible for longer than the no-progress timeout. A bounded buffer keeps it
        // visible (and costs a loopback download little).
        if (part.length > writing::file_chunk)
            limit_send_buffer(stream_, writing::stream_send_buffer);
        // One chunk buffer per download: memory does not grow with the file.
        auto chunk = std::make_unique<char[]>(writing::file_chunk);
        std::uint64_t offset = part.offset, left = part.length;
        bool head_sent = false;
        do
        {
            std::size_t got = 0;
            if (left > 0)
            {
                // A pread of at most 64 KiB, usually from the page cache.
                auto r = writing::read_file(part.source, offset, chunk.get(),
                                            static_cast<std::size_t>(std::min<std::uint64_t>(writing::file_chunk, left)));
                if (!r || *r == 0)
                {
                    // The file shrank: the head promised more bytes than it gives.
                    out.ec = r ? boost::system::error_code{error::body_length} : r.error();
                    out.reusable = false;
                    co_return out;
                }
                got = *r;
            }
            auto head = head_sent ? asio::const_buffer{} : asio::buffer(head_);
            out.ec = co_await write_counted(std::array{head, asio::const_buffer{chunk.get(), got}}, out.bytes);
            head_sent = true;
            if (out.ec)
                co_return out;
            offset += got;
            left -= got;
        } while (left > 0);
        co_return out;
    }

    // The sink a producer writes through.
    class sink final : public body_writer
    {
    public:
        sink(response_writer& w, bool chunked, std::optional<std::uint64_t> length, std::uint64_t& total)
            : w_(w), chunked_(chunked), left_(length), total_(total)
        {
        }

        asio::awaitable<boost::system::error_code> write(std::string_view data) override
        {
            if (failed_)
                co_return failed_;
            if (data.empty())
                co_return boost::system::error_code{};
            if (left_)
            {
                if (data.size() > *left_)
                {
                    failed_ = error::body_length;
                    co_return failed_;
                }
                *left_ -= data.size();
            }
            if (chunked_)
            {
                std::array<char, 20> line;
                auto size = writing::chunk_size_line(data.size(), line);
                failed_ = co_await w_.write_counted(
                    std::array{asio::buffer(size), asio::buffer(data), asio::buffer("\r\n", 2)}, total_);
            }
            else
                failed_ = co_await w_.write_counted(std::array{asio::buffer(data)}, total_);
            co_return failed_;
        }

        void limit_send_buffer(std::size_t bytes) override { response_writer::limit_send_buffer(w_.stream_, bytes); }

        void abort() override { aborted_ = true; }
        void cancel() override { w_.watchdog_.cancel_io(); }

        bool aborted() const { return aborted_; }
        boost::system::error_code failed() const { return failed_; }
        bool complete() const { return !left_ || *left_ == 0; }

    private:
        response_writer& w_;
        bool chunked_;
        std::optional<std::uint64_t> left_;
        std::uint64_t& total_;
        boost::system::error_code failed_;
        bool aborted_ = false;
    };

    asio::awaitable<write_outcome> produce(produced_body& body, bool chunked, std::uint64_t& total)
    {
        write_outcome out;
        sink s{*this, chunked, body.length, total};
        std::exception_ptr thrown;
        try
        {
            co_await body.producer(s);
        }
        catch (...)
        {
            thrown = std::current_exception(); // a producer's bug: the body is cut
        }
        out.bytes = total;
        // Cancelled producers (client gone, shutdown) return here; what follows is the
        // response's own end, which must not be cancelled with them.
        auto cs = co_await asio::this_coro::cancellation_state;
        if (cs.cancelled() != asio::cancellation_type::none)
            co_await asio::this_coro::reset_cancellation_state();
        if (thrown || s.aborted() || s.failed() || !s.complete())
        {
            out.ec = s.failed() ? s.failed() : boost::system::error_code{error::body_length};
            out.reusable = false;
            if (thrown)
                std::rethrow_exception(thrown);
            co_return out;
        }
        if (chunked)
        {
            static constexpr std::string_view last = "0\r\n\r\n";
            out.ec = co_await write_counted(std::array{asio::buffer(last)}, out.bytes);
        }
        else if (!body.length)
            out.reusable = false; // close-delimited (HTTP/1.0)
        total = out.bytes;
        co_return out;
    }

    static void limit_send_buffer(Stream& s, std::size_t bytes)
    {
        if constexpr (requires { s.lowest_layer(); })
        {
            boost::system::error_code ec;
            s.lowest_layer().set_option(asio::socket_base::send_buffer_size(static_cast<int>(bytes)), ec);
        }
    }

    Stream& stream_;
    watchdog& watchdog_;
    std::chrono::milliseconds no_progress_;
    std::string head_; // the response's status line and fields, reused
};

} // namespace coroute::detail
