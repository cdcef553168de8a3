#include <coroute/server.hpp>

#include <coroute/problem.hpp>
#include <coroute/version.hpp>

#include "detail.hpp"
#include "framing.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/http/read.hpp>

#include <atomic>
#include <mutex>
#include <random>
#include <unordered_map>

namespace coroute {

using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto never = clock_type::time_point::max();

const std::string& server_header()
{
    static const std::string value = "coroute/" + std::string{version};
    return value;
}

// The Date header changes once a second; format it once a second per thread.
const std::string& date_now()
{
    thread_local std::time_t last = 0;
    thread_local std::string cached;
    auto now = std::chrono::system_clock::now();
    auto t = std::chrono::system_clock::to_time_t(now);
    if (t != last)
    {
        cached = detail::format_http_date(now);
        last = t;
    }
    return cached;
}

// A client's X-Request-Id is echoed when it is short and plain; anything else is replaced.
bool sane_request_id(std::string_view id)
{
    if (id.empty() || id.size() > 128)
        return false;
    for (unsigned char c : id)
        if (!(std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    return true;
}

std::uint64_t mix(std::uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

} // namespace

namespace detail {
struct connection_base
{
    virtual ~connection_base() = default;
    virtual void close_if_idle() = 0;
    virtual void force_close() = 0;
};
} // namespace detail
using detail::connection_base;

struct detail::server_state : std::enable_shared_from_this<server_state>
{
    server_state(asio::any_io_executor e, std::shared_ptr<const router> r, server_options o)
        : ex(e), strand(asio::make_strand(e)), routes(std::move(r)), opts(std::move(o)), acceptor(strand),
          id_seed(std::random_device{}() * 0x100000001ULL ^ std::random_device{}())
    {
        log = opts.log ? opts.log : std::make_shared<logger>();
        limits.target_limit = opts.target_limit;
        limits.header_limit = opts.header_limit;
        limits.max_fields = opts.max_header_fields;
    }

    asio::any_io_executor ex;
    asio::strand<asio::any_io_executor> strand; // the acceptor's
    std::shared_ptr<const router> routes;
    server_options opts;
    std::shared_ptr<logger> log;
    detail::header_limits limits;
    tcp::acceptor acceptor;
    bool started = false;

    std::atomic<bool> draining{false};
    std::atomic<bool> stopping{false};
    std::atomic<std::uint64_t> accepted{0}, rejected{0}, open{0}, requests{0}, ids{0};
    std::uint64_t id_seed;

    std::mutex conns_mutex;
    std::unordered_map<connection_base*, std::weak_ptr<connection_base>> conns;

    std::string next_id()
    {
        char buf[17];
        std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(mix(id_seed + ids.fetch_add(1))));
        return buf;
    }

    template <class F>
    void for_each_connection(F f)
    {
        std::vector<std::shared_ptr<connection_base>> live;
        {
            std::lock_guard lock{conns_mutex};
            for (auto& [p, w] : conns)
                if (auto s = w.lock())
                    live.push_back(std::move(s));
        }
        for (auto& c : live)
            f(*c);
    }

    asio::awaitable<void> accept_loop();
    void spawn(tcp::socket socket);
};

namespace {

template <class Stream>
constexpr bool is_tls = !std::is_same_v<Stream, tcp::socket>;

// One connection: a coroutine on its own strand reading requests one after another,
// answering each before reading the next (so pipelined requests are answered in order).
template <class Stream>
class connection final : public connection_base, public std::enable_shared_from_this<connection<Stream>>
{
public:
    using executor_type = asio::strand<asio::any_io_executor>;

    template <class... Args>
    connection(std::shared_ptr<detail::server_state> srv, tcp::socket sock, Args&&... args)
        : srv_(std::move(srv)), stream_(std::move(sock), std::forward<Args>(args)...),
          watchdog_(socket().get_executor()),
          buffer_(srv_->opts.target_limit + srv_->opts.header_limit + 64 * 1024)
    {
        error_code ec;
        auto ep = socket().remote_endpoint(ec);
        remote_ = ec ? std::string{"-"} : ep.address().to_string();
    }

    ~connection() override
    {
        srv_->open.fetch_sub(1);
        std::lock_guard lock{srv_->conns_mutex};
        srv_->conns.erase(this);
    }

    tcp::socket& socket()
    {
        if constexpr (is_tls<Stream>)
            return stream_.next_layer();
        else
            return stream_;
    }

    asio::cancellation_slot cancel_slot() { return cancel_.slot(); }
    auto executor() { return socket().get_executor(); }

    void close_if_idle() override
    {
        asio::post(executor(), [self = this->shared_from_this()] {
            if (self->idle_)
            {
                error_code ec;
                self->socket().cancel(ec);
            }
        });
    }

    void force_close() override
    {
        asio::post(executor(), [self = this->shared_from_this()] {
            self->closing_ = true;
            self->cancel_.emit(asio::cancellation_type::terminal);
            error_code ec;
            self->socket().cancel(ec);
            self->socket().close(ec);
        });
    }

    asio::awaitable<void> run()
    {
        co_await asio::this_coro::throw_if_cancelled(false);
        if constexpr (is_tls<Stream>)
        {
            set_io_deadline(clock_type::now() + srv_->opts.handshake_timeout);
            auto [ec] = co_await stream_.async_handshake(asio::ssl::stream_base::server, use_tuple);
            if (ec)
            {
                if (srv_->log->enabled(log_level::debug))
                    srv_->log->debug("TLS handshake with " + remote_ + " failed: " + ec.message());
                finish();
                co_return;
            }
        }
        // GCC 12 miscompiles co_await inside a loop condition: keep it a statement.
        for (;;)
        {
            bool keep = co_await serve_one();
            if (!keep)
                break;
        }
        co_await close_gracefully();
        finish();
    }

private:
    // Timeouts: one timer per connection, re-armed only when a deadline moves earlier.
    // An I/O deadline cancels the socket's operations; the request deadline cancels the handler.
    void set_io_deadline(clock_type::time_point t)
    {
        io_deadline_ = t;
        arm(t);
    }

    void arm(clock_type::time_point t)
    {
        if (t >= armed_)
            return;
        armed_ = t;
        watchdog_.expires_at(t);
        watchdog_.async_wait([self = this->shared_from_this()](error_code ec) { self->on_watchdog(ec); });
    }

    void on_watchdog(error_code ec)
    {
        if (ec || closing_)
            return; // superseded by an earlier deadline, or the connection is done
        armed_ = never;
        auto now = clock_type::now();
        if (io_deadline_ <= now)
        {
            io_deadline_ = never;
            timed_out_ = true;
            socket().cancel(ec);
        }
        if (request_deadline_ <= now)
        {
            request_deadline_ = never;
            deadline_hit_ = true;
            cancel_.emit(asio::cancellation_type::terminal);
        }
        arm(std::min(io_deadline_, request_deadline_));
    }

    void finish()
    {
        closing_ = true;
        watchdog_.cancel();
        error_code ec;
        socket().close(ec);
    }

    std::string_view buffered() const
    {
        return {static_cast<const char*>(buffer_.data().data()), buffer_.size()};
    }

    // Reads until a whole header is buffered. False: close without answering (or after
    // answering a rejection).
    asio::awaitable<bool> read_header(detail::header_scan& scan)
    {
        std::size_t resume = 0;
        bool started = false;
        for (;;)
        {
            scan = detail::scan_header(buffered(), srv_->limits, resume);
            if (scan.state == detail::header_scan::complete)
                co_return true;
            if (scan.state == detail::header_scan::rejected)
            {
                co_await reject(*scan.error);
                co_return false;
            }
            bool has_bytes = buffered().size() > scan.skip;
            if (!has_bytes)
            {
                idle_ = true;
                if (srv_->stopping.load())
                    co_return false;
                set_io_deadline(clock_type::now() + srv_->opts.idle_timeout);
            }
            else if (!started)
            {
                // The header clock starts with its first byte.
                started = true;
                set_io_deadline(clock_type::now() + srv_->opts.header_timeout);
            }
            auto room = std::min<std::size_t>(16 * 1024, buffer_.max_size() - buffer_.size());
            auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(room), use_tuple);
            idle_ = false;
            if (ec)
            {
                if (timed_out_ && buffered().size() > scan.skip && !srv_->stopping.load())
                {
                    timed_out_ = false;
                    detail::rejection r{http::status::request_timeout, "the request header took too long"};
                    co_await reject(std::move(r));
                }
                co_return false;
            }
            buffer_.commit(n);
        }
    }

    asio::awaitable<bool> serve_one()
    {
        detail::header_scan scan;
        bool complete = co_await read_header(scan);
        if (!complete)
            co_return false;
        auto started_at = clock_type::now();
        io_deadline_ = never;

        buffer_.consume(scan.skip);
        auto header_bytes = buffered().substr(0, scan.end - scan.skip);
        if (auto r = detail::check_header_bytes(header_bytes, srv_->limits))
        {
            co_await reject(*r);
            co_return false;
        }

        http::request_parser<http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(header_bytes.size() + 1));
        parser.body_limit(boost::none); // checked below, once the framing is known to be sane
        parser.eager(false);
        error_code ec;
        auto used = parser.put(asio::buffer(header_bytes.data(), header_bytes.size()), ec);
        if (ec || !parser.is_header_done())
        {
            detail::rejection r{http::status::bad_request,
                                "malformed request: " + (ec ? ec.message() : std::string{"incomplete header"})};
            co_await reject(std::move(r));
            co_return false;
        }
        buffer_.consume(used);

        auto& head = parser.get();
        // From here on the header is parsed: even a rejection echoes the client's id.
        std::string id{head["X-Request-Id"]};
        if (!sane_request_id(id))
            id = srv_->next_id();
        if (auto r = detail::check_framing(head))
        {
            co_await reject(*r, id);
            co_return false;
        }
        if (auto len = parser.content_length(); len && *len > srv_->opts.body_limit)
        {
            detail::rejection r{http::status::payload_too_large,
                                "body of " + std::to_string(*len) + " bytes is over the limit of " +
                                    std::to_string(srv_->opts.body_limit)};
            co_await reject(std::move(r), id);
            co_return false;
        }

        bool has_body = !parser.is_done();
        if (auto expect = head[http::field::expect]; !expect.empty())
        {
            if (!detail::iequals(detail::trim({expect.data(), expect.size()}), "100-continue"))
            {
                detail::rejection r{http::status::expectation_failed, "only 100-continue is supported"};
                co_await reject(std::move(r), id);
                co_return false;
            }
            if (has_body && head.version() >= 11)
            {
                http::response<http::empty_body> cont{http::status::continue_, 11};
                set_io_deadline(clock_type::now() + srv_->opts.write_timeout);
                auto [wec, wn] = co_await http::async_write(stream_, cont, use_tuple);
                if (wec)
                    co_return false;
            }
        }

        if (has_body)
        {
            parser.body_limit(srv_->opts.body_limit);
            auto ext_limit = srv_->opts.chunk_extension_limit;
            auto on_chunk = [ext_limit](std::uint64_t, beast::string_view ext, error_code& cec) {
                if (ext.size() > ext_limit)
                    cec = http::error::bad_chunk_extension;
            };
            parser.on_chunk_header(on_chunk);
            set_io_deadline(clock_type::now() + srv_->opts.body_timeout);
            auto [rec, rn] = co_await http::async_read(stream_, buffer_, parser, use_tuple);
            io_deadline_ = never;
            if (rec)
            {
                std::optional<detail::rejection> r;
                if (timed_out_)
                {
                    timed_out_ = false;
                    r.emplace(http::status::request_timeout, "the request body took too long");
                }
                else if (rec == http::error::body_limit)
                    r.emplace(http::status::payload_too_large,
                              "body over the limit of " + std::to_string(srv_->opts.body_limit) + " bytes");
                else if (rec.category() == http::make_error_code(http::error::bad_chunk).category() &&
                         rec != http::error::end_of_stream && rec != http::error::partial_message)
                    r.emplace(http::status::bad_request, "malformed body: " + rec.message());
                if (r)
                {
                    auto answer = std::move(*r);
                    co_await reject(std::move(answer), id);
                }
                co_return false;
            }
        }

        srv_->requests.fetch_add(1);
        request req{parser.release(), std::move(id), started_at + srv_->opts.request_timeout, srv_->log.get(),
                    remote_};

        // The handler runs under the request deadline; past it, its awaits are cancelled
        // and the answer is 504 whatever it returns.
        deadline_hit_ = false;
        request_deadline_ = req.deadline();
        arm(request_deadline_);
        response res = co_await srv_->routes->dispatch(req);
        request_deadline_ = never;
        co_await asio::this_coro::reset_cancellation_state();
        if (closing_)
            co_return false;
        if (deadline_hit_)
            res = problem(http::status::gateway_timeout,
                          "the request took longer than " + std::to_string(srv_->opts.request_timeout.count()) +
                              " ms");

        bool keep = req.message().keep_alive() && res.keep_alive() && !srv_->draining.load();
        bool sent = co_await send(res, req, keep, started_at);
        co_return sent && keep;
    }

    void decorate(response& res, std::string_view id, bool keep, unsigned request_version)
    {
        res.version(11);
        res.set(http::field::date, date_now());
        res.set(http::field::server, server_header());
        res.set("X-Request-Id", id);
        res.keep_alive(keep);
        if (keep && request_version < 11)
            res.set(http::field::connection, "keep-alive");
    }

    asio::awaitable<bool> send(response& res, const request& req, bool keep, clock_type::time_point started_at)
    {
        decorate(res, req.id(), keep, req.message().version());
        finish_payload(res);
        if (req.method() == http::verb::head)
        {
            // HEAD: the GET's headers, its Content-Length included, and no body.
            auto n = res.body().size();
            res.body().clear();
            if (res.has_content_length())
                res.content_length(n);
        }
        set_io_deadline(clock_type::now() + srv_->opts.write_timeout);
        auto [ec, n] = co_await http::async_write(stream_, res, use_tuple);
        io_deadline_ = never;
        if (srv_->log->access_enabled())
        {
            auto method = req.message().method_string();
            srv_->log->access({remote_, {method.data(), method.size()}, req.target(), res.result_int(), n,
                               std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - started_at),
                               req.id()});
        }
        co_return !ec;
    }

