// The test client: each request is a connection of the server's own session over an
// in-memory stream, whose other end speaks HTTP (or WebSocket) with Beast's parser.
#include <coroute/testing.hpp>

#include "memory_stream.hpp"
#include "server_state.hpp"
#include "session.hpp"

#include <coroute/health.hpp>
#include <coroute/log.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/system/system_error.hpp>

#include <limits>
#include <mutex>

namespace coroute::detail {
// The session over the test client's stream, compiled once, here.
template class session<memory_stream>;
} // namespace coroute::detail

namespace coroute::testing {

namespace ws = beast::websocket;
using detail::memory_stream;
using string_parser = http::response_parser<http::string_body>;

namespace {

void log_escaped(logger& log, std::exception_ptr e)
{
    try
    {
        std::rethrow_exception(e);
    }
    catch (const std::exception& ex)
    {
        log.error(std::string{"in-memory connection ended by an exception: "} + ex.what());
    }
    catch (...)
    {
        log.error("in-memory connection ended by an unknown exception");
    }
}

// What a client library would add: a Host, and the body's framing.
void prepare(http::request<http::string_body>& req)
{
    if (req[http::field::host].empty())
        req.set(http::field::host, "test");
    if (!req.has_content_length() && !req.chunked())
        req.prepare_payload();
}

void fresh(string_parser& p, bool head)
{
    p.body_limit(std::numeric_limits<std::uint64_t>::max());
    p.header_limit(std::numeric_limits<std::uint32_t>::max());
    if (head)
        p.skip(true);
}

[[noreturn]] void no_answer(boost::system::error_code ec)
{
    throw boost::system::system_error(ec, "coroute::testing: the server closed the connection without a whole answer");
}

// The next response on `s`, its whole body read; interim 100 Continue answers are skipped.
asio::awaitable<response> read_response(memory_stream& s, beast::flat_buffer& buf, bool head)
{
    for (;;)
    {
        string_parser p;
        fresh(p, head);
        auto [ec, n] = co_await http::async_read(s, buf, p, nothrow_awaitable);
        if (ec)
            no_answer(ec);
        if (p.get().result() == http::status::continue_)
            continue;
        response res{p.release()};
        co_return res;
    }
}

} // namespace

struct client::impl
{
    std::shared_ptr<detail::server_state> state;
    std::mutex mutex; // connection_executor() is not thread-safe

    /// A new connection: the server's session runs on one end, the caller gets the other.
    memory_stream connect(asio::any_io_executor ex)
    {
        asio::any_io_executor server_ex;
        {
            std::lock_guard l{mutex};
            server_ex = state->connection_executor();
        }
        auto ends = memory_stream::make_pair(std::move(ex), std::move(server_ex));
        auto s = std::make_shared<detail::session<memory_stream>>(state, std::move(ends.second));
        state->add(s);
        auto slot = s->cancel_slot();
        auto sex = s->executor();
        asio::co_spawn(sex, s->run(), asio::bind_cancellation_slot(slot, [s, log = state->log](std::exception_ptr e) {
                           if (e)
                               log_escaped(*log, e);
                       }));
        return std::move(ends.first);
    }

