#pragma once
// One connection: read a request, dispatch it under its deadline, write the answer;
// again until the connection ends.

#include "memory_stream.hpp"
#include "peer_watch.hpp"
#include "request_reader.hpp"
#include "response_writer.hpp"
#include "server_state.hpp"
#include "watchdog.hpp"

#include <coroute/problem.hpp>
#include <coroute/request.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace coroute::detail {

template <class Stream>
constexpr bool is_tls_stream = std::is_same_v<Stream, asio::ssl::stream<asio::ip::tcp::socket>>;

/// The in-memory connection of the test client (coroute::testing): no socket under it.
template <class Stream>
constexpr bool is_memory_stream = std::is_same_v<Stream, memory_stream>;

/// A connection's coroutine, on its own strand. Requests are answered one after
/// another, in order, so pipelined requests get their answers in order.
///
/// Everything that waits on the stream happens in `run`'s coroutine: the reader, the
/// writer, a produced body, an upgrade handler. Timer and peer-watch callbacks only
/// cancel; they never touch the stream's data.
///
/// `Stream` is a TCP socket, a TLS stream over one, or an in-memory stream; the
/// listener instantiates the first two, the test client the third.
template <class Stream>
class session final : public session_base, public std::enable_shared_from_this<session<Stream>>
{
public:
    /// The stream's lowest layer: the TCP socket, or the in-memory stream itself.
    using transport_type = std::remove_reference_t<decltype(beast::get_lowest_layer(std::declval<Stream&>()))>;

    template <class... Args>
    session(std::shared_ptr<server_state> srv, transport_type sock, Args&&... args)
        : srv_(std::move(srv)), stream_(std::move(sock), std::forward<Args>(args)...),
          watchdog_(socket().get_executor(), cancel_),
          buffer_(srv_->opts.target_limit + srv_->opts.header_limit + 64 * 1024),
          reader_(stream_, buffer_, watchdog_, srv_->reading, srv_->ids),
          writer_(stream_, watchdog_, srv_->opts.write_timeout)
    {
        if constexpr (is_memory_stream<Stream>)
            remote_ = "in-memory";
        else
        {
            boost::system::error_code ec;
            auto ep = socket().remote_endpoint(ec);
            remote_ = ec ? std::string{"-"} : ep.address().to_string();
        }
        watchdog_.set_io_timeout_action([this] {
            boost::system::error_code ignored;
            socket().cancel(ignored); // also what a TLS stream's inner operations wait on
        });
    }

    ~session() override { srv_->remove(this); }

    asio::cancellation_slot cancel_slot() { return cancel_.slot(); }
    auto executor() { return socket().get_executor(); }

    /// The connection's life: TLS handshake, HTTP/1.1 requests, a polite close.
    /// (A second protocol, HTTP/2 chosen by ALPN, would branch after the handshake.)
    asio::awaitable<void> run()
    {
        watchdog_.set_owner(this->weak_from_this());
        co_await asio::this_coro::throw_if_cancelled(false);
        bool ok = co_await handshake();
        if (ok)
        {
            co_await serve();
            co_await close_gracefully();
        }
        finish();
    }

    void notify_stopping() override
    {
        asio::post(executor(), [self = this->shared_from_this()] {
            self->stopping_ = true;
            if (self->reader_.idle())
                self->watchdog_.cancel_io();
            else if (self->producing_)
                self->cancel_.emit(asio::cancellation_type::terminal); // the producer ends its body
            else if (self->stop_notice_)
                self->stop_notice_->cancel();
        });
    }

    void force_close() override
    {
        asio::post(executor(), [self = this->shared_from_this()] {
            self->closing_ = true;
            self->cancel_.emit(asio::cancellation_type::terminal);
            boost::system::error_code ec;
            self->socket().cancel(ec);
            self->socket().close(ec);
        });
    }

private:
    // Requests one after another until one of them, or the client, ends the connection.
    // The steps of one request stay in this frame: each coroutine frame of its own would
    // be an allocation per request (measured: about 15 % of /healthz).
    asio::awaitable<void> serve()
    {
        for (;;)
        {
            if (reader_.empty())
            {
                // At shutdown an idle connection ends, unless its client's next request
                // has already arrived (sent as we stopped): that one is still answered.
                if (srv_->stopping.load() && !request_waiting())
                    co_return;
                auto [ec, n] = co_await reader_.idle_read();
                if (!reader_.idle_read_done(ec, n))
                {
                    // notify_stopping cancels the idle read, perhaps just as bytes came.
                    if (ec == asio::error::operation_aborted && srv_->stopping.load() && request_waiting())
                        continue;
                    co_return;
                }
            }
            auto failed = co_await reader_.read(srv_->stopping);
            if (failed)
            {
                if (failed->answer)
                    co_await reject(std::move(*failed->answer), std::move(failed->id));
                co_return;
            }
            srv_->requests.fetch_add(1, std::memory_order_relaxed);
            auto started = reader_.started();
            request req{reader_.take_message(), reader_.take_id(), started + srv_->opts.request_timeout,
                        srv_->log.get(), remote_};

            // Dispatch under the request's deadline (and, when asked, the client's presence):
            // past either, the handler's waits are cancelled and the router answers 504 (499).
            watchdog_.request_until(req.deadline());
            watch_peer();
            srv_->dispatch_begins();
            response res = co_await srv_->routes->dispatch(req);
            srv_->dispatch_ends();
            stop_watching_peer();
            watchdog_.request_clear();
            auto cs = co_await asio::this_coro::cancellation_state;
            if (was_cancelled(cs))
                co_await asio::this_coro::reset_cancellation_state();
            if (closing_)
                co_return;
            if (res.result_int() == 499)
            {
                log_access(res, req, 0, started); // as nginx logs it: the client left first
                co_return;
            }

            bool keep = req.message().keep_alive() && res.keep_alive() && !srv_->draining.load();
            finish_payload(res);
            write_context ctx{req.id(), keep, req.message().version(), req.method() == http::verb::head};
            write_outcome sent;
            if (res.streamed())
                sent = co_await respond_streamed(res, ctx);
            else
            {
                auto [ec, n] = co_await writer_.write_memory(res, ctx);
                sent.ec = writer_.finished(ec);
                sent.bytes = n;
            }
            log_access(res, req, sent.bytes, started);
            if (sent.ec || !sent.reusable || !keep || upgraded_)
                co_return;
        }
    }