    // Answers a request that never reaches the router; the caller then closes.
    // GCC 12 destroys a braced temporary passed to a coroutine twice (double free on
    // resume): callers build the rejection as a named local and move it in.
    // `id`: the request's id once its header is parsed; empty before (a fresh one is made).
    asio::awaitable<void> reject(detail::rejection r, std::string id = {})
    {
        srv_->requests.fetch_add(1);
        if (id.empty())
            id = srv_->next_id();
        auto res = problem(r.status, r.detail);
        decorate(res, id, false, 11);
        set_io_deadline(clock_type::now() + srv_->opts.write_timeout);
        auto [ec, n] = co_await http::async_write(stream_, res, use_tuple);
        io_deadline_ = never;
        if (srv_->log->access_enabled())
            srv_->log->access({remote_, "-", "-", res.result_int(), n, {}, id});
    }

    // Half-close, then read and discard what the client still sends for a moment, so
    // unread request bytes do not make the kernel answer with a reset that could
    // destroy the response before the client reads it.
    asio::awaitable<void> close_gracefully()
    {
        if (closing_)
            co_return;
        error_code ec;
        if constexpr (is_tls<Stream>)
        {
            set_io_deadline(clock_type::now() + std::chrono::seconds(2));
            co_await stream_.async_shutdown(use_tuple);
            io_deadline_ = never;
        }
        else
        {
            socket().shutdown(tcp::socket::shutdown_send, ec);
            set_io_deadline(clock_type::now() + std::chrono::seconds(2));
            std::size_t drained = 0;
            char sink[4096];
            while (drained < 256 * 1024)
            {
                auto [rec, n] = co_await socket().async_read_some(asio::buffer(sink), use_tuple);
                if (rec)
                    break;
                drained += n;
            }
            io_deadline_ = never;
        }
    }

