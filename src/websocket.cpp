// WebSocket routes: the handshake's checks as HTTP answers, then the socket itself,
// Beast's websocket::stream over the connection's own stream.
#include "websocket_route.hpp"

#include "exception_text.hpp"

#include "memory_stream.hpp"

#include <coroute/log.hpp>
#include <coroute/problem.hpp>
#include <coroute/request.hpp>
#include <coroute/response.hpp>
#include <coroute/streaming.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/system/system_error.hpp>

#include <deque>
#include <functional>
#include <map>

namespace coroute::detail {

namespace ws = beast::websocket;

/// The connection's stream, read through the bytes the request reader had already
/// taken past the handshake request: a client may send its first frame at once.
template <class Next>
class prefixed_stream
{
public:
    using executor_type = typename Next::executor_type;
    using next_layer_type = Next;

    prefixed_stream(Next& next, beast::flat_buffer& pre) : next_(next), pre_(pre)
    {
        if (pre_.size() == 0)
            pre_.shrink_to_fit(); // the request's buffer is not needed any more
    }

    executor_type get_executor() noexcept { return next_.get_executor(); }
    Next& next_layer() noexcept { return next_; }
    const Next& next_layer() const noexcept { return next_; }

    /// Called as the closing handshake's teardown begins (TLS close_notify, then
    /// waiting for the peer's end of TCP), which Beast bounds by no timer of its own.
    void on_teardown(std::function<void()> f) { on_teardown_ = std::move(f); }
    void tearing_down()
    {
        if (on_teardown_)
            on_teardown_();
    }

    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token)
    {
        return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const MutableBuffers& b) {
                if (pre_.size() == 0)
                    return next_.async_read_some(b, std::move(handler));
                auto n = asio::buffer_copy(b, pre_.data());
                pre_.consume(n);
                if (pre_.size() == 0)
                    pre_.shrink_to_fit();
                auto ex = asio::get_associated_executor(handler, next_.get_executor());
                asio::post(ex, [h = std::move(handler), n]() mutable { std::move(h)(boost::system::error_code{}, n); });
            },
            token, buffers);
    }

    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token)
    {
        return next_.async_write_some(buffers, std::forward<Token>(token));
    }

private:
    Next& next_;
    beast::flat_buffer& pre_;
    std::function<void()> on_teardown_;
};

// Closing the WebSocket tears down the stream underneath: TLS close_notify, then TCP.
template <class Next>
void teardown(beast::role_type role, prefixed_stream<Next>& s, boost::system::error_code& ec)
{
    using beast::teardown;
    using ws::teardown;
    teardown(role, s.next_layer(), ec);
}

template <class Next, class Handler>
void async_teardown(beast::role_type role, prefixed_stream<Next>& s, Handler&& handler)
{
    s.tearing_down();
    using beast::async_teardown;
    using ws::async_teardown;
    async_teardown(role, s.next_layer(), std::forward<Handler>(handler));
}

namespace {

struct ws_route
{
    websocket_handler handler;
    websocket_options opts;
};

/// One open socket. The handler's coroutine reads; the writer, a chain of completion
/// handlers, drains the send queue; the server's shutdown begins a close. All of it
/// and the spawned tasks run on the connection's executor, so nothing here is locked.
template <class Next>
class ws_socket final : public websocket, public std::enable_shared_from_this<ws_socket<Next>>
{
public:
    ws_socket(Next& next, upgraded& conn, coroute::request& req, std::shared_ptr<const ws_route> route)
        : conn_(conn), req_(req), route_(std::move(route)), opts_(route_->opts), ws_(next, conn.buffer()),
          guard_(next.get_executor()), joined_(next.get_executor())
    {
        // However the close began (here, by the peer, by a protocol error), the peer has
        // the handshake timeout to end its side of the connection.
        ws_.next_layer().on_teardown([this] { hurry(); });
    }