    // A produced body runs its producer (watched for the client leaving, ended at
    // shutdown); an upgrade hands the connection to its handler once the 101 is out.
    asio::awaitable<write_outcome> respond_streamed(response& res, const write_context& ctx)
    {
        if (auto* t = std::get_if<takeover>(&res.source()))
        {
            // The handler writes the head: give it the fields every response carries.
            writing::decorate(res, ctx);
            upgraded_ = true;
            upgrade_handler h = [t, &res](upgraded& c) { return t->handler(c, res); };
            co_await hand_over(h);
            co_return write_outcome{};
        }
        bool produced = std::holds_alternative<produced_body>(res.source()) && !ctx.head;
        if (produced)
        {
            producing_ = true;
            if (stopping_)
                cancel_.emit(asio::cancellation_type::terminal);
            watch_peer(true);
        }
        auto sent = co_await writer_.write(res, ctx);
        if (produced)
        {
            producing_ = false;
            stop_watching_peer(true);
            auto cs = co_await asio::this_coro::cancellation_state;
            if (was_cancelled(cs))
                co_await asio::this_coro::reset_cancellation_state();
        }
        if (auto* h = std::get_if<upgrade_handler>(&res.source()); h && !sent.ec)
        {
            upgraded_ = true;
            co_await hand_over(*h);
        }
        co_return sent;
    }

    // The upgraded connection, as its handler sees it.
    class upgraded_connection final : public upgraded, public memory_connection
    {
    public:
        explicit upgraded_connection(session& s) : s_(s)
        {
            if constexpr (is_memory_stream<Stream>)
                memory = &s_.stream_;
        }
        asio::ip::tcp::socket& socket() override
        {
            if constexpr (is_memory_stream<Stream>)
                throw std::logic_error("an in-memory connection has no socket: test this upgrade over loopback");
            else
                return s_.socket();
        }
        asio::ssl::stream<asio::ip::tcp::socket>* tls() override
        {
            if constexpr (std::is_same_v<Stream, asio::ssl::stream<asio::ip::tcp::socket>>)
                return &s_.stream_;
            else
                return nullptr;
        }
        beast::flat_buffer& buffer() override { return s_.buffer_; }
        bool stopping() const override { return s_.stopping_ || s_.srv_->stopping.load(); }
        asio::awaitable<void> until_stopping() override
        {
            if (stopping())
                co_return;
            auto [ec] = co_await s_.stop_notice_->async_wait(nothrow_awaitable);
            (void)ec;
        }
        void on_stopping(std::function<void()> f) override
        {
            if (stopping())
                return asio::post(s_.executor(), std::move(f));
            // The notice is cancelled at shutdown, and destroyed when the upgrade ends:
            // only the first calls `f`.
            s_.stop_notice_->async_wait([self = s_.shared_from_this(), f = std::move(f)](boost::system::error_code) {
                if (self->stop_notice_ && self->stopping_)
                    f();
            });
        }

    private:
        session& s_;
    };

    asio::awaitable<void> hand_over(const upgrade_handler& h)
    {
        asio::steady_timer notice{executor(), asio::steady_timer::time_point::max()};
        stop_notice_ = &notice;
        upgraded_connection conn{*this};
        std::exception_ptr thrown;
        try
        {
            co_await h(conn);
        }
        catch (...)
        {
            thrown = std::current_exception();
        }
        stop_notice_ = nullptr;
        if (thrown)
            std::rethrow_exception(thrown); // logged by the session's spawner
    }