    std::shared_ptr<detail::server_state> srv_;
    Stream stream_;
    asio::steady_timer watchdog_;
    beast::flat_buffer buffer_;
    asio::cancellation_signal cancel_;
    std::string remote_;
    clock_type::time_point armed_ = never;
    clock_type::time_point io_deadline_ = never;
    clock_type::time_point request_deadline_ = never;
    bool idle_ = false;
    bool timed_out_ = false;
    bool deadline_hit_ = false;
    bool closing_ = false;
};

} // namespace

void detail::server_state::spawn(tcp::socket socket)
{
    auto start = [&](auto conn) {
        open.fetch_add(1);
        {
            std::lock_guard lock{conns_mutex};
            conns.emplace(conn.get(), conn);
        }
        auto slot = conn->cancel_slot();
        auto ex = conn->executor();
        asio::co_spawn(ex, conn->run(),
                       asio::bind_cancellation_slot(slot, [conn, log = log](std::exception_ptr e) {
                           if (!e)
                               return;
                           try
                           {
                               std::rethrow_exception(e);
                           }
                           catch (const std::exception& ex)
                           {
                               log->error(std::string{"connection ended by an exception: "} + ex.what());
                           }
                           catch (...)
                           {
                               log->error("connection ended by an unknown exception");
                           }
                       }));
    };
    if (opts.tls)
        start(std::make_shared<connection<asio::ssl::stream<tcp::socket>>>(shared_from_this(), std::move(socket),
                                                                          *opts.tls));
    else
        start(std::make_shared<connection<tcp::socket>>(shared_from_this(), std::move(socket)));
}