    asio::awaitable<void> run(response& head)
    {
        configure(head);
        auto [ec] = co_await ws_.async_accept(req_.message(), nothrow_awaitable);
        if (ec)
        {
            debug("handshake failed: " + ec.message());
            co_return;
        }
        conn_.on_stopping([w = this->weak_from_this()] {
            if (auto self = w.lock())
                self->close(close_code::going_away, "server shutting down");
        });
        co_await serve();
        // The writer's last act is the close handshake (or it found the stream broken).
        while (!writer_finished())
        {
            joined_.expires_at(asio::steady_timer::time_point::max());
            auto [jec] = co_await joined_.async_wait(nothrow_awaitable);
            (void)jec;
        }
    }

    asio::awaitable<boost::system::result<ws_message>> read() override
    {
        if (read_ended_)
            co_return read_error_;
        auto [ec, n] = co_await ws_.async_read(rbuf_, asio::bind_cancellation_slot(read_cancel_.slot(), nothrow_awaitable));
        if (ec)
        {
            read_ended_ = closing_ = true;
            read_error_ = ec;
            if (ec == ws::error::closed)
                peer_code_ = ws_.reason().code;
            else
                debug("closed: " + ec.message());
            pump();
            co_return ec;
        }
        ws_message m{beast::buffers_to_string(rbuf_.data()), ws_.got_text()};
        rbuf_.consume(rbuf_.size());
        if (rbuf_.capacity() > 64 * 1024)
            rbuf_.shrink_to_fit(); // one large message does not pin its size for the socket's life
        co_return m;
    }

    bool send(std::string data, bool text) override
    {
        return enqueue(text ? kind::text : kind::binary, std::move(data));
    }

    void ping(std::string payload) override
    {
        if (payload.size() > ws::ping_data::static_capacity)
            payload.resize(ws::ping_data::static_capacity);
        enqueue(kind::ping, std::move(payload));
    }

    void close(std::uint16_t code, std::string reason) override
    {
        if (closing_)
            return;
        closing_ = close_pending_ = true;
        if (reason.size() > ws::reason_string::static_capacity)
            reason.resize(ws::reason_string::static_capacity);
        close_reason_ = ws::close_reason{code};
        close_reason_.reason = ws::reason_string{reason};
        hurry(); // what is queued, the close frame and the peer's answer, within the handshake timeout
        pump();
    }

    std::uint64_t spawn(asio::awaitable<void> task) override
    {
        auto id = ++next_task_;
        auto& sig = tasks_[id];
        sig = std::make_unique<asio::cancellation_signal>();
        auto done = [self = this->shared_from_this(), id](std::exception_ptr e) {
            if (e && !is_cancellation(e))
                self->error("a task threw: " + what_of(e));
            // Later, once the spawn's machinery has let go of the task's signal.
            asio::post(self->get_executor(), [self, id] { self->task_ended(id); });
        };
        asio::co_spawn(get_executor(), std::move(task), asio::bind_cancellation_slot(sig->slot(), std::move(done)));
        if (handler_done_)
            sig->emit(asio::cancellation_type::terminal);
        return id;
    }

    void cancel(std::uint64_t task) override
    {
        if (auto it = tasks_.find(task); it != tasks_.end())
            it->second->emit(asio::cancellation_type::terminal);
    }

    bool closing() const override { return closing_; }
    std::uint16_t peer_close_code() const override { return peer_code_; }
    std::size_t queued() const override { return queue_.size(); }
    coroute::request& request() override { return req_; }
    asio::any_io_executor get_executor() override { return ws_.get_executor(); }

private:
    enum class kind
    {
        text,
        binary,
        ping
    };
    struct outgoing
    {
        kind k;
        std::string data;
    };