    void close_all()
    {
        state->for_each_session([](detail::session_base& s) { s.force_close(); });
    }
};

namespace {

server_options quiet(server_options o)
{
    if (!o.log)
        o.log = std::make_shared<logger>(log_level::error, false); // a handler's exception still shows
    return o;
}

std::unique_ptr<client::impl> make_impl(asio::any_io_executor ex, std::shared_ptr<const router> routes,
                                        server_options opts)
{
    if (!routes)
        throw std::invalid_argument("coroute::testing::client needs a router");
    auto p = std::make_unique<client::impl>();
    p->state = std::make_shared<detail::server_state>(std::vector<asio::any_io_executor>{std::move(ex)},
                                                      std::move(routes), quiet(std::move(opts)));
    return p;
}

} // namespace

client::client(std::shared_ptr<const router> routes, server_options opts)
    : own_(std::make_unique<asio::io_context>(1)), ex_(own_->get_executor()),
      impl_(make_impl(ex_, std::move(routes), std::move(opts)))
{
}

client::client(asio::any_io_executor ex, std::shared_ptr<const router> routes, server_options opts)
    : ex_(std::move(ex)), impl_(make_impl(ex_, std::move(routes), std::move(opts)))
{
}

client::client(const router& routes, server_options opts)
    : client(std::shared_ptr<const router>(&routes, [](const router*) {}), std::move(opts))
{
}

client::~client()
{
    // Connections still open (a streamed response kept, a timed-out call) close now.
    impl_->state->stopping.store(true);
    impl_->close_all();
    if (own_)
    {
        own_->restart();
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        while (impl_->state->open.load() > 0 && std::chrono::steady_clock::now() < until)
            own_->run_one_for(std::chrono::milliseconds(10));
    }
}

asio::io_context& client::own_context()
{
    if (!own_)
        throw std::logic_error("coroute::testing::client: the *_sync calls and run() need a client that owns its "
                               "io_context (the constructor without an executor)");
    return *own_;
}

void client::wait_for(const std::function<bool()>& ready)
{
    auto& io = own_context();
    auto run_until = [&](std::chrono::steady_clock::time_point t) {
        while (!ready() && std::chrono::steady_clock::now() < t)
        {
            io.restart();
            if (io.run_one_for(std::chrono::milliseconds(10)) == 0 && io.stopped())
                std::this_thread::sleep_for(std::chrono::milliseconds(1)); // waiting on another thread
        }
    };
    run_until(std::chrono::steady_clock::now() + timeout_);
    if (ready())
        return;
    // Closing the connections cancels their handlers; the caller's wait then ends too.
    impl_->close_all();
    run_until(std::chrono::steady_clock::now() + std::chrono::seconds(1));
    throw timeout_error("coroute::testing: no answer within " + std::to_string(timeout_.count()) + " ms");
}

void client::drain()
{
    impl_->state->draining.store(true);
}

std::size_t client::connections() const noexcept
{
    return impl_->state->open.load();
}

http::request<http::string_body> make_request(http::verb method, std::string_view target, fields headers,
                                              std::string body)
{
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "test");
    for (auto& [name, value] : headers)
        req.set(name, value);
    req.body() = std::move(body);
    return req;
}

boost::json::value json_body(const response& res)
{
    return boost::json::parse(res.body());
}

// Not coroutines: they build the request now, so no argument of theirs has to outlive
// the call, and the coroutine gets a named value (GCC 12, see session.hpp's reject).
asio::awaitable<response> client::send(http::request<http::string_body> req)
{
    return exchange(std::move(req));
}

asio::awaitable<response> client::send_raw(std::string bytes)
{
    return exchange_raw(std::move(bytes));
}

asio::awaitable<response> client::get(std::string_view target, fields headers)
{
    auto req = make_request(http::verb::get, target, std::move(headers));
    return exchange(std::move(req));
}

asio::awaitable<response> client::head(std::string_view target, fields headers)
{
    auto req = make_request(http::verb::head, target, std::move(headers));
    return exchange(std::move(req));
}

asio::awaitable<response> client::del(std::string_view target, fields headers)
{
    auto req = make_request(http::verb::delete_, target, std::move(headers));
    return exchange(std::move(req));
}

asio::awaitable<response> client::post(std::string_view target, std::string body, std::string_view content_type,
                                       fields headers)
{
    auto req = make_request(http::verb::post, target, std::move(headers), std::move(body));
    req.set(http::field::content_type, content_type);
    return exchange(std::move(req));
}

asio::awaitable<response> client::post_json(std::string_view target, const boost::json::value& body, fields headers)
{
    auto req = make_request(http::verb::post, target, std::move(headers), boost::json::serialize(body));
    req.set(http::field::content_type, "application/json");
    return exchange(std::move(req));
}

asio::awaitable<response> client::put_json(std::string_view target, const boost::json::value& body, fields headers)
{
    auto req = make_request(http::verb::put, target, std::move(headers), boost::json::serialize(body));
    req.set(http::field::content_type, "application/json");
    return exchange(std::move(req));
}

asio::awaitable<streamed_response> client::open(http::request<http::string_body> req)
{
    return start_stream(std::move(req));
}