asio::awaitable<void> detail::server_state::accept_loop()
{
    auto self = shared_from_this();
    asio::steady_timer backoff{strand};
    for (;;)
    {
        auto [ec, socket] = co_await acceptor.async_accept(asio::any_io_executor{asio::make_strand(ex)}, use_tuple);
        if (stopping.load() || !acceptor.is_open())
            break;
        if (ec)
        {
            if (ec == asio::error::operation_aborted)
                break;
            // Out of descriptors or memory: wait instead of spinning on the same error.
            if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
                ec == asio::error::no_memory || ec.value() == ENFILE)
            {
                log->warn("accept failed: " + ec.message() + "; pausing 100 ms");
                backoff.expires_after(std::chrono::milliseconds(100));
                co_await backoff.async_wait(use_tuple);
            }
            continue;
        }
        if (open.load() >= opts.max_connections)
        {
            rejected.fetch_add(1);
            error_code ignored;
            socket.close(ignored);
            continue;
        }
        accepted.fetch_add(1);
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        spawn(std::move(socket));
    }
}

server::server(asio::any_io_executor ex, std::shared_ptr<const router> routes, server_options options)
    : impl_(std::make_shared<detail::server_state>(std::move(ex), std::move(routes), std::move(options)))
{
}

server::~server()
{
    error_code ec;
    impl_->acceptor.close(ec);
}