    void configure(response& head)
    {
        ws::stream_base::timeout t;
        t.handshake_timeout = opts_.handshake_timeout;
        t.idle_timeout = opts_.idle_timeout.count() > 0 ? std::chrono::steady_clock::duration{opts_.idle_timeout}
                                                        : ws::stream_base::none();
        t.keep_alive_pings = true;
        ws_.set_option(t);
        // Beast writes the 101; it carries what every response of the server carries,
        // and what the hooks added.
        ws_.set_option(ws::stream_base::decorator([&head](ws::response_type& r) {
            for (auto& f : head)
            {
                auto name = f.name();
                if (name == http::field::upgrade || name == http::field::connection ||
                    name == http::field::sec_websocket_accept)
                    continue;
                r.set(f.name_string(), f.value());
            }
        }));
        ws_.read_message_max(opts_.max_message_bytes);
        // Beast 1.81 takes any close code from 3000 up and would echo one RFC 6455 does
        // not define (5000 and above); such a close fails the connection instead.
        ws_.control_callback([this](ws::frame_type kind, beast::string_view) {
            if (kind == ws::frame_type::close && ws_.reason().code > 4999)
            {
                debug("close code " + std::to_string(ws_.reason().code) + " is not defined, dropping");
                boost::system::error_code ignored;
                beast::get_lowest_layer(ws_).close(ignored);
            }
        });
    }

    bool enqueue(kind k, std::string data)
    {
        if (closing_)
            return false;
        if (queue_.size() >= opts_.send_queue || queued_bytes_ + data.size() > opts_.send_queue_bytes)
        {
            overflow();
            return false;
        }
        queued_bytes_ += data.size();
        queue_.push_back({k, std::move(data)});
        pump();
        return true;
    }

    // The peer reads too slowly: what waits is dropped and the socket closes with 1008.
    // A write stuck on that peer gets the handshake timeout (see `close`), not the write timeout.
    void overflow()
    {
        debug("send queue full, closing with 1008");
        drop_queue();
        close(close_code::policy_violation, "send queue full");
    }

    // From here on the connection ends within the handshake timeout, whatever waits.
    void hurry()
    {
        if (hurry_)
            return;
        hurry_ = true;
        arm_guard(opts_.handshake_timeout);
    }

    asio::awaitable<void> serve()
    {
        std::exception_ptr thrown;
        try
        {
            co_await route_->handler(*this);
        }
        catch (...)
        {
            thrown = std::current_exception();
        }
        if (thrown && !is_cancellation(thrown))
        {
            error("handler threw: " + what_of(thrown));
            close(close_code::internal_error, "internal error");
        }
        else
            close(close_code::normal, {});
        handler_done_ = true;
        for (auto& [id, sig] : tasks_)
            sig->emit(asio::cancellation_type::terminal);
        while (!tasks_.empty())
        {
            joined_.expires_at(asio::steady_timer::time_point::max());
            auto [ec] = co_await joined_.async_wait(nothrow_awaitable);
            (void)ec;
        }
        finished_ = true;
    }

    void task_ended(std::uint64_t id)
    {
        tasks_.erase(id);
        if (tasks_.empty())
            joined_.cancel();
    }

    // The writer: messages in order, then the close frame. A chain of completion
    // handlers rather than a coroutine, so an idle socket keeps no writer frame. Beast's
    // timer bounds the closing handshake and its idle pings, the guard each message.
    void pump()
    {
        if (writing_)
            return;
        if (read_ended_ || broken_)
        {
            drop_queue(); // the stream is closed or failed: nothing more can be written
            joined_.cancel();
            return;
        }
        if (!queue_.empty())
        {
            writing_ = true;
            auto& item = queue_.front();
            if (!hurry_)
                arm_guard(opts_.write_timeout);
            auto self = this->shared_from_this();
            auto slot = write_cancel_.slot();
            if (item.k == kind::ping)
                ws_.async_ping(ws::ping_data{item.data},
                               asio::bind_cancellation_slot(slot, [self](boost::system::error_code ec) { self->written(ec); }));
            else
            {
                ws_.text(item.k == kind::text);
                ws_.async_write(asio::buffer(item.data),
                                asio::bind_cancellation_slot(slot, [self](boost::system::error_code ec, std::size_t) {
                                    self->written(ec);
                                }));
            }
            return;
        }
        if (close_pending_ && !close_sent_)
        {
            writing_ = close_sent_ = true;
            ws_.async_close(close_reason_, asio::bind_cancellation_slot(write_cancel_.slot(),
                                                                         [self = this->shared_from_this()](boost::system::error_code) {
                                                                             self->writing_ = false;
                                                                             self->close_done_ = true;
                                                                             self->guard_.cancel();
                                                                             self->joined_.cancel();
                                                                         }));
            return;
        }
        joined_.cancel();
    }