asio::awaitable<boost::system::result<websocket_client, response>> client::websocket(std::string_view target,
                                                                                    fields headers)
{
    std::string t{target};
    return start_websocket(std::move(t), std::move(headers));
}

asio::awaitable<response> client::exchange(http::request<http::string_body> req)
{
    prepare(req);
    auto s = impl_->connect(ex_);
    // A failed write (the server answered early and closed) still leaves its answer to read.
    auto [wec, wn] = co_await http::async_write(s, req, nothrow_awaitable);
    (void)wec;
    beast::flat_buffer buf;
    auto res = co_await read_response(s, buf, req.method() == http::verb::head);
    co_return res;
}

asio::awaitable<response> client::exchange_raw(std::string bytes)
{
    auto s = impl_->connect(ex_);
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(bytes), nothrow_awaitable);
    (void)wec;
    beast::flat_buffer buf;
    auto res = co_await read_response(s, buf, bytes.starts_with("HEAD "));
    co_return res;
}

// ---- streamed responses

struct streamed_response::impl
{
    explicit impl(memory_stream s) : stream(std::move(s)) {}
    memory_stream stream;
    beast::flat_buffer buf;
    std::optional<string_parser> parser; // a fresh one after a 100 Continue
    response head;
    bool done = false;
};

streamed_response::streamed_response(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
streamed_response::streamed_response(streamed_response&&) noexcept = default;
streamed_response& streamed_response::operator=(streamed_response&&) noexcept = default;
streamed_response::~streamed_response() = default;

const response& streamed_response::head() const noexcept
{
    return impl_->head;
}

bool streamed_response::done() const noexcept
{
    return impl_->done;
}

asio::awaitable<boost::system::result<std::string>> streamed_response::read_some()
{
    auto& p = *impl_;
    for (;;)
    {
        if (p.parser->is_done())
        {
            p.done = true;
            co_return std::string{};
        }
        auto [ec, n] = co_await http::async_read_some(p.stream, p.buf, *p.parser, nothrow_awaitable);
        if (ec)
            co_return ec;
        // The parser appends to the body: what it holds now is what this read brought.
        auto got = std::move(p.parser->get().body());
        p.parser->get().body().clear();
        if (!got.empty())
            co_return got;
    }
}

namespace {

asio::awaitable<boost::system::result<std::string>> read_until_in(streamed_response& s, std::string text)
{
    std::string all;
    while (all.find(text) == std::string::npos && !s.done())
    {
        auto piece = co_await s.read_some();
        if (!piece)
            co_return piece.error();
        all += *piece;
    }
    co_return all;
}

} // namespace

// Not a coroutine: `text` is often a literal's temporary, which GCC 12 must not see
// passed to a coroutine by value.
asio::awaitable<boost::system::result<std::string>> streamed_response::read_until(std::string text)
{
    return read_until_in(*this, std::move(text));
}

asio::awaitable<boost::system::result<std::string>> streamed_response::read_all()
{
    std::string all;
    while (!done())
    {
        auto piece = co_await read_some();
        if (!piece)
            co_return piece.error();
        all += *piece;
    }
    co_return all;
}

asio::awaitable<streamed_response> client::start_stream(http::request<http::string_body> req)
{
    prepare(req);
    auto p = std::make_unique<streamed_response::impl>(impl_->connect(ex_));
    auto [wec, wn] = co_await http::async_write(p->stream, req, nothrow_awaitable);
    (void)wec;
    for (;;)
    {
        fresh(p->parser.emplace(), req.method() == http::verb::head);
        auto [ec, n] = co_await http::async_read_header(p->stream, p->buf, *p->parser, nothrow_awaitable);
        if (ec)
            no_answer(ec);
        if (p->parser->get().result() != http::status::continue_)
            break;
    }
    http::response<http::string_body> head_only{p->parser->get().base()};
    response head{std::move(head_only)};
    p->head = std::move(head);
    streamed_response out{std::move(p)};
    co_return out;
}

// ---- WebSocket

struct websocket_client::impl
{
    explicit impl(memory_stream s) : ws(std::move(s)) {}
    ws::stream<memory_stream> ws;
    beast::flat_buffer buf;
    response handshake;
};

websocket_client::websocket_client(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
websocket_client::websocket_client(websocket_client&&) noexcept = default;
websocket_client& websocket_client::operator=(websocket_client&&) noexcept = default;
websocket_client::~websocket_client() = default;

const response& websocket_client::handshake() const noexcept
{
    return impl_->handshake;
}

std::uint16_t websocket_client::close_code() const noexcept
{
    return impl_->ws.reason().code;
}

namespace {

asio::awaitable<boost::system::error_code> send_on(ws::stream<memory_stream>& ws, std::string data, bool text)
{
    ws.text(text);
    auto [ec, n] = co_await ws.async_write(asio::buffer(data), nothrow_awaitable);
    co_return ec;
}

} // namespace

// Not a coroutine, as read_until above.
asio::awaitable<boost::system::error_code> websocket_client::send(std::string data, bool text)
{
    return send_on(impl_->ws, std::move(data), text);
}

asio::awaitable<boost::system::result<ws_message>> websocket_client::read()
{
    auto& p = *impl_;
    auto [ec, n] = co_await p.ws.async_read(p.buf, nothrow_awaitable);
    if (ec)
        co_return ec;
    ws_message m{beast::buffers_to_string(p.buf.data()), p.ws.got_text()};
    p.buf.consume(p.buf.size());
    co_return m;
}

asio::awaitable<boost::system::error_code> websocket_client::close(std::uint16_t code)
{
    ws::close_reason reason{code};
    auto [ec] = co_await impl_->ws.async_close(reason, nothrow_awaitable);
    co_return ec;
}

asio::awaitable<boost::system::result<websocket_client, response>> client::start_websocket(std::string target,
                                                                                         fields headers)
{
    auto p = std::make_unique<websocket_client::impl>(impl_->connect(ex_));
    p->ws.set_option(ws::stream_base::decorator([headers](ws::request_type& r) {
        for (auto& [name, value] : headers)
            r.set(name, value);
    }));
    ws::response_type answer;
    auto [ec] = co_await p->ws.async_handshake(answer, "test", target, nothrow_awaitable);
    if (ec && answer.result_int() == 0)
        no_answer(ec);
    response res{std::move(answer)};
    if (ec)
        co_return boost::system::result<websocket_client, response>{boost::system::in_place_error, std::move(res)};
    p->handshake = std::move(res);
    websocket_client out{std::move(p)};
    co_return out;
}

// ---- the loopback server

live_server::live_server(std::shared_ptr<router> routes, server_options opts, bool health)
    : routes_(std::move(routes))
{
    if (!opts.log)
        opts.log = std::make_shared<logger>(log_level::error, false);
    server_ = std::make_unique<coroute::server>(ioc_.get_executor(), routes_, std::move(opts));
    if (health)
        add_health_routes(*routes_, *server_);
    port_ = server_->listen({asio::ip::make_address("127.0.0.1"), 0}).port();
    server_->start();
    thread_ = std::thread([this] { ioc_.run(); });
}

live_server::~live_server()
{
    asio::co_spawn(ioc_, server_->shutdown(std::chrono::seconds(1)), [this](std::exception_ptr) { ioc_.stop(); });
    thread_.join();
}

std::string live_server::url() const
{
    return std::string{server_->scheme()} + "://127.0.0.1:" + std::to_string(port_);
}

http::response<http::string_body> live_server::get(std::string_view target, fields headers,
                                                   std::chrono::milliseconds timeout)
{
    asio::io_context io;
    asio::ip::tcp::socket s{io};
    auto req = make_request(http::verb::get, target, std::move(headers));
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    boost::system::error_code result = asio::error::timed_out;
    // Completion handlers, not coroutines: the three steps in a chain on a local context.
    s.async_connect({asio::ip::make_address("127.0.0.1"), port_}, [&](boost::system::error_code ec) {
        if (ec)
            return void(result = ec);
        http::async_write(s, req, [&](boost::system::error_code wec, std::size_t) {
            if (wec)
                return void(result = wec);
            http::async_read(s, buf, res, [&](boost::system::error_code rec, std::size_t) { result = rec; });
        });
    });
    io.run_for(timeout);
    if (result)
        throw boost::system::system_error(result, "GET " + std::string{target} + " on " + url());
    return res;
}

} // namespace coroute::testing