tcp::endpoint server::listen(const tcp::endpoint& where)
{
    auto& a = impl_->acceptor;
    a.open(where.protocol());
    a.set_option(tcp::acceptor::reuse_address(true));
    a.bind(where);
    a.listen(asio::socket_base::max_listen_connections);
    return a.local_endpoint();
}

void server::start()
{
    if (impl_->started)
        throw std::logic_error("server already started");
    impl_->started = true;
    auto log = impl_->log;
    asio::co_spawn(impl_->strand, impl_->accept_loop(), [log](std::exception_ptr e) {
        if (e)
            log->error("the accept loop ended by an exception");
    });
}

tcp::endpoint server::local_endpoint() const
{
    return impl_->acceptor.local_endpoint();
}

std::string_view server::scheme() const noexcept
{
    return impl_->opts.tls ? "https" : "http";
}

void server::drain()
{
    impl_->draining.store(true);
}

bool server::draining() const noexcept
{
    return impl_->draining.load();
}

asio::awaitable<void> server::shutdown(std::chrono::milliseconds grace)
{
    auto self = impl_;
    self->draining.store(true);
    self->stopping.store(true);
    co_await asio::post(self->strand, asio::use_awaitable);
    error_code ec;
    self->acceptor.close(ec);
    self->for_each_connection([](connection_base& c) { c.close_if_idle(); });

    asio::steady_timer tick{self->strand};
    auto until = clock_type::now() + grace;
    while (self->open.load() > 0 && clock_type::now() < until)
    {
        tick.expires_after(std::chrono::milliseconds(10));
        co_await tick.async_wait(use_tuple);
        // A connection may have finished a request and gone idle since the last look.
        self->for_each_connection([](connection_base& c) { c.close_if_idle(); });
    }
    if (self->open.load() > 0)
    {
        self->log->warn(std::to_string(self->open.load()) + " connection(s) still busy after " +
                        std::to_string(grace.count()) + " ms; closing them");
        self->for_each_connection([](connection_base& c) { c.force_close(); });
        auto hard = clock_type::now() + std::chrono::seconds(5);
        while (self->open.load() > 0 && clock_type::now() < hard)
        {
            tick.expires_after(std::chrono::milliseconds(10));
            co_await tick.async_wait(use_tuple);
        }
    }
}

server_stats server::stats() const noexcept
{
    return {impl_->accepted.load(), impl_->rejected.load(), impl_->open.load(), impl_->requests.load()};
}

const server_options& server::options() const noexcept
{
    return impl_->opts;
}

logger& server::log() const noexcept
{
    return *impl_->log;
}

namespace {

asio::awaitable<response> healthz(request&)
{
    co_return json_response(http::status::ok, {{"status", "ok"}});
}

asio::awaitable<response> readyz(const server* srv)
{
    if (srv->draining())
        co_return problem(http::status::service_unavailable, "the server is shutting down");
    co_return json_response(http::status::ok, {{"status", "ok"}});
}

} // namespace

void add_health_routes(router& r, const server& srv)
{
    r.get("/healthz", &healthz);
    r.get("/readyz", [s = &srv](request&) { return readyz(s); });
}

} // namespace coroute