    void written(boost::system::error_code ec)
    {
        writing_ = false;
        if (!hurry_)
            guard_.cancel();
        if (!queue_.empty()) // not when the queue was dropped during the write
        {
            queued_bytes_ -= queue_.front().data.size();
            queue_.pop_front();
        }
        if (ec)
            broken_ = closing_ = true;
        pump();
    }

    bool writer_finished() const
    {
        return !writing_ && (read_ended_ || broken_ || close_done_);
    }

    // Everything not yet written goes; a message being written stays until it is.
    void drop_queue()
    {
        if (writing_ && !close_sent_ && !queue_.empty())
        {
            queue_.erase(std::next(queue_.begin()), queue_.end());
            queued_bytes_ = queue_.front().data.size();
        }
        else
        {
            queue_.clear();
            queued_bytes_ = 0;
        }
    }

    // Ends the connection however its operations stand. Closing the socket fails what
    // waits on it; the cancellations end what waits inside Beast: in Beast 1.81 a close
    // that waits for the reader while the reader, failing a frame it had buffered, waits
    // for the writer, waits forever (found by tests/fuzz/fuzz_websocket.cpp).
    void drop()
    {
        boost::system::error_code ignored;
        beast::get_lowest_layer(ws_).close(ignored);
        read_cancel_.emit(asio::cancellation_type::terminal);
        write_cancel_.emit(asio::cancellation_type::terminal);
    }

    // Past the guard the connection is dropped (see `drop`): every operation fails,
    // and the coroutines end.
    void arm_guard(std::chrono::milliseconds d)
    {
        guard_.expires_after(d);
        guard_.async_wait([w = this->weak_from_this()](boost::system::error_code ec) {
            if (ec)
                return;
            if (auto self = w.lock())
            {
                self->debug("write timed out, dropping the connection");
                self->drop();
            }
        });
    }

    void debug(const std::string& what)
    {
        if (auto* log = req_.log(); log && log->enabled(log_level::debug))
            log->debug("websocket " + req_.id() + ": " + what);
    }

    void error(const std::string& what)
    {
        if (auto* log = req_.log())
            log->error("websocket " + req_.id() + ": " + what);
    }