    void watch_peer(bool streaming = false)
    {
        if constexpr (is_memory_stream<Stream>)
        {
            if ((!srv_->opts.cancel_on_disconnect && !streaming) || buffer_.size() > 0)
                return;
            // Weak: the callback is kept in the stream the session owns.
            socket().watch_peer([w = this->weak_from_this()] {
                if (auto self = w.lock())
                    self->cancel_.emit(asio::cancellation_type::terminal);
            });
        }
        else if constexpr (std::is_same_v<Stream, asio::ip::tcp::socket>)
        {
            // Not asked for, or pipelined bytes are waiting: the client is there. A
            // produced body is always watched: it may run for hours.
            if ((!srv_->opts.cancel_on_disconnect && !streaming) || buffer_.size() > 0)
                return;
            peer_.start(socket(), [self = this->shared_from_this()] {
                self->cancel_.emit(asio::cancellation_type::terminal);
            });
        }
    }

    void stop_watching_peer(bool streaming = false)
    {
        if constexpr (is_memory_stream<Stream>)
            socket().unwatch_peer();
        else if constexpr (std::is_same_v<Stream, asio::ip::tcp::socket>)
            if (srv_->opts.cancel_on_disconnect || streaming)
                peer_.stop(socket());
    }

    // A deadline or a departed client leaves the coroutine's cancellation state
    // cancelled; it is cleared before the next request's I/O.
    static bool was_cancelled(const asio::cancellation_state& cs)
    {
        return cs.cancelled() != asio::cancellation_type::none;
    }

    asio::awaitable<bool> handshake()
    {
        if constexpr (is_tls_stream<Stream>)
        {
            watchdog_.io_after(srv_->opts.handshake_timeout);
            auto [ec] = co_await stream_.async_handshake(asio::ssl::stream_base::server, nothrow_awaitable);
            watchdog_.io_clear();
            if (ec)
            {
                if (srv_->log->enabled(log_level::debug))
                    srv_->log->debug("TLS handshake with " + remote_ + " failed: " + ec.message());
                co_return false;
            }
        }
        co_return true;
    }

    // Answers a request that never reached the router; the connection then closes.
    // GCC 12 destroys a braced temporary passed to a coroutine twice (double free on
    // resume): callers pass named values.
    asio::awaitable<void> reject(rejection r, std::string id)
    {
        srv_->requests.fetch_add(1, std::memory_order_relaxed);
        if (id.empty())
            id = srv_->ids.next();
        auto res = problem(r.status, r.detail);
        write_context ctx{id, false, 11, false};
        auto sent = co_await writer_.write(res, ctx);
        if (srv_->log->access_enabled())
            srv_->log->access({remote_, "-", "-", res.result_int(), sent.bytes, {}, id});
    }

    // Half-close, then read and discard what the client still sends for a moment, so
    // unread request bytes do not make the kernel answer with a reset that could
    // destroy the response before the client reads it.
    asio::awaitable<void> close_gracefully()
    {
        if (closing_)
            co_return;
        watchdog_.io_after(std::chrono::seconds(2));
        if constexpr (is_tls_stream<Stream>)
        {
            auto [ec] = co_await stream_.async_shutdown(nothrow_awaitable);
            (void)ec;
        }
        else
        {
            boost::system::error_code ec;
            socket().shutdown(asio::socket_base::shutdown_send, ec);
            std::size_t drained = 0;
            char sink[4096];
            while (drained < 4 * 1024 * 1024) // nginx lingers longer still; 2 s and 4 MiB bound it here
            {
                auto [rec, n] = co_await socket().async_read_some(asio::buffer(sink), nothrow_awaitable);
                if (rec)
                    break;
                drained += n;
            }
        }
        watchdog_.io_clear();
    }

    void finish()
    {
        closing_ = true;
        watchdog_.stop();
        boost::system::error_code ec;
        socket().close(ec);
    }

    void log_access(const response& res, const request& req, std::uint64_t bytes,
                    std::chrono::steady_clock::time_point started)
    {
        if (!srv_->log->access_enabled())
            return;
        auto method = req.message().method_string();
        srv_->log->access({remote_, {method.data(), method.size()}, req.target(), res.result_int(), bytes,
                           std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                                 started),
                           req.id()});
    }

    transport_type& socket() { return beast::get_lowest_layer(stream_); }

    // Bytes from the client wait in the kernel, unread.
    bool request_waiting()
    {
        if constexpr (is_memory_stream<Stream>)
            return false;
        else
        {
            boost::system::error_code ec;
            return socket().available(ec) > 0 && !ec;
        }
    }

    std::shared_ptr<server_state> srv_;
    Stream stream_;
    asio::cancellation_signal cancel_; // the handler's and producer's waits
    watchdog watchdog_;
    beast::flat_buffer buffer_;
    request_reader<Stream> reader_;
    response_writer<Stream> writer_;
    peer_watch peer_;
    std::string remote_;
    asio::steady_timer* stop_notice_ = nullptr; // while upgraded
    bool stopping_ = false, producing_ = false, upgraded_ = false, closing_ = false;
};

} // namespace coroute::detail
