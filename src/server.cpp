#include <coroute/server.hpp>

#include <coroute/problem.hpp>
#include <coroute/version.hpp>

#include "detail.hpp"
#include "framing.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
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

#include <array>
#include <atomic>
#include <charconv>
#include <mutex>
#include <random>
#include <unordered_map>

#include <sys/socket.h>

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

// "Date: …\r\nServer: coroute/…\r\n", the two fields every response starts with,
// formatted once a second per thread.
std::string_view date_and_server()
{
    thread_local std::time_t last = 0;
    thread_local std::string cached;
    auto now = std::chrono::system_clock::now();
    auto t = std::chrono::system_clock::to_time_t(now);
    if (t != last)
    {
        cached = "Date: " + detail::format_http_date(now) + "\r\nServer: " + server_header() + "\r\n";
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
    server_state(std::vector<asio::any_io_executor> e, std::shared_ptr<const router> r, server_options o)
        : executors(std::move(e)), ex(executors.at(0)), strand(asio::make_strand(ex)), routes(std::move(r)),
          opts(std::move(o)), acceptor(strand), id_seed(std::random_device{}() * 0x100000001ULL ^ std::random_device{}())
    {
        log = opts.log ? opts.log : std::make_shared<logger>();
        limits.target_limit = opts.target_limit;
        limits.header_limit = opts.header_limit;
        limits.max_fields = opts.max_header_fields;
    }

    std::vector<asio::any_io_executor> executors; // connections are spread over these
    std::size_t next_executor = 0;                // the accept loop's, on its strand
    asio::any_io_executor ex;                     // the first: the acceptor's
    asio::strand<asio::any_io_executor> strand;   // the acceptor's
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
        static constexpr char hex[] = "0123456789abcdef";
        auto v = mix(id_seed + ids.fetch_add(1, std::memory_order_relaxed));
        std::string out(16, '0');
        for (int i = 15; i >= 0; --i, v >>= 4)
            out[static_cast<std::size_t>(i)] = hex[v & 0xf];
        return out;
    }

    // A strand of the io_context's own executor fits in any_io_executor's small-object
    // buffer; a strand of an any_io_executor does not, and then every completion handler's
    // work guard (`prefer(outstanding_work.tracked)`) allocates a copy of it.
    //
    // An io_context made with a concurrency hint of 1 is run by one thread (Asio's
    // documented meaning of that hint, which also lets it drop optimisations meant for
    // many threads): its handlers never run concurrently, so a connection on it needs no
    // strand, and each completion saves the strand's queue and its second trip through
    // the scheduler.
    asio::any_io_executor connection_executor()
    {
        auto& e = executors[next_executor++ % executors.size()];
        if (auto* io = e.target<asio::io_context::executor_type>())
        {
            if (asio::use_service<asio::detail::scheduler>(io->context()).concurrency_hint() == 1)
                return *io;
            return asio::make_strand(*io);
        }
        return asio::make_strand(e);
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
        co_await serve();
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

    // While a handler runs nobody reads the socket. A socket that turns readable with
    // nothing to read (a FIN) means the client left: the handler's waits are cancelled.
    // Plain TCP only: over TLS a FIN hides behind a close_notify record.
    void watch_peer()
    {
        if constexpr (!is_tls<Stream>)
        {
            if (!srv_->opts.cancel_on_disconnect || buffer_.size() > 0)
                return; // not asked for, or pipelined bytes are waiting: the client is there
            auto gen = ++watch_gen_;
            socket().async_wait(tcp::socket::wait_read, [self = this->shared_from_this(), gen](error_code ec) {
                if (ec || gen != self->watch_gen_)
                    return;
                char c;
                auto n = ::recv(self->socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                {
                    self->peer_gone_ = true;
                    self->cancel_.emit(asio::cancellation_type::terminal);
                }
            });
        }
    }

    void stop_watching_peer()
    {
        if constexpr (!is_tls<Stream>)
        {
            if (!srv_->opts.cancel_on_disconnect)
                return;
            ++watch_gen_;
            error_code ec;
            socket().cancel(ec); // only the readability wait is pending here
        }
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

    // How much to ask the socket for: under 1 KiB covers most request headers (and stays
    // below glibc's large-chunk sizes, whose allocation consolidates the fast bins); a
    // bigger buffer is taken only when a header (or pipelined requests) need it.
    static constexpr std::size_t small_read = 1000;
    std::size_t read_room() const
    {
        auto want = std::max<std::size_t>(small_read, buffer_.capacity() - buffer_.size());
        want = std::min<std::size_t>(want, 16 * 1024);
        return std::min(want, buffer_.max_size() - buffer_.size());
    }

    // Expect: 100-continue and the body, for the requests that have either. False: close
    // (after answering a rejection, when there is one to give).
    asio::awaitable<bool> read_body(http::request_parser<http::string_body>& parser, std::string id)
    {
        auto& head = parser.get();
        bool has_body = !parser.is_done();
        if (auto expect = head[http::field::expect]; !expect.empty())
        {
            if (!detail::iequals(detail::trim({expect.data(), expect.size()}), "100-continue"))
            {
                detail::rejection r{http::status::expectation_failed, "only 100-continue is supported"};
                co_await reject(std::move(r), std::move(id));
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
        if (!has_body)
            co_return true;

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
        if (!rec)
            co_return true;
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
            co_await reject(std::move(answer), std::move(id));
        }
        co_return false;
    }

    // Requests one after another until one of them, or the client, ends the connection.
    // One coroutine frame for the connection's life: reading, parsing and answering a
    // request allocate no frame of their own (the router's and the handler's aside);
    // only rare paths (bodies, rejections) call coroutines of their own.
    asio::awaitable<void> serve()
    {
        for (;;)
        {
            // The header: read until it is whole (RFC 9112 §2.2: leading empty lines skipped).
            detail::header_scan scan;
            std::size_t resume = 0;
            bool started = false;
            bool have_header = false;
            for (;;)
            {
                scan = detail::scan_header(buffered(), srv_->limits, resume);
                if (scan.state == detail::header_scan::complete)
                {
                    have_header = true;
                    break;
                }
                if (scan.state == detail::header_scan::rejected)
                {
                    co_await reject(*scan.error);
                    break;
                }
                bool has_bytes = buffered().size() > scan.skip;
                if (!has_bytes)
                {
                    idle_ = true;
                    if (srv_->stopping.load())
                        break;
                    set_io_deadline(clock_type::now() + srv_->opts.idle_timeout);
                    // An idle keep-alive connection keeps a small read buffer only: a big
                    // one, grown for a big request, goes back now. (Waiting for readability
                    // with no buffer at all would cost an epoll_ctl per request: asio
                    // re-arms the descriptor for every wait.)
                    if (buffer_.size() == 0 && buffer_.capacity() > small_read)
                        buffer_.shrink_to_fit();
                }
                else if (!started)
                {
                    // The header clock starts with its first byte.
                    started = true;
                    set_io_deadline(clock_type::now() + srv_->opts.header_timeout);
                }
                auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(read_room()), use_tuple);
                idle_ = false;
                if (ec)
                {
                    if (timed_out_ && buffered().size() > scan.skip && !srv_->stopping.load())
                    {
                        timed_out_ = false;
                        detail::rejection r{http::status::request_timeout, "the request header took too long"};
                        co_await reject(std::move(r));
                    }
                    break;
                }
                buffer_.commit(n);
            }
            if (!have_header)
                break;

            auto started_at = clock_type::now();
            io_deadline_ = never;
            buffer_.consume(scan.skip);
            auto header_bytes = buffered().substr(0, scan.end - scan.skip);
            if (auto r = detail::check_header_bytes(header_bytes, srv_->limits))
            {
                co_await reject(*r);
                break;
            }

            // The parser and the request live in the connection: the frame stays small.
            auto& parser = parser_.emplace();
            parser.header_limit(static_cast<std::uint32_t>(header_bytes.size() + 1));
            parser.body_limit(boost::none); // checked below, once the framing is known to be sane
            parser.eager(false);
            error_code pec;
            auto used = parser.put(asio::buffer(header_bytes.data(), header_bytes.size()), pec);
            if (pec || !parser.is_header_done())
            {
                detail::rejection r{http::status::bad_request,
                                    "malformed request: " + (pec ? pec.message() : std::string{"incomplete header"})};
                co_await reject(std::move(r));
                break;
            }
            buffer_.consume(used);

            auto& head = parser.get();
            // From here on the header is parsed: even a rejection echoes the client's id.
            std::string id;
            if (auto given = head["X-Request-Id"]; sane_request_id({given.data(), given.size()}))
                id.assign(given.data(), given.size());
            else
                id = srv_->next_id();
            if (auto r = detail::check_framing(head))
            {
                co_await reject(*r, id);
                break;
            }
            if (auto len = parser.content_length(); len && *len > srv_->opts.body_limit)
            {
                detail::rejection r{http::status::payload_too_large,
                                    "body of " + std::to_string(*len) + " bytes is over the limit of " +
                                        std::to_string(srv_->opts.body_limit)};
                co_await reject(std::move(r), id);
                break;
            }
            if (!parser.is_done() || !head[http::field::expect].empty())
            {
                bool body_ok = co_await read_body(parser, id);
                if (!body_ok)
                    break;
            }

            srv_->requests.fetch_add(1, std::memory_order_relaxed);
            auto& req = req_.emplace(parser.release(), std::move(id), started_at + srv_->opts.request_timeout,
                                     srv_->log.get(), remote_);
            parser_.reset();

            // The handler runs under the request deadline; past it, its awaits are cancelled
            // and the answer is 504 whatever it returns.
            deadline_hit_ = false;
            peer_gone_ = false;
            request_deadline_ = req.deadline();
            arm(request_deadline_);
            watch_peer();
            response res = co_await srv_->routes->dispatch(req);
            stop_watching_peer();
            request_deadline_ = never;
            if (closing_)
                break;
            if (peer_gone_)
            {
                // Logged as nginx does, 499: the client closed the connection first.
                res.result(499);
                if (srv_->log->access_enabled())
                    log_access(res, req, 0, started_at);
                break;
            }
            // A deadline that fired left the coroutine's cancellation state cancelled: clear
            // it before the next request's I/O. (Nothing else emits while a request runs but
            // force_close, which ends the connection.)
            if (deadline_hit_)
                co_await asio::this_coro::reset_cancellation_state();
            if (deadline_hit_)
                res = problem(http::status::gateway_timeout,
                              "the request took longer than " + std::to_string(srv_->opts.request_timeout.count()) +
                                  " ms");

            bool keep = req.message().keep_alive() && res.keep_alive() && !srv_->draining.load();
            finish_response(res, req);
            std::size_t sent = 0;
            error_code wec;
            set_io_deadline(clock_type::now() + srv_->opts.write_timeout);
            if (res.chunked())
            {
                // Rare (a handler asked for chunked framing): Beast encodes the chunks.
                decorate(res, req.id(), keep, req.message().version());
                auto [e, n] = co_await http::async_write(stream_, res, use_tuple);
                wec = e;
                sent = n;
            }
            else
            {
                serialize_head(res, req.id(), keep, req.message().version());
                std::array<asio::const_buffer, 2> bufs{asio::buffer(head_), asio::buffer(res.body())};
                auto [e, n] = co_await asio::async_write(stream_, bufs, use_tuple);
                wec = e;
                sent = n;
            }
            io_deadline_ = never;
            if (srv_->log->access_enabled())
                log_access(res, req, sent, started_at);
            req_.reset();
            if (wec || !keep)
                break;
        }
    }

    // Date, Server and X-Request-Id are the server's; Connection follows `keep`.
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

    // The status line and fields, written by hand into a buffer the connection keeps:
    // Beast's serializer is general (chunked bodies, views over views) and costs more
    // than the whole response here. The same bytes as `decorate` + Beast's serializer,
    // except that Date, Server and X-Request-Id come first.
    void serialize_head(response& res, std::string_view id, bool keep, unsigned request_version)
    {
        using namespace std::string_view_literals;
        res.version(11);
        // `keep` holds only when the response itself allows keep-alive (no "close"
        // token): then Beast's keep_alive(true) would change nothing.
        if (!keep)
            res.keep_alive(false);
        else if (request_version < 11)
            res.set(http::field::connection, "keep-alive");
        auto& out = head_;
        out.clear();
        out.append("HTTP/1.1 "sv);
        char code[8];
        auto [end, cec] = std::to_chars(code, code + sizeof code, res.result_int());
        out.append(code, end);
        out += ' ';
        auto reason = res.reason();
        out.append(reason.data(), reason.size());
        out.append("\r\n"sv);
        out.append(date_and_server());
        out.append("X-Request-Id: "sv);
        out.append(id);
        out.append("\r\n"sv);
        for (auto& f : res)
        {
            auto name = f.name();
            auto name_text = f.name_string();
            if (name == http::field::date || name == http::field::server ||
                (name == http::field::unknown && beast::iequals(name_text, "X-Request-Id")))
                continue;
            out.append(name_text.data(), name_text.size());
            out.append(": "sv);
            auto value = f.value();
            out.append(value.data(), value.size());
            out.append("\r\n"sv);
        }
        out.append("\r\n"sv);
    }

    // Writes `res` (its body only when `with_body`); the bytes written, or the error.
    asio::awaitable<std::tuple<error_code, std::size_t>> write_response(response& res, std::string_view id,
                                                                        bool keep, unsigned request_version)
    {
        set_io_deadline(clock_type::now() + srv_->opts.write_timeout);
        std::tuple<error_code, std::size_t> result;
        if (res.chunked())
        {
            // Rare (a handler asked for chunked framing): Beast encodes the chunks.
            decorate(res, id, keep, request_version);
            result = co_await http::async_write(stream_, res, use_tuple);
        }
        else
        {
            serialize_head(res, id, keep, request_version);
            std::array<asio::const_buffer, 2> bufs{asio::buffer(head_), asio::buffer(res.body())};
            result = co_await asio::async_write(stream_, bufs, use_tuple);
        }
        io_deadline_ = never;
        co_return result;
    }

    // The framing of a routed request's response (after every hook), and HEAD's empty body.
    void finish_response(response& res, const request& req)
    {
        finish_payload(res);
        if (req.method() == http::verb::head)
        {
            // HEAD: the GET's headers, its Content-Length included, and no body.
            auto n = res.body().size();
            res.body().clear();
            if (res.has_content_length())
                res.content_length(n);
        }
    }

    void log_access(const response& res, const request& req, std::size_t bytes, clock_type::time_point started_at)
    {
        auto method = req.message().method_string();
        srv_->log->access({remote_, {method.data(), method.size()}, req.target(), res.result_int(), bytes,
                           std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - started_at),
                           req.id()});
    }

    // Answers a request that never reaches the router; the caller then closes.
    // GCC 12 destroys a braced temporary passed to a coroutine twice (double free on
    // resume): callers build the rejection as a named local and move it in.
    // `id`: the request's id once its header is parsed; empty before (a fresh one is made).
    asio::awaitable<void> reject(detail::rejection r, std::string id = {})
    {
        srv_->requests.fetch_add(1, std::memory_order_relaxed);
        if (id.empty())
            id = srv_->next_id();
        auto res = problem(r.status, r.detail);
        auto [ec, n] = co_await write_response(res, id, false, 11);
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
    std::optional<http::request_parser<http::string_body>> parser_;
    std::optional<request> req_;
    std::string head_; // the response's status line and fields, reused
    asio::cancellation_signal cancel_;
    std::string remote_;
    clock_type::time_point armed_ = never;
    clock_type::time_point io_deadline_ = never;
    clock_type::time_point request_deadline_ = never;
    bool idle_ = false;
    bool timed_out_ = false;
    bool deadline_hit_ = false;
    bool peer_gone_ = false;
    std::uint64_t watch_gen_ = 0;
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
        auto [ec, socket] = co_await acceptor.async_accept(connection_executor(), use_tuple);
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
    : server(std::vector<asio::any_io_executor>{std::move(ex)}, std::move(routes), std::move(options))
{
}

server::server(std::vector<asio::any_io_executor> executors, std::shared_ptr<const router> routes,
               server_options options)
{
    if (executors.empty())
        throw std::invalid_argument("coroute::server needs at least one executor");
    impl_ = std::make_shared<detail::server_state>(std::move(executors), std::move(routes), std::move(options));
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

// The health answers are constant: no JSON document is built for them.
response status_ok()
{
    return make_response(http::status::ok, "application/json", R"({"status":"ok"})");
}

asio::awaitable<response> healthz(request&)
{
    co_return status_ok();
}

asio::awaitable<response> readyz(const server* srv)
{
    if (srv->draining())
        co_return problem(http::status::service_unavailable, "the server is shutting down");
    co_return status_ok();
}

} // namespace

void add_health_routes(router& r, const server& srv)
{
    r.get("/healthz", &healthz);
    r.get("/readyz", [s = &srv](request&) { return readyz(s); });
}

} // namespace coroute