    upgraded& conn_;
    coroute::request& req_;
    std::shared_ptr<const ws_route> route_;
    const websocket_options& opts_;
    ws::stream<prefixed_stream<Next>> ws_;
    beast::flat_buffer rbuf_;
    std::deque<outgoing> queue_;
    std::size_t queued_bytes_ = 0;
    asio::cancellation_signal read_cancel_, write_cancel_; // the read and the write in flight
    asio::steady_timer guard_;  // the write in progress
    asio::steady_timer joined_; // the end of the handler's tasks, and of the writer
    std::map<std::uint64_t, std::unique_ptr<asio::cancellation_signal>> tasks_;
    std::uint64_t next_task_ = 0;
    ws::close_reason close_reason_;
    boost::system::error_code read_error_;
    std::uint16_t peer_code_ = 0;
    bool closing_ = false, close_pending_ = false, close_sent_ = false, close_done_ = false;
    bool read_ended_ = false, broken_ = false, writing_ = false;
    bool handler_done_ = false, finished_ = false, hurry_ = false;
};

asio::awaitable<void> run_websocket(upgraded& conn, response& head, request& req, std::shared_ptr<const ws_route> route)
{
    if (auto* tls = conn.tls())
    {
        auto s = std::make_shared<ws_socket<asio::ssl::stream<asio::ip::tcp::socket>>>(*tls, conn, req, route);
        co_await s->run(head);
    }
    else if (auto* m = dynamic_cast<memory_connection*>(&conn); m && m->memory)
    {
        // The test client's connection (coroute::testing).
        auto s = std::make_shared<ws_socket<memory_stream>>(*m->memory, conn, req, route);
        co_await s->run(head);
    }
    else
    {
        auto s = std::make_shared<ws_socket<asio::ip::tcp::socket>>(conn.socket(), conn, req, route);
        co_await s->run(head);
    }
}

bool has_token(std::string_view list, std::string_view token)
{
    for (auto t : http::token_list{list})
        if (beast::iequals(t, token))
            return true;
    return false;
}

// 16 bytes in base64: 22 characters of the alphabet (the last carrying 4 zero bits), then "==".
bool valid_key(std::string_view k)
{
    static constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (k.size() != 24 || k.substr(22) != "==")
        return false;
    for (std::size_t i = 0; i < 22; ++i)
        if (alphabet.find(k[i]) == std::string_view::npos)
            return false;
    return std::string_view{"AQgw"}.find(k[21]) != std::string_view::npos;
}

// Cross-site WebSocket hijacking: a browser sends its cookies with a handshake from
// any page, so the page's origin must be one this server trusts.
bool origin_allowed(const request& req, const websocket_options& opts)
{
    auto origin = req.header(http::field::origin);
    if (origin.empty())
        return true; // not a browser
    for (auto& allowed : opts.allowed_origins)
        if (allowed == "*" || beast::iequals(allowed, origin))
            return true;
    if (!opts.allowed_origins.empty())
        return false;
    auto scheme_end = origin.find("://");
    if (scheme_end == std::string_view::npos)
        return false; // "null", from a sandboxed or file: page
    auto host = req.header(http::field::host);
    return !host.empty() && beast::iequals(origin.substr(scheme_end + 3), host);
}

response handshake_answer(std::shared_ptr<const ws_route> route, request& req)
{
    if (!asks_for_websocket(req))
    {
        auto res = problem(http::status::upgrade_required,
                           "this route speaks WebSocket only; send a WebSocket handshake (Upgrade: websocket)");
        res.set(http::field::upgrade, "websocket");
        res.set(http::field::connection, "upgrade"); // RFC 9110 §7.8: Upgrade is a connection option
        return res;
    }
    if (req.method() != http::verb::get)
        return problem(http::status::bad_request, "a WebSocket handshake must be a GET");
    if (req.message().version() < 11)
        return problem(http::status::bad_request, "a WebSocket handshake needs HTTP/1.1");
    if (!has_token(req.header(http::field::connection), "upgrade"))
        return problem(http::status::bad_request, "a WebSocket handshake needs Connection: Upgrade");
    auto version = req.header(http::field::sec_websocket_version);
    if (version.empty())
        return problem(http::status::bad_request, "Sec-WebSocket-Version is missing");
    if (version != "13")
    {
        auto res = problem(http::status::upgrade_required, "only WebSocket version 13 is spoken here");
        res.set(http::field::sec_websocket_version, "13");
        res.set(http::field::upgrade, "websocket");
        res.set(http::field::connection, "upgrade");
        return res;
    }
    if (!valid_key(req.header(http::field::sec_websocket_key)))
        return problem(http::status::bad_request, "Sec-WebSocket-Key must be 16 bytes in base64");
    if (!origin_allowed(req, route->opts))
        return problem(http::status::forbidden,
                       "origin " + std::string{req.header(http::field::origin)} + " may not open a WebSocket here");
    response res{http::status::switching_protocols, 11};
    res.take_over([route, &req](upgraded& conn, response& head) { return run_websocket(conn, head, req, route); });
    return res;
}

asio::awaitable<response> handshake(std::shared_ptr<const ws_route> route, request& req)
{
    co_return handshake_answer(std::move(route), req);
}

} // namespace

bool asks_for_websocket(const request& req)
{
    return has_token(req.header(http::field::upgrade), "websocket");
}

handler websocket_route(websocket_handler h, websocket_options opts)
{
    if (!h)
        throw std::invalid_argument("empty WebSocket handler");
    auto route = std::make_shared<const ws_route>(ws_route{std::move(h), std::move(opts)});
    return [route](request& req) { return handshake(route, req); };
}

} // namespace coroute::detail
